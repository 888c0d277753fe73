//! `schedules:`: cron expressions that start periodic runs of the playbook.
//!
//! The compiler checks them (expression, time zone, params, policies, the failure webhook);
//! firing them is the scheduler's job (`crate::scheduler`), on the rule of
//! [`crate::cadence`].

use serde::Serialize;

use crate::cadence::{self, Cadence};
use crate::diagnostic::Diagnostics;
use crate::playbook::decode::{self, Fields, Spanned};
use crate::playbook::duration::Duration;
use crate::playbook::kinds::{Notify, TemplateMap};
use crate::yaml::{Node, Value};

/// How long after its time a tick still fires when the playbook sets no `catch_up`: a
/// scheduler that restarts, or lags under load, loses nothing shorter than this.
pub const DEFAULT_CATCH_UP: Duration = Duration(std::time::Duration::from_secs(60));

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

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Allow => "allow",
        }
    }

    pub fn parse(text: &str) -> Option<Overlap> {
        [Overlap::Skip, Overlap::Queue, Overlap::Allow]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// Which of the ticks missed inside the catch-up window fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum CatchUpFire {
    /// Every one, oldest first (the overlap policy still applies to each).
    #[default]
    All,
    /// Only the most recent; the others are recorded as skipped.
    Latest,
}

impl CatchUpFire {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUpFire::All => "all",
            CatchUpFire::Latest => "latest",
        }
    }

    pub fn parse(text: &str) -> Option<CatchUpFire> {
        [CatchUpFire::All, CatchUpFire::Latest]
            .into_iter()
            .find(|f| f.as_str() == text)
    }
}

/// `catch_up: 1h`, or `catch_up: { window: 1h, fire: latest }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum CatchUp {
    /// Fire every tick missed within this window.
    Window(Duration),
    Detailed {
        /// Ticks older than this when a scheduler reaches them are recorded as missed.
        window: Duration,
        #[serde(default)]
        fire: CatchUpFire,
    },
}

impl CatchUp {
    pub fn window(self) -> Duration {
        match self {
            CatchUp::Window(w) | CatchUp::Detailed { window: w, .. } => w,
        }
    }

    pub fn fire(self) -> CatchUpFire {
        match self {
            CatchUp::Window(_) => CatchUpFire::All,
            CatchUp::Detailed { fire, .. } => fire,
        }
    }

    fn decode(node: &Node, diags: &mut Diagnostics) -> Option<CatchUp> {
        if let Value::Scalar { .. } = node.value {
            return decode::duration(node, diags).map(|d| CatchUp::Window(d.value));
        }
        let mut f = Fields::of(node, "`catch_up`", diags)?;
        let window = f
            .require("window", diags)
            .and_then(|n| decode::duration(n, diags));
        let fire = f.take("fire").and_then(|n| {
            let text = decode::string(n, diags)?;
            let fire = CatchUpFire::parse(&text);
            if fire.is_none() {
                diags
                    .error(
                        n.location,
                        format!("`{}` is not a catch-up mode", text.value),
                    )
                    .hint("use all (every missed tick in the window) or latest");
            }
            fire
        });
        f.finish(diags);
        Some(CatchUp::Detailed {
            window: window?.value,
            fire: fire.unwrap_or_default(),
        })
    }
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
    /// Fire ticks missed within this window after downtime (default: 1m, every tick).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    /// Pause the schedule after this many consecutive failed runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_after_failures: Option<u32>,
    /// A webhook told about every failed scheduled run (at least once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
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
        let overlap = f.take("overlap").and_then(|n| {
            let text = decode::string(n, diags)?;
            let overlap = Overlap::parse(&text);
            if overlap.is_none() {
                diags
                    .error(
                        n.location,
                        format!("`{}` is not an overlap policy", text.value),
                    )
                    .hint("use skip, queue or allow");
            }
            overlap
        });
        let catch_up = f.take("catch_up").and_then(|n| CatchUp::decode(n, diags));
        let pause_after_failures = f
            .take("pause_after_failures")
            .and_then(|n| decode::integer(n, 1, 1000, diags))
            .map(|n| n.value as u32);
        let notify = f.take("notify").and_then(|n| Notify::decode(n, diags));
        f.finish(diags);

        let zone_ok = match &timezone {
            Some(tz) => match cadence::parse_zone(tz) {
                Ok(_) => true,
                Err(e) => {
                    diags.error(tz.location, e.to_string()).hint(e.hint());
                    false
                }
            },
            None => true,
        };
        if let Some(c) = &cron {
            let zone = timezone
                .as_ref()
                .filter(|_| zone_ok)
                .map_or("UTC", |z| z.as_str());
            if let Err(e) = Cadence::parse(c, zone) {
                diags.error(c.location, e.to_string()).hint(e.hint());
            }
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
            notify,
        })
    }

    /// The catch-up window and mode in effect.
    pub fn catch_up(&self) -> CatchUp {
        self.catch_up.unwrap_or(CatchUp::Window(DEFAULT_CATCH_UP))
    }
}
