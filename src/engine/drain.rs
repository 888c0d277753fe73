//! Stopping a queue consumer without a deadlock: the jobs in flight finish first, while
//! apalis still drives its own bookkeeping, and only then does apalis shut down.
//!
//! Why: once apalis' worker is told to shut down, it stops polling its backend until every
//! job in flight has finished (`CallAll` returns `Pending` while its queue is not empty),
//! so a backend future that was mid-way (a heartbeat, the acknowledgements' transaction, a
//! fetch) stays frozen holding its database connection. On SQLite there is one connection
//! per process, shared with the engine: a job in flight then waited for that connection
//! forever (its status read and claim are retried until the database answers), and a
//! worker told to stop never did (the engine bench hung in about one stop in six).
//!
//! So the consumer's service is wrapped in [`Drain`]: after `stop`, the service takes at
//! most the one job whose fetch may already be under way (letting it complete, which
//! returns its connection), then reports not ready, which stops apalis fetching while it
//! keeps polling its heartbeat and acknowledgements; [`Drain::idle`] resolves when the last
//! job in flight has finished, and that is what tells apalis to shut down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};

/// The shared state of one consumer's drain: a cheap handle, cloned into its layer.
#[derive(Debug, Clone)]
pub struct Drain {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    stop: CancellationToken,
    /// A job was taken after `stop`: whatever fetch was under way has completed.
    taken_after_stop: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

impl Drain {
    pub fn new(stop: CancellationToken) -> Drain {
        Drain {
            shared: Arc::new(Shared {
                stop,
                taken_after_stop: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }

    /// Jobs taken and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Resolves once `stop` has fired and no job is in flight.
    pub async fn idle(&self) {
        self.shared.stop.cancelled().await;
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so a job finishing in between still
            // wakes this.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl<S> Layer<S> for Drain {
    type Service = DrainService<S>;

    fn layer(&self, inner: S) -> DrainService<S> {
        DrainService {
            inner,
            drain: self.clone(),
        }
    }
}

/// The service [`Drain`] wraps around a consumer's job handler.
#[derive(Debug, Clone)]
pub struct DrainService<S> {
    inner: S,
    drain: Drain,
}

impl<S, R> Service<R> for DrainService<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let shared = &self.drain.shared;
        if shared.stop.is_cancelled() && shared.taken_after_stop.load(Ordering::SeqCst) {
            // Not ready: apalis fetches nothing more. Its own shutdown, once `idle`
            // resolves, wakes its worker.
            return Poll::Pending;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let shared = Arc::clone(&self.drain.shared);
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        if shared.stop.is_cancelled() {
            shared.taken_after_stop.store(true, Ordering::SeqCst);
        }
        let guard = InFlight(shared);
        let future = self.inner.call(request);
        Box::pin(async move {
            let out = future.await;
            drop(guard);
            out
        })
    }
}

/// One job in flight; finished when dropped (completed or abandoned alike).
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A service whose call finishes when the notify it was given is notified.
    #[derive(Clone)]
    struct Gated;

    impl Service<Arc<Notify>> for Gated {
        type Response = ();
        type Error = ();
        type Future = Pin<Box<dyn Future<Output = Result<(), ()>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, release: Arc<Notify>) -> Self::Future {
            Box::pin(async move {
                release.notified().await;
                Ok(())
            })
        }
    }

    fn is_ready<S: Service<Arc<Notify>>>(svc: &mut S) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }

    async fn still_waiting(task: &tokio::task::JoinHandle<()>) -> bool {
        tokio::time::sleep(Duration::from_millis(20)).await;
        !task.is_finished()
    }

    #[tokio::test]
    async fn idle_waits_for_the_jobs_in_flight_and_one_job_is_taken_after_stop() {
        let stop = CancellationToken::new();
        let drain = Drain::new(stop.clone());
        let mut svc = drain.layer(Gated);
        let (one, two) = (Arc::new(Notify::new()), Arc::new(Notify::new()));

        assert!(is_ready(&mut svc));
        let first = tokio::spawn(svc.call(Arc::clone(&one)));
        assert_eq!(drain.in_flight(), 1);

        stop.cancel();
        // The fetch that may have been under way when stop fired still delivers its job.
        assert!(is_ready(&mut svc));
        let second = tokio::spawn(svc.call(Arc::clone(&two)));
        assert_eq!(drain.in_flight(), 2);
        // After that, nothing more is taken.
        assert!(!is_ready(&mut svc));

        let idle = tokio::spawn({
            let drain = drain.clone();
            async move { drain.idle().await }
        });
        assert!(still_waiting(&idle).await, "idle with two jobs in flight");
        one.notify_one();
        assert_eq!(first.await.unwrap(), Ok(()));
        assert!(still_waiting(&idle).await, "idle with one job in flight");
        two.notify_one();
        assert_eq!(second.await.unwrap(), Ok(()));
        tokio::time::timeout(Duration::from_secs(5), idle)
            .await
            .expect("idle once no job is in flight")
            .unwrap();
        assert_eq!(drain.in_flight(), 0);
        assert!(!is_ready(&mut svc));
    }

    #[tokio::test]
    async fn idle_waits_for_stop_even_with_nothing_in_flight() {
        let stop = CancellationToken::new();
        let drain = Drain::new(stop.clone());
        let mut svc = drain.layer(Gated);
        let release = Arc::new(Notify::new());
        release.notify_one();
        assert_eq!(svc.call(release).await, Ok(()));
        let idle = tokio::spawn({
            let drain = drain.clone();
            async move { drain.idle().await }
        });
        assert!(still_waiting(&idle).await, "idle before stop");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), idle)
            .await
            .expect("idle after stop")
            .unwrap();
    }

    #[tokio::test]
    async fn an_abandoned_job_counts_as_finished() {
        let stop = CancellationToken::new();
        let drain = Drain::new(stop.clone());
        let mut svc = drain.layer(Gated);
        let pending = svc.call(Arc::new(Notify::new()));
        assert_eq!(drain.in_flight(), 1);
        drop(pending);
        assert_eq!(drain.in_flight(), 0);
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), drain.idle())
            .await
            .expect("idle");
    }
}
