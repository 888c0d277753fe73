//! `runway cancel RUN`: stop the run's running steps, undo what it changed, end it.

use super::{db, exit};
use crate::engine::{Decider, orphans, plan_of_run};
use crate::state::StepStatus;

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
        // A running step whose lease has expired has no worker left to end its processes
        // (and, cancelled, it is never reaped): this command ends them, on this host.
        let now = chrono::Utc::now();
        let abandoned: Vec<_> = store
            .steps_of_run(&run.id)
            .await?
            .into_iter()
            .filter(|s| s.status == StepStatus::Running)
            .filter(|s| s.lease_expires_at.is_some_and(|t| t < now))
            .filter_map(|s| s.lease())
            .collect();
        let run = store
            .run_cancel(
                &run.id,
                &db::operator(),
                &args.reason,
                &Decider { plan: &plan },
            )
            .await?;
        let swept = orphans::sweep_reaped(&abandoned).await;
        if swept > 0 {
            println!("  killed {swept} processes left by steps whose worker had died");
        }
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
