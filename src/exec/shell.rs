//! One attempt of a `shell` step: start the process in its own session, watch it against its
//! timeout and the cancel signal, end it (TERM, grace, KILL, sweep), and collect what it left.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use process_wrap::tokio::{ChildWrapper, CommandWrap, ProcessSession};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Error;
use super::capture::{Captured, read_tail};
use super::files::{self, StepFile, StepFileError};
use super::reap::{self, TOKEN_VAR};
use super::workspace::{self, Workspace};

/// Time between SIGTERM and SIGKILL when a step does not set its own.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// A shell step's timeout per attempt when neither the step nor the playbook sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long output is still read after every process of the attempt was killed. Only a
/// process that escaped the kill can keep a pipe open that long; then reading stops.
pub const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// How often the group is checked during the grace period, to move on as soon as it is empty.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// The program and its arguments, run directly: each element is one argument.
    Argv(Vec<String>),
    /// A bash script body, run as `bash -euo pipefail FILE`.
    Script(String),
}

/// Who this attempt is, as the step sees it in `RUNWAY_*` variables and as tracing records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunwayEnv {
    pub run_id: String,
    pub step_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The same on every attempt of this step in this run, so the step can make its effect
    /// happen once.
    pub idempotency_key: String,
}

/// Bounds on what an attempt may leave in memory and in its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of stdout kept (the tail).
    pub stdout_tail: usize,
    /// Bytes of stderr kept (the tail).
    pub stderr_tail: usize,
    /// Largest `RUNWAY_OUTPUT` accepted, in bytes.
    pub output_max: u64,
    /// Largest `RUNWAY_CHECKPOINT` accepted, in bytes.
    pub checkpoint_max: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            stdout_tail: 64 * 1024,
            stderr_tail: 64 * 1024,
            output_max: 1024 * 1024,
            checkpoint_max: 1024 * 1024,
        }
    }
}

/// One attempt of a `shell` step, with every template already rendered.
#[derive(Debug, Clone)]
pub struct ShellSpec {
    pub program: Program,
    /// The step's `env`, added over the allow-listed worker variables.
    pub env: Vec<(String, String)>,
    /// The working directory; the worker's own when `None`.
    pub cwd: Option<PathBuf>,
    /// How long this attempt may run before it is ended.
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL when the attempt is ended.
    pub grace: Duration,
    pub runway_env: RunwayEnv,
    /// The checkpoint the previous attempt left, put in `RUNWAY_CHECKPOINT`.
    pub checkpoint_in: Option<Vec<u8>>,
    pub limits: Limits,
    /// The attempt's `RUNWAY_ATTEMPT_TOKEN`; a fresh random one when `None`. A caller that
    /// may die before the attempt ends passes one it can derive again, so that whoever
    /// takes the step over can [`sweep`](super::sweep_token) what this attempt left.
    pub token: Option<String>,
}

impl ShellSpec {
    /// A spec with the defaults: no env, the worker's directory, [`DEFAULT_TIMEOUT`],
    /// [`DEFAULT_GRACE`], no checkpoint, default [`Limits`].
    pub fn new(program: Program, runway_env: RunwayEnv) -> ShellSpec {
        ShellSpec {
            program,
            env: Vec::new(),
            cwd: None,
            timeout: DEFAULT_TIMEOUT,
            grace: DEFAULT_GRACE,
            runway_env,
            checkpoint_in: None,
            limits: Limits::default(),
            token: None,
        }
    }
}

/// How the attempt's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// It exited with this status.
    Exited(i32),
    /// A signal the executor did not send killed it (the number).
    Signalled(i32),
    /// It ran past its timeout and was ended.
    TimedOut,
    /// The cancel signal fired and it was ended (or never started).
    Cancelled,
}

