//! Hostile and broken input fails fast with a clear, located error: never a panic, a hang,
//! or a stack overflow. (No timing assertions: each case would take seconds or crash if a
//! limit were missing, which fails the test by itself.)

mod common;

use common::{runway_in, scratch, stderr};
use runway::compiler::{Compiled, compile};
use runway::source::Source;

fn compile_text(text: &str) -> Compiled {
    compile(Source::from_bytes("hostile.yaml", text.as_bytes()).expect("text input"))
}

fn first_error(c: &Compiled) -> String {
    c.diagnostics
        .first()
        .map(|d| d.message.clone())
        .unwrap_or_default()
}

#[test]
fn alias_bomb_is_refused() {
    let mut doc = String::from(
        "runway: 1\nname: bomb\nx0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        doc.push_str(&format!(
            "x{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    doc.push_str("steps: *a9\n");
    let c = compile_text(&doc);
    assert_eq!(
        first_error(&c),
        "the document expands to more than 1000000 YAML nodes"
    );
    assert!(c.plan.is_none());
}

#[test]
fn nesting_ten_thousand_deep_is_refused() {
    for doc in [
        format!("steps: {}{}", "[".repeat(10_000), "]".repeat(10_000)),
        format!("steps: {}x{}", "{a: ".repeat(10_000), "}".repeat(10_000)),
    ] {
        let c = compile_text(&doc);
        assert_eq!(first_error(&c), "nesting is deeper than 64 levels");
    }
}

#[test]
fn a_hundred_thousand_steps_are_refused_before_decoding() {
    let mut doc = String::from("runway: 1\nname: huge\nsteps:\n");
    for i in 0..100_000 {
        doc.push_str(&format!("  - {{id: s{i}, noop: {{}}}}\n"));
    }
    let c = compile_text(&doc);
    assert_eq!(
        first_error(&c),
        "the playbook has 100000 steps; the limit is 20000"
    );
}

#[test]
fn invalid_utf8_empty_and_binary_files_are_located_errors() {
    let bad = Source::from_bytes("f", b"runway: 1\nname: \xc3\x28\n").unwrap_err();
    assert_eq!(
        (bad.message.as_str(), bad.location.line, bad.location.column),
        ("file is not valid UTF-8", 2, 7)
    );
    assert_eq!(
        Source::from_bytes("f", b"").unwrap_err().message,
        "file is empty"
    );
    let elf = Source::from_bytes("f", b"\x7fELF\x02\x01\x01\x00\x00\x00").unwrap_err();
    assert_eq!(
        elf.message,
        "this is a binary file (it contains a NUL byte), not a YAML playbook"
    );
}

#[test]
fn the_cli_refuses_a_50_mb_file_without_reading_it_all() {
    let dir = scratch("huge-file");
    let line = "# padding padding padding padding padding padding padding padding\n";
    let big = line.repeat(50 * 1024 * 1024 / line.len() + 1);
    std::fs::write(dir.join("big.yaml"), big).unwrap();
    std::fs::write(dir.join("empty.yaml"), "").unwrap();
    std::fs::write(dir.join("binary.yaml"), b"\x00\x01\x02").unwrap();
    let out = runway_in(&dir, &["validate", "big.yaml", "empty.yaml", "binary.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("error: file is 50.0 MiB; a playbook may be at most 4 MiB"),
        "{err}"
    );
    assert!(err.contains("error: file is empty"), "{err}");
    assert!(err.contains("error: this is a binary file"), "{err}");
}

#[test]
fn huge_and_deep_conditions_are_refused() {
    let long = format!(
        "runway: 1\nname: c\nsteps:\n  - id: a\n    when: '{}'\n    noop: {{}}\n",
        "true && ".repeat(20_000) + "true"
    );
    assert!(
        first_error(&compile_text(&long)).contains("limit is 1024"),
        "{}",
        first_error(&compile_text(&long))
    );
    let deep = format!(
        "runway: 1\nname: c\nsteps:\n  - id: a\n    when: '{}true{}'\n    noop: {{}}\n",
        "(".repeat(500),
        ")".repeat(500)
    );
    assert!(
        first_error(&compile_text(&deep)).contains("nesting deeper than 32"),
        "{}",
        first_error(&compile_text(&deep))
    );
}

#[test]
fn a_regex_that_would_explode_is_refused() {
    let doc = "runway: 1\nname: r\nparams:\n  p: { pattern: '(((a{100}){100}){100})' }\nsteps:\n  - id: a\n    noop: {}\n";
    assert!(
        first_error(&compile_text(doc)).starts_with("invalid regular expression"),
        "{}",
        first_error(&compile_text(doc))
    );
}

#[test]
fn many_documents_and_non_mapping_roots_are_refused() {
    assert_eq!(
        first_error(&compile_text("runway: 1\n---\nrunway: 1\n")),
        "a playbook file holds one YAML document, this is a second one"
    );
    assert_eq!(
        first_error(&compile_text("just a string")),
        "expected the playbook (a mapping of fields), found a string"
    );
}
