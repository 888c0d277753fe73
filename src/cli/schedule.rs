//! `runway schedule add|list|show|pause|resume|remove` (schedules in the store) and
//! `runway scheduler` (the process that fires them; `runway worker` runs one too).
//!
//! `add` registers the schedules a playbook declares (or one given with `--cron`), pinning
//! the playbook's text as it is now: later edits of the file change nothing until the
//! schedule is added again with `--replace`.

use chrono::Utc;

use super::{db, exit, load, plan::parse_param};
use crate::cadence::Cadence;
use crate::playbook::duration::Duration;
use crate::playbook::schedule::{CatchUp, CatchUpFire, Overlap, Schedule as Declared};
use crate::scheduler::register::{self, AdHoc};
use crate::scheduler::{Clock, Config, Scheduler, notice};
use crate::store::{self, Added, Schedule, ScheduleKind, ScheduleStatus, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Register a playbook's declared schedules (or one given with --cron), pinning its text.
    Add(AddArgs),
    /// Active and paused schedules with their next tick.
    List(ListArgs),
    /// One schedule: its configuration, its recent ticks and who changed it.
    Show(ShowArgs),
    /// Stop firing a schedule until it is resumed.
    Pause(PauseArgs),
    /// Fire a paused schedule again, from its next tick after now.
    Resume(IdArgs),
    /// Stop and retire a schedule (its ticks and history are kept).
    Remove(IdArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// A playbook file, or the name of one in RUNWAY_WORKFLOWS (default `workflows/`).
    #[arg(value_name = "FILE|NAME")]
    playbook: String,
    /// Only this declared schedule; with --cron, the id of the new one.
    #[arg(long)]
    id: Option<String>,
    /// A schedule not declared in the playbook: 5 fields, or 6 with seconds first.
    #[arg(long, requires = "id")]
    cron: Option<String>,
    /// The IANA time zone of --cron.
    #[arg(long, default_value = "UTC", requires = "cron")]
    timezone: String,
    /// With --cron: skip, queue or allow.
    #[arg(long, default_value = "skip", value_parser = parse_overlap, requires = "cron")]
    overlap: Overlap,
    /// With --cron: fire ticks missed within this window after downtime (default 1m).
    #[arg(long, value_parser = parse_duration, requires = "cron")]
    catch_up: Option<Duration>,
    /// With --catch-up: fire only the latest missed tick.
    #[arg(long, requires = "catch_up")]
    catch_up_latest: bool,
    /// With --cron: pause after this many consecutive failed runs.
    #[arg(long, requires = "cron")]
    pause_after_failures: Option<u32>,
    /// A param value for the runs (over the schedule's own). Repeat for more.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Re-pin a schedule that exists with another definition or configuration.
    #[arg(long)]
    replace: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Removed and finished schedules too.
    #[arg(long)]
    all: bool,
    /// `text` or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    id: String,
    /// How many recent ticks to show.
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    id: String,
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    id: String,
}

#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Time between passes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    poll: Duration,
    /// Make one pass, print what it did, and exit.
    #[arg(long)]
    once: bool,
    /// START,RATE,EPOCH: decide ticks by a simulated clock (benchmarks and tests only).
    #[arg(long, hide = true, value_parser = Clock::parse_simulated)]
    simulated_clock: Option<Clock>,
}

pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    match Duration::parse(text)? {
        d if d.0.is_zero() => Err("a duration of zero is not allowed here".to_owned()),
        d => Ok(d),
    }
}

fn parse_overlap(text: &str) -> Result<Overlap, String> {
    Overlap::parse(text).ok_or_else(|| format!("`{text}` is not skip, queue or allow"))
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    match &args.command {
        Command::Add(a) => add(a),
        Command::List(a) => list(a),
        Command::Show(a) => show(a),
        Command::Pause(a) => with_schedule(&a.id, |store, id| async move {
            store
                .schedule_pause(&id, &db::operator(), a.reason.as_deref())
                .await
        }),
        Command::Resume(a) => with_schedule(&a.id, |store, id| async move {
            let s = store.schedule_get(&id).await?;
            let next = next_tick(&s).unwrap_or_else(Utc::now);
            store.schedule_resume(&id, &db::operator(), next).await
        }),
        Command::Remove(a) => with_schedule(&a.id, |store, id| async move {
            store.schedule_remove(&id, &db::operator()).await
        }),
    }
}

