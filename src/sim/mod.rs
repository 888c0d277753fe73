//! The bundled simulated target: the school platform of seed 000 (the first-school go-live
//! report), so that the shipped go-live, health-check and rollback playbooks run with no other
//! set-up, and switches that inject the faults those playbooks exist to catch.
//!
//! A sim lives in one directory, made by [`init`]:
//!
//! ```text
//! DIR/sim.json          the platform's state (port, faults, tenants, releases, server pid)
//! DIR/sim.lock          serializes read-modify-write of sim.json across processes
//! DIR/bin/              shims: pnpm, redis-cli, systemctl, git -> `runway sim exec --dir DIR ...`
//! DIR/server/           the `server_dir` param: .env, import/*.csv, logs/, package.json, docs/
//! DIR/backups/          the `backup_dir` param: a nightly `*.dump` made by the real pg_dump
//! DIR/webhook.log       every notification the sim's /webhook received, one JSON line each
//! DIR/mail.log          the sim's outbox: temporary admin passwords go here, out of band
//! ```
//!
//! The server ([`server`]) and every shim invocation ([`commands`]) are separate processes;
//! they agree through `sim.json`, read afresh for every request and command, so a fault
//! switched with `runway sim fault` takes effect mid-run. The tenant data is real: the
//! `sql` steps of the playbooks query a real PostgreSQL, so [`tenant`] provisions real
//! schemas in the database given at `init`.
//!
//! The sim's commands are programs in their own right (a simulated `pnpm tenant:preflight`
//! prints its table and exits 1 when activation is blocked): they write to stdout and
//! stderr themselves, as the programs they stand for do.
//!
//! Architecture invariant: nothing outside `sim` and `cli::sim` uses this module; the engine
//! does not know a sim exists, and the sim knows nothing of runs or stores.

mod commands;
mod dotenv;
mod faults;
mod git;
mod golive_check;
mod health;
mod http;
mod import;
mod init;
mod load;
mod samples;
mod server;
mod service;
mod state;
mod tenant;
mod usage;

use std::path::{Path, PathBuf};

pub use commands::exec;
pub use faults::Fault;
pub use init::{Environment, InitOptions, Initialized, init};
pub use server::serve;
pub use service::stop;
pub use state::State;

/// Everything that can go wrong in the sim. Messages are for the operator: they say what
/// to do, and never print a database URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a sim directory (it has no sim.json); create one with `runway sim init {}`", .0.display(), .0.display())]
    NotASim(PathBuf),
    #[error("sim.json is not valid: {0}")]
    State(serde_json::Error),
    #[error(
        "this sim has no PostgreSQL database: the playbooks' sql steps and the tenant scripts need one; \
         recreate it with `runway sim init DIR --force --database-url postgres://USER@HOST:PORT/DB`"
    )]
    NoDatabase,
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// Exit codes of the simulated programs, as their real counterparts use them.
mod code {
    pub const OK: u8 = 0;
    /// A check failed, activation or go-live is blocked, a command failed.
    pub const FAILED: u8 = 1;
    /// Bad arguments.
    pub const USAGE: u8 = 2;
}

/// A sim directory: where each part of the simulated platform lives.
#[derive(Debug, Clone)]
pub struct Sim {
    dir: PathBuf,
}

impl Sim {
    /// Opens an existing sim directory (one holding `sim.json`).
    pub fn open(dir: &Path) -> Result<Sim, Error> {
        let dir = std::fs::canonicalize(dir).map_err(|_| Error::NotASim(dir.to_owned()))?;
        let sim = Sim { dir };
        if !sim.state_file().is_file() {
            return Err(Error::NotASim(sim.dir));
        }
        Ok(sim)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.join("sim.json")
    }

    fn lock_file(&self) -> PathBuf {
        self.dir.join("sim.lock")
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// The `server_dir` param of the playbooks.
    pub fn server_dir(&self) -> PathBuf {
        self.dir.join("server")
    }

    /// The `backup_dir` param of the playbooks.
    pub fn backup_dir(&self) -> PathBuf {
        self.dir.join("backups")
    }

    pub fn env_file(&self) -> PathBuf {
        self.server_dir().join(".env")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.server_dir().join("logs")
    }

    pub fn webhook_log(&self) -> PathBuf {
        self.dir.join("webhook.log")
    }

    pub fn mail_log(&self) -> PathBuf {
        self.dir.join("mail.log")
    }

    /// Reads `sim.json`.
    pub fn load(&self) -> Result<State, Error> {
        State::read(&self.state_file())
    }

    /// Read-modify-write of `sim.json` under an exclusive lock, written atomically (a reader
    /// sees the old or the new file, never half of one).
    pub fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> Result<T, Error> {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.lock_file())
            .map_err(Error::io(self.lock_file()))?;
        lock.lock().map_err(Error::io(self.lock_file()))?;
        let mut state = self.load()?;
        let out = change(&mut state);
        state.write(&self.state_file())?;
        drop(lock);
        Ok(out)
    }
}
