//! Opening the store the CLI works on, the operator's identity, and the async runtime.

use anyhow::Context as _;

use crate::store::Store;

/// The embedded default: a SQLite file in `.runway/` of the current directory.
pub const DEFAULT_URL: &str = "sqlite://.runway/runway.db";

/// `RUNWAY_DATABASE_URL`, or the embedded SQLite store.
pub fn url() -> String {
    std::env::var("RUNWAY_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Opens (and migrates) the store. The URL is not printed whole: it may hold a password.
pub async fn open() -> anyhow::Result<Store> {
    open_with(crate::store::DEFAULT_CONNECTIONS).await
}

/// [`open`], with at most `connections` connections to Postgres.
pub async fn open_with(connections: u32) -> anyhow::Result<Store> {
    let url = url();
    Store::connect_with(&url, connections)
        .await
        .with_context(|| format!("cannot open the store at {}", redact(&url)))
}

/// `scheme://host/path` without user info.
pub fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***@{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Who is acting: `RUNWAY_OPERATOR`, else the OS user. The one place identity comes from,
/// so API tokens can slot in later.
pub fn operator() -> String {
    ["RUNWAY_OPERATOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .or_else(|| {
            let uid = nix::unistd::getuid();
            nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| format!("uid:{}", nix::unistd::getuid()))
}

/// A multi-threaded runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The operator with their roles (`RUNWAY_OPERATOR_ROLES`, comma-separated), for
/// approvals that name `role:NAME`.
pub fn operator_with_roles() -> crate::engine::human::Operator {
    crate::engine::human::Operator {
        name: operator(),
        roles: std::env::var("RUNWAY_OPERATOR_ROLES")
            .unwrap_or_default()
            .split(',')
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect(),
    }
}
