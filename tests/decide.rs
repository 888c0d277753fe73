//! Black-box tests of people's decisions: `runway start`, a `runway worker`, then
//! `runway approve|reject|check` as different operators, on the embedded SQLite store.
//! Every refusal exits 2, says why, and changes nothing.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{scratch, stderr, stdout};

const PLAYBOOK: &str = r#"
runway: 1
name: gated
steps:
  - id: prepare
    noop: {}
  - id: go
    approval:
      prompt: Go?
      quorum: 2
      approvers: [alice, bob, 'role:release-manager']
      exclude_starter: true
  - id: smoke
    checklist:
      items:
        - { id: login, text: Login works }
        - { id: export, text: Export works, required: false }
  - id: done
    noop: {}
"#;

fn run_as(dir: &Path, who: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runway"))
        .args(args)
        .current_dir(dir)
        .env("RUNWAY_OPERATOR", who)
        .env_remove("RUNWAY_OPERATOR_ROLES")
        .env_remove("RUNWAY_DATABASE_URL")
        .env("RUNWAY_WORKFLOWS", dir)
        .output()
        .expect("runway runs")
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(dir: &Path) -> Worker {
    Worker(
        Command::new(env!("CARGO_BIN_EXE_runway"))
            .arg("worker")
            .current_dir(dir)
            .env_remove("RUNWAY_DATABASE_URL")
            .env("RUNWAY_WORKFLOWS", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker starts"),
    )
}

/// Polls `runway status --format json` until `step` has `status`.
fn wait_for(dir: &Path, run: &str, step: &str, status: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = run_as(dir, "carol", &["status", run, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
        let found = v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["step_id"] == step && s["status"] == status);
        if found {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{step} never became {status}: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn refused(out: &Output, why: &str) {
    assert_eq!(out.status.code(), Some(2), "{}{}", stdout(out), stderr(out));
    assert!(
        stderr(out).contains(why),
        "expected `{why}` in: {}",
        stderr(out)
    );
}

#[test]
fn approvals_and_checklists_follow_their_rules_and_resume_the_run() {
    let dir = scratch("decide-approve");
    std::fs::write(dir.join("gated.yaml"), PLAYBOOK).unwrap();
    let started = run_as(&dir, "carol", &["start", "gated"]);
    assert!(started.status.success(), "{}", stderr(&started));
    let run = stdout(&started).trim().to_owned();
    let _w = worker(&dir);
    wait_for(&dir, &run, "go", "waiting");

    refused(
        &run_as(&dir, "carol", &["approve", &run, "go"]),
        "excludes the starter",
    );
    refused(
        &run_as(&dir, "mallory", &["approve", &run, "go"]),
        "may not decide",
    );
    refused(
        &run_as(
            &dir,
            "alice",
            &["approve", &run, "go", "--plan-hash", "sha256:0"],
        ),
        "the plan changed",
    );
    refused(
        &run_as(&dir, "alice", &["approve", &run, "nope"]),
        "no step `nope`",
    );
    refused(
        &run_as(&dir, "alice", &["check", &run, "go", "login", "--pass"]),
        "is an approval",
    );
    let ok = run_as(
        &dir,
        "alice",
        &["approve", &run, "go", "--comment", "checked"],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("still waits"));
    refused(
        &run_as(&dir, "alice", &["approve", &run, "go"]),
        "already answered",
    );

    // A role counts as an approver; the quorum of two distinct people is reached.
    let dave = Command::new(env!("CARGO_BIN_EXE_runway"))
        .args(["approve", &run, "go"])
        .current_dir(&dir)
        .env("RUNWAY_OPERATOR", "dave")
        .env("RUNWAY_OPERATOR_ROLES", "sre, release-manager")
        .env_remove("RUNWAY_DATABASE_URL")
        .env("RUNWAY_WORKFLOWS", &dir)
        .output()
        .unwrap();
    assert!(dave.status.success(), "{}", stderr(&dave));
    assert!(stdout(&dave).contains("now succeeded"));
    refused(
        &run_as(&dir, "bob", &["approve", &run, "go"]),
        "not waiting",
    );

    wait_for(&dir, &run, "smoke", "waiting");
    refused(
        &run_as(&dir, "bob", &["check", &run, "smoke", "login", "--na"]),
        "is required",
    );
    refused(
        &run_as(&dir, "bob", &["check", &run, "smoke", "nope", "--pass"]),
        "no item `nope`",
    );
    let na = run_as(&dir, "bob", &["check", &run, "smoke", "export", "--na"]);
    assert!(na.status.success(), "{}", stderr(&na));
    let pass = run_as(&dir, "bob", &["check", &run, "smoke", "login", "--pass"]);
    assert!(pass.status.success(), "{}", stderr(&pass));
    let v = wait_for(&dir, &run, "done", "succeeded");
    let decisions = run_as(&dir, "carol", &["logs", &run]);
    let log = stdout(&decisions);
    assert_eq!(log.matches("step.decision").count(), 4, "{log}");
    assert_eq!(
        v["steps"][1]["outputs"]["approvers"],
        serde_json::json!(["alice", "dave"])
    );
}

#[test]
fn a_rejection_fails_the_step_and_the_run() {
    let dir = scratch("decide-reject");
    std::fs::write(dir.join("gated.yaml"), PLAYBOOK).unwrap();
    let started = run_as(&dir, "carol", &["start", "gated"]);
    let run = stdout(&started).trim().to_owned();
    let _w = worker(&dir);
    wait_for(&dir, &run, "go", "waiting");
    let no_reason = run_as(&dir, "bob", &["reject", &run, "go", "--reason", "  "]);
    refused(&no_reason, "needs a reason");
    let out = run_as(
        &dir,
        "bob",
        &["reject", &run, "go", "--reason", "not today"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = run_as(&dir, "carol", &["status", &run, "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
        if v["status"] == "failed" {
            assert!(
                v["error"]
                    .as_str()
                    .unwrap()
                    .contains("rejected by bob: not today"),
                "{v:#}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{v:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    refused(
        &run_as(&dir, "alice", &["approve", &run, "go"]),
        "is failed",
    );
}

#[test]
fn verify_confirms_an_intact_chain_and_names_an_edited_event() {
    let dir = scratch("decide-verify");
    std::fs::write(
        dir.join("small.yaml"),
        "runway: 1\nname: small\nsteps:\n  - id: a\n    noop: {}\n  - id: b\n    noop: {}\n",
    )
    .unwrap();
    let ran = run_as(&dir, "carol", &["run", "small"]);
    assert!(ran.status.success(), "{}{}", stdout(&ran), stderr(&ran));
    let runs = run_as(&dir, "carol", &["runs", "--limit", "1"]);
    let run = stdout(&runs).split_whitespace().next().unwrap().to_owned();
    let ok = run_as(&dir, "carol", &["verify", &run]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("chain head: "));

    // Edit one event behind the store's back (the trigger that refuses it is dropped first,
    // as an attacker with the database file could).
    let db = dir.join(".runway").join("runway.db");
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::Connection as _;
            let url = format!("sqlite://{}", db.display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("DROP TRIGGER events_no_update")
                .execute(&mut c)
                .await
                .unwrap();
            sqlx::query("UPDATE events SET data = replace(data, 'carol', 'mallory') WHERE seq = 1")
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        });
    let bad = run_as(&dir, "carol", &["verify", &run]);
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
    assert!(
        stdout(&bad).contains("event 1 (run.created)"),
        "{}",
        stdout(&bad)
    );
}
