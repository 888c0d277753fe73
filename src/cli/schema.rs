//! `runway schema`: the JSON Schema of the playbook format, from the Rust types.

use super::exit;
use crate::playbook::Playbook;

/// The schema as pretty JSON with a trailing newline (the form committed in
/// `docs/runway.schema.json`).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Playbook);
    format!(
        "{}\n",
        serde_json::to_string_pretty(&schema).expect("a schema is plain JSON")
    )
}

pub fn run() -> anyhow::Result<u8> {
    print!("{}", schema_json());
    Ok(exit::OK)
}
