//! Helpers for black-box tests that run the real `runway` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The real binary, run from the repository root with a clean playbook environment.
pub fn runway(args: &[&str]) -> Output {
    runway_in(repo(), args)
}

pub fn runway_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runway"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUNWAY_WORKFLOWS")
        .env_remove("RUNWAY_LOG")
        .output()
        .expect("the runway binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh directory under the target dir, removed and recreated.
pub fn scratch(name: &str) -> PathBuf {
    let dir = repo().join("target").join("test-scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
