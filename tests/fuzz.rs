//! Property-based fuzzing of the compiler: random bytes and mutated real playbooks must
//! never panic, and whatever compiles must render as a plan. `PROPTEST_CASES` sets the
//! number of cases (256 by default here; run with more for a long session).

use proptest::prelude::*;
use runway::compiler::compile_all;
use runway::plan::{Format, render};
use runway::source::Source;

fn workflows() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let mut texts: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    texts.sort();
    texts
}

/// Compiles, and renders every plan that comes out in every format with its defaults.
fn exercise(bytes: &[u8]) {
    let Ok(source) = Source::from_bytes("fuzz.yaml", bytes) else {
        return;
    };
    let compiled = compile_all(vec![source], &[]).pop().unwrap();
    for d in &compiled.diagnostics {
        let _ = d.render("fuzz.yaml", &compiled.source.text);
    }
    if let Some(plan) = compiled.plan {
        let given: Vec<(String, String)> = Vec::new();
        if let Ok(params) = runway::plan::bind_params(&plan.playbook.params, &given) {
            for format in [Format::Text, Format::Json, Format::Dot, Format::Mermaid] {
                let _ = render(&plan, &params, format);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{{".to_owned()),
        Just("}}".to_owned()),
        Just(": ".to_owned()),
        Just("\n  - ".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("needs: [".to_owned()),
        Just("steps.".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("\t".to_owned()),
        Just("&&".to_owned()),
        "[a-z_.{}\\[\\]:#&*!|>-]{1,12}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), token()).prop_map(|(at, text)| Edit::Insert { at, text }),
        any::<usize>().prop_map(|line| Edit::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines { a, b }),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let floor = |s: &str, i: usize| {
        let mut i = i % (s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match edit {
        Edit::Delete { at, len } => {
            let a = floor(text, *at);
            let b = floor(text, a + len);
            format!("{}{}", &text[..a], &text[b.max(a)..])
        }
        Edit::Insert { at, text: t } => {
            let a = floor(text, *at);
            format!("{}{t}{}", &text[..a], &text[a..])
        }
        Edit::DuplicateLine { line } => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let i = line % lines.len();
                lines.insert(i, lines[i]);
            }
            lines.join("\n")
        }
        Edit::SwapLines { a, b } => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let n = lines.len();
                lines.swap(a % n, b % n);
            }
            lines.join("\n")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_workflows_never_panic(which in any::<usize>(), edits in proptest::collection::vec(edit(), 1..8)) {
        let all = workflows();
        let mut text = all[which % all.len()].clone();
        for e in &edits {
            text = apply(&text, e);
        }
        exercise(text.as_bytes());
    }
}
