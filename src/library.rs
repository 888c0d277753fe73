//! The playbook library on disk: finding playbook files by path or by name in the
//! workflows directory (`RUNWAY_WORKFLOWS`, default `workflows/`), and reading them as
//! sources. The CLI uses it for the files it is given; the engine uses it to load the
//! playbooks that `invoke` names. Only this module and `cli` read playbook files.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::source::{MAX_FILE_BYTES, Source};

/// Where playbooks are found by name, and loaded for `invoke` checks.
pub fn workflows_dir() -> PathBuf {
    std::env::var_os("RUNWAY_WORKFLOWS").map_or_else(|| PathBuf::from("workflows"), PathBuf::from)
}

/// The playbook files under `path`: the file itself, or the `.yaml`/`.yml` files of a
/// directory (not recursive), sorted.
pub fn expand(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = fs::read_dir(path)
        .with_context(|| format!("cannot list `{}`", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads a file as a playbook source; an unusable file becomes a located diagnostic, not an
/// I/O error. Reads at most one byte past the size limit, so a huge file costs nothing.
pub fn read(path: &Path) -> anyhow::Result<Result<Source, crate::diagnostic::Diagnostic>> {
    let file = fs::File::open(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    if bytes.len() > MAX_FILE_BYTES {
        let size = fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        bytes.resize(size.min(usize::MAX as u64) as usize, 0);
    }
    Ok(Source::from_bytes(path.display().to_string(), &bytes))
}

/// The playbooks in the workflows directory other than `except`, to resolve `invoke`.
pub fn references(except: &[PathBuf]) -> Vec<Source> {
    references_in(&workflows_dir(), except)
}

/// The playbooks in `dir` other than `except`.
pub fn references_in(dir: &Path, except: &[PathBuf]) -> Vec<Source> {
    let Ok(files) = expand(dir) else {
        return Vec::new();
    };
    let except: Vec<PathBuf> = except
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    files
        .into_iter()
        .filter(|f| f.canonicalize().map_or(true, |c| !except.contains(&c)))
        .filter_map(|f| read(&f).ok()?.ok())
        .collect()
}

/// Resolves `FILE|NAME`: an existing path, or a playbook name in the workflows directory.
pub fn resolve(target: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(target);
    if path.exists() {
        return Ok(path.to_owned());
    }
    resolve_in(&workflows_dir(), target)
}

/// Finds the playbook named `target` in `dir` (by file name, then by `name:`).
pub fn resolve_in(dir: &Path, target: &str) -> anyhow::Result<PathBuf> {
    for candidate in [
        dir.join(format!("{target}.yaml")),
        dir.join(format!("{target}.yml")),
    ] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if let Ok(files) = expand(dir) {
        for f in files {
            if let Ok(Ok(source)) = read(&f)
                && let Some(p) = crate::compiler::decode(&source, &mut Default::default())
                && p.name.value == target
            {
                return Ok(f);
            }
        }
    }
    bail!(
        "no playbook file or name `{target}` (looked in `{}`; set RUNWAY_WORKFLOWS to search elsewhere)",
        dir.display()
    )
}
