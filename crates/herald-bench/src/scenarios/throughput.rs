//! (b) End-to-end throughput: the ceiling, then jobs enqueued up front and delivered by 1 and
//! then 2 workers. [`deliver_all`], the end-to-end run itself, is also the `backlog` scenario's.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use super::ceiling::{ceiling, CeilingArgs};
use super::shared::{enqueue, loadavg, round, wait_for, Bench, Deployment, NAMESPACE};
use crate::env::{self, now_us, Fleet};
use crate::receiver::Tracker;

#[derive(Debug, Clone, Args)]
pub struct ThroughputArgs {
    /// Jobs enqueued before each run.
    #[arg(long, default_value_t = 200_000)]
    pub jobs: u64,
    /// Worker processes of each run, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    #[command(flatten)]
    pub ceiling: CeilingArgs,
}

/// The ceiling, then for each worker count: enqueue `jobs`, start the workers, wait until all
/// are delivered and acknowledged.
pub async fn throughput(b: &Bench, args: &ThroughputArgs) -> anyhow::Result<Value> {
    let ceiling = ceiling(b, &args.ceiling).await?;
    let top = ceiling["requests_per_s"].as_f64().unwrap_or(0.0);
    let d = b.deploy().await?;
    let mut runs = Vec::new();
    for &w in &args.workers {
        let mut run = deliver_all(b, &d, w, args.jobs, 0).await?;
        let rate = run["deliveries_per_s"].as_f64().unwrap_or(0.0);
        run["ratio_to_ceiling"] = json!(round(rate / top.max(1.0), 3));
        runs.push(run);
    }
    Ok(json!({ "ceiling": ceiling, "runs": runs }))
}

/// Enqueues `n` due jobs, then runs `workers` worker processes until every job is delivered
/// and acknowledged (`backlog` jobs, scheduled for later, stay in the store).
pub(super) async fn deliver_all(
    b: &Bench,
    d: &Deployment,
    workers: usize,
    n: u64,
    backlog: u64,
) -> anyhow::Result<Value> {
    let c = &b.common;
    let tracker = b.receiver.arm(Tracker::new(n, false, Duration::ZERO)?);
    let mem_before = d.redis.info_sum("memory", "used_memory").await?;
    let enq = enqueue(
        &d.producer,
        &d.endpoints,
        0..n,
        c.payload,
        Duration::ZERO,
        c.batch,
        1,
    )
    .await?;
    let mem_after = d.redis.info_sum("memory", "used_memory").await?;
    let load = loadavg();
    let stats_before = d.redis.commandstats().await?;

    let cpu_redis = d.redis.cpu_seconds();
    let cpu_bench = env::cpu_seconds(None);
    let ticks = env::machine_ticks();
    let fleet = Fleet::start(&b.herald, &d.redis, workers, &b.worker_env(c.concurrency)).await?;
    let t = tracker.clone();
    wait_for(
        "deliveries",
        c.stall,
        Duration::from_millis(5),
        || t.unique(),
        || t.unique() >= n,
    )
    .await?;
    // Everything arrived; now wait for the acknowledgements to leave the store.
    let mut left = u64::MAX;
    let mut dead = 0;
    let ack_deadline = Instant::now() + c.stall;
    while left > backlog {
        (left, dead) = d.redis.jobs_in_store(NAMESPACE, c.shards).await?;
        anyhow::ensure!(
            Instant::now() < ack_deadline,
            "{} jobs still in the store (dead: {dead})",
            left - backlog
        );
        if left > backlog {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let acked_us = now_us();
    let cpu_redis = d.redis.cpu_seconds() - cpu_redis;
    let cpu_bench = env::cpu_seconds(None) - cpu_bench;
    let cpu_workers: f64 = fleet
        .pids()
        .into_iter()
        .map(|p| env::cpu_seconds(Some(p)))
        .sum();
    let noise = env::noise_since(ticks, cpu_redis + cpu_bench + cpu_workers);
    let rss = fleet.peak_rss_kib();
    fleet.stop().await;
    let stats_after = d.redis.commandstats().await?;

    let first_us = tracker.first_us.load(std::sync::atomic::Ordering::Relaxed);
    let seconds = (acked_us.saturating_sub(first_us)) as f64 / 1e6;
    let p10 = tracker.p10_us.load(std::sync::atomic::Ordering::Relaxed);
    let p90 = tracker.p90_us.load(std::sync::atomic::Ordering::Relaxed);
    let steady = if p90 > p10 {
        (n as f64 * 0.8) / ((p90 - p10) as f64 / 1e6)
    } else {
        0.0
    };
    // Redis time spent per delivery, by command (script calls included), from commandstats.
    let redis_usec: serde_json::Map<String, Value> = stats_after
        .iter()
        .filter_map(|(name, (calls, usec))| {
            let (c0, u0) = stats_before.get(name).copied().unwrap_or((0, 0));
            let (calls, usec) = (calls - c0, usec - u0);
            (calls > 0).then(|| {
                (
                    name.clone(),
                    json!({
                        "calls": calls,
                        "usec_per_call": round(usec as f64 / calls as f64, 2),
                        "usec_per_delivery": round(usec as f64 / n as f64, 2),
                    }),
                )
            })
        })
        .collect();
    Ok(json!({
        "redis_masters": d.redis.masters(),
        "redis_cluster": d.redis.is_cluster(),
        "workers": workers,
        "concurrency_per_worker": c.concurrency,
        "jobs": n,
        "backlog": backlog,
        "delivered": tracker.unique(),
        "duplicates": tracker.duplicates(),
        "missing": n - tracker.unique().min(n),
        "dead": dead,
        "seconds": round(seconds, 3),
        "deliveries_per_s": (n as f64 / seconds).round(),
        "steady_deliveries_per_s": steady.round(),
        "enqueue_jobs_per_s": enq.rate().round(),
        "redis_bytes_per_job": round((mem_after as f64 - mem_before as f64) / n as f64, 1),
        "worker_peak_rss_mib": rss.iter().map(|k| round(*k as f64 / 1024.0, 1)).collect::<Vec<_>>(),
        // CPU seconds per second of the run, by process: 2.0 is both cores.
        "cpu": {
            "redis": round(cpu_redis / seconds, 2),
            "workers": round(cpu_workers / seconds, 2),
            "receiver_and_bench": round(cpu_bench / seconds, 2),
        },
        "cpu_us_per_delivery": {
            "redis": round(cpu_redis * 1e6 / n as f64, 1),
            "workers": round(cpu_workers * 1e6 / n as f64, 1),
            "receiver_and_bench": round(cpu_bench * 1e6 / n as f64, 1),
        },
        "redis_commands": redis_usec,
        "loadavg_before": load,
        "noise": noise,
    }))
}
