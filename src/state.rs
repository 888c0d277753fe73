//! The typed states of runs and steps, and the one function that says which moves between
//! them are legal.
//!
//! Statuses are stored as lower-case text (`as_str` / `FromStr`), so a row read back is
//! always one of these variants or a `store::Error::Corrupt`. Every guarded statement in
//! `store` checks [`RunStatus::can_transition`] / [`StepStatus::can_transition`] before it
//! touches the database, and its `WHERE status = ...` clause checks the same thing again
//! against the row, so a move that is not in the tables below never happens.
//!
//! # Run transitions
//!
//! | from              | event                                        | to        | who moves it                                   |
//! | ----------------- | -------------------------------------------- | --------- | ---------------------------------------------- |
//! | (new)             | created, lock free or no lock                | running   | `run_create`                                   |
//! | (new)             | created, lock held by another run            | queued    | `run_create`                                   |
//! | queued            | the lock holder ended                        | running   | the transaction that ended the holder          |
//! | running           | only approval/checklist/wait steps active    | waiting   | the engine (`run_set_status_if`)               |
//! | waiting           | a step became ready again                    | running   | the engine                                     |
//! | running, waiting  | every step terminal, nothing fatal           | succeeded | the transaction that finished the last step    |
//! | running, waiting  | fatal failure, compensations done            | failed    | the engine                                     |
//! | queued, running, waiting | operator cancels                      | cancelled | the cancel command                             |
//! | terminal          | anything (late step results, duplicates)     | unchanged | nobody: terminal states ignore late events     |
//!
//! # Step transitions
//!
//! | from              | event                                        | to                         | who moves it                            |
//! | ----------------- | -------------------------------------------- | -------------------------- | --------------------------------------- |
//! | pending           | needs terminal, `when` true                  | ready (job pushed)         | the transaction that finished a need    |
//! | pending           | `when` false, or every need skipped          | skipped                    | same                                    |
//! | pending           | gate verdict, `when` not evaluable           | succeeded, failed, warned  | same (decided without a worker)         |
//! | ready             | job claimed                                  | running (lease, attempt+1) | a worker (`step_claim`)                 |
//! | ready             | reaches an approval/checklist/wait           | waiting                    | the engine (`step_park`)                |
//! | running           | attempt done                                 | succeeded, failed, warned, skipped, cancelled | the lease holder (`step_finish`) |
//! | running           | attempt failed, attempts left                | ready, `ready_at` later    | the lease holder (`step_retry_later`)   |
//! | running           | approval/checklist/wait                      | waiting (no worker held)   | the lease holder (`step_park`)          |
//! | running           | lease expired                                | ready (job pushed)         | any worker's reaper                     |
//! | waiting           | decision made                                | succeeded, failed, warned, cancelled | approve/check (`step_finish`)        |
//! | waiting           | timer due (wait, timeout, child run ended)   | running                    | a worker (`step_claim`)                 |
//! | any non-terminal  | the run ended                                | cancelled                  | the transaction that ended the run      |
//! | terminal          | anything (late completion, duplicate job)    | unchanged                  | nobody: terminal states ignore late events |

use std::fmt;
use std::str::FromStr;

/// Where a run is in its life. Text form: the lower-case variant name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Created, waiting for its `lock:` key; no job exists for it. Left by the transaction
    /// that ends the lock holder (to `running`) or by a cancel.
    Queued,
    /// Steps are ready or running. Left by the engine when only human/timer steps remain
    /// (`waiting`), or when the run ends.
    Running,
    /// Only approval, checklist or wait steps are active: no worker is busy with this run.
    /// Left when one of them resolves (`running`) or when the run ends.
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
}

/// Where a step is in its life. Text form: the lower-case variant name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepStatus {
    /// Some step it needs is not terminal yet. Left when the engine decides it.
    Pending,
    /// A job is queued for it, or will be due at `ready_at` (backoff, timer). Left when a
    /// worker claims it, or when the engine parks it.
    Ready,
    /// A worker holds its lease. Left by that worker (finish, retry, park) or by the reaper
    /// when the lease expires.
    Running,
    /// An approval, checklist or wait: no worker holds it. Left by the decision or the timer.
    Waiting,
    Succeeded,
    Failed,
    /// Failed, but not critical: the run goes on.
    Warned,
    Skipped,
    Cancelled,
}

/// A status text that names no status: a corrupt row or a bad argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{text}`")]
pub struct UnknownStatus {
    pub what: &'static str,
    pub text: String,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// A terminal run never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// Whether `from -> to` is in the run transition table (module docs). Staying in the
    /// same status is not a transition.
    pub fn can_transition(from: RunStatus, to: RunStatus) -> bool {
        use RunStatus::*;
        match from {
            Queued => matches!(to, Running | Cancelled),
            Running => matches!(to, Waiting | Succeeded | Failed | Cancelled),
            Waiting => matches!(to, Running | Succeeded | Failed | Cancelled),
            Succeeded | Failed | Cancelled => false,
        }
    }
}

