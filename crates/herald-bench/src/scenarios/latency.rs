//! (c) Enqueue-to-receipt latency at a fixed offered rate, one `enqueue` call per job, with a
//! fleet doing nothing else.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use super::shared::{feed, loadavg, parse_duration, round, wait_for, Bench, Noise};
use crate::env::{now_us, Fleet};
use crate::receiver::Tracker;

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
        &d.redis,
        args.workers,
        &b.worker_env(c.concurrency),
    )
    .await?;
    // Let start-up traffic (script loading, the first scan) pass.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let load = loadavg();
    let noise = Noise::start(&d);
    let started = Instant::now();
    let fed = feed(&d, args.rate, total, c.payload).await?;
    let t = tracker.clone();
    wait_for(
        "latency deliveries",
        c.stall,
        Duration::from_millis(10),
        || t.unique(),
        || t.unique() >= total,
    )
    .await?;
    let noise = noise.since_start(&d, &fleet);
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
        "achieved_rate_per_s": (total as f64 / fed.offered_for.as_secs_f64()).round(),
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
            "p50_ms": ms(fed.calls_us.value_at_quantile(0.50)),
            "p99_ms": ms(fed.calls_us.value_at_quantile(0.99)),
            "max_ms": ms(fed.calls_us.max()),
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
