//! Reading runs: `runway status RUN`, `runway runs`, `runway logs RUN [STEP]`.

use super::{db, exit};
use crate::state::RunStatus;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    run: String,
    /// `text` or `json`.
    #[arg(long, default_value = "text")]
    format: String,
}

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Only runs in this status (queued, running, waiting, succeeded, failed, cancelled).
    #[arg(long)]
    status: Option<RunStatus>,
    /// Only failed runs (same as `--status failed`).
    #[arg(long, conflicts_with = "status")]
    failed: bool,
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    run: String,
    /// Only this step's events.
    step: Option<String>,
}

pub fn status(args: &StatusArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let run = store.run_get(&args.run).await?;
        let steps = store.steps_of_run(&args.run).await?;
        if args.format == "json" {
            let steps: Vec<_> = steps
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "step_id": s.step_id, "list": s.list.as_str(), "status": s.status.as_str(),
                        "attempt": s.attempt, "max_attempts": s.max_attempts, "error": s.error,
                        "outputs": s.outputs,
                        "started_at": s.started_at.map(|t| t.to_rfc3339()),
                        "finished_at": s.finished_at.map(|t| t.to_rfc3339()),
                    })
                })
                .collect();
            let out = serde_json::json!({
                "id": run.id, "playbook": run.playbook, "status": run.status.as_str(),
                "content_hash": run.content_hash, "params": run.params, "starter": run.starter,
                "trigger": run.trigger, "lock_key": run.lock_key, "error": run.error,
                "parent_run_id": run.parent_run_id,
                "created_at": run.created_at.to_rfc3339(),
                "finished_at": run.finished_at.map(|t| t.to_rfc3339()),
                "steps": steps,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(exit::OK);
        }
        println!("run       {}", run.id);
        println!("playbook  {} ({})", run.playbook, run.content_hash);
        println!("status    {}", run.status);
        println!(
            "started   by {} ({}) at {}",
            run.starter,
            run.trigger,
            run.created_at.to_rfc3339()
        );
        if let Some(e) = &run.error {
            println!("error     {e}");
        }
        if let Some(p) = &run.parent_run_id {
            println!("parent    {p}");
        }
        println!();
        for s in &steps {
            println!(
                "  {:<32} {:<10} {:>2}/{:<2} {}",
                s.step_id,
                s.status.as_str(),
                s.attempt,
                s.max_attempts,
                s.error
                    .as_deref()
                    .and_then(|e| e.lines().next())
                    .unwrap_or("")
            );
        }
        Ok(exit::OK)
    })
}

pub fn runs(args: &RunsArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let status = if args.failed {
            Some(RunStatus::Failed)
        } else {
            args.status
        };
        for r in store.runs_list(status, args.limit).await? {
            println!(
                "{}  {:<10} {:<24} {}  {:<24} {}",
                r.id,
                r.status.as_str(),
                r.playbook,
                r.created_at.format("%Y-%m-%d %H:%M:%S"),
                r.trigger,
                r.error.as_deref().unwrap_or("")
            );
        }
        Ok(exit::OK)
    })
}

pub fn logs(args: &LogsArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        store.run_get(&args.run).await?;
        for e in store.events_of_run(&args.run).await? {
            if args.step.is_some() && e.step_id != args.step {
                continue;
            }
            let step = e.step_id.as_deref().unwrap_or("-");
            let attempt = e.attempt.map(|a| format!("#{a}")).unwrap_or_default();
            println!(
                "{:>4} {} {:<22} {step}{attempt}",
                e.seq,
                e.at.format("%H:%M:%S%.3f"),
                e.kind
            );
            if let Some(err) = e.data.get("error").and_then(|v| v.as_str()) {
                println!("       error: {err}");
            }
            if let Some(outputs) = e.data.get("outputs").filter(|o| !o.is_null()) {
                for stream in ["stdout", "stderr"] {
                    if let Some(text) = outputs.get(stream).and_then(|v| v.as_str())
                        && !text.is_empty()
                    {
                        for line in text.lines() {
                            println!("       {stream}| {line}");
                        }
                    }
                }
            }
        }
        Ok(exit::OK)
    })
}
