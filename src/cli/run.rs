//! `runway run FILE|NAME -p k=v`: the embedded main job. Creates the run and executes it in
//! this process, printing a line per step as it changes; Ctrl-C detaches (nothing is lost:
//! `runway run --resume RUN` picks it up). Also `runway start` (create only) and
//! `runway worker` (execute whatever is queued).

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{db, exit, load, plan::parse_param};
use crate::engine::{self, Engine, Origin};
use crate::state::{RunStatus, StepStatus};
use crate::store::{Run, Store};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A playbook file, or the name of one in RUNWAY_WORKFLOWS (default `workflows/`).
    #[arg(value_name = "FILE|NAME", required_unless_present = "resume")]
    playbook: Option<String>,
    /// A param value: `-p school_slug=greenwood-high`. Repeat for more.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Continue an existing run (after Ctrl-C or a crash) instead of starting one.
    #[arg(long, value_name = "RUN", conflicts_with = "playbook")]
    resume: Option<String>,
    /// Steps run at once (1 to 1000).
    #[arg(long, default_value_t = 4, value_parser = parse_concurrency)]
    concurrency: usize,
    /// Refuse to start when the playbook's `lock:` is held by another run (by default the
    /// new run is queued until the holder ends).
    #[arg(long)]
    no_wait: bool,
    /// A running step's lease; see `runway worker --lease`. `runway run --resume` takes
    /// over the steps of a `runway run` that died once their lease has expired.
    #[arg(long, default_value = "10s", value_parser = super::schedule::parse_duration)]
    lease: crate::playbook::duration::Duration,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    #[arg(value_name = "FILE|NAME")]
    playbook: String,
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Wait until the run ends (a worker must be running) and exit with its outcome.
    #[arg(long)]
    wait: bool,
    /// Refuse to start when the playbook's `lock:` is held (default: queue behind it).
    #[arg(long)]
    no_wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Steps this worker runs at once (1 to 1000).
    #[arg(long, default_value_t = 4, value_parser = parse_concurrency)]
    concurrency: usize,
    /// Do not fire schedules in this worker (run `runway scheduler` somewhere instead).
    #[arg(long)]
    no_scheduler: bool,
    /// A running step's lease: when this worker dies or stalls, another takes its steps
    /// over once the lease has expired (within the lease plus a second).
    #[arg(long, default_value = "10s", value_parser = super::schedule::parse_duration)]
    lease: crate::playbook::duration::Duration,
    /// Connections this worker opens to Postgres at most, besides the job queue's few
    /// (default: one a slot, at most 8). Several workers on one database: keep their sum
    /// near two to four a core of the database (docs/PERFORMANCE.md). Not used with SQLite.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    connections: Option<u32>,
}

/// `--concurrency`: a worker of no slots would take jobs and never run them.
fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number of steps from 1 to 1000, got `{s}`"
        )),
    }
}

fn config(concurrency: usize) -> anyhow::Result<engine::Config> {
    Ok(engine::Config {
        concurrency,
        workdir: std::env::current_dir()?,
        workflows: crate::library::workflows_dir(),
        ..engine::Config::default()
    })
}

/// Creates a run from the command line; `Err(code)` when the input is invalid.
async fn create(
    store: &Store,
    target: &str,
    given: &[(String, String)],
    queue_on_lock: bool,
) -> anyhow::Result<Result<Run, u8>> {
    let (plan, text, params) = match load::plan_with_params(target, given)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(Err(code)),
    };
    let origin = Origin {
        starter: db::operator(),
        trigger: "manual".to_owned(),
        parent: None,
    };
    let mut new = match engine::new_run(&plan, &text, params, &origin) {
        Ok(new) => new,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(Err(exit::INVALID));
        }
    };
    new.queue_on_lock = queue_on_lock;
    match store.run_create(&new).await {
        Ok(run) => Ok(Ok(run)),
        Err(crate::store::Error::LockHeld { key, holder }) => {
            eprintln!("error: lock `{key}` is held by run {holder}; nothing was started");
            eprintln!(
                "  = help: wait for it (runway status {holder}), or drop --no-wait to queue behind it"
            );
            Ok(Err(exit::FAILED))
        }
        Err(e) => Err(e.into()),
    }
}

