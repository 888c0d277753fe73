//! `schedules:`: cron expressions that start periodic runs of the playbook.
//!
//! The compiler checks them (expression, time zone, params, policies); firing them is the
//! scheduler's job.

use serde::Serialize;

use crate::diagnostic::Diagnostics;
use crate::playbook::decode::{self, Fields, Spanned};
use crate::playbook::duration::Duration;
use crate::playbook::kinds::TemplateMap;
use crate::yaml::Node;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// A tick while the previous run is active does not start a run.
    #[default]
    Skip,
    /// Queue one run to start when the previous one ends.
    Queue,
    /// Start a run regardless.
    Allow,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub id: Spanned<String>,
    /// 5 fields (minute hour day month weekday) or 6 with seconds first.
    pub cron: Spanned<String>,
    /// IANA time zone (default UTC).
    #[serde(default = "utc")]
    pub timezone: Spanned<String>,
    /// Params for the runs it starts; all values are literal.
    #[serde(default, skip_serializing_if = "TemplateMap::is_empty")]
    pub params: TemplateMap,
    #[serde(default)]
    pub overlap: Overlap,
    /// Fire ticks missed within this window after downtime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<Duration>,
    /// Pause the schedule after this many consecutive failed runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_after_failures: Option<u32>,
}

fn utc() -> Spanned<String> {
    Spanned::new("UTC".into(), Default::default())
}

impl Schedule {
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Schedule> {
        let mut f = Fields::of(node, "a schedule", diags)?;
        let id = f
            .require("id", diags)
            .and_then(|n| decode::string(n, diags));
        let cron = f
            .require("cron", diags)
            .and_then(|n| decode::string(n, diags));
        let timezone = f.take("timezone").and_then(|n| decode::string(n, diags));
        let params = f
            .take("params")
            .and_then(|n| TemplateMap::decode(n, diags))
            .unwrap_or_default();
        let overlap = f
            .take("overlap")
            .and_then(|n| match decode::string(n, diags)?.as_str() {
                "skip" => Some(Overlap::Skip),
                "queue" => Some(Overlap::Queue),
                "allow" => Some(Overlap::Allow),
                other => {
                    diags
                        .error(n.location, format!("`{other}` is not an overlap policy"))
                        .hint("use skip, queue or allow");
                    None
                }
            });
        let catch_up = f
            .take("catch_up")
            .and_then(|n| decode::duration(n, diags))
            .map(|d| d.value);
        let pause_after_failures = f
            .take("pause_after_failures")
            .and_then(|n| decode::integer(n, 1, 1000, diags))
            .map(|n| n.value as u32);
        f.finish(diags);

        if let Some(c) = &cron {
            let parser = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Optional)
                .build();
            if let Err(e) = parser.parse(c) {
                diags
                    .error(
                        c.location,
                        format!("invalid cron expression `{}`: {e}", c.value),
                    )
                    .hint(
                        "5 fields: minute hour day-of-month month day-of-week, e.g. `*/5 * * * *`",
                    );
            }
        }
        if let Some(tz) = &timezone
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            let d = diags.error(
                tz.location,
                format!("`{}` is not an IANA time zone", tz.value),
            );
            match chrono_tz::TZ_VARIANTS
                .iter()
                .map(|z| z.name())
                .find(|n| n.eq_ignore_ascii_case(tz))
            {
                Some(exact) => d.hint(format!("did you mean `{exact}`?")),
                None => d.hint("write e.g. `Europe/Berlin`, `America/New_York` or `UTC`"),
            };
        }
        for (name, value) in &params.0 {
            if !value.is_literal() {
                diags.error(
                    value.location,
                    format!(
                        "schedule param `{}` uses a template; scheduled runs take literal values",
                        name.value
                    ),
                );
            }
        }
        Some(Schedule {
            id: id?,
            cron: cron?,
            timezone: timezone.unwrap_or_else(utc),
            params,
            overlap: overlap.unwrap_or_default(),
            catch_up,
            pause_after_failures,
        })
    }
}
