//! `runway cancel RUN`: stop the run's running steps, undo what it changed, end it.

use super::{db, exit};
use crate::engine::{Decider, plan_of_run};

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    run: String,
    /// Recorded in the run's evidence.
    #[arg(long, default_value = "cancelled by an operator")]
    reason: String,
}

pub fn cancel(args: &CancelArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let run = store.run_get(&args.run).await?;
        let plan = plan_of_run(&run, &crate::library::workflows_dir())?;
        let run = store
            .run_cancel(
                &run.id,
                &db::operator(),
                &args.reason,
                &Decider { plan: &plan },
            )
            .await?;
        if run.status.is_terminal() {
            println!("run {} {}", run.id, run.status);
        } else {
            println!(
                "run {} is stopping: its compensations run on the workers (runway status {})",
                run.id, run.id
            );
        }
        Ok(exit::OK)
    })
}

pub fn migrate() -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        println!(
            "{} store at {} is up to date",
            store.backend(),
            db::redact(&db::url())
        );
        store.close().await;
        Ok(exit::OK)
    })
}