/// The first tick after now of a cron schedule; a follow-up keeps its due time.
fn next_tick(s: &Schedule) -> Option<chrono::DateTime<Utc>> {
    match (&s.kind, &s.cron) {
        (ScheduleKind::Cron, Some(cron)) => Cadence::parse(cron, &s.timezone)
            .ok()?
            .first_at_or_after(Utc::now()),
        _ => s.next_fire_at,
    }
}

fn add(args: &AddArgs) -> anyhow::Result<u8> {
    let (plan, text) = match load::compiled(&args.playbook)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let chosen: Vec<Declared> = match &args.cron {
        Some(cron) => {
            if let Err(e) = Cadence::parse(cron, &args.timezone) {
                let flag = match e {
                    crate::cadence::CadenceError::Zone { .. } => "--timezone",
                    _ => "--cron",
                };
                eprintln!("error: {flag}: {e}");
                eprintln!("  = help: {}", e.hint());
                return Ok(exit::INVALID);
            }
            let ad_hoc = AdHoc {
                id: args.id.clone().unwrap_or_default(),
                cron: cron.clone(),
                timezone: args.timezone.clone(),
                overlap: args.overlap,
                catch_up: args.catch_up.map(|window| CatchUp::Detailed {
                    window,
                    fire: if args.catch_up_latest {
                        CatchUpFire::Latest
                    } else {
                        CatchUpFire::All
                    },
                }),
                pause_after_failures: args.pause_after_failures,
            };
            match ad_hoc.declare() {
                Ok(s) => vec![s],
                Err(e) => {
                    eprintln!("error: --id: {}", e.message);
                    if let Some(h) = e.hint {
                        eprintln!("  = help: {h}");
                    }
                    return Ok(exit::INVALID);
                }
            }
        }
        None => {
            let declared = &plan.playbook.schedules;
            if declared.is_empty() {
                eprintln!(
                    "error: playbook `{}` declares no schedules",
                    plan.playbook.name.value
                );
                eprintln!(
                    "  = help: add `schedules:` to it, or give one here: --id ID --cron '*/5 * * * *' [--timezone ZONE]"
                );
                return Ok(exit::INVALID);
            }
            match &args.id {
                None => declared.clone(),
                Some(id) => match declared.iter().find(|s| s.id.value == *id) {
                    Some(s) => vec![s.clone()],
                    None => {
                        eprintln!(
                            "error: playbook `{}` declares no schedule `{id}`",
                            plan.playbook.name.value
                        );
                        let ids = declared.iter().map(|s| s.id.as_str());
                        match crate::diagnostic::did_you_mean(id, ids.clone()) {
                            Some(m) => eprintln!("  = help: did you mean `{m}`?"),
                            None => eprintln!(
                                "  = help: it declares {}; or add --cron to create `{id}`",
                                ids.map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
                            ),
                        }
                        return Ok(exit::INVALID);
                    }
                },
            }
        }
    };
    let operator = db::operator();
    let mut pinned = Vec::new();
    let mut invalid = false;
    for s in &chosen {
        match register::pin(&plan, &text, s, &args.params, &operator, Utc::now()) {
            Ok(new) => pinned.push(new),
            Err(problems) => {
                invalid = true;
                eprintln!("error: schedule `{}` cannot be added:", s.id.value);
                load::print_bind_errors(&problems);
            }
        }
    }
    if invalid {
        return Ok(exit::INVALID);
    }
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let mut code = exit::OK;
        for new in &pinned {
            match store.schedule_add(new, args.replace).await {
                Ok((s, added)) => {
                    let what = match added {
                        Added::New => "added",
                        Added::Unchanged => "unchanged",
                        Added::Replaced => "replaced",
                    };
                    println!("{what} {}: {}", s.id, describe(&s));
                }
                Err(store::Error::ScheduleExists { id, differences }) => {
                    eprintln!("error: schedule `{id}` already exists with a different {differences}");
                    eprintln!(
                        "  = help: add --replace to pin this definition instead (runway schedule show {id} says what is pinned)"
                    );
                    code = exit::INVALID;
                }
                Err(e) => return Err(e.into()),
            }
        }
        store.close().await;
        Ok(code)
    })
}

