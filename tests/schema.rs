//! `docs/runway.schema.json` is what editors use to complete and check playbooks: every
//! shipped workflow must satisfy it, and it must reject what the compiler rejects for shape.

use std::path::Path;

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runway.schema.json"),
    )
    .unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).expect("a valid JSON Schema")
}

fn as_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    runway::yaml::parse(&text).unwrap().unwrap().to_json()
}

fn playbooks() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = ["workflows", "tests/fixtures/good"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_playbook_satisfies_the_schema() {
    let validator = schema();
    let mut failures = Vec::new();
    for path in playbooks() {
        for error in validator.iter_errors(&as_json(&path)) {
            failures.push(format!(
                "{}: {} at {}",
                path.display(),
                error,
                error.instance_path()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_schema_rejects_unknown_fields_and_a_second_kind() {
    let validator = schema();
    let base = as_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/go-live.yaml"));
    let mut typo = base.clone();
    typo["steps"][0]["neds"] = serde_json::json!([]);
    assert!(
        !validator.is_valid(&typo),
        "a misspelt step field must be flagged"
    );
    let mut two = base.clone();
    two["steps"][0]["noop"] = serde_json::json!({});
    assert!(
        !validator.is_valid(&two),
        "a step with two kinds must be flagged"
    );
    let mut top = base;
    top["titel"] = serde_json::json!("x");
    assert!(
        !validator.is_valid(&top),
        "a misspelt top-level field must be flagged"
    );
}
