//! (c) Enqueue-to-receipt latency at a fixed offered rate, one `enqueue` call per job, with a
//! fleet doing nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use herald_producer::NewJob;
use serde_json::{json, Value};
use tokio::time::MissedTickBehavior;

use super::shared::{loadavg, parse_duration, round, wait_for, Bench};
use crate::env::{self, now_us, Fleet};
use crate::receiver::{payload, Tracker};

#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    /// Offered rate, jobs per second.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// How long to offer load.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

/// Enqueue-to-receipt latency at a fixed offered rate, one `enqueue` call per job, with a fleet
/// doing nothing else.
pub async fn latency(b: &Bench, args: &LatencyArgs) -> anyhow::Result<Value> {
    let c = &b.common;
    let d = b.deploy().await?;
    let total = (args.rate as f64 * args.duration.as_secs_f64()).max(1.0) as u64;
    let tracker = b.receiver.arm(Tracker::new(total, true, Duration::ZERO)?);
    let fleet = Fleet::start(
        &b.herald,
        &d.redis.url,
        args.workers,
        &b.worker_env(c.concurrency),
    )
    .await?;
    // Let start-up traffic (script loading, the first scan) pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let load = loadavg();
    let ticks = env::machine_ticks();
    let (cpu_bench, cpu_redis) = (env::cpu_seconds(None), env::cpu_seconds(d.redis.pid()));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let started = Instant::now();
    // How long the enqueue calls themselves take: the producer's share of the latency.
    let calls = Arc::new(std::sync::Mutex::new(hdrhistogram::Histogram::<u64>::new(
        3,
    )?));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let producer = d.producer.clone();
        let endpoint = d.endpoints[i as usize % d.endpoints.len()].clone();
        let size = c.payload;
        let calls = calls.clone();
        tasks.spawn(async move {
            let t = now_us();
            let job = NewJob::new(endpoint, payload(i, t, size));
            let r = producer.enqueue_job(job).await;
            let _ = calls
                .lock()
                .expect("lock")
                .record(now_us().saturating_sub(t));
            r
        });
        while let Some(r) = tasks.try_join_next() {
            r??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let offered_for = started.elapsed();
    let t = tracker.clone();
    wait_for(
        "latency deliveries",
        c.stall,
        Duration::from_millis(10),
        || t.unique(),
        || t.unique() >= total,
    )
    .await?;
    let ours = env::cpu_seconds(None) - cpu_bench + env::cpu_seconds(d.redis.pid()) - cpu_redis
        + fleet
            .pids()
            .into_iter()
            .map(|p| env::cpu_seconds(Some(p)))
            .sum::<f64>();
    let noise = env::noise_since(ticks, ours);
    fleet.stop().await;
    let h = tracker
        .latency_us
        .as_ref()
        .expect("latency")
        .lock()
        .expect("lock");
    let ms = |us: u64| round(us as f64 / 1000.0, 3);
    let started_us = now_us() - started.elapsed().as_micros() as u64;
    Ok(json!({
        "workers": args.workers,
        "offered_rate_per_s": args.rate,
        "achieved_rate_per_s": (total as f64 / offered_for.as_secs_f64()).round(),
        "jobs": total,
        "delivered": tracker.unique(),
        "duplicates": tracker.duplicates(),
        "missing": total - tracker.unique().min(total),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
        "slower_than_10ms": slow_windows(&tracker.slow.lock().expect("lock"), started_us),
        "enqueue_call": {
            "p50_ms": ms(calls.lock().expect("lock").value_at_quantile(0.50)),
            "p99_ms": ms(calls.lock().expect("lock").value_at_quantile(0.99)),
            "max_ms": ms(calls.lock().expect("lock").max()),
        },
        "loadavg_before": load,
        "noise": noise,
    }))
}

/// The jobs slower than 10 ms, grouped by the 100 ms window of the run they arrived in: the
/// five windows with the most, as {at_ms (from the start), jobs, max_ms}.
fn slow_windows(slow: &[(u64, u64)], started_us: u64) -> Value {
    let mut windows: std::collections::BTreeMap<u64, (u64, u64)> = Default::default();
    for &(at, latency) in slow {
        let w = windows
            .entry(at.saturating_sub(started_us) / 100_000)
            .or_default();
        w.0 += 1;
        w.1 = w.1.max(latency);
    }
    let mut top: Vec<_> = windows.into_iter().collect();
    top.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
    json!({
        "jobs": slow.len(),
        "windows_of_100ms": top.len(),
        "worst_windows": top
            .iter()
            .take(5)
            .map(|(w, (n, max))| json!({
                "at_ms": w * 100,
                "jobs": n,
                "max_ms": round(*max as f64 / 1000.0, 1),
            }))
            .collect::<Vec<_>>(),
    })
}
