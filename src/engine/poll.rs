//! When an idle worker looks at the queue again: on a notification of a new job
//! (Postgres), and every poll interval whatever happens.
//!
//! apalis' own strategies lose the interval: its `Strategy` stops at the first of its
//! strategies that is ready, so while notifications are queued its interval is never
//! polled again, and its `IntervalStrategy` arms each next tick without polling it. Either
//! way, after a fetch that finds nothing no timer is registered with the task any more,
//! and the worker is woken only by a later notification or by its heartbeat. Measured: after
//! a 40-wide fan-out, the next run's first job waited 1.4-2.0 s (the 2 s heartbeat)
//! instead of at most one poll interval. [`Wakeups`] polls both sources every time and
//! arms the next tick as soon as one fires, so a wake-up is always registered. A
//! notification consumed while a fetch was already under way is still lost (apalis' own
//! race); the interval bounds what that costs.

use std::task::{Context, Poll};
use std::time::Duration;

use apalis_core::backend::ext::poll_strategy::{PollSnapshot, PollStrategy};
use futures_util::stream::{Empty, Stream, StreamExt as _};
use tokio::time::{Interval, MissedTickBehavior};

/// A poll strategy for apalis' `Strategy::apply`: ready on a notification or a tick.
pub(super) struct Wakeups<S> {
    notices: Option<S>,
    every: Interval,
}

impl Wakeups<Empty<()>> {
    /// A tick every `period`, and nothing else (SQLite has no notifications). Must be
    /// called inside the tokio runtime, whose timer it registers with.
    pub(super) fn every(period: Duration) -> Wakeups<Empty<()>> {
        Wakeups::with_notices(futures_util::stream::empty(), period)
    }
}

impl<S> Wakeups<S> {
    /// Every item of `notices`, and a tick every `period`.
    pub(super) fn with_notices(notices: S, period: Duration) -> Wakeups<S> {
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Wakeups {
            notices: Some(notices),
            every,
        }
    }
}

impl<S: Stream + Unpin> PollStrategy for Wakeups<S> {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut woken = false;
        // Every notice queued so far asks for the same thing, one more look: all are taken
        // now, which also registers this task for the next one.
        while let Some(notices) = &mut self.notices {
            match notices.poll_next_unpin(cx) {
                Poll::Ready(Some(_)) => woken = true,
                // The stream ended (its connection failed): ticks alone from now on.
                Poll::Ready(None) => self.notices = None,
                Poll::Pending => break,
            }
        }
        if self.every.poll_tick(cx).is_ready() {
            woken = true;
            // Arms the next tick with this task's waker; one already due (a slow poll)
            // wakes the task at once.
            if self.every.poll_tick(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
        if woken {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Notices that are always there, as when a burst of jobs queued many.
    struct Flood;

    impl Stream for Flood {
        type Item = ();
        fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
            // A stream that has more at once still must not starve the interval.
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_arms_the_next_one_whatever_the_notices_do() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut wakeups = Wakeups::with_notices(Flood, Duration::from_millis(100));
        let snapshot = PollSnapshot::default();
        // The first tick is immediate; the next one is armed by the same call.
        assert!(wakeups.poll_drive(&mut cx, &snapshot).is_ready());
        for tick in 1..=3 {
            let before = count.0.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            tokio::task::yield_now().await;
            assert!(
                count.0.load(Ordering::SeqCst) > before,
                "tick {tick} woke the task without another poll"
            );
            assert!(wakeups.poll_drive(&mut cx, &snapshot).is_ready());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn without_notices_it_waits_for_the_next_tick() {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut wakeups = Wakeups::every(Duration::from_millis(100));
        let snapshot = PollSnapshot::default();
        assert!(wakeups.poll_drive(&mut cx, &snapshot).is_ready());
        assert!(wakeups.poll_drive(&mut cx, &snapshot).is_pending());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(wakeups.poll_drive(&mut cx, &snapshot).is_ready());
    }
}
