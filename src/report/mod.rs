//! Evidence reports: what ran, when, with which inputs, who decided what, what each check
//! returned, and the chain head that seals it; and verifying exported reports.
//!
//! Reading is separate from rendering. The CLI reads a run's [`Evidence`] from the store in
//! one snapshot; [`report`] turns it into a [`Report`] without I/O: [`build::summarize`]
//! derives the summary from the sealed record (the pinned definition and the hash-chained
//! events), and [`check`] compares the chain with the store's rows and recorded head.
//! [`render`] writes the report as Markdown, HTML (one self-contained file with the run's
//! DAG as inline SVG, [`dag`]) or the JSON export, which carries the whole chain so that
//! [`verify`] can check it offline.
//!
//! Secrets never reach a report: events and outputs are masked before they are stored, the
//! definition names secrets without values, and templates in titles render secrets as
//! `***`.

pub mod build;
pub mod check;
pub mod dag;
pub mod model;
pub mod render;
pub mod verify;

pub use model::{FORMAT, Report};
pub use render::{Format, RenderError, render};

use crate::store::Evidence;

/// The report of a run as `evidence` shows it; `read_at` says when the store was read.
pub fn report(evidence: &Evidence, read_at: chrono::DateTime<chrono::Utc>) -> Report {
    let mut store = check::store_facts(evidence, build::stamp(read_at));
    let summary = build::summarize(&evidence.run.definition, &evidence.events, &store);
    store.problems = check::compare(evidence, &summary);
    Report {
        format: FORMAT.to_owned(),
        summary,
        store,
        definition: evidence.run.definition.clone(),
        events: evidence.events.clone(),
    }
}

/// Writes `text` to `path` whole or not at all: into a temporary file beside it, then
/// renamed over it, so a reader never sees half a report. The directory is created.
pub fn write_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    // A temporary file is private (0600); a report is meant to be read like any document.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
