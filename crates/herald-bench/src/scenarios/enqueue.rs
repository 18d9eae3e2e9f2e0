//! (e) `enqueue_batch` throughput from one and more callers, and Redis memory per queued job.

use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::shared::{enqueue, loadavg, round, Bench, NAMESPACE};
use crate::env;

#[derive(Debug, Clone, Args)]
pub struct EnqueueArgs {
    /// Jobs enqueued in each run.
    #[arg(long, default_value_t = 200_000)]
    pub jobs: u64,
    /// Concurrent callers of each run, in order (each on a fresh Redis).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub callers: Vec<usize>,
}

/// `enqueue_batch` throughput with 1 and more concurrent callers, and the growth of Redis's
/// `used_memory` per queued job.
pub async fn enqueue_rate(b: &Bench, args: &EnqueueArgs) -> anyhow::Result<Value> {
    let c = &b.common;
    let mut runs = Vec::new();
    for &callers in &args.callers {
        let d = b.deploy().await?;
        let before = d.redis.info_sum("memory", "used_memory").await?;
        let load = loadavg();
        let (cpu_redis, cpu_bench) = (d.redis.cpu_seconds(), env::cpu_seconds(None));
        let ticks = env::machine_ticks();
        let stats_before = d.redis.commandstats().await?;
        let e = enqueue(
            &d.producer,
            &d.endpoints,
            0..args.jobs,
            c.payload,
            Duration::ZERO,
            c.batch,
            callers,
        )
        .await?;
        let stats_after = d.redis.commandstats().await?;
        let script = |s: &std::collections::BTreeMap<String, (u64, u64)>| {
            s.get("evalsha").copied().unwrap_or_default()
        };
        let (calls, usec) = (
            script(&stats_after).0 - script(&stats_before).0,
            script(&stats_after).1 - script(&stats_before).1,
        );
        let cpu_redis = d.redis.cpu_seconds() - cpu_redis;
        let cpu_bench = env::cpu_seconds(None) - cpu_bench;
        let after = d.redis.info_sum("memory", "used_memory").await?;
        let (jobs, _) = d.redis.jobs_in_store(NAMESPACE, c.shards).await?;
        anyhow::ensure!(
            jobs == args.jobs,
            "{jobs} jobs in the store, not {}",
            args.jobs
        );
        let per_job = (after as f64 - before as f64) / args.jobs as f64;
        runs.push(json!({
            "callers": callers,
            "batch": c.batch,
            "jobs": args.jobs,
            "seconds": round(e.seconds, 3),
            "jobs_per_s": e.rate().round(),
            "redis_bytes_per_job": round(per_job, 1),
            "redis_bytes_per_job_over_payload": round(per_job - c.payload as f64, 1),
            // CPU seconds per second of the run, and µs per job: Redis, and the producer.
            "cpu": {
                "redis": round(cpu_redis / e.seconds, 2),
                "producer": round(cpu_bench / e.seconds, 2),
            },
            "cpu_us_per_job": {
                "redis": round(cpu_redis * 1e6 / args.jobs as f64, 1),
                "producer": round(cpu_bench * 1e6 / args.jobs as f64, 1),
            },
            // Time Redis spent inside the enqueue scripts (INFO commandstats of EVALSHA: one
            // enqueue-batch-4.lua call per shard of each batch), per call and per job.
            "script_calls": calls,
            "script_usec_per_call": round(usec as f64 / calls.max(1) as f64, 2),
            "script_usec_per_job": round(usec as f64 / args.jobs as f64, 2),
            "loadavg_before": load,
            "noise": env::noise_since(ticks, cpu_redis + cpu_bench),
        }));
    }
    Ok(json!({ "payload_bytes": c.payload, "runs": runs }))
}
