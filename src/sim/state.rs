//! The simulated platform's state: `sim.json` in the sim directory. Every process of the sim
//! (the server, each shim invocation, `runway sim fault`) reads it afresh, so they agree.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Error, Fault};

/// The version of the file's shape.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The port the server listens on (127.0.0.1).
    pub port: u16,
    /// The platform's database (the playbooks' `DATABASE_URL` secret); `None` when the sim
    /// was made without one, and then the tenant scripts refuse to run.
    pub database_url: Option<String>,
    /// The `SUPER_ADMIN_TOKEN` that `POST /api/v1/tenant/admin/create` requires.
    pub super_admin_token: String,
    /// The `REDIS_URL` secret. No Redis runs: the `redis-cli` shim answers for it. Its host is
    /// `.invalid`, so a run without the shims on `PATH` fails rather than reach some other Redis.
    pub redis_url: String,
    /// Faults switched on.
    pub faults: BTreeSet<Fault>,
    /// How long the `slow-endpoint` fault delays each response of the platform.
    pub slow_delay_ms: u64,
    /// How long a red flag stays raised after its trigger clears (the seed: 5 minutes).
    pub alert_ttl_secs: u64,
    /// The systemd unit the `systemctl` shim knows (the playbooks' `service_unit` default).
    pub service_unit: String,
    /// The process serving the platform, written by the server itself when it starts.
    pub server_pid: Option<u32>,
    /// Provisioned schools by slug.
    pub tenants: BTreeMap<String, Tenant>,
    /// The simulated git history of the server checkout, oldest first.
    pub releases: Vec<Release>,
    /// The commit checked out (a full sha from `releases`).
    pub head: String,
    /// `FLUSHDB`s the `redis-cli` shim answered.
    pub cache_flushes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub schema: String,
    pub status: TenantStatus,
}

/// Who moves a tenant: `pnpm provision:tenant` makes it active, `pnpm tenant:isolate`
/// isolates it (rollback level 2), `pnpm tenant:reactivate` brings it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Isolated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub sha: String,
    pub tag: Option<String>,
    pub subject: String,
}

impl State {
    pub fn read(path: &Path) -> Result<State, Error> {
        let bytes = std::fs::read(path).map_err(Error::io(path))?;
        let state: State = serde_json::from_slice(&bytes).map_err(Error::State)?;
        if state.version != VERSION {
            return Err(Error::Invalid(format!(
                "{} has version {}, this runway understands {VERSION}; recreate the sim with `runway sim init --force`",
                path.display(),
                state.version
            )));
        }
        Ok(state)
    }

    /// Writes to a temporary file and renames it over `path`. Mode 0600: the file holds the
    /// database URL and the super-admin token.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let tmp = path.with_extension("json.tmp");
        let mut text = serde_json::to_vec_pretty(self).map_err(Error::State)?;
        text.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(Error::io(&tmp))?;
        file.write_all(&text).map_err(Error::io(&tmp))?;
        file.sync_all().map_err(Error::io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(Error::io(path))
    }

    pub fn has(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }

    /// The tenant whose schema is `schema`, with its slug.
    pub fn tenant_by_schema(&self, schema: &str) -> Option<(&str, &Tenant)> {
        self.tenants
            .iter()
            .find(|(_, t)| t.schema == schema)
            .map(|(slug, t)| (slug.as_str(), t))
    }

    /// The release checked out.
    pub fn head_release(&self) -> Option<&Release> {
        self.releases.iter().find(|r| r.sha == self.head)
    }
}
