//! `herald dead`: list, replay and purge the dead-letter store, by id, by filter, or all.

use herald_core::job_id_key;
use herald_store::{DeadFilter, DeadLetter, Store};

use crate::cli::{DeadCommand, DeadFilterArgs, Global, Selection};
use crate::commands::{open_store, print_json, time};
use crate::failure::{store_error, Refused};

/// Entries asked of the store per page while listing.
const PAGE: usize = 500;

fn filter(args: &DeadFilterArgs) -> Result<DeadFilter, Refused> {
    DeadFilter::from_text(
        args.endpoint.as_deref(),
        args.reason.as_deref(),
        args.since.as_deref(),
        args.until.as_deref(),
    )
    .map_err(|e| Refused(e.to_string()))
}

/// What a replay or purge takes.
enum Chosen {
    All,
    Ids(Vec<String>),
    Matching(DeadFilter),
}

fn chosen(selection: &Selection) -> Result<Chosen, Refused> {
    let matching = filter(&selection.filter)?;
    if selection.all {
        Ok(Chosen::All)
    } else if !selection.job_ids.is_empty() {
        Ok(Chosen::Ids(
            selection
                .job_ids
                .iter()
                .map(|id| job_id_key(id).to_owned())
                .collect(),
        ))
    } else if !matching.is_empty() {
        Ok(Chosen::Matching(matching))
    } else {
        Err(Refused(
            "name job ids, --all, or conditions (--endpoint, --reason, --since, --until)".into(),
        ))
    }
}

/// Up to `limit` entries matching `filter`, newest first, page by page.
async fn list(store: &Store, filter: &DeadFilter, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
    let mut all = Vec::new();
    let mut cursor = None;
    while all.len() < limit {
        let page = store
            .dead_page(filter, cursor.as_ref(), PAGE.min(limit - all.len()))
            .await
            .map_err(store_error)?;
        all.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(all)
}

fn print_entry(job: &DeadLetter) {
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
        DeadCommand::List { limit, filter: f } => {
            let f = filter(&f)?;
            let store = open_store(global).await?;
            let jobs = list(&store, &f, limit).await?;
            if global.json {
                return print_json(&jobs);
            }
            if jobs.is_empty() {
                outln!("no dead jobs");
            }
            for (i, job) in jobs.iter().enumerate() {
                if i > 0 {
                    outln!();
                }
                print_entry(job);
            }
            Ok(())
        }
        DeadCommand::Replay(sel) => {
            let chosen = chosen(&sel)?;
            let store = open_store(global).await?;
            let n = match chosen {
                Chosen::All => store.dead_replay_all().await,
                Chosen::Ids(ids) => store.dead_replay(&ids).await,
                Chosen::Matching(f) => store.dead_replay_matching(&f).await,
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
            let chosen = chosen(&sel)?;
            let store = open_store(global).await?;
            let n = match chosen {
                Chosen::All => store.dead_purge_all().await,
                Chosen::Ids(ids) => store.dead_purge(&ids).await,
                Chosen::Matching(f) => store.dead_purge_matching(&f).await,
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