/// `*/5 * * * * (UTC), overlap skip, next 2026-11-20 10:05:00 UTC`.
fn describe(s: &Schedule) -> String {
    let cadence = match (&s.kind, &s.cron) {
        (ScheduleKind::Cron, Some(cron)) => format!("`{cron}` ({})", s.timezone),
        _ => format!(
            "once, for {}",
            s.parent_run_id
                .as_deref()
                .map_or(String::new(), |r| format!(
                    "run {r} step {}",
                    s.parent_step_id.as_deref().unwrap_or("")
                ))
        ),
    };
    let next = match (s.status, s.next_fire_at) {
        (ScheduleStatus::Active, Some(t)) => format!("next {}", notice::local(s, t)),
        (status, _) => status.as_str().to_owned(),
    };
    format!("{cadence}, overlap {}, {next}", s.overlap.as_str())
}

/// Runs `op` on the schedule `id`, printing the result; an unknown id or a schedule in the
/// wrong state is invalid input (exit 2) and changes nothing.
fn with_schedule<F, Fut>(id: &str, op: F) -> anyhow::Result<u8>
where
    F: FnOnce(Store, String) -> Fut,
    Fut: std::future::Future<Output = Result<Schedule, store::Error>>,
{
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let result = op(store.clone(), id.to_owned()).await;
        let code = match result {
            Ok(s) => {
                println!("{} {}: {}", s.status, s.id, describe(&s));
                exit::OK
            }
            Err(store::Error::ScheduleNotFound(_)) => {
                unknown_schedule(&store, id).await?;
                exit::INVALID
            }
            Err(e @ store::Error::ScheduleNotIn { .. }) => {
                eprintln!("error: {e}");
                eprintln!("  = help: runway schedule list shows every schedule and its status");
                exit::INVALID
            }
            Err(e) => return Err(e.into()),
        };
        store.close().await;
        Ok(code)
    })
}

async fn unknown_schedule(store: &Store, id: &str) -> anyhow::Result<()> {
    eprintln!("error: no schedule `{id}`");
    let all = store.schedules_list(true).await?;
    match crate::diagnostic::did_you_mean(id, all.iter().map(|s| s.id.as_str())) {
        Some(m) => eprintln!("  = help: did you mean `{m}`?"),
        None if all.is_empty() => {
            eprintln!("  = help: there are none yet; add one with runway schedule add FILE|NAME")
        }
        None => eprintln!("  = help: ids are PLAYBOOK/SCHEDULE; runway schedule list shows them"),
    }
    Ok(())
}

fn list(args: &ListArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let schedules = store.schedules_list(args.all).await?;
        if args.format == "json" {
            let mut out = Vec::new();
            for s in &schedules {
                let last = store.schedule_fires(&s.id, 1).await?;
                out.push(schedule_json(s, last.first()));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            for s in &schedules {
                let last = store.schedule_fires(&s.id, 1).await?;
                let last = last.first().map_or("no tick yet".to_owned(), |f| {
                    format!(
                        "last {} {}{}",
                        f.outcome,
                        notice::local(s, f.tick_at),
                        f.run_id
                            .as_deref()
                            .map(|r| format!(" run {r}"))
                            .unwrap_or_default()
                    )
                });
                let failures = match s.consecutive_failures {
                    0 => String::new(),
                    n => format!(", {n} failed in a row"),
                };
                println!("{}  {}; {last}{failures}", s.id, describe(s));
            }
        }
        store.close().await;
        Ok(exit::OK)
    })
}

fn schedule_json(s: &Schedule, last: Option<&store::Fire>) -> serde_json::Value {
    serde_json::json!({
        "id": s.id, "kind": s.kind.as_str(), "playbook": s.playbook,
        "content_hash": s.content_hash, "params": s.params, "cron": s.cron,
        "timezone": s.timezone, "overlap": s.overlap.as_str(),
        "catch_up_ms": s.catch_up.as_millis() as u64, "catch_up_fire": s.catch_up_fire.as_str(),
        "pause_after_failures": s.pause_after_failures, "notify": s.notify.is_some(),
        "status": s.status.as_str(), "status_reason": s.status_reason,
        "next_fire_at": s.next_fire_at.map(|t| t.to_rfc3339()),
        "consecutive_failures": s.consecutive_failures,
        "parent_run_id": s.parent_run_id, "parent_step_id": s.parent_step_id,
        "added_by": s.added_by, "trigger": s.trigger(),
        "last": last.map(fire_json),
    })
}

