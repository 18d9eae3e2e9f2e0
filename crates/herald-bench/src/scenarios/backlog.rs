//! (d) Backlog scaling: the end-to-end run on an empty store, then again with a million jobs
//! scheduled for later sitting in the same shards.

use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::shared::{enqueue, parse_duration, round, Bench};
use super::throughput::deliver_all;

#[derive(Debug, Clone, Args)]
pub struct BacklogArgs {
    /// Due jobs delivered in each run.
    #[arg(long, default_value_t = 200_000)]
    pub jobs: u64,
    /// Jobs scheduled for later, sitting in the sets during the second run.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: u64,
    /// How far in the future the backlog is scheduled.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub backlog_delay: Duration,
    /// Worker processes.
    #[arg(long = "backlog-workers", id = "backlog-workers", default_value_t = 2)]
    pub workers: usize,
}

/// End-to-end throughput with an empty store, then again with `backlog` jobs scheduled in the
/// future in the same shards.
pub async fn backlog(b: &Bench, args: &BacklogArgs) -> anyhow::Result<Value> {
    let c = &b.common;
    let d = b.deploy().await?;
    let empty = deliver_all(b, &d, args.workers, args.jobs, 0).await?;
    let fill = enqueue(
        &d.producer,
        &d.endpoints,
        args.jobs..args.jobs + args.backlog,
        c.payload,
        args.backlog_delay,
        c.batch,
        4,
    )
    .await?;
    let used = d.redis.info_sum("memory", "used_memory").await?;
    let full = deliver_all(b, &d, args.workers, args.jobs, args.backlog).await?;
    let (e, f) = (
        empty["deliveries_per_s"].as_f64().unwrap_or(0.0),
        full["deliveries_per_s"].as_f64().unwrap_or(0.0),
    );
    Ok(json!({
        "backlog": args.backlog,
        "backlog_enqueue_jobs_per_s": fill.rate().round(),
        "redis_used_memory_mib_with_backlog": round(used as f64 / 1048576.0, 1),
        "empty": empty,
        "with_backlog": full,
        "ratio": round(f / e.max(1.0), 3),
    }))
}
