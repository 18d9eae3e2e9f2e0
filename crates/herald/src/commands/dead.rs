//! `herald dead`: list, replay and purge the dead-letter store.

use crate::cli::{DeadCommand, Global, Selection};
use crate::commands::inspect::print_job;
use crate::commands::{open_store, print_json, store_error};

fn ids(selection: &Selection) -> Vec<String> {
    selection
        .job_ids
        .iter()
        .map(|id| id.strip_prefix("msg_").unwrap_or(id).to_owned())
        .collect()
}

pub async fn run(global: &Global, cmd: DeadCommand) -> anyhow::Result<()> {
    let store = open_store(global).await?;
    match cmd {
        DeadCommand::List { limit } => {
            let jobs = store.dead_list(limit).await.map_err(store_error)?;
            if global.json {
                return print_json(&jobs);
            }
            if jobs.is_empty() {
                outln!("the dead-letter store is empty");
            }
            for (i, job) in jobs.iter().enumerate() {
                if i > 0 {
                    outln!();
                }
                print_job(job);
            }
            Ok(())
        }
        DeadCommand::Replay(sel) => {
            let n = if sel.all {
                store.dead_replay_all().await
            } else {
                store.dead_replay(&ids(&sel)).await
            }
            .map_err(store_error)?;
            if global.json {
                print_json(&serde_json::json!({ "replayed": n }))
            } else {
                outln!("replayed {n} jobs");
                Ok(())
            }
        }
        DeadCommand::Purge(sel) => {
            let n = if sel.all {
                store.dead_purge_all().await
            } else {
                store.dead_purge(&ids(&sel)).await
            }
            .map_err(store_error)?;
            if global.json {
                print_json(&serde_json::json!({ "purged": n }))
            } else {
                outln!("purged {n} jobs");
                Ok(())
            }
        }
    }
}
