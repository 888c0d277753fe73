//! The pure decision of what a schedule's next tick becomes: catch-up window, catch-up mode,
//! overlap policy, deferred ticks. No I/O and no clock: the store asks it inside the tick's
//! transaction (through [`super::Planner`]) with the schedule's row, its open ticks and
//! `now`.
//!
//! In order:
//!
//! 1. A deferred tick (overlap `queue`) starts as soon as no run of the schedule is active.
//! 2. Nothing is due before `next_fire_at`.
//! 3. A follow-up (`once`) fires however late it is: it was asked for by a run, and is
//!    never lost.
//! 4. Ticks older than the catch-up window are recorded as one `missed` range.
//! 5. Under `catch_up: { fire: latest }`, when later ticks are due too, the older ones are
//!    recorded as one `skipped` range and the latest is the next to decide.
//! 6. The overlap policy, when a run of the schedule is still active (queued, running or
//!    waiting): `skip` records the tick as skipped; `queue` defers it (one at most: a second
//!    is skipped); `allow` starts a run anyway.

use chrono::{DateTime, Utc};

use crate::cadence::Cadence;
use crate::playbook::duration::Duration;
use crate::playbook::schedule::{CatchUpFire, Overlap};
use crate::store::{FireOutcome, OpenFire, Schedule, ScheduleKind};

/// What to record, before any run is built (see [`crate::store::FirePlan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    StartDeferred {
        tick_at: DateTime<Utc>,
    },
    Tick {
        tick_at: DateTime<Utc>,
        record: Record,
        next: Option<DateTime<Utc>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Start,
    Defer {
        reason: String,
    },
    Skip {
        through: DateTime<Utc>,
        reason: String,
    },
    Miss {
        through: DateTime<Utc>,
        reason: String,
    },
}

/// Decides the schedule's next step at `now`; `None` when there is nothing to do.
/// `cadence` is the schedule's parsed cron expression (`None` for a follow-up).
pub fn decide(
    schedule: &Schedule,
    cadence: Option<&Cadence>,
    open: &[OpenFire],
    now: DateTime<Utc>,
) -> Option<Decision> {
    let active: Vec<&OpenFire> = open.iter().filter(|f| f.is_active()).collect();
    let deferred = open.iter().find(|f| f.outcome == FireOutcome::Deferred);
    if let Some(d) = deferred
        && active.is_empty()
    {
        return Some(Decision::StartDeferred { tick_at: d.tick_at });
    }
    let tick_at = schedule.next_fire_at.filter(|&t| t <= now)?;
    let Some(cadence) = cadence.filter(|_| schedule.kind == ScheduleKind::Cron) else {
        return Some(Decision::Tick {
            tick_at,
            record: Record::Start,
            next: None,
        });
    };
    let window = chrono::Duration::from_std(schedule.catch_up).unwrap_or(chrono::Duration::MAX);
    let window_start = now
        .checked_sub_signed(window)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    if tick_at < window_start {
        // Every tick before the window, as one range; the first tick inside it is next.
        let through = cadence
            .last_before(window_start)
            .filter(|&t| t >= tick_at)
            .unwrap_or(tick_at);
        return Some(Decision::Tick {
            tick_at,
            record: Record::Miss {
                through,
                reason: format!(
                    "more than {} late (the catch-up window) when a scheduler reached it",
                    Duration(schedule.catch_up)
                ),
            },
            next: cadence.next_after(through),
        });
    }
    let next = cadence.next_after(tick_at);
    if schedule.catch_up_fire == CatchUpFire::Latest && next.is_some_and(|n| n <= now) {
        let latest = cadence
            .last_at_or_before(now)
            .filter(|&l| l > tick_at)
            .or(next)?;
        let through = cadence
            .last_before(latest)
            .filter(|&t| t >= tick_at)
            .unwrap_or(tick_at);
        return Some(Decision::Tick {
            tick_at,
            record: Record::Skip {
                through,
                reason: format!(
                    "superseded by the tick at {} (catch_up fire: latest)",
                    latest.to_rfc3339()
                ),
            },
            next: Some(latest),
        });
    }
    let record = match (active.first(), schedule.overlap) {
        (None, _) => Record::Start,
        (_, Overlap::Allow) => Record::Start,
        (_, Overlap::Queue) if deferred.is_none() => Record::Defer {
            reason: format!("queued behind {}", describe(&active)),
        },
        (_, Overlap::Queue) => Record::Skip {
            through: tick_at,
            reason: format!(
                "overlap: queue holds one tick already ({}), behind {}",
                deferred.map_or(String::new(), |d| d.tick_at.to_rfc3339()),
                describe(&active)
            ),
        },
        (_, Overlap::Skip) => Record::Skip {
            through: tick_at,
            reason: format!("overlap: skip, {} still active", describe(&active)),
        },
    };
    Some(Decision::Tick {
        tick_at,
        record,
        next,
    })
}

