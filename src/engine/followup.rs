//! A `followup` step: registers a one-off run of another playbook for later, and ends.
//!
//! The target is loaded and pinned now (its text, content hash and bound params, as an
//! `invoke` child would be), so what runs in 24 hours is what the run saw; the one-off
//! schedule, the step's result and a `step.followup_scheduled` event naming it and its due
//! time commit in one transaction (`Store::step_finish_with_followup`). The scheduler starts
//! the run when it is due, with this run and step as its parent (`parent_run_id`,
//! `parent_step_id`) and `followup:RUN/STEP` as its trigger; the engine never calls the
//! scheduler.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::Decider;
use super::worker::Engine;
use crate::plan::Plan;
use crate::playbook::schedule::{CatchUpFire, Overlap};
use crate::state::StepStatus;
use crate::store::{self, Finish, Guard, Lease, NewEvent, NewSchedule, Run, ScheduleKind, StepRun};

/// The store id of the follow-up a step registers: one per run and step.
fn followup_id(run_id: &str, step_id: &str) -> String {
    format!("followup/{run_id}/{step_id}")
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn followup(
        &self,
        plan: &Plan,
        run: &Run,
        row: &StepRun,
        lease: Lease,
        playbook: &str,
        params: &[(String, String)],
        due: DateTime<Utc>,
    ) -> Result<(), store::Error> {
        let decider = Decider { plan };
        let (target, text, bound) = match self.load_playbook(playbook, params) {
            Ok(loaded) => loaded,
            Err(message) => {
                let critical = plan
                    .playbook
                    .all_steps()
                    .find(|s| s.id.value == row.step_id)
                    .is_none_or(|s| s.critical);
                let status = if critical {
                    StepStatus::Failed
                } else {
                    StepStatus::Warned
                };
                let finish = Finish {
                    error: Some(format!("cannot schedule the follow-up: {message}")),
                    ..Finish::new(status)
                };
                return self
                    .store
                    .step_finish_with(&Guard::Lease(lease), &finish, &decider)
                    .await
                    .map(|_| ());
            }
        };
        let id = followup_id(&run.id, &row.step_id);
        let params = serde_json::Value::Object(bound);
        let followup = NewSchedule {
            id: id.clone(),
            kind: ScheduleKind::Once,
            playbook: target.playbook.name.value.clone(),
            content_hash: target.content_hash.clone(),
            definition: text,
            params: params.clone(),
            cron: None,
            timezone: "UTC".to_owned(),
            overlap: Overlap::Skip,
            catch_up: std::time::Duration::ZERO,
            catch_up_fire: CatchUpFire::All,
            pause_after_failures: None,
            notify: None,
            parent: Some((run.id.clone(), row.step_id.clone())),
            next_fire_at: due,
            added_by: run.starter.clone(),
        };
        let scheduled = json!({
            "schedule_id": id,
            "playbook": followup.playbook,
            "content_hash": followup.content_hash,
            "params": params,
            "due_at": due.to_rfc3339(),
        });
        let finish = Finish {
            outputs: Some(json!({
                "schedule_id": id, "playbook": followup.playbook, "due_at": due.to_rfc3339(),
            })),
            events: vec![NewEvent::step(
                "step.followup_scheduled",
                &row.step_id,
                row.attempt,
                scheduled,
            )],
            ..Finish::new(StepStatus::Succeeded)
        };
        self.store
            .step_finish_with_followup(&Guard::Lease(lease), &finish, &decider, &followup)
            .await
            .map(|_| ())
    }
}
