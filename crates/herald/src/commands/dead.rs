//! `herald dead`: list, replay and purge the dead-letter store, by id, by filter, or all.

use herald_ops::dead::Chosen;
use herald_ops::model::{DeadLetterEntry, DeadListQuery, DeadSelection};

use crate::cli::{DeadCommand, DeadFilterArgs, Global, Selection};
use crate::commands::{open_ops, print_json, time};
use crate::failure::{op_error, Refused};

/// The listing's query of the filter flags.
fn listing(args: DeadFilterArgs) -> DeadListQuery {
    DeadListQuery {
        endpoint: args.endpoint,
        reason: args.reason,
        since: args.since,
        until: args.until,
        ..DeadListQuery::default()
    }
}

/// Job ids, `--all`, or conditions: exactly one of them.
fn chosen(selection: Selection) -> anyhow::Result<Chosen> {
    let f = selection.filter;
    let conditions = DeadSelection {
        endpoint: f.endpoint,
        reason: f.reason,
        since: f.since,
        until: f.until,
        all: selection.all,
    };
    let has_conditions = [
        &conditions.endpoint,
        &conditions.reason,
        &conditions.since,
        &conditions.until,
    ]
    .iter()
    .any(|c| c.is_some());
    if !selection.job_ids.is_empty() {
        return Ok(Chosen::Ids(selection.job_ids));
    }
    if !selection.all && !has_conditions {
        return Err(Refused(
            "name job ids, --all, or conditions (--endpoint, --reason, --since, --until)".into(),
        )
        .into());
    }
    Chosen::try_from(conditions).map_err(op_error)
}

fn print_entry(job: &DeadLetterEntry) {
    outln!("id:            {}", job.id);
    if let Some(e) = &job.endpoint {
        outln!("endpoint:      {e}");
    }
    if let Some(a) = job.attempts {
        outln!("attempts:      {a}");
    }
    if let Some(t) = job.enqueued_at_ms {
        outln!("enqueued at:   {}", time(t));
    }
    outln!("dead since:    {}", time(job.dead_at_ms));
    if let Some(e) = &job.last_error {
        outln!("last error:    {e}");
    }
}

pub async fn run(global: &Global, cmd: DeadCommand) -> anyhow::Result<()> {
    match cmd {
        DeadCommand::List { limit, filter } => {
            let ops = open_ops(global).await?;
            let listed = ops
                .dead_letters_up_to(&listing(filter), limit)
                .await
                .map_err(op_error)?;
            if global.json {
                return print_json(&listed);
            }
            if listed.items.is_empty() {
                outln!("no dead jobs");
            }
            for (i, job) in listed.items.iter().enumerate() {
                if i > 0 {
                    outln!();
                }
                print_entry(job);
            }
            Ok(())
        }
        DeadCommand::Replay(sel) => {
            let chosen = chosen(sel)?;
            let ops = open_ops(global).await?;
            let done = ops.replay_dead(&chosen).await.map_err(op_error)?;
            if global.json {
                return print_json(&done);
            }
            outln!("replayed {} jobs", done.replayed);
            Ok(())
        }
        DeadCommand::Purge(sel) => {
            let chosen = chosen(sel)?;
            let ops = open_ops(global).await?;
            let done = ops.purge_dead(&chosen).await.map_err(op_error)?;
            if global.json {
                return print_json(&done);
            }
            outln!("purged {} jobs", done.purged);
            Ok(())
        }
    }
}
