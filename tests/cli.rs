//! Black-box tests of `runway validate`, `runway plan` and `runway schema`.

mod common;

use common::{runway, runway_in, scratch, stderr, stdout};

#[test]
fn validate_accepts_every_shipped_workflow_under_strict() {
    let out = runway(&["validate", "--strict", "workflows/"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(", 0 error(s), 0 warning(s)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_reports_errors_with_location_and_exits_2() {
    let out = runway(&["validate", "tests/fixtures/bad/unknown-needs.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("error: `needs` names an unknown step `biuld`"),
        "{err}"
    );
    assert!(
        err.contains("--> tests/fixtures/bad/unknown-needs.yaml:7:13"),
        "{err}"
    );
    assert!(err.contains("= help: did you mean `build`?"), "{err}");
    assert!(
        err.contains("failed: 1 playbook(s) checked, 2 error(s)"),
        "{err}"
    );
}

#[test]
fn validate_json_lists_diagnostics_per_file() {
    let out = runway(&[
        "validate",
        "--format",
        "json",
        "tests/fixtures/bad/cycle.yaml",
        "tests/fixtures/good/list-order.yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let files: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(files[0]["file"], "tests/fixtures/bad/cycle.yaml");
    assert_eq!(files[0]["valid"], false);
    let first = &files[0]["diagnostics"][0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["line"], 5);
    assert_eq!(files[1]["valid"], true);
    assert_eq!(files[1]["playbook"], "list-order");
}

#[test]
fn warnings_fail_only_under_strict() {
    let dir = scratch("strict");
    std::fs::write(
        dir.join("p.yaml"),
        "runway: 1\nname: p\nsteps:\n  - id: migrate\n    shell: { argv: [pnpm, migrate] }\n",
    )
    .unwrap();
    let relaxed = runway_in(&dir, &["validate", "p.yaml"]);
    assert_eq!(relaxed.status.code(), Some(0), "{}", stderr(&relaxed));
    assert!(stderr(&relaxed).contains("warning: step `migrate` changes things but has no `undo`"));
    let strict = runway_in(&dir, &["validate", "--strict", "p.yaml"]);
    assert_eq!(strict.status.code(), Some(2));
    assert!(stderr(&strict).contains("error: step `migrate` changes things but has no `undo`"));
}

#[test]
fn validate_of_a_missing_path_says_which() {
    let out = runway(&["validate", "no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read `no/such/file.yaml`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_renders_params_and_masks_secrets() {
    let out = runway(&[
        "plan",
        "tests/fixtures/good/every-kind.yaml",
        "-p",
        "school_slug=greenwood-high",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("pnpm provision:tenant greenwood-high"),
        "{text}"
    );
    assert!(text.contains("DATABASE_URL=*** MAX_ROWS=500"), "{text}");
    assert!(text.contains("on *** with $1 = greenwood-high"), "{text}");
    assert!(text.contains("lock     school/greenwood-high"), "{text}");
    assert!(text.contains("mutates, undo deprovision"), "{text}");
    assert!(
        text.contains("Worst case: unbounded (no timeout on smoke-tests, window)"),
        "{text}"
    );
}

#[test]
fn plan_shows_parallel_steps_in_one_stage() {
    let out = runway(&[
        "plan",
        "tests/fixtures/good/list-order.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stages: Vec<(String, u64)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["stage"].as_u64().unwrap(),
            )
        })
        .collect();
    let expect =
        [("one", 1), ("side", 1), ("two", 2), ("three", 3)].map(|(a, b)| (a.to_owned(), b));
    assert_eq!(stages, expect);
    assert_eq!(
        plan["steps"][2]["needs"],
        serde_json::json!(["one", "side"])
    );
    assert_eq!(plan["worst_case"]["total"], "1s");
    assert!(
        plan["content_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn plan_refuses_bad_params_listing_every_problem() {
    let out = runway(&[
        "plan",
        "tests/fixtures/good/every-kind.yaml",
        "-p",
        "school_slug=X!",
        "-p",
        "max_row=5",
        "-p",
        "level=9",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(
            "error: param `school_slug`: `X!` does not match the pattern `^[a-z0-9-]{3,40}$`"
        ),
        "{err}"
    );
    assert!(err.contains("error: unknown param `max_row`"), "{err}");
    assert!(err.contains("did you mean `max_rows`?"), "{err}");
    assert!(
        err.contains("error: param `level`: `9` is not one of: 1, 2, 3, 4"),
        "{err}"
    );
}

#[test]
fn plan_requires_required_params() {
    let out = runway(&["plan", "tests/fixtures/good/every-kind.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("error: missing required param `school_slug`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_draws_dot_and_mermaid() {
    let dot = runway(&[
        "plan",
        "tests/fixtures/good/list-order.yaml",
        "--format",
        "dot",
    ]);
    let dot = stdout(&dot);
    assert!(dot.starts_with("digraph \"list-order\" {"), "{dot}");
    assert!(
        dot.contains("s0 -> s2;") && dot.contains("s1 -> s2;") && dot.contains("s2 -> s3;"),
        "{dot}"
    );
    let mermaid = stdout(&runway(&[
        "plan",
        "tests/fixtures/good/list-order.yaml",
        "--format",
        "mermaid",
    ]));
    assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
    assert!(mermaid.contains("  s2 --> s3\n"), "{mermaid}");
}

#[test]
fn plan_finds_a_playbook_by_name_in_runway_workflows() {
    let dir = scratch("by-name");
    std::fs::create_dir(dir.join("books")).unwrap();
    std::fs::write(
        dir.join("books/whatever.yaml"),
        "runway: 1\nname: hello\nsteps:\n  - id: hi\n    noop: {}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runway"))
        .args(["plan", "hello"])
        .current_dir(&dir)
        .env("RUNWAY_WORKFLOWS", "books")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("hello (hello)"),
        "{}",
        stdout(&out)
    );
    let missing = runway_in(&dir, &["plan", "nope"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no playbook file or name `nope`"));
}

#[test]
fn committed_schema_is_current() {
    let out = runway(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let committed =
        std::fs::read_to_string(common::repo().join("docs/runway.schema.json")).unwrap_or_default();
    assert!(
        committed == stdout(&out),
        "docs/runway.schema.json is stale: run `cargo run -- schema > docs/runway.schema.json`"
    );
}

#[test]
fn worker_refuses_zero_connections_before_opening_the_store() {
    let dir = scratch("worker-connections");
    let out = runway_in(&dir, &["worker", "--connections", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--connections"), "{err}");
    assert!(err.contains("1..=1000"), "{err}");
    assert!(!dir.join(".runway").exists(), "no store was created");
}

#[test]
fn worker_and_run_refuse_a_concurrency_of_zero() {
    let dir = scratch("zero-concurrency");
    for args in [
        &["worker", "--concurrency", "0"][..],
        &["run", "--concurrency", "0", "workflows/release-gate.yaml"][..],
    ] {
        let out = runway_in(&dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("--concurrency") && err.contains("from 1 to 1000, got `0`"),
            "{err}"
        );
    }
    assert!(!dir.join(".runway").exists(), "no store was created");
}
