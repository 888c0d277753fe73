//! Compile a generated 10,000-step playbook; print wall time and peak memory.
//!
//! `cargo bench --bench compile` (release profile). Goal: under 100 ms and under 50 MB peak
//! resident memory on the project machine (2 cores). Prints a table and one JSON line.

use std::time::Instant;

use runway::compiler::compile;
use runway::source::Source;

/// A realistic large playbook: every 10th step joins two branches, steps use params,
/// secrets and the outputs of earlier steps, and every 50th is a gate over the last checks.
fn generate(steps: usize) -> String {
    let mut s = String::from(
        "runway: 1\nname: generated\nparams:\n  slug: { type: string, default: greenwood-high }\n  base_url: { type: url, default: 'http://127.0.0.1:3000' }\nsecrets: [TOKEN]\nsteps:\n",
    );
    for i in 0..steps {
        s.push_str(&format!("  - id: s{i}\n"));
        if i % 50 == 49 {
            s.push_str(&format!(
                "    needs: [s{}, s{}]\n    gate: {{}}\n",
                i - 1,
                i - 2
            ));
            continue;
        }
        if i % 10 == 0 && i > 0 {
            s.push_str(&format!("    needs: [s{}, s{}]\n", i - 5, i - 1));
        }
        match i % 3 {
            0 => s.push_str("    shell: { argv: [pnpm, check, '{{params.slug}}'], env: { TOKEN: '{{secrets.TOKEN}}' } }\n    mutates: false\n"),
            1 => s.push_str("    http: { url: '{{params.base_url}}/health/golive' }\n    expect: outputs.json.overall != \"RED\" && outputs.status == 200\n"),
            _ => s.push_str(&format!(
                "    shell: {{ argv: [echo, '{{{{steps.s{}.outputs.json.overall}}}}'] }}\n    when: steps.s{}.status == \"succeeded\"\n    mutates: false\n",
                i - 1,
                i - 1
            )),
        }
    }
    s
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let steps = 10_000;
    let text = generate(steps);
    let before = peak_rss_kib().unwrap_or(0);
    let mut times = Vec::new();
    for _ in 0..15 {
        let source = Source::from_bytes("generated.yaml", text.as_bytes()).expect("valid text");
        let start = Instant::now();
        let compiled = compile(source);
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(
            compiled.plan.is_some(),
            "{:?}",
            compiled.diagnostics.first()
        );
    }
    times.sort_by(f64::total_cmp);
    let peak = peak_rss_kib().unwrap_or(0);
    let (min, median, max) = (times[0], times[times.len() / 2], times[times.len() - 1]);
    println!(
        "compile {steps}-step playbook ({} KiB of YAML), 15 runs",
        text.len() / 1024
    );
    println!("  min     {min:8.1} ms");
    println!("  median  {median:8.1} ms   (goal < 100 ms)");
    println!("  max     {max:8.1} ms");
    println!(
        "  peak RSS {:6.1} MiB   (goal < 50 MiB; {:.1} MiB before compiling)",
        peak as f64 / 1024.0,
        before as f64 / 1024.0
    );
    println!(
        "{{\"bench\":\"compile\",\"steps\":{steps},\"yaml_bytes\":{},\"min_ms\":{min:.2},\"median_ms\":{median:.2},\"max_ms\":{max:.2},\"peak_rss_mib\":{:.1}}}",
        text.len(),
        peak as f64 / 1024.0
    );
}
