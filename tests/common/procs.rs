//! Looking at processes from outside, for the chaos harnesses of scenarios 4 to 6
//! (`tests/common/{hygiene,output_bounds,sqlite_chaos}.rs`): processes found by a marker in
//! their environment or their name, zombies, a process' peak memory, and a seeded random
//! generator so a run can be repeated.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A small deterministic generator (xorshift64*), so a run can be repeated by its seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi` (milliseconds resolution).
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis().max(1) as u64;
        lo + Duration::from_millis(self.next() % span)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
}

/// A seed from the environment variable `var`, or from the clock.
pub fn seed_from(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64)
}

/// One process as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    /// The state letter of `/proc/PID/stat` (`Z` for a zombie).
    pub state: char,
    /// The executable's name (15 bytes at most), which a zombie keeps.
    pub comm: String,
    pub cmdline: String,
}

impl Proc {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

fn read_proc(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so cut at the last `)`.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default();
    Some(Proc {
        pid,
        ppid,
        state,
        comm,
        cmdline,
    })
}

/// Every process on the host, as far as `/proc` can be read.
pub fn all() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_proc)
        .collect()
}

/// Whether the environment of `pid` has the whole entry `entry` (`NAME=value`).
pub fn environ_has(pid: i32, entry: &str) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    env.split(|b| *b == 0).any(|e| e == entry.as_bytes())
}

/// Live (not zombie) processes whose environment has `entry` or whose command line
/// contains `argv_marker`; zombies have neither left, see [`zombies_named`].
pub fn marked(entry: &str, argv_marker: &str) -> Vec<Proc> {
    all()
        .into_iter()
        .filter(|p| !p.is_zombie())
        .filter(|p| {
            environ_has(p.pid, entry)
                || (!argv_marker.is_empty() && p.cmdline.contains(argv_marker))
        })
        .collect()
}

/// Zombies whose executable name starts with `prefix` (a zombie keeps its name).
pub fn zombies_named(prefix: &str) -> Vec<Proc> {
    all()
        .into_iter()
        .filter(|p| p.is_zombie() && p.comm.starts_with(prefix))
        .collect()
}

/// Zombies whose parent is `ppid`.
pub fn zombies_of(ppid: i32) -> Vec<Proc> {
    all()
        .into_iter()
        .filter(|p| p.is_zombie() && p.ppid == ppid)
        .collect()
}

/// The peak resident memory of `pid` (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Polls `done` every 20 ms until it holds or `limit` has passed; whether it held.
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let give_up = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= give_up {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The real `runway` binary, in `dir`, on the store at `url`, its playbooks in `dir`.
pub fn runway(dir: &Path, url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runway"));
    c.args(args)
        .current_dir(dir)
        .env("RUNWAY_DATABASE_URL", url)
        .env("RUNWAY_WORKFLOWS", dir)
        .env("RUNWAY_LOG", "info")
        .stdin(Stdio::null());
    c
}

/// An append-only log file in `dir` for a process' output.
pub fn log(dir: &Path, name: &str) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .with_context(|| format!("open {name}.log"))
}

/// The last `n` lines of `dir/NAME.log`, for failure messages.
pub fn log_tail(dir: &Path, name: &str, n: usize) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// SIGKILL to a child and reap it; false if it had already exited.
pub fn kill9(child: &mut Child) -> bool {
    let alive = child.try_wait().ok().flatten().is_none();
    let _ = child.kill();
    let _ = child.wait();
    alive
}

/// A symlink to `sleep` named `name` in `dir` (a name a zombie keeps, unlike its argv).
pub fn named_sleep(dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    let sleep = ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("no sleep binary")?;
    let link = dir.join(name);
    if !link.exists() {
        std::os::unix::fs::symlink(sleep, &link)?;
    }
    Ok(link)
}