fn fire_json(f: &store::Fire) -> serde_json::Value {
    serde_json::json!({
        "tick_at": f.tick_at.to_rfc3339(), "outcome": f.outcome.as_str(),
        "through_at": f.through_at.map(|t| t.to_rfc3339()), "reason": f.reason,
        "run_id": f.run_id, "run_status": f.run_status.map(|s| s.as_str()),
        "fired_by": f.fired_by, "fired_at": f.fired_at.to_rfc3339(),
        "notify_state": f.notify_state.map(|s| s.as_str()),
        "notify_attempts": f.notify_attempts, "notify_error": f.notify_error,
    })
}

fn show(args: &ShowArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let s = match store.schedule_get(&args.id).await {
            Ok(s) => s,
            Err(store::Error::ScheduleNotFound(_)) => {
                unknown_schedule(&store, &args.id).await?;
                return Ok(exit::INVALID);
            }
            Err(e) => return Err(e.into()),
        };
        println!("schedule  {}", s.id);
        println!("playbook  {} ({})", s.playbook, s.content_hash);
        println!("cadence   {}", describe(&s));
        println!(
            "status    {}{}",
            s.status,
            s.status_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        println!("params    {}", s.params);
        println!("trigger   {} (started by {})", s.trigger(), s.added_by);
        println!(
            "catch-up  {} ({}){}",
            Duration(s.catch_up),
            s.catch_up_fire.as_str(),
            s.pause_after_failures
                .map(|n| format!(", pause after {n} failed runs in a row"))
                .unwrap_or_default()
        );
        println!("\nticks (most recent first):");
        for f in store.schedule_fires(&s.id, args.limit).await? {
            let through = f
                .through_at
                .filter(|&t| t != f.tick_at)
                .map(|t| format!(" through {}", notice::local(&s, t)))
                .unwrap_or_default();
            let run = f
                .run_id
                .as_deref()
                .map(|r| {
                    format!(
                        " run {r}{}",
                        f.run_status.map(|st| format!(" {st}")).unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            let reason = f
                .reason
                .as_deref()
                .map(|r| format!(" - {r}"))
                .unwrap_or_default();
            let notice = f
                .notify_state
                .map(|st| format!(" [notice {st}, {} attempt(s)]", f.notify_attempts))
                .unwrap_or_default();
            println!(
                "  {} {:<8}{through}{run}{reason}{notice}",
                notice::local(&s, f.tick_at),
                f.outcome.as_str()
            );
        }
        println!("\nhistory:");
        for e in store.schedule_events(&s.id).await? {
            println!(
                "  {} {:<9} by {}",
                e.at.format("%Y-%m-%d %H:%M:%S"),
                e.kind,
                e.actor
            );
        }
        store.close().await;
        Ok(exit::OK)
    })
}

fn config() -> Config {
    Config {
        workflows: crate::library::workflows_dir(),
        ..Config::default()
    }
}

/// `runway scheduler`: passes until SIGINT/SIGTERM (or one pass with `--once`).
pub fn scheduler(args: &SchedulerArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let config = Config {
            poll_every: args.poll.as_std(),
            ..config()
        };
        let scheduler = Scheduler::new(store.clone(), config);
        let clock = args.simulated_clock.unwrap_or(Clock::System);
        if args.once {
            let pass = scheduler.pass(clock.now()).await;
            for f in &pass.fired {
                let s = store.schedule_get(&f.schedule_id).await?;
                println!(
                    "{} {} {}{}",
                    f.schedule_id,
                    notice::local(&s, f.tick_at),
                    f.outcome,
                    f.run_id
                        .as_deref()
                        .map(|r| format!(" run {r}"))
                        .unwrap_or_default()
                );
            }
            for (id, reason) in &pass.paused {
                println!("{id} paused: {reason}");
            }
            for (id, error) in &pass.errors {
                eprintln!("error: {id}: {error}");
            }
            eprintln!(
                "{} tick(s) recorded, {} ended run(s) observed, {} notice(s) sent, {} failed",
                pass.fired.len(),
                pass.settled,
                pass.notices_sent,
                pass.notices_failed
            );
            store.close().await;
            return Ok(if pass.errors.is_empty() {
                exit::OK
            } else {
                exit::FAILED
            });
        }
        eprintln!(
            "scheduler {} on {} (every {})",
            scheduler.id,
            db::redact(&db::url()),
            args.poll
        );
        scheduler.run(clock, crate::shutdown::on_signal()).await;
        store.close().await;
        Ok(exit::OK)
    })
}

/// The scheduler a worker runs beside its queue consumer.
pub fn in_worker(store: Store) -> std::sync::Arc<Scheduler> {
    Scheduler::new(store, config())
}