fn describe(active: &[&OpenFire]) -> String {
    let runs: Vec<&str> = active.iter().filter_map(|f| f.run_id.as_deref()).collect();
    match runs.as_slice() {
        [] => "an active run".to_owned(),
        [one] => format!("run {one}"),
        many => format!("runs {}", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RunStatus;
    use crate::store::ScheduleStatus;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn schedule(overlap: Overlap, catch_up_secs: u64, fire: CatchUpFire, next: &str) -> Schedule {
        let t = utc("2026-01-01T00:00:00Z");
        Schedule {
            id: "p/every-5-minutes".into(),
            kind: ScheduleKind::Cron,
            playbook: "p".into(),
            content_hash: "h".into(),
            definition: String::new(),
            params: serde_json::json!({}),
            cron: Some("*/5 * * * *".into()),
            timezone: "UTC".into(),
            overlap,
            catch_up: std::time::Duration::from_secs(catch_up_secs),
            catch_up_fire: fire,
            pause_after_failures: None,
            notify: None,
            status: ScheduleStatus::Active,
            status_reason: None,
            next_fire_at: Some(utc(next)),
            consecutive_failures: 0,
            parent_run_id: None,
            parent_step_id: None,
            added_by: "alice".into(),
            created_at: t,
            updated_at: t,
        }
    }

    fn cadence() -> Cadence {
        Cadence::parse("*/5 * * * *", "UTC").unwrap()
    }

    fn running(tick: &str, run: &str) -> OpenFire {
        OpenFire {
            tick_at: utc(tick),
            outcome: FireOutcome::Started,
            run_id: Some(run.into()),
            run_status: Some(RunStatus::Running),
        }
    }

    #[test]
    fn nothing_is_due_before_the_next_tick() {
        let s = schedule(Overlap::Skip, 60, CatchUpFire::All, "2026-01-01T10:05:00Z");
        assert_eq!(
            decide(&s, Some(&cadence()), &[], utc("2026-01-01T10:04:59Z")),
            None
        );
    }

    #[test]
    fn a_due_tick_starts_a_run_and_points_at_the_next() {
        let s = schedule(Overlap::Skip, 60, CatchUpFire::All, "2026-01-01T10:05:00Z");
        assert_eq!(
            decide(&s, Some(&cadence()), &[], utc("2026-01-01T10:05:00.300Z")),
            Some(Decision::Tick {
                tick_at: utc("2026-01-01T10:05:00Z"),
                record: Record::Start,
                next: Some(utc("2026-01-01T10:10:00Z")),
            })
        );
    }

    #[test]
    fn overlap_skip_queue_and_allow() {
        let open = [running("2026-01-01T10:00:00Z", "R1")];
        let now = utc("2026-01-01T10:05:01Z");
        let tick = |o| {
            let s = schedule(o, 60, CatchUpFire::All, "2026-01-01T10:05:00Z");
            match decide(&s, Some(&cadence()), &open, now) {
                Some(Decision::Tick { record, .. }) => record,
                other => panic!("{other:?}"),
            }
        };
        assert!(
            matches!(tick(Overlap::Skip), Record::Skip { reason, .. } if reason.contains("R1"))
        );
        assert!(matches!(tick(Overlap::Queue), Record::Defer { .. }));
        assert_eq!(tick(Overlap::Allow), Record::Start);
    }

    #[test]
    fn queue_holds_one_tick_and_starts_it_when_the_run_ends() {
        let s = schedule(Overlap::Queue, 60, CatchUpFire::All, "2026-01-01T10:10:00Z");
        let deferred = OpenFire {
            tick_at: utc("2026-01-01T10:05:00Z"),
            outcome: FireOutcome::Deferred,
            run_id: None,
            run_status: None,
        };
        let now = utc("2026-01-01T10:10:01Z");
        let busy = [running("2026-01-01T10:00:00Z", "R1"), deferred.clone()];
        assert!(matches!(
            decide(&s, Some(&cadence()), &busy, now),
            Some(Decision::Tick {
                record: Record::Skip { .. },
                ..
            })
        ));
        let mut ended = busy.clone();
        ended[0].run_status = Some(RunStatus::Succeeded);
        assert_eq!(
            decide(&s, Some(&cadence()), &ended, now),
            Some(Decision::StartDeferred {
                tick_at: utc("2026-01-01T10:05:00Z")
            })
        );
    }

    #[test]
    fn ticks_older_than_the_window_are_one_missed_range() {
        let s = schedule(Overlap::Skip, 600, CatchUpFire::All, "2026-01-01T08:00:00Z");
        let now = utc("2026-01-01T10:02:00Z");
        assert_eq!(
            decide(&s, Some(&cadence()), &[], now),
            Some(Decision::Tick {
                tick_at: utc("2026-01-01T08:00:00Z"),
                record: Record::Miss {
                    through: utc("2026-01-01T09:50:00Z"),
                    reason: "more than 10m late (the catch-up window) when a scheduler reached it"
                        .into(),
                },
                next: Some(utc("2026-01-01T09:55:00Z")),
            })
        );
    }

    #[test]
    fn catch_up_latest_skips_to_the_latest_due_tick() {
        let s = schedule(
            Overlap::Skip,
            3600,
            CatchUpFire::Latest,
            "2026-01-01T09:30:00Z",
        );
        let now = utc("2026-01-01T10:02:00Z");
        match decide(&s, Some(&cadence()), &[], now) {
            Some(Decision::Tick {
                tick_at,
                record: Record::Skip { through, .. },
                next,
            }) => {
                assert_eq!(tick_at, utc("2026-01-01T09:30:00Z"));
                assert_eq!(through, utc("2026-01-01T09:55:00Z"));
                assert_eq!(next, Some(utc("2026-01-01T10:00:00Z")));
            }
            other => panic!("{other:?}"),
        }
        // The latest due tick itself then starts.
        let s = schedule(
            Overlap::Skip,
            3600,
            CatchUpFire::Latest,
            "2026-01-01T10:00:00Z",
        );
        assert!(matches!(
            decide(&s, Some(&cadence()), &[], now),
            Some(Decision::Tick {
                record: Record::Start,
                ..
            })
        ));
    }

    #[test]
    fn a_followup_fires_however_late_and_once() {
        let mut s = schedule(Overlap::Skip, 60, CatchUpFire::All, "2026-01-01T10:00:00Z");
        s.kind = ScheduleKind::Once;
        assert_eq!(
            decide(&s, None, &[], utc("2026-02-01T00:00:00Z")),
            Some(Decision::Tick {
                tick_at: utc("2026-01-01T10:00:00Z"),
                record: Record::Start,
                next: None,
            })
        );
    }
}
