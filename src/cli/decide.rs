//! People's decisions: `runway approve`, `runway reject`, `runway check`.

use super::{db, exit};
use crate::engine::human::{Request, prepare};
use crate::engine::{Decider, plan_of_run};
use crate::store::{self, Verdict};

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    run: String,
    step: String,
    #[arg(long)]
    comment: Option<String>,
    /// Decide only if the run's plan hash is this one (the plan you reviewed).
    #[arg(long)]
    plan_hash: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    run: String,
    step: String,
    #[arg(long)]
    reason: String,
    #[arg(long)]
    plan_hash: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("answer").required(true).args(["pass", "fail", "na"])))]
pub struct CheckArgs {
    run: String,
    step: String,
    item: String,
    #[arg(long)]
    pass: bool,
    #[arg(long)]
    fail: bool,
    /// Not applicable (optional items only).
    #[arg(long)]
    na: bool,
    #[arg(long)]
    note: Option<String>,
    #[arg(long)]
    plan_hash: Option<String>,
}

pub fn approve(args: &ApproveArgs) -> anyhow::Result<u8> {
    decide(
        &args.run,
        &args.step,
        Request {
            verdict: Verdict::Approve,
            item: None,
            comment: args.comment.clone(),
            plan_hash: args.plan_hash.clone(),
        },
    )
}

pub fn reject(args: &RejectArgs) -> anyhow::Result<u8> {
    decide(
        &args.run,
        &args.step,
        Request {
            verdict: Verdict::Reject,
            item: None,
            comment: Some(args.reason.clone()),
            plan_hash: args.plan_hash.clone(),
        },
    )
}

pub fn check(args: &CheckArgs) -> anyhow::Result<u8> {
    let verdict = if args.pass {
        Verdict::Pass
    } else if args.fail {
        Verdict::Fail
    } else {
        Verdict::Na
    };
    decide(
        &args.run,
        &args.step,
        Request {
            verdict,
            item: Some(args.item.clone()),
            comment: args.note.clone(),
            plan_hash: args.plan_hash.clone(),
        },
    )
}

fn decide(run_id: &str, step_id: &str, request: Request) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let run = store.run_get(run_id).await?;
        let plan = plan_of_run(&run, &crate::library::workflows_dir())?;
        let operator = db::operator_with_roles();
        let (new, judge) = match prepare(&plan, &run, step_id, &operator, &request) {
            Ok(prepared) => prepared,
            Err(reason) => {
                eprintln!("refused: {reason}");
                return Ok(exit::INVALID);
            }
        };
        match store
            .step_decide(
                run_id,
                step_id,
                &new,
                judge.as_ref(),
                &Decider { plan: &plan },
            )
            .await
        {
            Ok((step, decisions)) => {
                println!(
                    "recorded: {} {}{} at step `{step_id}` of run {run_id} (plan {})",
                    new.operator,
                    new.verdict.as_str(),
                    if new.item.is_empty() {
                        String::new()
                    } else {
                        format!(" item `{}`", new.item)
                    },
                    new.plan_hash
                );
                if step.status.is_terminal() {
                    println!("step `{step_id}` is now {}", step.status);
                } else {
                    println!(
                        "step `{step_id}` still waits ({} decision(s) so far)",
                        decisions.len()
                    );
                }
                Ok(exit::OK)
            }
            Err(store::Error::StepNotIn { actual, .. }) => {
                eprintln!("refused: step `{step_id}` is {actual}, not waiting for a decision");
                Ok(exit::INVALID)
            }
            Err(store::Error::RunNotIn { actual, .. }) => {
                eprintln!("refused: run {run_id} is {actual}");
                Ok(exit::INVALID)
            }
            Err(e @ store::Error::AlreadyDecided { .. }) => {
                eprintln!("refused: {e}");
                Ok(exit::INVALID)
            }
            Err(e) => Err(e.into()),
        }
    })
}
