//! `runway report RUN --format md|html|json [-o FILE]`: a run's evidence report.

use std::path::PathBuf;

use super::{db, exit};
use crate::report::{self, Format};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    run: String,
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
    /// Write the report to FILE (its directory is created) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn report(args: &ReportArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let evidence = store.evidence_of_run(&args.run).await?;
        let report = report::report(&evidence, chrono::Utc::now());
        let text = report::render(&report, args.format)?;
        match &args.output {
            Some(path) => {
                report::write_file(path, &text)?;
                eprintln!(
                    "wrote {} ({} bytes)",
                    path.display(),
                    text.len()
                );
            }
            None => print!("{text}"),
        }
        let chain = &report.summary.chain;
        eprintln!(
            "chain head: event {} {}",
            chain.head_seq.unwrap_or(0),
            chain.head_hash.as_deref().unwrap_or("(none)")
        );
        if !chain.intact || !report.store.problems.is_empty() {
            eprintln!(
                "warning: the evidence of run {} does not verify; see the report or run `runway verify {}`",
                args.run, args.run
            );
            return Ok(exit::FAILED);
        }
        Ok(exit::OK)
    })
}
