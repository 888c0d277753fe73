//! Black-box tests of the shell step executor: real processes, no mocks. Time only appears
//! as generous upper bounds that fail a test instead of letting it hang.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use runway::exec::{
    self, End, Limits, Program, RunwayEnv, ShellOutcome, ShellSpec, StepFile, StepFileError,
};
use tokio_util::sync::CancellationToken;

/// Longer than any attempt here should take; reaching it means the executor hung.
const HANG: Duration = Duration::from_secs(120);

fn identity(attempt: u32) -> RunwayEnv {
    RunwayEnv {
        run_id: "run-42".to_owned(),
        step_id: "provision".to_owned(),
        attempt,
        idempotency_key: "run-42/provision".to_owned(),
    }
}

fn argv(args: &[&str]) -> ShellSpec {
    ShellSpec::new(
        Program::Argv(args.iter().map(|a| (*a).to_owned()).collect()),
        identity(1),
    )
}

fn script(body: &str) -> ShellSpec {
    ShellSpec::new(Program::Script(body.to_owned()), identity(1))
}

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(HANG, f)
        .await
        .expect("the executor did not return")
}

async fn run(spec: ShellSpec) -> ShellOutcome {
    bounded(exec::run(spec, CancellationToken::new()))
        .await
        .expect("the attempt could not run")
}