/// What one attempt did and left.
#[derive(Debug)]
pub struct ShellOutcome {
    pub end: End,
    pub stdout: Captured,
    pub stderr: Captured,
    /// Values from `RUNWAY_OUTPUT`, plus `exit_code` when the process exited. Empty (but for
    /// `exit_code`) when [`ShellOutcome::output_error`] is set.
    pub outputs: Map<String, Value>,
    /// `RUNWAY_OUTPUT` was too large or malformed: the step should fail, whatever its exit.
    pub output_error: Option<StepFileError>,
    /// The checkpoint to persist and pass as the next attempt's `checkpoint_in`: what the
    /// step left in `RUNWAY_CHECKPOINT` (`None` if it left it empty or removed it). When that
    /// file could not be taken ([`ShellOutcome::checkpoint_error`]), the incoming checkpoint.
    pub checkpoint: Option<Vec<u8>>,
    /// `RUNWAY_CHECKPOINT` was too large or not a regular file; the old checkpoint is kept.
    pub checkpoint_error: Option<StepFileError>,
    /// From the start of the process to the end of the main process (grace included).
    pub duration: Duration,
}

impl ShellOutcome {
    /// Whether the step succeeded: it exited 0 and left readable outputs.
    pub fn succeeded(&self) -> bool {
        self.end == End::Exited(0) && self.output_error.is_none()
    }
}

/// Runs one attempt of a `shell` step to its end; see the [module docs](super) for the
/// environment, the files and how the attempt's processes are ended. Firing `cancel` ends
/// the attempt like a timeout does.
pub async fn run(spec: ShellSpec, cancel: CancellationToken) -> Result<ShellOutcome, Error> {
    let span = tracing::info_span!(
        "shell",
        run.id = %spec.runway_env.run_id,
        step.id = %spec.runway_env.step_id,
        attempt = spec.runway_env.attempt,
    );
    attempt(spec, cancel).instrument(span).await
}

