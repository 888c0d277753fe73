//! `runway verify RUN`: recompute the run's evidence chain.

use super::{db, exit};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    run: String,
}

pub fn verify(args: &VerifyArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        store.run_get(&args.run).await?;
        let events = store.events_of_run(&args.run).await?;
        match crate::store::chain::verify(&events) {
            None => {
                let head = events.last().map_or("(no events)", |e| e.hash.as_str());
                println!(
                    "ok: run {} has {} events, each linked to the one before and matching its content",
                    args.run,
                    events.len()
                );
                println!("chain head: {head}");
                println!(
                    "  (a chain cut short at its end still verifies: compare the head with one recorded elsewhere)"
                );
                Ok(exit::OK)
            }
            Some(seq) => {
                let kind = events
                    .iter()
                    .find(|e| e.seq == seq)
                    .map_or("?", |e| e.kind.as_str());
                println!(
                    "BROKEN: run {}: event {seq} ({kind}) does not match its content or does not link to event {}",
                    args.run,
                    seq - 1
                );
                Ok(exit::FAILED)
            }
        }
    })
}