pub fn run(args: &RunArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let run = match (&args.resume, &args.playbook) {
            (Some(id), _) => store.run_get(id).await?,
            (None, Some(target)) => match create(&store, target, &args.params, !args.no_wait).await? {
                Ok(run) => run,
                Err(code) => return Ok(code),
            },
            (None, None) => unreachable!("clap requires one"),
        };
        println!("run {} · {} · {}", run.id, run.playbook, run.status);
        if run.status == RunStatus::Queued {
            println!(
                "  queued behind lock `{}`: it starts when the run holding it ends",
                run.lock_key.as_deref().unwrap_or("")
            );
        }
        let config = engine::Config {
            lease: args.lease.as_std(),
            ..config(args.concurrency)?
        };
        let engine = Engine::new(store.clone(), config);
        let stop = CancellationToken::new();
        let worker = tokio::spawn(engine.clone().work(stop.clone()));
        let code = tokio::select! {
            code = watch(&store, &run.id, true) => code?,
            _ = tokio::signal::ctrl_c() => {
                println!("\ndetached: nothing is lost. Continue with: runway run --resume {}", run.id);
                exit::INTERRUPTED
            }
        };
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), worker).await;
        store.close().await;
        Ok(code)
    })
}

pub fn start(args: &StartArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let run = match create(&store, &args.playbook, &args.params, !args.no_wait).await? {
            Ok(run) => run,
            Err(code) => return Ok(code),
        };
        println!("{}", run.id);
        if !args.wait {
            return Ok(exit::OK);
        }
        watch(&store, &run.id, false).await
    })
}

pub fn worker(args: &WorkerArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let connections = args
            .connections
            .unwrap_or_else(|| crate::store::default_connections(args.concurrency));
        let store = db::open_with(connections).await?;
        let config = engine::Config {
            lease: args.lease.as_std(),
            ..config(args.concurrency)?
        };
        let engine = Engine::new(store.clone(), config);
        eprintln!(
            "worker {} on {} (concurrency {}, lease {}{})",
            engine.worker_id,
            db::redact(&db::url()),
            args.concurrency,
            args.lease,
            match &store {
                Store::Postgres(_) => format!(", {connections} connections"),
                Store::Sqlite(_) => String::new(),
            }
        );
        let stop = crate::shutdown::on_signal();
        let scheduler = (!args.no_scheduler).then(|| {
            let scheduler = super::schedule::in_worker(store.clone());
            tokio::spawn(scheduler.run(crate::scheduler::Clock::System, stop.clone()))
        });
        engine.work(stop).await?;
        if let Some(scheduler) = scheduler {
            let _ = scheduler.await;
        }
        store.close().await;
        Ok(exit::OK)
    })
}