async fn attempt(spec: ShellSpec, cancel: CancellationToken) -> Result<ShellOutcome, Error> {
    validate(&spec)?;
    if cancel.is_cancelled() {
        // A cancelled run must not start new work, not even for the instant before SIGTERM.
        return Ok(ShellOutcome {
            end: End::Cancelled,
            stdout: Captured::default(),
            stderr: Captured::default(),
            outputs: Map::new(),
            output_error: None,
            checkpoint: spec.checkpoint_in,
            checkpoint_error: None,
            duration: Duration::ZERO,
        });
    }

    let script = match &spec.program {
        Program::Script(body) => Some(body.clone()),
        Program::Argv(_) => None,
    };
    let checkpoint_in = spec.checkpoint_in.clone();
    let ws = tokio::task::spawn_blocking(move || {
        Workspace::create(script.as_deref(), checkpoint_in.as_deref())
    })
    .await?
    .map_err(Error::Workspace)?;
    let token = match &spec.token {
        Some(token) => token.clone(),
        None => reap::new_token().map_err(Error::Token)?,
    };

    let (program, args) = command_line(&spec.program, &ws)?;
    let mut command = tokio::process::Command::new(&program);
    command
        .args(&args)
        .env_clear()
        .envs(environment(&spec, &ws, &token))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Should this future be dropped, tokio kills and reaps the leader; `Cleanup` below
        // takes care of the rest of the attempt's processes.
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let mut wrap = CommandWrap::from(command);
    wrap.wrap(ProcessSession);
    let started = Instant::now();
    let mut child = wrap.spawn().map_err(|source| Error::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    let pgid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw)
        .ok_or_else(|| Error::Wait(std::io::Error::other("the step's process has no pid")))?;
    let cleanup = Cleanup {
        pgid,
        token: token.clone(),
        armed: true,
    };
    tracing::debug!(pid = pgid.as_raw(), program = %program.to_string_lossy(), "step started");

    // Readers run as their own tasks so the pipes never fill up while we wait; `stop` ends
    // them should a pipe stay open after the kill, or should this future be dropped.
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    let stdout = child
        .stdout()
        .take()
        .map(|pipe| tokio::spawn(read_tail(pipe, spec.limits.stdout_tail, stop.clone())));
    let stderr = child
        .stderr()
        .take()
        .map(|pipe| tokio::spawn(read_tail(pipe, spec.limits.stderr_tail, stop.clone())));

    let ended = tokio::select! {
        // An exit that races with the timeout counts as an exit.
        biased;
        status = child.wait() => Ended::Exited(status.map_err(Error::Wait)?),
        () = cancel.cancelled() => Ended::Stopped(End::Cancelled),
        () = tokio::time::sleep(spec.timeout) => Ended::Stopped(End::TimedOut),
    };
    if let Ended::Stopped(why) = ended {
        tracing::info!(reason = ?why, "ending the step: SIGTERM to its process group");
        terminate(child.as_mut(), pgid, spec.grace).await?;
    }
    let duration = started.elapsed();

    // From here the normal path does what `Cleanup` would; the sweep runs to its end on
    // its own thread even if this future is dropped while awaiting it.
    cleanup.disarm();
    reap::signal_group(pgid, Signal::SIGKILL);
    let escaped = tokio::task::spawn_blocking(move || reap::sweep(&token)).await?;
    if escaped > 0 {
        tracing::warn!(
            count = escaped,
            "killed processes that had left the step's process group"
        );
    }
    let stdout = drain(stdout, &stop).await?;
    let stderr = drain(stderr, &stop).await?;

    let end = match ended {
        Ended::Exited(status) => end_of(status),
        Ended::Stopped(why) => why,
    };
    tracing::info!(end = ?end, duration_ms = duration.as_millis() as u64, "step ended");

    let limits = spec.limits;
    let (output_path, checkpoint_path) = (ws.output.clone(), ws.checkpoint.clone());
    let (output, checkpoint) = tokio::task::spawn_blocking(move || {
        (
            files::read_bounded(&output_path, limits.output_max, StepFile::Output),
            files::read_bounded(
                &checkpoint_path,
                limits.checkpoint_max,
                StepFile::Checkpoint,
            ),
        )
    })
    .await?;
    drop(ws);

    let (mut outputs, output_error) = match output.and_then(|bytes| files::parse_outputs(&bytes)) {
        Ok(outputs) => (outputs, None),
        Err(e) => (Map::new(), Some(e)),
    };
    if let End::Exited(code) = end {
        outputs.insert("exit_code".to_owned(), Value::from(code));
    }
    let (checkpoint, checkpoint_error) = match checkpoint {
        Ok(bytes) if bytes.is_empty() => (None, None),
        Ok(bytes) => (Some(bytes), None),
        Err(e) => (spec.checkpoint_in, Some(e)),
    };
    Ok(ShellOutcome {
        end,
        stdout,
        stderr,
        outputs,
        output_error,
        checkpoint,
        checkpoint_error,
        duration,
    })
}

enum Ended {
    Exited(ExitStatus),
    Stopped(End),
}

fn end_of(status: ExitStatus) -> End {
    match (status.code(), status.signal()) {
        (Some(code), _) => End::Exited(code),
        (None, Some(signal)) => End::Signalled(signal),
        // Neither a code nor a signal only happens for stopped processes, which `wait`
        // does not report; count it as a failure rather than trust it.
        (None, None) => End::Exited(-1),
    }
}

/// Everything that can be wrong with a spec before anything is started.
fn validate(spec: &ShellSpec) -> Result<(), Error> {
    if let Program::Argv(argv) = &spec.program {
        if argv.is_empty() {
            return Err(Error::EmptyArgv);
        }
        if let Some(index) = argv.iter().position(|a| a.contains('\0')) {
            return Err(Error::NulInArgument { index });
        }
    }
    for (name, value) in &spec.env {
        if !workspace::valid_env_name(name) {
            return Err(Error::BadEnvName { name: name.clone() });
        }
        if value.contains('\0') {
            return Err(Error::NulInEnvValue { name: name.clone() });
        }
    }
    if spec
        .token
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.contains('\0'))
    {
        return Err(Error::BadToken);
    }
    if let Some(cwd) = &spec.cwd
        && !cwd.is_dir()
    {
        return Err(Error::Cwd { path: cwd.clone() });
    }
    Ok(())
}