impl StepStatus {
    pub const ALL: [StepStatus; 9] = [
        StepStatus::Pending,
        StepStatus::Ready,
        StepStatus::Running,
        StepStatus::Waiting,
        StepStatus::Succeeded,
        StepStatus::Failed,
        StepStatus::Warned,
        StepStatus::Skipped,
        StepStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Ready => "ready",
            StepStatus::Running => "running",
            StepStatus::Waiting => "waiting",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Warned => "warned",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }

    /// A terminal step never changes again (a retry of a failed run is a new run).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded
                | StepStatus::Failed
                | StepStatus::Warned
                | StepStatus::Skipped
                | StepStatus::Cancelled
        )
    }

    /// Whether `from -> to` is in the step transition table (module docs). Staying in the
    /// same status is not a transition.
    pub fn can_transition(from: StepStatus, to: StepStatus) -> bool {
        use StepStatus::*;
        match from {
            Pending => matches!(
                to,
                Ready | Skipped | Succeeded | Failed | Warned | Cancelled
            ),
            Ready => matches!(to, Running | Waiting | Cancelled),
            Running => matches!(
                to,
                Ready | Waiting | Succeeded | Failed | Warned | Skipped | Cancelled
            ),
            // `Running`: a due timer (a `wait`, an approval's timeout, a finished child run)
            // is claimed by a worker like a ready step.
            Waiting => matches!(to, Running | Succeeded | Failed | Warned | Cancelled),
            Succeeded | Failed | Warned | Skipped | Cancelled => false,
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownStatus {
                what: "run status",
                text: s.to_owned(),
            })
    }
}

impl FromStr for StepStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownStatus {
                what: "step status",
                text: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        for s in StepStatus::ALL {
            assert_eq!(s.as_str().parse::<StepStatus>(), Ok(s));
        }
        assert!("Running".parse::<RunStatus>().is_err());
        assert!("done".parse::<StepStatus>().is_err());
    }

    #[test]
    fn terminal_states_ignore_late_events() {
        for from in RunStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in RunStatus::ALL {
                assert!(!RunStatus::can_transition(from, to), "{from} -> {to}");
            }
        }
        for from in StepStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in StepStatus::ALL {
                assert!(!StepStatus::can_transition(from, to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn staying_put_is_not_a_transition() {
        for s in RunStatus::ALL {
            assert!(!RunStatus::can_transition(s, s));
        }
        for s in StepStatus::ALL {
            assert!(!StepStatus::can_transition(s, s));
        }
    }

    #[test]
    fn every_non_terminal_state_can_be_cancelled_and_reach_an_end() {
        for s in RunStatus::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(RunStatus::can_transition(s, RunStatus::Cancelled), "{s}");
        }
        for s in StepStatus::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(StepStatus::can_transition(s, StepStatus::Cancelled), "{s}");
        }
    }

    #[test]
    fn step_table_rows() {
        use StepStatus::*;
        let legal = [
            (Pending, Ready),
            (Pending, Skipped),
            (Pending, Failed),
            (Ready, Running),
            (Ready, Waiting),
            (Running, Succeeded),
            (Running, Ready),
            (Running, Waiting),
            (Running, Warned),
            (Waiting, Succeeded),
            (Waiting, Failed),
            // A due timer (wait, approval timeout, ended child run) is claimed.
            (Waiting, Running),
        ];
        for (from, to) in legal {
            assert!(StepStatus::can_transition(from, to), "{from} -> {to}");
        }
        // A step runs only after a claim, and a claim needs a queued job: never pending ->
        // running; a parked step is resolved or claimed when due, never queued again.
        let illegal = [
            (Pending, Running),
            (Pending, Waiting),
            (Ready, Succeeded),
            (Waiting, Ready),
        ];
        for (from, to) in illegal {
            assert!(!StepStatus::can_transition(from, to), "{from} -> {to}");
        }
    }

    #[test]
    fn run_table_rows() {
        use RunStatus::*;
        assert!(RunStatus::can_transition(Queued, Running));
        assert!(RunStatus::can_transition(Running, Waiting));
        assert!(RunStatus::can_transition(Waiting, Running));
        assert!(RunStatus::can_transition(Running, Succeeded));
        // A queued run has started nothing, so it can only start or be cancelled.
        assert!(!RunStatus::can_transition(Queued, Succeeded));
        assert!(!RunStatus::can_transition(Queued, Failed));
        assert!(!RunStatus::can_transition(Running, Queued));
    }
}
