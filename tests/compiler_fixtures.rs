//! Data-driven compiler tests over YAML fixtures.
//!
//! `fixtures/bad/NAME.yaml` must produce exactly the diagnostics in `NAME.stderr` (rendered
//! as `runway validate` prints them); `fixtures/good/NAME.yaml` must compile with none.
//! After an intended change of messages, regenerate with `RUNWAY_BLESS=1 scripts/test` and
//! read the diff.

use std::fs;
use std::path::{Path, PathBuf};

use runway::compiler::compile_all;
use runway::source::Source;

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", root.display());
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .display()
        .to_string()
}

/// Compiles one fixture file on its own and renders its diagnostics.
fn diagnostics_of(path: &Path) -> String {
    let name = relative(path);
    let bytes = fs::read(path).unwrap();
    match Source::from_bytes(name.clone(), &bytes) {
        Err(d) => d.render(&name, ""),
        Ok(source) => {
            let compiled = compile_all(vec![source], &[]).pop().unwrap();
            compiled
                .diagnostics
                .iter()
                .map(|d| d.render(&name, &compiled.source.text) + "\n")
                .collect()
        }
    }
}

#[test]
fn bad_fixtures_report_exactly_the_expected_diagnostics() {
    let bless = std::env::var_os("RUNWAY_BLESS").is_some();
    let mut failures = Vec::new();
    for path in fixtures("bad") {
        let actual = diagnostics_of(&path);
        let expected_path = path.with_extension("stderr");
        if bless {
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if actual.is_empty() {
            failures.push(format!("{}: compiled without diagnostics", relative(&path)));
        } else if actual != expected {
            failures.push(format!(
                "{}: diagnostics differ\n--- expected ({})\n{expected}\n--- actual\n{actual}",
                relative(&path),
                relative(&expected_path)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn good_fixtures_compile_without_diagnostics() {
    let mut failures = Vec::new();
    for path in fixtures("good") {
        let actual = diagnostics_of(&path);
        if !actual.is_empty() {
            failures.push(format!("{}:\n{actual}", relative(&path)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
