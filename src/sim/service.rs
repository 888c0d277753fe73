//! The server as a service: what the `systemctl` shim starts, stops and restarts (the
//! rollback playbooks' `systemctl restart school-server`), and what `runway sim stop` ends.
//!
//! A service started here is not a child of whoever asked, as with systemd: it gets its own
//! process group and a clean environment (no `RUNWAY_*` variables of the step that ran
//! `systemctl`), and outlives the asking process. Its output goes to `server/logs/service.log`.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Error, Sim, State};

/// How long `start` waits for the server to accept connections.
const START_WAIT: Duration = Duration::from_secs(10);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The pid of the running server, if the one `sim.json` names is alive and is a sim server
/// (a recycled pid is not one).
pub fn running(state: &State) -> Option<u32> {
    let pid = state.server_pid?;
    (alive(pid) && is_sim_server(pid)).then_some(pid)
}

/// Alive and not a zombie: a zombie has exited, only its parent has not reaped it yet.
fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if kill(Pid::from_raw(raw), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesized command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn is_sim_server(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.contains(&b"sim".as_slice())
        && (args.contains(&b"serve".as_slice()) || args.contains(&b"dev".as_slice()))
}

/// Starts the server unless it runs; returns its pid once it accepts connections.
pub fn start(sim: &Sim) -> Result<u32, Error> {
    let state = sim.load()?;
    if let Some(pid) = running(&state) {
        return Ok(pid);
    }
    let log_path = sim.logs_dir().join("service.log");
    std::fs::create_dir_all(sim.logs_dir()).map_err(Error::io(sim.logs_dir()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(Error::io(&log_path))?;
    let err_log = log.try_clone().map_err(Error::io(&log_path))?;
    let exe = std::env::current_exe().map_err(Error::io("the runway binary"))?;
    let mut command = Command::new(&exe);
    command
        .args(["sim", "serve", "--dir"])
        .arg(sim.dir())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .process_group(0);
    for var in ["PATH", "HOME", "LANG", "TZ"] {
        if let Some(value) = std::env::var_os(var) {
            command.env(var, value);
        }
    }
    let mut child = command.spawn().map_err(Error::io(&exe))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, state.port));
    let deadline = Instant::now() + START_WAIT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(child.id());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Invalid(format!(
                "the server exited at start ({status}); see {}",
                log_path.display()
            )));
        }
        if Instant::now() > deadline {
            return Err(Error::Invalid(format!(
                "the server did not accept connections on {addr} within {}s; see {}",
                START_WAIT.as_secs(),
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the running server (SIGTERM, then SIGKILL after a grace period). Returns its pid,
/// or `None` when none was running.
pub fn stop(sim: &Sim) -> Result<Option<u32>, Error> {
    let state = sim.load()?;
    let Some(pid) = running(&state) else {
        return Ok(None);
    };
    let target = Pid::from_raw(i32::try_from(pid).map_err(|_| Error::Invalid("bad pid".into()))?);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
    if alive(pid) {
        let _ = kill(target, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(1);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    sim.update(|s| {
        if s.server_pid == Some(pid) {
            s.server_pid = None;
        }
    })?;
    Ok(Some(pid))
}
