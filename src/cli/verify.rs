//! `runway verify RUN|FILE.json`: recompute a run's evidence chain, in the store or in an
//! exported report, and compare the two when both are at hand.

use std::path::Path;

use anyhow::Context as _;

use super::{db, exit};
use crate::report::{self, verify as file};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// A run id, or a JSON export (`runway report RUN --format json -o FILE.json`).
    #[arg(value_name = "RUN|FILE.json")]
    target: String,
    /// With a file: check only what the file itself proves, without the store.
    #[arg(long)]
    offline: bool,
}

pub fn verify(args: &VerifyArgs) -> anyhow::Result<u8> {
    let path = Path::new(&args.target);
    if path.is_file() || args.target.ends_with(".json") {
        verify_file(path, args.offline)
    } else {
        verify_run(&args.target)
    }
}

fn verify_run(run_id: &str) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let evidence = store.evidence_of_run(run_id).await?;
        let report = report::report(&evidence, chrono::Utc::now());
        let chain = &report.summary.chain;
        let mut problems = Vec::new();
        if let Some(seq) = chain.first_bad {
            problems.push(file::broken(&evidence.events, seq));
        }
        problems.extend(report.store.problems.iter().cloned());
        if problems.is_empty() {
            println!(
                "ok: run {run_id} has {} events, each linked to the one before and matching its content",
                chain.events
            );
            println!(
                "chain head: event {} {}",
                chain.head_seq.unwrap_or(0),
                chain.head_hash.as_deref().unwrap_or("(none)")
            );
            println!(
                "  the database recorded the same head, and the run's and its steps' rows agree with the chain"
            );
            return Ok(exit::OK);
        }
        println!("BROKEN: run {run_id}: {}", problems[0]);
        for p in &problems[1..] {
            println!("  also: {p}");
        }
        Ok(exit::FAILED)
    })
}

fn verify_file(path: &Path, offline: bool) -> anyhow::Result<u8> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read `{}`: {e}", path.display());
            return Ok(exit::INVALID);
        }
    };
    let export = match file::parse(&text) {
        Ok(export) => export,
        Err(e) => {
            eprintln!("error: `{}` is {e}", path.display());
            eprintln!("  = help: export one with `runway report RUN --format json -o FILE.json`");
            return Ok(exit::INVALID);
        }
    };
    let verdict = file::offline(&export);
    let name = path.display();
    let mut ok = verdict.problems.is_empty();
    if ok {
        println!(
            "ok: {name} holds run {}: {} events, each linked to the one before and matching its content; its definition matches its content hash and its summary is what its events say",
            verdict.run_id, verdict.events
        );
    } else {
        println!(
            "BROKEN: {name} (run {}): {}",
            verdict.run_id, verdict.problems[0]
        );
        for p in &verdict.problems[1..] {
            println!("  also: {p}");
        }
    }
    if let Some((seq, hash)) = &verdict.head {
        println!("chain head: event {seq} {hash}");
    }
    let configured = std::env::var_os("RUNWAY_DATABASE_URL").is_some();
    let default_exists = Path::new(".runway/runway.db").is_file();
    if offline || !(configured || default_exists) {
        println!(
            "  not compared with a store: whoever can edit the file can also rewrite its whole chain consistently, so compare this head with the store's (set RUNWAY_DATABASE_URL) or with one recorded when the run ended"
        );
        return Ok(if ok { exit::OK } else { exit::FAILED });
    }
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        match store.evidence_of_run(&verdict.run_id).await {
            Ok(stored) => {
                let (agrees, sentence) = file::against_store(&export, &stored);
                println!("store: {sentence}");
                ok &= agrees;
            }
            Err(crate::store::Error::RunNotFound(_)) => {
                println!(
                    "store: run {} is not in this store ({}), so the head was not compared",
                    verdict.run_id,
                    db::redact(&db::url())
                );
            }
            Err(e) => return Err(e).context("cannot read the run from the store"),
        }
        Ok(if ok { exit::OK } else { exit::FAILED })
    })
}
