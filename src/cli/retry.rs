//! `runway retry RUN [--from STEP]`: a new run of the same pinned playbook and params that
//! keeps the results of the steps that completed, and runs the rest.

use super::{db, exit};
use crate::engine::{Kept, Origin, new_run_keeping, plan_of_run};
use crate::state::StepStatus;
use crate::store::StepList;

#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// The failed or cancelled run to continue.
    run: String,
    /// Run again from this step: it and every step after it (that needs it, directly or
    /// not) run again; other completed steps keep their results.
    #[arg(long, value_name = "STEP")]
    from: Option<String>,
}

pub fn retry(args: &RetryArgs) -> anyhow::Result<u8> {
    db::runtime()?.block_on(async {
        let store = db::open().await?;
        let old = store.run_get(&args.run).await?;
        if !old.status.is_terminal() {
            eprintln!(
                "error: run {} is {}; only an ended run can be retried (cancel it first: runway cancel {})",
                old.id, old.status, old.id
            );
            return Ok(exit::INVALID);
        }
        let plan = plan_of_run(&old, &crate::library::workflows_dir())?;
        let steps = &plan.playbook.steps;
        let from = match &args.from {
            None => None,
            Some(id) => match steps.iter().position(|s| &s.id.value == id) {
                Some(i) => Some(i),
                None => {
                    let ids: Vec<&str> = steps.iter().map(|s| s.id.value.as_str()).collect();
                    eprintln!("error: run {} has no main step `{id}`", old.id);
                    if let Some(m) = crate::diagnostic::did_you_mean(id, ids.iter().copied()) {
                        eprintln!("  = help: did you mean `{m}`?");
                    }
                    return Ok(exit::INVALID);
                }
            },
        };
        let rows = store.steps_of_run(&old.id).await?;
        let kept: Vec<Kept> = rows
            .iter()
            .filter(|r| r.list == StepList::Main)
            .filter(|r| matches!(r.status, StepStatus::Succeeded | StepStatus::Warned))
            .filter(|r| {
                let Some(i) = steps.iter().position(|s| s.id.value == r.step_id) else {
                    return false;
                };
                from.is_none_or(|f| i != f && !plan.graph.is_ancestor(f, i))
            })
            .map(|r| Kept {
                step_id: r.step_id.clone(),
                status: r.status,
                outputs: r.outputs.clone(),
            })
            .collect();
        let Some(params) = old.params.as_object().cloned() else {
            anyhow::bail!("run {} has no params object", old.id);
        };
        let origin = Origin {
            starter: db::operator(),
            trigger: format!("retry:{}", old.id),
            parent: None,
        };
        let new = new_run_keeping(&plan, &old.definition, params, &origin, &kept)
            .map_err(anyhow::Error::msg)?;
        let run = store.run_create(&new).await?;
        println!("{}", run.id);
        eprintln!(
            "run {} retries {}: {} step(s) kept, the rest run again (runway run --resume {} or a worker executes it)",
            run.id,
            old.id,
            kept.len(),
            run.id
        );
        Ok(exit::OK)
    })
}
