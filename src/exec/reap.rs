//! Making sure nothing of an attempt outlives it: signals to the attempt's process group, and
//! a sweep of `/proc` for processes that left the group but still carry the attempt's token.

use std::fs::File;
use std::io::Read;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The name of the environment variable that marks every process of one attempt.
pub(crate) const TOKEN_VAR: &str = "RUNWAY_ATTEMPT_TOKEN";

/// A fresh token: 128 random bits in hex, so concurrent attempts on one host never share one.
pub(crate) fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Sends `signal` to every process in the group. A group that is already empty is fine.
pub(crate) fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid = pgid.as_raw(), ?signal, error = %e, "could not signal the step's process group")
        }
    }
}

/// Whether any process (zombies included) is still in the group.
pub(crate) fn group_exists(pgid: Pid) -> bool {
    !matches!(killpg(pgid, None), Err(Errno::ESRCH))
}

/// SIGKILLs every process whose environment carries `TOKEN_VAR=token`, scanning again until a
/// scan finds none, since a process may fork between a scan and its kill. Returns how many
/// processes were killed. Blocking: it reads `/proc` and sleeps between rounds.
pub(crate) fn sweep(token: &str) -> usize {
    // Each round kills everything it sees, so only children forked during the previous
    // round remain; a handful of rounds ends even a fork loop.
    const ROUNDS: usize = 50;
    const PAUSE: Duration = Duration::from_millis(20);
    let needle = format!("{TOKEN_VAR}={token}\0").into_bytes();
    // A process killed in one round may still be exiting in the next: count pids once.
    let mut killed = std::collections::HashSet::new();
    for _ in 0..ROUNDS {
        let carriers = carriers_of(&needle);
        if carriers.is_empty() {
            return killed.len();
        }
        for pid in carriers {
            match kill(pid, Signal::SIGKILL) {
                Ok(()) => {
                    killed.insert(pid);
                }
                Err(Errno::ESRCH) => {}
                Err(e) => {
                    tracing::warn!(pid = pid.as_raw(), error = %e, "could not kill a process of the step");
                }
            }
        }
        std::thread::sleep(PAUSE);
    }
    tracing::warn!(
        rounds = ROUNDS,
        "processes of the step were still appearing after every kill round"
    );
    killed.len()
}

/// Live processes whose environment contains `needle`. Zombies have no environment left, so
/// they are not listed: they are dead already, and only their parent can reap them.
pub(crate) fn carriers_of(needle: &[u8]) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        tracing::warn!("cannot read /proc: processes that left the step's group cannot be found");
        return Vec::new();
    };
    let me = std::process::id();
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| environ_contains(*pid, needle))
        .filter_map(|pid| i32::try_from(pid).ok().map(Pid::from_raw))
        .collect()
}

/// Streams `/proc/PID/environ` looking for `needle`, so a huge environment is not read into
/// memory at once. Unreadable entries (gone, another user's) count as not matching.
fn environ_contains(pid: u32, needle: &[u8]) -> bool {
    const CHUNK: usize = 16 * 1024;
    let Ok(mut file) = File::open(format!("/proc/{pid}/environ")) else {
        return false;
    };
    // The buffer keeps the last `needle.len() - 1` bytes of the previous read in front of the
    // new ones, so a match across two reads is still seen.
    let carry = needle.len().saturating_sub(1);
    let mut buf = vec![0u8; carry + CHUNK];
    let mut held = 0;
    let mut at_start = true;
    loop {
        let n = match file.read(&mut buf[held..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let filled = held + n;
        if matches_entry(&buf[..filled], needle, at_start) {
            return true;
        }
        at_start = false;
        let keep = carry.min(filled);
        buf.copy_within(filled - keep..filled, 0);
        held = keep;
    }
}

/// Whether `needle` (`NAME=value\0`) appears as a whole entry: at the start of the
/// environment or right after the NUL that ends the previous entry.
fn matches_entry(haystack: &[u8], needle: &[u8], at_start: bool) -> bool {
    haystack.windows(needle.len()).enumerate().any(|(i, w)| {
        w == needle
            && if i == 0 {
                at_start
            } else {
                haystack[i - 1] == 0
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `done`, failing the test if it is still false after a generous bound.
    fn wait_until(mut done: impl FnMut() -> bool) {
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(
                std::time::Instant::now() < give_up,
                "condition never became true"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn tokens_are_distinct_hex() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn only_whole_entries_match() {
        let needle = b"T=abc\0";
        assert!(matches_entry(b"T=abc\0X=1\0", needle, true));
        assert!(matches_entry(b"X=1\0T=abc\0", needle, true));
        assert!(!matches_entry(b"XT=abc\0", needle, true));
        assert!(!matches_entry(b"T=abcd\0", needle, true));
        assert!(!matches_entry(b"T=abc\0", needle, false));
    }

    #[test]
    fn a_process_carrying_the_token_is_found_and_killed() {
        let token = new_token().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .env(TOKEN_VAR, &token)
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        // Between fork and exec the child still shows this process's environment, which
        // has no token: poll until the exec happened.
        let needle = format!("{TOKEN_VAR}={token}\0").into_bytes();
        wait_until(|| carriers_of(&needle).contains(&pid));
        assert_eq!(sweep(&token), 1);
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(carriers_of(&needle).is_empty());
    }

    #[test]
    fn a_long_environment_is_matched_across_reads() {
        let token = new_token().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .env("A_PADDING", "p".repeat(40_000))
            .env(TOKEN_VAR, &token)
            .env("Z_PADDING", "p".repeat(40_000))
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        let needle = format!("{TOKEN_VAR}={token}\0").into_bytes();
        wait_until(|| carriers_of(&needle).contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
