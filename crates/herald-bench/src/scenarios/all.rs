//! Every scenario in turn (`herald-bench all`), with the flags of each under a name of its
//! own, and their results keyed by scenario name.

use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::api::{api, ApiArgs};
use super::backlog::{backlog, BacklogArgs};
use super::ceiling::CeilingArgs;
use super::enqueue::{enqueue_rate, EnqueueArgs};
use super::idle::{idle, IdleArgs};
use super::isolation::{isolation, IsolationArgs};
use super::latency::{latency, LatencyArgs};
use super::memory::{memory, MemoryArgs};
use super::redis::{redis, RedisArgs};
use super::scripts::{scripts, ScriptsArgs};
use super::shared::{parse_duration, Bench};
use super::throughput::{throughput, ThroughputArgs};

#[derive(Debug, Clone, Args)]
pub struct AllArgs {
    /// Jobs of each end-to-end run and of the enqueue runs.
    #[arg(long, default_value_t = 200_000)]
    pub jobs: u64,
    /// Worker processes of the end-to-end runs, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Concurrent callers of the enqueue runs.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub callers: Vec<usize>,
    #[command(flatten)]
    pub ceiling: CeilingArgs,
    #[arg(long = "latency-rate", default_value_t = 2000)]
    pub latency_rate: u64,
    #[arg(long = "latency-duration", default_value = "10s", value_parser = parse_duration)]
    pub latency_duration: Duration,
    #[arg(long = "latency-workers", default_value_t = 2)]
    pub latency_workers: usize,
    /// Jobs scheduled for later in the backlog run.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: u64,
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub backlog_delay: Duration,
    #[arg(long = "backlog-workers", default_value_t = 2)]
    pub backlog_workers: usize,
    #[command(flatten)]
    pub memory: MemoryArgs,
    #[command(flatten)]
    pub idle: IdleArgs,
    #[command(flatten)]
    pub scripts: ScriptsArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub isolation: IsolationArgs,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Scenarios to leave out, comma-separated (throughput, enqueue, latency, backlog, memory,
    /// idle, scripts, redis, isolation, api).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
}

/// Every scenario in turn; their results keyed by name.
pub async fn all(b: &Bench, args: &AllArgs) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    let on = |name: &str| !args.skip.iter().any(|s| s == name);
    let step = |name: &str| eprintln!("herald-bench: {name}…");
    if on("throughput") {
        step("throughput (ceiling, then end-to-end)");
        let t = ThroughputArgs {
            jobs: args.jobs,
            workers: args.workers.clone(),
            ceiling: args.ceiling.clone(),
        };
        out.insert("throughput".into(), throughput(b, &t).await?);
    }
    if on("enqueue") {
        step("enqueue");
        let e = EnqueueArgs {
            jobs: args.jobs,
            callers: args.callers.clone(),
        };
        out.insert("enqueue".into(), enqueue_rate(b, &e).await?);
    }
    if on("latency") {
        step("latency");
        let l = LatencyArgs {
            rate: args.latency_rate,
            duration: args.latency_duration,
            workers: args.latency_workers,
        };
        out.insert("latency".into(), latency(b, &l).await?);
    }
    if on("backlog") {
        step("backlog");
        let k = BacklogArgs {
            jobs: args.jobs,
            backlog: args.backlog,
            backlog_delay: args.backlog_delay,
            workers: args.backlog_workers,
        };
        out.insert("backlog".into(), backlog(b, &k).await?);
    }
    if on("memory") {
        step("memory");
        out.insert("memory".into(), memory(b, &args.memory).await?);
    }
    if on("idle") {
        step("idle");
        out.insert("idle".into(), idle(b, &args.idle).await?);
    }
    if on("scripts") {
        step("scripts");
        out.insert("scripts".into(), scripts(b, &args.scripts).await?);
    }
    if on("redis") {
        step("redis");
        out.insert("redis".into(), redis(b, &args.redis).await?);
    }
    if on("isolation") {
        step("isolation");
        out.insert("isolation".into(), isolation(b, &args.isolation).await?);
    }
    if on("api") {
        step("api");
        out.insert("api".into(), api(b, &args.api).await?);
    }
    Ok(Value::Object(out))
}