/// Prints each step's changes until the run ends; returns the exit code of its outcome.
async fn watch(store: &Store, run_id: &str, live: bool) -> anyhow::Result<u8> {
    use std::io::{IsTerminal as _, Write as _};
    const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let tty = live && std::io::stdout().is_terminal();
    let mut seen: HashMap<String, (StepStatus, i32)> = HashMap::new();
    let mut told: std::collections::HashSet<(String, i32)> = Default::default();
    let mut plan: Option<crate::plan::Plan> = None;
    let mut tick = 0usize;
    loop {
        let run = store.run_get(run_id).await?;
        let steps = store.steps_of_run(run_id).await?;
        if tty {
            // Clears the spinner line before anything else is printed.
            print!("\r\x1b[K");
        }
        for s in &steps {
            let key = (s.status, s.attempt);
            if seen.get(&s.step_id) == Some(&key) || s.status == StepStatus::Pending {
                continue;
            }
            seen.insert(s.step_id.clone(), key);
            if (live && !(tty && s.status == StepStatus::Running)) || s.status.is_terminal() {
                println!("{}", step_line(s));
            }
        }
        if tty {
            let now = chrono::Utc::now();
            let running: Vec<String> = steps
                .iter()
                .filter(|s| s.status == StepStatus::Running)
                .map(|s| {
                    let secs = s
                        .started_at
                        .map_or(0.0, |t| (now - t).num_milliseconds() as f64 / 1000.0);
                    format!("{} {secs:.0}s", s.step_id)
                })
                .collect();
            if !running.is_empty() {
                tick += 1;
                print!("  {} {}", SPINNER[tick % SPINNER.len()], running.join(", "));
            }
            let _ = std::io::stdout().flush();
        }
        if run.status.is_terminal() {
            println!(
                "run {} {}{}",
                run.id,
                run.status,
                run.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            return Ok(match run.status {
                RunStatus::Succeeded => exit::OK,
                _ => exit::FAILED,
            });
        }
        for s in steps
            .iter()
            .filter(|s| s.status == StepStatus::Waiting && s.ready_at.is_none())
        {
            if told.insert((s.step_id.clone(), s.attempt)) {
                let plan = match &plan {
                    Some(p) => p,
                    None => plan.insert(crate::engine::plan_of_run(
                        &run,
                        &crate::library::workflows_dir(),
                    )?),
                };
                print_human_step(plan, &run, &s.step_id);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Tells the person what the run waits for and the exact command that answers it.
fn print_human_step(plan: &crate::plan::Plan, run: &Run, step_id: &str) {
    use crate::playbook::kinds::StepKind;
    let Some(step) = plan.playbook.all_steps().find(|s| s.id.value == step_id) else {
        return;
    };
    let hash = crate::engine::human::plan_hash(run);
    let data = serde_json::json!({ "params": run.params, "run": { "id": run.id } });
    let title = step
        .title
        .as_ref()
        .and_then(|t| t.render(&crate::playbook::template::renderer(), &data).ok())
        .unwrap_or_else(|| step.display_title().to_owned());
    match &step.kind {
        StepKind::Approval(a) => {
            println!(
                "  waiting for approval at `{step_id}` ({title}; quorum {}): the run is parked, Ctrl-C detaches",
                a.quorum
            );
            if let Ok(prompt) = a
                .prompt
                .render(&crate::playbook::template::renderer(), &data)
            {
                println!("    {prompt}");
            }
            println!(
                "    approve: runway approve {} {step_id} --plan-hash {hash} --comment \"...\"",
                run.id
            );
            println!(
                "    reject:  runway reject {} {step_id} --reason \"...\"",
                run.id
            );
        }
        StepKind::Checklist(c) => {
            println!(
                "  waiting for checklist `{step_id}` ({title}): the run is parked, Ctrl-C detaches"
            );
            for item in &c.items {
                println!(
                    "    runway check {} {step_id} {} --pass|--fail{} --note \"...\"{}",
                    run.id,
                    item.id.value,
                    if item.required { "" } else { "|--na" },
                    if item.required { "" } else { "   (optional)" }
                );
            }
        }
        _ => {}
    }
}

fn step_line(s: &crate::store::StepRun) -> String {
    let mark = match s.status {
        StepStatus::Succeeded => "ok  ",
        StepStatus::Failed => "FAIL",
        StepStatus::Warned => "warn",
        StepStatus::Skipped => "skip",
        StepStatus::Cancelled => "cncl",
        StepStatus::Running => " .. ",
        StepStatus::Waiting => "wait",
        StepStatus::Ready => "    ",
        StepStatus::Pending => "    ",
    };
    let took = match (s.started_at, s.finished_at) {
        (Some(a), Some(b)) => format!(" {:.1}s", (b - a).num_milliseconds() as f64 / 1000.0),
        _ => String::new(),
    };
    let attempt = if s.attempt > 1 {
        format!(" (attempt {}/{})", s.attempt, s.max_attempts)
    } else {
        String::new()
    };
    let list = match s.list {
        crate::store::StepList::Main => "",
        crate::store::StepList::Compensation => " [undo]",
        crate::store::StepList::OnFailure => " [on_failure]",
    };
    let error = match (&s.error, s.status) {
        (Some(e), StepStatus::Failed | StepStatus::Warned | StepStatus::Ready) => {
            format!(" - {}", e.lines().next().unwrap_or(""))
        }
        _ => String::new(),
    };
    format!(
        "  [{mark}] {}{list} {}{took}{attempt}{error}",
        s.step_id, s.status
    )
}
