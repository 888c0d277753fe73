//! Black-box tests of `runway schedule ...`, `runway scheduler` and the scheduler inside
//! `runway worker`: the real binary on a SQLite store in a scratch directory.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{scratch, stderr, stdout};

const CHECK: &str = "runway: 1
name: check
params:
  target: { type: string, required: true }
schedules:
  - id: every-5-minutes
    cron: '*/5 * * * *'
    params: { target: north }
  - id: nightly
    cron: '30 2 * * *'
    timezone: Europe/Berlin
    params: { target: south }
    overlap: queue
steps:
  - id: probe
    noop: {}
";

fn runway(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runway"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUNWAY_DATABASE_URL")
        .env_remove("RUNWAY_LOG")
        .env("RUNWAY_WORKFLOWS", dir)
        .env("RUNWAY_OPERATOR", "alice")
        .output()
        .expect("the runway binary runs")
}

fn setup(name: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    std::fs::write(dir.join("check.yaml"), CHECK).unwrap();
    dir
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(out), stderr(out));
    stdout(out)
}

fn invalid(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{}{}", stdout(out), stderr(out));
    stderr(out)
}

#[test]
fn add_list_show_pause_resume_remove() {
    let dir = setup("schedule-lifecycle");
    let added = ok(&runway(&dir, &["schedule", "add", "check"]));
    assert!(
        added.contains("added check/every-5-minutes: `*/5 * * * *` (UTC), overlap skip, next "),
        "{added}"
    );
    assert!(
        added.contains("added check/nightly: `30 2 * * *` (Europe/Berlin), overlap queue, next "),
        "{added}"
    );
    assert!(
        added.contains(":30:00 CE"),
        "shown on the zone's clock: {added}"
    );
    let again = ok(&runway(
        &dir,
        &["schedule", "add", "check", "--id", "nightly"],
    ));
    assert!(again.starts_with("unchanged check/nightly"), "{again}");

    // An edited playbook is not picked up silently.
    std::fs::write(
        dir.join("check.yaml"),
        CHECK.replace("noop: {}", "noop: {}\n    title: Probe"),
    )
    .unwrap();
    let refused = invalid(&runway(
        &dir,
        &["schedule", "add", "check", "--id", "nightly"],
    ));
    assert!(
        refused
            .contains("error: schedule `check/nightly` already exists with a different definition"),
        "{refused}"
    );
    assert!(refused.contains("--replace"), "{refused}");
    let replaced = ok(&runway(
        &dir,
        &["schedule", "add", "check", "--id", "nightly", "--replace"],
    ));
    assert!(replaced.starts_with("replaced check/nightly"), "{replaced}");

    let list = ok(&runway(&dir, &["schedule", "list"]));
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.contains("no tick yet"), "{list}");
    let json: serde_json::Value = serde_json::from_str(&ok(&runway(
        &dir,
        &["schedule", "list", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(json[1]["id"], "check/nightly");
    assert_eq!(json[1]["params"]["target"], "south");
    assert_eq!(json[1]["added_by"], "alice");

    let paused = ok(&runway(
        &dir,
        &[
            "schedule",
            "pause",
            "check/nightly",
            "--reason",
            "maintenance",
        ],
    ));
    assert!(paused.starts_with("paused check/nightly"), "{paused}");
    let twice = invalid(&runway(&dir, &["schedule", "pause", "check/nightly"]));
    assert!(
        twice.contains("error: schedule `check/nightly` is paused, not active"),
        "{twice}"
    );
    ok(&runway(&dir, &["schedule", "resume", "check/nightly"]));
    let removed = ok(&runway(&dir, &["schedule", "remove", "check/nightly"]));
    assert!(removed.starts_with("removed check/nightly"), "{removed}");
    assert_eq!(ok(&runway(&dir, &["schedule", "list"])).lines().count(), 1);
    assert_eq!(
        ok(&runway(&dir, &["schedule", "list", "--all"]))
            .lines()
            .count(),
        2
    );

    let show = ok(&runway(&dir, &["schedule", "show", "check/nightly"]));
    for line in [
        "status    removed",
        "trigger   schedule:check/nightly (started by alice)",
        "added     by alice",
        "replaced  by alice",
        "paused    by alice",
        "resumed   by alice",
        "removed   by alice",
    ] {
        assert!(show.contains(line), "{line}: {show}");
    }
}

#[test]
fn bad_input_is_refused_with_a_located_error_and_exit_2() {
    let dir = setup("schedule-bad-input");
    let cron = invalid(&runway(
        &dir,
        &[
            "schedule",
            "add",
            "check",
            "--id",
            "hourly",
            "--cron",
            "61 * * * *",
        ],
    ));
    assert!(
        cron.contains("error: --cron: invalid cron expression `61 * * * *`"),
        "{cron}"
    );
    assert!(
        cron.contains("= help: 5 fields: minute hour day-of-month month day-of-week"),
        "{cron}"
    );
    let never = invalid(&runway(
        &dir,
        &[
            "schedule",
            "add",
            "check",
            "--id",
            "never",
            "--cron",
            "0 0 31 2 *",
        ],
    ));
    assert!(
        never.contains("error: --cron: cron expression `0 0 31 2 *` never fires"),
        "{never}"
    );
    let zone = invalid(&runway(
        &dir,
        &[
            "schedule",
            "add",
            "check",
            "--id",
            "hourly",
            "--cron",
            "0 * * * *",
            "--timezone",
            "europe/berlin",
        ],
    ));
    assert!(
        zone.contains("error: --timezone: `europe/berlin` is not an IANA time zone"),
        "{zone}"
    );
    assert!(
        zone.contains("= help: did you mean `Europe/Berlin`?"),
        "{zone}"
    );
    let id = invalid(&runway(
        &dir,
        &[
            "schedule",
            "add",
            "check",
            "--id",
            "Hourly",
            "--cron",
            "0 * * * *",
        ],
    ));
    assert!(
        id.contains("error: --id: `Hourly` is not a valid schedule id"),
        "{id}"
    );
    let missing = invalid(&runway(
        &dir,
        &["schedule", "add", "check", "--id", "nighty"],
    ));
    assert!(
        missing.contains("error: playbook `check` declares no schedule `nighty`"),
        "{missing}"
    );
    assert!(missing.contains("did you mean `nightly`?"), "{missing}");
    let param = invalid(&runway(
        &dir,
        &[
            "schedule", "add", "check", "--id", "nightly", "-p", "tagret=x",
        ],
    ));
    assert!(
        param.contains("error: schedule `nightly` cannot be added:"),
        "{param}"
    );
    assert!(param.contains("error: unknown param `tagret`"), "{param}");

    // In the playbook, the compiler points at the line and column.
    std::fs::write(
        dir.join("broken.yaml"),
        CHECK
            .replace("name: check", "name: broken")
            .replace("'30 2 * * *'", "'30 25 * * *'")
            .replace("Europe/Berlin", "Europe/Berlni"),
    )
    .unwrap();
    let located = invalid(&runway(&dir, &["schedule", "add", "broken.yaml"]));
    assert!(
        located.contains("error: invalid cron expression `30 25 * * *`"),
        "{located}"
    );
    assert!(located.contains("--> broken.yaml:10:11"), "{located}");
    assert!(
        located.contains("error: `Europe/Berlni` is not an IANA time zone"),
        "{located}"
    );
    assert!(located.contains("--> broken.yaml:11:15"), "{located}");

    ok(&runway(
        &dir,
        &["schedule", "add", "check", "--id", "nightly"],
    ));
    let unknown = invalid(&runway(&dir, &["schedule", "pause", "check/nighty"]));
    assert!(
        unknown.contains("error: no schedule `check/nighty`"),
        "{unknown}"
    );
    assert!(
        unknown.contains("did you mean `check/nightly`?"),
        "{unknown}"
    );
    invalid(&runway(&dir, &["schedule", "resume", "nope"]));
    invalid(&runway(&dir, &["schedule", "remove", "nope"]));
    invalid(&runway(&dir, &["schedule", "show", "nope"]));

    let poll = invalid(&runway(&dir, &["scheduler", "--poll", "0s"]));
    assert!(
        poll.contains("a duration of zero is not allowed here"),
        "{poll}"
    );
    let clock = invalid(&runway(
        &dir,
        &["scheduler", "--once", "--simulated-clock", "tomorrow"],
    ));
    assert!(clock.contains("is not START,RATE,EPOCH"), "{clock}");
}

#[test]
fn scheduler_once_fires_the_due_ticks_exactly_once() {
    let dir = setup("scheduler-once");
    ok(&runway(
        &dir,
        &[
            "schedule",
            "add",
            "check",
            "--id",
            "often",
            "--cron",
            "*/5 * * * *",
            "--overlap",
            "allow",
            "--catch-up",
            "1h",
            "-p",
            "target=east",
        ],
    ));
    // Ten minutes from now, by a simulated clock: every tick since the schedule was added.
    let now = chrono::Utc::now();
    let clock = format!(
        "{},1,{}",
        (now + chrono::Duration::minutes(10)).to_rfc3339(),
        now.to_rfc3339()
    );
    let once = runway(&dir, &["scheduler", "--once", "--simulated-clock", &clock]);
    let fired = ok(&once);
    let started = fired
        .lines()
        .filter(|l| l.contains(" started run "))
        .count();
    assert!((2..=3).contains(&started), "{fired}{}", stderr(&once));
    // The same ticks again: already recorded.
    let again = runway(&dir, &["scheduler", "--once", "--simulated-clock", &clock]);
    assert_eq!(
        ok(&again)
            .lines()
            .filter(|l| l.contains(" started "))
            .count(),
        0
    );
    let runs = ok(&runway(&dir, &["runs"]));
    assert_eq!(
        runs.matches("schedule:check/often").count(),
        started,
        "{runs}"
    );
}

#[test]
fn a_worker_fires_schedules_and_runs_them() {
    let dir = setup("scheduler-in-worker");
    ok(&runway(
        &dir,
        &[
            "schedule",
            "add",
            "check",
            "--id",
            "every-second",
            "--cron",
            "* * * * * *",
            "-p",
            "target=west",
        ],
    ));
    let mut worker = Command::new(env!("CARGO_BIN_EXE_runway"))
        .args(["worker"])
        .current_dir(&dir)
        .env_remove("RUNWAY_DATABASE_URL")
        .env("RUNWAY_WORKFLOWS", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut succeeded = false;
    while Instant::now() < deadline && !succeeded {
        std::thread::sleep(Duration::from_millis(300));
        let runs = runway(&dir, &["runs", "--status", "succeeded"]);
        succeeded = stdout(&runs).contains("schedule:check/every-second");
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = worker.wait();
    assert!(succeeded, "a scheduled run succeeded within a minute");
    let show = ok(&runway(&dir, &["schedule", "show", "check/every-second"]));
    assert!(show.contains("started  run "), "{show}");
}
