//! A schedule for the store, from a compiled playbook: one the playbook declares, or one
//! given on the command line. Its definition is pinned (the text and content hash the plan
//! was compiled from) and its params bound, so what a schedule runs never changes until an
//! operator re-adds it (`runway schedule add --replace`), and the runs it starts pin the
//! same text again.

use chrono::{DateTime, Utc};

use crate::cadence::Cadence;
use crate::diagnostic::Location;
use crate::plan::{BindError, Plan, bind_params};
use crate::playbook::decode::Spanned;
use crate::playbook::duration::Duration;
use crate::playbook::id_pattern;
use crate::playbook::kinds::TemplateMap;
use crate::playbook::schedule::{CatchUp, Overlap, Schedule};
use crate::store::{NewSchedule, ScheduleKind};

/// A schedule given on the command line rather than in the playbook.
#[derive(Debug, Clone)]
pub struct AdHoc {
    pub id: String,
    pub cron: String,
    pub timezone: String,
    pub overlap: Overlap,
    pub catch_up: Option<CatchUp>,
    pub pause_after_failures: Option<u32>,
}

impl AdHoc {
    /// The schedule as if the playbook declared it (no params of its own, no webhook).
    pub fn declare(&self) -> Result<Schedule, BindError> {
        if !id_pattern().is_match(&self.id) || self.id.len() > 63 {
            return Err(BindError {
                message: format!("`{}` is not a valid schedule id", self.id),
                hint: Some("write it like `every-5-minutes` (63 characters at most)".into()),
            });
        }
        let spanned = |s: &str| Spanned::new(s.to_owned(), Location::default());
        Ok(Schedule {
            id: spanned(&self.id),
            cron: spanned(&self.cron),
            timezone: spanned(&self.timezone),
            params: TemplateMap::default(),
            overlap: self.overlap,
            catch_up: self.catch_up,
            pause_after_failures: self.pause_after_failures,
            notify: None,
        })
    }
}

/// The store id of a playbook's schedule.
pub fn schedule_id(playbook: &str, schedule: &str) -> String {
    format!("{playbook}/{schedule}")
}

/// Pins `schedule` of `plan` (compiled from `definition`): its cron expression checked in
/// its zone, its params (the declared ones, then `overrides`) bound against the playbook's,
/// its first tick the first at or after `now`. Every problem is reported at once.
pub fn pin(
    plan: &Plan,
    definition: &str,
    schedule: &Schedule,
    overrides: &[(String, String)],
    added_by: &str,
    now: DateTime<Utc>,
) -> Result<NewSchedule, Vec<BindError>> {
    let mut problems = Vec::new();
    let cadence = Cadence::parse(&schedule.cron, &schedule.timezone)
        .map_err(|e| {
            problems.push(BindError {
                message: e.to_string(),
                hint: Some(e.hint()),
            })
        })
        .ok();
    let mut given: Vec<(String, String)> = schedule
        .params
        .0
        .iter()
        .filter(|(name, _)| !overrides.iter().any(|(o, _)| *o == name.value))
        .map(|(name, value)| (name.value.clone(), value.text.clone()))
        .collect();
    given.extend(overrides.iter().cloned());
    let params = bind_params(&plan.playbook.params, &given)
        .map_err(|errors| problems.extend(errors))
        .ok();
    let first = cadence.as_ref().and_then(|c| {
        let first = c.first_at_or_after(now);
        if first.is_none() {
            problems.push(BindError {
                message: format!("cron expression `{}` has no tick after now", c.expression()),
                hint: None,
            });
        }
        first
    });
    let (Some(params), Some(next_fire_at)) = (params, first) else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let catch_up = schedule.catch_up();
    Ok(NewSchedule {
        id: schedule_id(&plan.playbook.name, &schedule.id),
        kind: ScheduleKind::Cron,
        playbook: plan.playbook.name.value.clone(),
        content_hash: plan.content_hash.clone(),
        definition: definition.to_owned(),
        params: serde_json::Value::Object(params),
        cron: Some(schedule.cron.value.clone()),
        timezone: schedule.timezone.value.clone(),
        overlap: schedule.overlap,
        catch_up: Duration::as_std(catch_up.window()),
        catch_up_fire: catch_up.fire(),
        pause_after_failures: schedule.pause_after_failures,
        notify: schedule
            .notify
            .as_ref()
            .map(|n| serde_json::to_value(n).unwrap_or_default()),
        parent: None,
        next_fire_at,
        added_by: added_by.to_owned(),
    })
}