/// Polls until `path` exists, failing the test after a generous bound.
async fn wait_for_file(path: &Path) {
    bounded(async {
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The attempt token a step printed as its first stdout line.
fn printed_token(outcome: &ShellOutcome) -> String {
    let token = outcome
        .stdout
        .tail
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        token.len(),
        32,
        "the step did not print its token: {:?}",
        outcome.stdout
    );
    token
}

/// Live processes whose environment holds `RUNWAY_ATTEMPT_TOKEN=token`.
fn carriers_of(token: &str) -> Vec<u32> {
    let needle = format!("RUNWAY_ATTEMPT_TOKEN={token}\0").into_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// `(state, ppid)` of a process, or `None` once it is gone.
fn stat_of(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Gone, or a zombie that only its (new) parent can reap.
fn is_dead(pid: u32) -> bool {
    stat_of(pid).is_none_or(|(state, _)| state == 'Z' || state == 'X')
}

fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_of(*pid) == Some(('Z', me)))
        .collect()
}

fn pids_in(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn read_pid(path: PathBuf) -> u32 {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

// ---- exit status ----

#[tokio::test]
async fn exit_status_is_reported_and_added_to_outputs() {
    let ok = run(argv(&["true"])).await;
    assert_eq!(ok.end, End::Exited(0));
    assert_eq!(ok.outputs["exit_code"], 0);
    assert!(ok.succeeded());

    let failed = run(argv(&["sh", "-c", "exit 7"])).await;
    assert_eq!(failed.end, End::Exited(7));
    assert_eq!(failed.outputs["exit_code"], 7);
    assert!(!failed.succeeded());
}

#[tokio::test]
async fn death_by_a_signal_is_reported_without_an_exit_code() {
    let out = run(argv(&["sh", "-c", "kill -KILL $$"])).await;
    assert_eq!(out.end, End::Signalled(9));
    assert!(!out.outputs.contains_key("exit_code"));
    assert!(!out.succeeded());
}

#[tokio::test]
async fn stdout_and_stderr_are_captured_separately() {
    let out = run(argv(&["sh", "-c", "echo to-out; echo to-err >&2"])).await;
    assert_eq!(out.stdout.tail, "to-out\n");
    assert_eq!(out.stderr.tail, "to-err\n");
    assert_eq!(out.stdout.total_bytes, 7);
    assert!(!out.stdout.truncated);
}

#[tokio::test]
async fn stdin_is_empty() {
    // `cat` would wait forever on an inherited terminal or pipe.
    let out = run(argv(&["cat"])).await;
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(out.stdout.tail, "");
}

// ---- argv and scripts ----

#[tokio::test]
async fn argv_elements_reach_the_program_literally() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let m = marker.display();
    let hostile = [
        "two words".to_owned(),
        r#""double" 'single'"#.to_owned(),
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("; touch {m}"),
        format!("| touch {m}"),
        "*".to_owned(),
        "$HOME".to_owned(),
        "line\nbreak".to_owned(),
    ];
    let mut args = vec!["printf".to_owned(), "[%s]\\n".to_owned()];
    args.extend(hostile.iter().cloned());
    let out = run(ShellSpec::new(Program::Argv(args), identity(1))).await;

    assert_eq!(out.end, End::Exited(0), "{:?}", out.stderr);
    let expected: String = hostile.iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(out.stdout.tail, expected);
    assert!(!marker.exists(), "an argument was run by a shell");
}

#[tokio::test]
async fn a_script_stops_at_its_first_failing_command() {
    let out = run(script("echo before\nfalse\necho after\n")).await;
    assert_eq!(out.end, End::Exited(1));
    assert_eq!(out.stdout.tail, "before\n");
}

#[tokio::test]
async fn a_script_fails_on_a_failing_pipeline_and_on_an_unset_variable() {
    let pipe = run(script("false | true\necho after\n")).await;
    assert_ne!(pipe.end, End::Exited(0));
    assert_eq!(pipe.stdout.tail, "");

    let unset = run(script("echo \"$SURELY_NOT_SET_ANYWHERE\"\necho after\n")).await;
    assert_ne!(unset.end, End::Exited(0));
    assert_eq!(unset.stdout.tail, "");
}

#[tokio::test]
async fn the_working_directory_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = argv(&["pwd", "-P"]);
    spec.cwd = Some(dir.path().to_owned());
    let out = run(spec).await;
    let expected = dir.path().canonicalize().unwrap();
    assert_eq!(out.stdout.tail.trim_end(), expected.to_str().unwrap());
}

#[tokio::test]
async fn attempts_that_cannot_start_are_errors() {
    let cancel = CancellationToken::new;
    let missing = exec::run(argv(&["/nonexistent/program"]), cancel()).await;
    assert!(
        matches!(&missing, Err(exec::Error::Spawn { program, .. }) if program == "/nonexistent/program"),
        "{missing:?}"
    );

    let empty = exec::run(ShellSpec::new(Program::Argv(vec![]), identity(1)), cancel()).await;
    assert!(matches!(empty, Err(exec::Error::EmptyArgv)), "{empty:?}");

    let nul = exec::run(argv(&["echo", "a\0b"]), cancel()).await;
    assert!(
        matches!(nul, Err(exec::Error::NulInArgument { index: 1 })),
        "{nul:?}"
    );

    let mut bad_name = argv(&["true"]);
    bad_name.env = vec![("A=B".to_owned(), "x".to_owned())];
    let bad_name = exec::run(bad_name, cancel()).await;
    assert!(
        matches!(bad_name, Err(exec::Error::BadEnvName { .. })),
        "{bad_name:?}"
    );

    let mut no_dir = argv(&["true"]);
    no_dir.cwd = Some("/nonexistent/dir".into());
    let no_dir = exec::run(no_dir, cancel()).await;
    assert!(matches!(no_dir, Err(exec::Error::Cwd { .. })), "{no_dir:?}");
}

// ---- environment ----

#[tokio::test]
async fn the_worker_environment_is_not_inherited() {
    // cargo and nextest set these in every test process; a worker's secrets would be
    // inherited the same way, so the step must not see them.
    let worker_only = "CARGO_MANIFEST_DIR";
    assert!(std::env::var_os(worker_only).is_some());

    let mut spec = argv(&["env"]);
    spec.env = vec![("GREETING".to_owned(), "hello world".to_owned())];
    let out = run(spec).await;
    let vars: Vec<(&str, &str)> = out
        .stdout
        .tail
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();

    let allowed = [
        "PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "TMPDIR", "GREETING",
    ];
    for (name, _) in &vars {
        assert!(
            allowed.contains(name) || name.starts_with("RUNWAY_"),
            "the step saw `{name}`"
        );
    }
    assert!(!vars.iter().any(|(n, _)| *n == worker_only));
    assert!(vars.contains(&("GREETING", "hello world")));
    let path = std::env::var("PATH").unwrap();
    assert!(vars.contains(&("PATH", path.as_str())));
}

#[tokio::test]
async fn runway_variables_identify_the_attempt_and_the_key_is_stable() {
    let body = r#"
        {
          echo "run=$RUNWAY_RUN_ID"
          echo "step=$RUNWAY_STEP_ID"
          echo "attempt=$RUNWAY_ATTEMPT"
          echo "key=$RUNWAY_IDEMPOTENCY_KEY"
          echo "token=$RUNWAY_ATTEMPT_TOKEN"
          echo "output=$RUNWAY_OUTPUT"
          echo "output_mode=$(stat -c %a "$RUNWAY_OUTPUT")"
          echo "dir_mode=$(stat -c %a "$(dirname "$RUNWAY_OUTPUT")")"
          echo "checkpoint_size=$(stat -c %s "$RUNWAY_CHECKPOINT")"
        } > "$RUNWAY_OUTPUT"
    "#;
    let first = run(script(body)).await;
    let mut second_spec = script(body);
    second_spec.runway_env = identity(2);
    let second = run(second_spec).await;

    for (out, attempt) in [(&first, "1"), (&second, "2")] {
        assert!(out.succeeded(), "{:?} {:?}", out.output_error, out.stderr);
        assert_eq!(out.outputs["run"], "run-42");
        assert_eq!(out.outputs["step"], "provision");
        assert_eq!(out.outputs["attempt"], attempt);
        assert_eq!(out.outputs["key"], "run-42/provision");
        assert_eq!(out.outputs["output_mode"], "600");
        assert_eq!(out.outputs["dir_mode"], "700");
        assert_eq!(out.outputs["checkpoint_size"], "0");
        let dir = Path::new(out.outputs["output"].as_str().unwrap())
            .parent()
            .unwrap();
        assert!(!dir.exists(), "the attempt's directory was left behind");
    }
    assert_ne!(first.outputs["token"], second.outputs["token"]);
    assert_ne!(first.outputs["output"], second.outputs["output"]);
}

// ---- RUNWAY_OUTPUT ----

#[tokio::test]
async fn outputs_come_from_key_value_lines() {
    let out = run(script(
        "printf '# written by the step\\n\\nname=alpha beta\\nurl=http://x/?a=b\\nexit_code=99\\n' > \"$RUNWAY_OUTPUT\"\n",
    ))
    .await;
    assert!(out.succeeded(), "{:?}", out.output_error);
    assert_eq!(out.outputs["name"], "alpha beta");
    assert_eq!(out.outputs["url"], "http://x/?a=b");
    // The real exit code wins over a value the step wrote.
    assert_eq!(out.outputs["exit_code"], 0);
    assert_eq!(out.outputs.len(), 3);
}

#[tokio::test]
async fn outputs_come_from_a_json_object() {
    let out = run(script(
        r#"echo '{"rows": 12, "ok": true, "hosts": ["a", "b"]}' > "$RUNWAY_OUTPUT""#,
    ))
    .await;
    assert!(out.succeeded(), "{:?}", out.output_error);
    assert_eq!(out.outputs["rows"], 12);
    assert_eq!(out.outputs["ok"], true);
    assert_eq!(out.outputs["hosts"][1], "b");
}

#[tokio::test]
async fn a_malformed_output_file_is_an_error_naming_the_first_bad_line() {
    let out = run(script(
        "printf 'a=1\\n\\nthis line is wrong\\nso=is this one\\n' > \"$RUNWAY_OUTPUT\"\n",
    ))
    .await;
    assert_eq!(out.end, End::Exited(0));
    assert!(!out.succeeded());
    let err = out.output_error.expect("an output error");
    assert!(
        matches!(err, StepFileError::OutputLine { line: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("this line is wrong"), "{err}");
    assert_eq!(out.outputs.len(), 1, "only exit_code: {:?}", out.outputs);
}

#[tokio::test]
async fn an_oversized_output_file_is_an_error_not_a_crash() {
    let out = run(script(
        "head -c 2000000 /dev/zero | tr '\\0' a > \"$RUNWAY_OUTPUT\"\n",
    ))
    .await;
    assert_eq!(out.end, End::Exited(0));
    assert!(!out.succeeded());
    let err = out.output_error.expect("an output error");
    assert!(
        matches!(
            err,
            StepFileError::TooLarge {
                file: StepFile::Output,
                size: 2_000_000,
                limit: 1_048_576
            }
        ),
        "{err:?}"
    );
}

// ---- RUNWAY_CHECKPOINT ----

#[tokio::test]
async fn a_checkpoint_survives_into_the_next_attempt() {
    let body = r#"
        if [ -s "$RUNWAY_CHECKPOINT" ]; then echo "resumed at $(cat "$RUNWAY_CHECKPOINT")"; exit 0; fi
        echo fresh
        echo batch=3 > "$RUNWAY_CHECKPOINT"
        exit 1
    "#;
    let first = run(script(body)).await;
    assert_eq!(first.end, End::Exited(1));
    assert_eq!(first.stdout.tail, "fresh\n");
    assert_eq!(first.checkpoint.as_deref(), Some(&b"batch=3\n"[..]));

    let mut retry = script(body);
    retry.runway_env = identity(2);
    retry.checkpoint_in = first.checkpoint;
    let second = run(retry).await;
    assert_eq!(second.end, End::Exited(0));
    assert_eq!(second.stdout.tail, "resumed at batch=3\n");
    assert_eq!(second.checkpoint.as_deref(), Some(&b"batch=3\n"[..]));
}

#[tokio::test]
async fn an_oversized_checkpoint_keeps_the_previous_one() {
    let mut spec = script("head -c 100 /dev/zero > \"$RUNWAY_CHECKPOINT\"\n");
    spec.checkpoint_in = Some(b"batch=2".to_vec());
    spec.limits = Limits {
        checkpoint_max: 16,
        ..Limits::default()
    };
    let out = run(spec).await;
    assert!(matches!(
        out.checkpoint_error,
        Some(StepFileError::TooLarge {
            file: StepFile::Checkpoint,
            ..
        })
    ));
    assert_eq!(out.checkpoint.as_deref(), Some(&b"batch=2"[..]));
}

// ---- ending attempts ----

#[tokio::test]
async fn a_timeout_kills_the_grandchildren() {
    let mut spec = argv(&[
        "sh",
        "-c",
        r#"echo "$RUNWAY_ATTEMPT_TOKEN"; sleep 300 & echo $!; sleep 300 & echo $!; wait"#,
    ]);
    spec.timeout = Duration::from_secs(3);
    spec.grace = Duration::from_secs(1);
    let out = run(spec).await;

    assert_eq!(out.end, End::TimedOut);
    assert!(!out.outputs.contains_key("exit_code"));
    let token = printed_token(&out);
    let sleeps = pids_in(&out.stdout.tail);
    assert_eq!(sleeps.len(), 2, "{:?}", out.stdout);
    for pid in sleeps {
        assert!(is_dead(pid), "grandchild {pid} survived");
    }
    assert_eq!(carriers_of(&token), Vec::<u32>::new());
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

#[tokio::test]
async fn a_step_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut spec = argv(&[
        "bash",
        "-c",
        r#"trap 'echo got-term' TERM; echo "$RUNWAY_ATTEMPT_TOKEN"; touch "$READY"; while :; do sleep 0.1 || true; done"#,
    ]);
    spec.env = vec![("READY".to_owned(), ready.display().to_string())];
    spec.grace = Duration::from_secs(1);
    let cancel = CancellationToken::new();
    let attempt = tokio::spawn(exec::run(spec, cancel.clone()));
    wait_for_file(&ready).await;
    cancel.cancel();
    let out = bounded(attempt).await.unwrap().unwrap();

    assert_eq!(out.end, End::Cancelled);
    // SIGTERM arrived and was survived; only SIGKILL can have ended the loop.
    assert!(out.stdout.tail.contains("got-term"), "{:?}", out.stdout);
    assert_eq!(carriers_of(&printed_token(&out)), Vec::<u32>::new());
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

#[tokio::test]
async fn cancelling_ends_the_attempt_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut spec = argv(&[
        "sh",
        "-c",
        r#"echo "$RUNWAY_ATTEMPT_TOKEN"; sleep 300 & echo $!; touch "$READY"; wait"#,
    ]);
    spec.env = vec![("READY".to_owned(), ready.display().to_string())];
    let cancel = CancellationToken::new();
    let attempt = tokio::spawn(exec::run(spec, cancel.clone()));
    wait_for_file(&ready).await;
    cancel.cancel();
    let out = bounded(attempt).await.unwrap().unwrap();

    assert_eq!(out.end, End::Cancelled);
    let token = printed_token(&out);
    let sleeps = pids_in(&out.stdout.tail);
    assert_eq!(sleeps.len(), 1, "{:?}", out.stdout);
    assert!(is_dead(sleeps[0]));
    assert_eq!(carriers_of(&token), Vec::<u32>::new());
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

#[tokio::test]
async fn the_whole_group_gets_sigterm_and_the_grace_outlives_the_leader() {
    // The leader dies at SIGTERM at once; its child traps it and needs a moment to clean
    // up. SIGTERM reaching the child proves the group was signalled, and "cleaned" proves
    // SIGKILL waited for the group, not just for the leader.
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let log = dir.path().join("log");
    let mut spec = argv(&[
        "sh",
        "-c",
        r#"sh -c 'trap "echo got-term >> \"$LOG\"; sleep 0.3; echo cleaned >> \"$LOG\"; exit 0" TERM
                  touch "$READY"; while :; do sleep 0.1; done' &
           wait"#,
    ]);
    spec.env = vec![
        ("READY".to_owned(), ready.display().to_string()),
        ("LOG".to_owned(), log.display().to_string()),
    ];
    spec.grace = Duration::from_secs(60);
    let cancel = CancellationToken::new();
    let attempt = tokio::spawn(exec::run(spec, cancel.clone()));
    wait_for_file(&ready).await;
    cancel.cancel();
    let out = bounded(attempt).await.unwrap().unwrap();

    assert_eq!(out.end, End::Cancelled);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "got-term\ncleaned\n"
    );
}

#[tokio::test]
async fn dropping_the_attempt_kills_its_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, daemon) = (dir.path().join("leader"), dir.path().join("daemon"));
    let mut spec = argv(&[
        "sh",
        "-c",
        r#"setsid sh -c 'echo $$ > "$D/daemon.tmp"; mv "$D/daemon.tmp" "$D/daemon"; exec sleep 300' &
           echo $$ > "$D/leader.tmp"; mv "$D/leader.tmp" "$D/leader"; wait"#,
    ]);
    spec.env = vec![("D".to_owned(), dir.path().display().to_string())];
    let attempt = tokio::spawn(exec::run(spec, CancellationToken::new()));
    wait_for_file(&leader).await;
    wait_for_file(&daemon).await;
    attempt.abort();
    assert!(attempt.await.unwrap_err().is_cancelled());

    let pids = [read_pid(leader), read_pid(daemon)];
    bounded(async {
        while !pids.iter().all(|pid| is_dead(*pid)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_attempt_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let mut spec = argv(&["touch", marker.to_str().unwrap()]);
    spec.checkpoint_in = Some(b"batch=7".to_vec());
    let cancel = CancellationToken::new();
    cancel.cancel();
    let out = bounded(exec::run(spec, cancel)).await.unwrap();
    assert_eq!(out.end, End::Cancelled);
    assert!(!marker.exists());
    assert_eq!(out.checkpoint.as_deref(), Some(&b"batch=7"[..]));
}

#[tokio::test]
async fn daemons_that_leave_the_process_group_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"
        echo "$RUNWAY_ATTEMPT_TOKEN"
        setsid sh -c 'echo $$ > "$D/setsid.pid"; exec sleep 300' </dev/null >/dev/null 2>&1 &
        nohup sh -c 'echo $$ > "$D/nohup.pid"; exec sleep 300' </dev/null >/dev/null 2>&1 &
        ( sh -c 'echo $$ > "$D/double.pid"; exec sleep 300' </dev/null >/dev/null 2>&1 & )
        for f in setsid nohup double; do
          while [ ! -s "$D/$f.pid" ]; do sleep 0.05; done
        done
        # Prove the setsid daemon is out of reach of the group kill (field 5 of stat is
        # the process group): only the token sweep can end it.
        [ "$(cut -d' ' -f5 "/proc/$(cat "$D/setsid.pid")/stat")" != "$(cut -d' ' -f5 /proc/$$/stat)" ]
        echo daemons-started
    "#;
    let mut spec = script(body);
    spec.env = vec![("D".to_owned(), dir.path().display().to_string())];
    let out = run(spec).await;

    assert_eq!(out.end, End::Exited(0), "{:?}", out.stderr);
    assert!(out.stdout.tail.contains("daemons-started"));
    for name in ["setsid", "nohup", "double"] {
        let pid = read_pid(dir.path().join(format!("{name}.pid")));
        assert!(is_dead(pid), "the {name} daemon ({pid}) survived");
    }
    assert_eq!(carriers_of(&printed_token(&out)), Vec::<u32>::new());
    assert_eq!(zombie_children(), Vec::<u32>::new());
}

#[tokio::test]
async fn a_background_process_holding_stdout_does_not_hang_the_executor() {
    let in_group = run(argv(&["sh", "-c", "sleep 300 & echo started"])).await;
    assert_eq!(in_group.end, End::Exited(0));
    assert_eq!(in_group.stdout.tail, "started\n");

    let escaped = run(argv(&[
        "sh",
        "-c",
        r#"echo "$RUNWAY_ATTEMPT_TOKEN"; setsid sleep 300 & echo started"#,
    ]))
    .await;
    assert_eq!(escaped.end, End::Exited(0));
    assert!(escaped.stdout.tail.ends_with("started\n"));
    assert_eq!(carriers_of(&printed_token(&escaped)), Vec::<u32>::new());
}

#[tokio::test]
async fn a_pipe_held_by_a_process_without_the_token_only_delays_the_executor() {
    // The documented hole: a process that leaves the group and drops the token survives,
    // but the executor still returns, with what was read.
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("holder.pid");
    let mut spec = argv(&[
        "sh",
        "-c",
        r#"env -u RUNWAY_ATTEMPT_TOKEN setsid sh -c 'echo $$ > "$PIDFILE"; exec sleep 300' &
           while [ ! -s "$PIDFILE" ]; do sleep 0.05; done
           echo parent-done"#,
    ]);
    spec.env = vec![("PIDFILE".to_owned(), pid_file.display().to_string())];
    let out = run(spec).await;
    let holder = read_pid(pid_file);
    let survived = !is_dead(holder);
    if survived {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(holder).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    assert_eq!(out.end, End::Exited(0));
    assert_eq!(out.stdout.tail, "parent-done\n");
    assert!(
        survived,
        "expected the token-less daemon to escape, as documented"
    );
}

// ---- output volume and encoding ----

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn huge_output_keeps_only_the_tail_in_bounded_memory() {
    // 10 MB on stderr first, then one 50 MB line on stdout: reading the streams one after
    // the other would deadlock on the full stderr pipe.
    let out = run(argv(&[
        "sh",
        "-c",
        r"head -c 10000000 /dev/zero | tr '\0' b >&2; head -c 50000000 /dev/zero | tr '\0' a; printf END",
    ]))
    .await;

    assert_eq!(out.end, End::Exited(0));
    assert_eq!(out.stdout.total_bytes, 50_000_003);
    assert!(out.stdout.truncated);
    assert_eq!(out.stdout.tail.len(), 64 * 1024);
    assert!(out.stdout.tail.ends_with("aaaEND"));
    assert!(
        out.stdout
            .tail
            .trim_end_matches("END")
            .bytes()
            .all(|b| b == b'a')
    );
    assert_eq!(out.stderr.total_bytes, 10_000_000);
    assert!(out.stderr.truncated);
    assert_eq!(out.stderr.tail.len(), 64 * 1024);

    let peak = peak_rss_kib();
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB");
}

#[tokio::test]
async fn invalid_utf8_output_is_converted_lossily() {
    let out = run(argv(&["printf", r"\377\376ok\n"])).await;
    assert_eq!(out.stdout.tail, "\u{fffd}\u{fffd}ok\n");
    assert_eq!(out.stdout.total_bytes, 5);

    // A tail cut inside a character starts at the next whole one.
    let mut spec = argv(&["printf", "ééé"]);
    spec.limits = Limits {
        stdout_tail: 3,
        ..Limits::default()
    };
    let cut = run(spec).await;
    assert_eq!(cut.stdout.tail, "é");
    assert_eq!(cut.stdout.total_bytes, 6);
    assert!(cut.stdout.truncated);
}

#[tokio::test]
async fn a_given_attempt_token_is_the_one_the_step_carries() {
    let token = "0123456789abcdef0123456789abcdef";
    let mut spec = script(r#"echo "$RUNWAY_ATTEMPT_TOKEN""#);
    spec.token = Some(token.to_owned());
    let outcome = run(spec).await;
    assert_eq!(printed_token(&outcome), token);

    let mut bad = script("true");
    bad.token = Some("a\0b".to_owned());
    let refused = exec::run(bad, CancellationToken::new()).await;
    assert!(matches!(refused, Err(exec::Error::BadToken)), "{refused:?}");
}

#[tokio::test]
async fn sweeping_a_token_kills_the_processes_an_ended_executor_left() {
    // What a SIGKILLed worker leaves: a process of its attempt, in a session of its own,
    // that no executor is watching any more.
    let token = format!("{:032x}", std::process::id() as u128 * 7919 + 17);
    let mut orphan = std::process::Command::new("setsid")
        .args(["sleep", "300"])
        .env("RUNWAY_ATTEMPT_TOKEN", &token)
        .spawn()
        .expect("setsid sleep");
    // `setsid` execs `sleep` (it is not a group leader): wait until the exec happened, when
    // /proc shows the sleep's own environment.
    let environ = format!("/proc/{}/environ", orphan.id());
    bounded(async {
        loop {
            let cmdline =
                std::fs::read(format!("/proc/{}/cmdline", orphan.id())).unwrap_or_default();
            if cmdline.starts_with(b"sleep\0") && std::fs::read(&environ).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let swept = tokio::task::spawn_blocking({
        let token = token.clone();
        move || exec::sweep_token(&token)
    })
    .await
    .unwrap();
    assert_eq!(swept, 1);
    let status = orphan.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    // Nothing else carries it now.
    assert_eq!(exec::sweep_token(&token), 0);
}
