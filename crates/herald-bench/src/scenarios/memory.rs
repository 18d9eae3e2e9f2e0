//! (f) A worker's peak resident memory with many deliveries held open by the receiver.

use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::shared::{enqueue, parse_duration, round, wait_for, Bench};
use crate::env::{self, Fleet};
use crate::receiver::Tracker;

#[derive(Debug, Clone, Args)]
pub struct MemoryArgs {
    /// Deliveries in flight (HERALD_CONCURRENCY of the one worker).
    #[arg(long, default_value_t = 1000)]
    pub in_flight: usize,
    /// How long the receiver holds each request before answering.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Jobs delivered.
    #[arg(long = "memory-jobs", id = "memory-jobs", default_value_t = 5000)]
    pub jobs: u64,
}

/// The peak resident set of one worker with `in_flight` deliveries held open by the receiver.
pub async fn memory(b: &Bench, args: &MemoryArgs) -> anyhow::Result<Value> {
    let c = &b.common;
    let d = b.deploy().await?;
    let tracker = b.receiver.arm(Tracker::new(args.jobs, false, args.hold)?);
    let fleet = Fleet::start(&b.herald, &d.redis, 1, &b.worker_env(args.in_flight)).await?;
    let pid = fleet.pids()[0];
    let (_, idle_rss) = env::memory_kib(pid)?;
    enqueue(
        &d.producer,
        &d.endpoints,
        0..args.jobs,
        c.payload,
        Duration::ZERO,
        c.batch,
        1,
    )
    .await?;
    let t = tracker.clone();
    wait_for(
        "held deliveries",
        c.stall,
        Duration::from_millis(20),
        || t.unique(),
        || t.unique() >= args.jobs,
    )
    .await?;
    let (hwm, rss) = env::memory_kib(pid)?;
    fleet.stop().await;
    let mib = |k: u64| round(k as f64 / 1024.0, 1);
    Ok(json!({
        "in_flight_target": args.in_flight,
        "max_in_flight_seen": tracker.max_in_flight.load(std::sync::atomic::Ordering::Relaxed),
        "hold_ms": args.hold.as_millis() as u64,
        "jobs": args.jobs,
        "delivered": tracker.unique(),
        "duplicates": tracker.duplicates(),
        "missing": args.jobs - tracker.unique().min(args.jobs),
        "worker_rss_idle_mib": mib(idle_rss),
        "worker_peak_rss_mib": mib(hwm),
        "worker_rss_end_mib": mib(rss),
    }))
}
