//! The server checkout's git history, simulated for rollback level 3: `git log -N --oneline`,
//! `git rev-parse --verify REF^{commit}` and `git checkout --detach REF` over the releases in
//! `sim.json`. Refs: a full or abbreviated (4+) sha, a tag, `HEAD`, `HEAD~N`, `HEAD^`.

use sha2::{Digest as _, Sha256};

use super::state::Release;
use super::{Error, Sim, State, code};

/// The history a new sim starts with, oldest first; the last one is checked out (the
/// deployment a level 3 rollback would undo).
pub fn initial_releases() -> Vec<Release> {
    [
        ("v1.4.0", "release v1.4.0: tenant import service"),
        ("v1.4.1", "release v1.4.1: admin onboarding flow"),
        ("v1.4.2", "release v1.4.2: pilot mode guardrails"),
        ("v1.5.0", "release v1.5.0: go-live dashboard and red flags"),
    ]
    .into_iter()
    .map(|(tag, subject)| Release {
        sha: Sha256::digest(subject.as_bytes())
            .iter()
            .take(20)
            .map(|b| format!("{b:02x}"))
            .collect(),
        tag: Some(tag.to_owned()),
        subject: subject.to_owned(),
    })
    .collect()
}

/// The index in `releases` that `reference` names.
fn resolve(state: &State, reference: &str) -> Option<usize> {
    let head = state.releases.iter().position(|r| r.sha == state.head)?;
    let (base, back) = if let Some(n) = reference.strip_prefix("HEAD~") {
        ("HEAD", n.parse::<usize>().ok()?)
    } else if let Some(base) = reference.strip_suffix('^') {
        (base, 1)
    } else {
        (reference, 0)
    };
    let at = if base == "HEAD" || base == "@" {
        head
    } else if let Some(i) = state
        .releases
        .iter()
        .position(|r| r.tag.as_deref() == Some(base))
    {
        i
    } else if base.len() >= 4 && base.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut matches = state
            .releases
            .iter()
            .enumerate()
            .filter(|(_, r)| r.sha.starts_with(base));
        let (i, _) = matches.next()?;
        if matches.next().is_some() {
            return None;
        }
        i
    } else {
        return None;
    };
    at.checked_sub(back)
}

/// `git ARGS...` in the server checkout.
pub fn git(sim: &Sim, args: &[String]) -> Result<u8, Error> {
    let state = sim.load()?;
    let Some((command, rest)) = args.split_first() else {
        eprintln!("usage: git <command> [<args>]");
        return Ok(code::USAGE);
    };
    match command.as_str() {
        "log" => {
            let mut limit = usize::MAX;
            for a in rest {
                if let Some(n) = a.strip_prefix('-').and_then(|n| n.parse().ok()) {
                    limit = n;
                } else if let Some(n) = a.strip_prefix("--max-count=").and_then(|n| n.parse().ok())
                {
                    limit = n;
                }
            }
            let Some(head) = resolve(&state, "HEAD") else {
                eprintln!("fatal: your current branch does not have any commits yet");
                return Ok(128);
            };
            for r in state.releases[..=head].iter().rev().take(limit) {
                let tag = r
                    .tag
                    .as_deref()
                    .map(|t| format!(" (tag: {t})"))
                    .unwrap_or_default();
                println!("{}{tag} {}", &r.sha[..7], r.subject);
            }
            Ok(code::OK)
        }
        "rev-parse" => {
            let Some(reference) = rest.iter().find(|a| !a.starts_with('-')) else {
                eprintln!("fatal: Needed a single revision");
                return Ok(128);
            };
            let reference = reference.strip_suffix("^{commit}").unwrap_or(reference);
            match resolve(&state, reference) {
                Some(i) => {
                    println!("{}", state.releases[i].sha);
                    Ok(code::OK)
                }
                None => {
                    eprintln!("fatal: Needed a single revision");
                    Ok(128)
                }
            }
        }
        "checkout" => {
            let Some(reference) = rest.iter().find(|a| !a.starts_with('-')) else {
                eprintln!("fatal: you must specify a branch or commit to check out");
                return Ok(128);
            };
            let Some(i) = resolve(&state, reference) else {
                eprintln!("error: pathspec '{reference}' did not match any file(s) known to git");
                return Ok(code::FAILED);
            };
            let release = state.releases[i].clone();
            sim.update(|s| s.head = release.sha.clone())?;
            eprintln!("HEAD is now at {} {}", &release.sha[..7], release.subject);
            Ok(code::OK)
        }
        other => {
            eprintln!(
                "runway sim: `git {other}` is not simulated (log, rev-parse and checkout are)"
            );
            Ok(code::FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::init::new_state;

    #[test]
    fn refs_resolve_like_git() {
        let state = new_state(3000, None, "t".into(), Default::default());
        assert_eq!(resolve(&state, "HEAD"), Some(3));
        assert_eq!(resolve(&state, "HEAD~1"), Some(2));
        assert_eq!(resolve(&state, "HEAD^"), Some(2));
        assert_eq!(resolve(&state, "v1.4.0"), Some(0));
        assert_eq!(resolve(&state, &state.releases[1].sha[..7]), Some(1));
        assert_eq!(resolve(&state, "HEAD~9"), None);
        assert_eq!(resolve(&state, "nope"), None);
    }
}