/// The program and its arguments: argv as given, or bash on the script file.
fn command_line(program: &Program, ws: &Workspace) -> Result<(OsString, Vec<OsString>), Error> {
    match program {
        Program::Argv(argv) => {
            let (first, rest) = argv.split_first().ok_or(Error::EmptyArgv)?;
            Ok((first.into(), rest.iter().map(OsString::from).collect()))
        }
        Program::Script(_) => Ok((
            "bash".into(),
            vec!["-euo".into(), "pipefail".into(), ws.script.clone().into()],
        )),
    }
}

/// The step's environment: the allow-list, then the step's `env`, then `RUNWAY_*`.
fn environment(spec: &ShellSpec, ws: &Workspace, token: &str) -> Vec<(OsString, OsString)> {
    let id = &spec.runway_env;
    let mut env = workspace::inherited();
    env.extend(spec.env.iter().map(|(k, v)| (k.into(), v.into())));
    env.extend([
        ("RUNWAY_RUN_ID".into(), id.run_id.as_str().into()),
        ("RUNWAY_STEP_ID".into(), id.step_id.as_str().into()),
        ("RUNWAY_ATTEMPT".into(), id.attempt.to_string().into()),
        (
            "RUNWAY_IDEMPOTENCY_KEY".into(),
            id.idempotency_key.as_str().into(),
        ),
        ("RUNWAY_OUTPUT".into(), ws.output.clone().into()),
        ("RUNWAY_CHECKPOINT".into(), ws.checkpoint.clone().into()),
        (TOKEN_VAR.into(), token.into()),
    ]);
    env
}

/// SIGTERM to the group, then wait until the group is empty or `grace` has passed, then
/// SIGKILL, and reap the leader.
async fn terminate(child: &mut dyn ChildWrapper, pgid: Pid, grace: Duration) -> Result<(), Error> {
    reap::signal_group(pgid, Signal::SIGTERM);
    let settled = tokio::time::timeout(grace, async {
        child.wait().await?;
        // The leader going first is common (bash dies at once, its children clean up):
        // the rest of the group still gets its grace.
        while reap::group_exists(pgid) {
            tokio::time::sleep(GROUP_POLL).await;
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    match settled {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Error::Wait(e)),
        Err(_elapsed) => tracing::info!("grace period over: SIGKILL to the step's process group"),
    }
    reap::signal_group(pgid, Signal::SIGKILL);
    child.wait().await.map_err(Error::Wait)?;
    Ok(())
}

/// Waits for a reader to hit end of file, but no longer than [`PIPE_DRAIN`]: then a process
/// that escaped the kill holds the pipe, and what was read so far is what there is.
async fn drain(
    reader: Option<tokio::task::JoinHandle<Captured>>,
    stop: &CancellationToken,
) -> Result<Captured, Error> {
    let Some(mut reader) = reader else {
        return Ok(Captured::default());
    };
    match tokio::time::timeout(PIPE_DRAIN, &mut reader).await {
        Ok(captured) => Ok(captured?),
        Err(_elapsed) => {
            tracing::warn!(
                "the step's output stayed open after its processes were killed; stopped reading"
            );
            stop.cancel();
            Ok(reader.await?)
        }
    }
}

/// Kills whatever is left of the attempt if [`attempt`] returns early or is dropped: the
/// group, then the processes carrying the token (on a thread, since drop cannot wait).
struct Cleanup {
    pgid: Pid,
    token: String,
    armed: bool,
}

impl Cleanup {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            reap::signal_group(self.pgid, Signal::SIGKILL);
            let token = std::mem::take(&mut self.token);
            std::thread::spawn(move || reap::sweep(&token));
        }
    }
}
