//! An attempt's private directory (the `RUNWAY_OUTPUT` and `RUNWAY_CHECKPOINT` files and the
//! script) and the environment the step starts with.

use std::ffi::OsString;
use std::fs::{OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Worker variables a step may see. Everything else the worker holds (its database URL,
/// tokens, cloud credentials) stays out of the step's environment.
pub(crate) const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "TMPDIR"];

/// The `PATH` a step gets when the worker has none, so `argv: [tar, ...]` still resolves.
const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The attempt's directory; removed (with everything the step left in it) on drop.
#[derive(Debug)]
pub(crate) struct Workspace {
    _dir: TempDir,
    pub(crate) output: PathBuf,
    pub(crate) checkpoint: PathBuf,
    /// The script file; it exists only when the step is a script.
    pub(crate) script: PathBuf,
}

impl Workspace {
    /// Creates the directory (0700) and its files (0600). Blocking.
    pub(crate) fn create(script: Option<&str>, checkpoint: Option<&[u8]>) -> io::Result<Workspace> {
        // A random name claimed atomically, mode 0700 (tempfile's default follows the umask,
        // usually 0755): no other user can read the files or plant their own in advance.
        let dir = tempfile::Builder::new()
            .prefix("runway-step-")
            .permissions(Permissions::from_mode(0o700))
            .tempdir()?;
        let output = dir.path().join("output");
        let checkpoint_path = dir.path().join("checkpoint");
        write_private(&output, b"")?;
        write_private(&checkpoint_path, checkpoint.unwrap_or_default())?;
        let script_path = dir.path().join("script.sh");
        if let Some(body) = script {
            write_private(&script_path, body.as_bytes())?;
        }
        Ok(Workspace {
            _dir: dir,
            output,
            checkpoint: checkpoint_path,
            script: script_path,
        })
    }
}

fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// The allow-listed variables of the worker, in the order the child gets them.
pub(crate) fn inherited() -> Vec<(OsString, OsString)> {
    let mut vars: Vec<(OsString, OsString)> = INHERITED
        .iter()
        .filter_map(|name| Some((OsString::from(name), std::env::var_os(name)?)))
        .collect();
    if !vars.iter().any(|(name, _)| name == "PATH") {
        vars.push(("PATH".into(), FALLBACK_PATH.into()));
    }
    vars
}

/// Whether `name` can be an environment variable name at all (`execve` takes `NAME=value`).
pub(crate) fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_directory_and_files_are_private() {
        let ws = Workspace::create(Some("echo hi"), Some(b"batch=3")).unwrap();
        let dir = ws.output.parent().unwrap().to_owned();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&ws.output), 0o600);
        assert_eq!(mode(&ws.checkpoint), 0o600);
        let script = ws.script.clone();
        assert_eq!(mode(&script), 0o600);
        assert_eq!(std::fs::read(&ws.checkpoint).unwrap(), b"batch=3");
        assert_eq!(std::fs::read(&ws.output).unwrap(), b"");
        assert_eq!(std::fs::read_to_string(&script).unwrap(), "echo hi");
        drop(ws);
        assert!(!dir.exists());
    }

    #[test]
    fn env_names_with_equals_or_nul_are_rejected() {
        assert!(valid_env_name("DATABASE_URL"));
        assert!(!valid_env_name(""));
        assert!(!valid_env_name("A=B"));
        assert!(!valid_env_name("A\0"));
    }
}
