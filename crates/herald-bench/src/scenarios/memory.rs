//! (f) A worker's peak resident memory with many deliveries held open by the receiver, and how
//! long each delivery took from its claim to its arrival at the receiver meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::shared::{enqueue, parse_duration, round, wait_for, Bench};
use crate::env::{self, Fleet};
use crate::receiver::Tracker;

/// The lease the worker is given here: a job's claim time is its lease deadline minus this.
const LEASE: &str = "60s";
/// How often the in-flight sets are read for lease deadlines. A job stays in flight for the
/// receiver's hold (2 s by default), so it is seen many times.
const POLL: Duration = Duration::from_millis(200);

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

/// The peak resident set of one worker with `in_flight` deliveries held open by the receiver,
/// and each delivery's time from claim to receipt: the claim time is read from the job's lease
/// deadline in the shard's `inflight` set (Redis clock, ms) while the receiver holds it, the
/// receipt time is when the receiver saw its `webhook-id` (the same machine's clock).
pub async fn memory(b: &Bench, args: &MemoryArgs) -> anyhow::Result<Value> {
    let c = &b.common;
    let d = b.deploy().await?;
    let tracker = b
        .receiver
        .arm(Tracker::new(args.jobs, false, args.hold)?.with_arrivals());
    // Every delivery here outlasts HERALD_SLOW_AFTER's default (250 ms), which would move it to
    // the slow lane and let the worker hold up to 1.5× HERALD_CONCURRENCY and more (overflow);
    // judged fast, the worker holds exactly `in_flight`. `--worker-env` can set either again.
    let slow_after = args.hold + Duration::from_secs(5);
    let mut worker_env = vec![
        ("HERALD_LEASE", LEASE.to_owned()),
        ("HERALD_SLOW_AFTER", format!("{}ms", slow_after.as_millis())),
    ];
    worker_env.extend(b.worker_env(args.in_flight));
    let lease = worker_env
        .iter()
        .rev()
        .find(|(k, _)| *k == "HERALD_LEASE")
        .map(|(_, v)| parse_duration(v))
        .transpose()
        .map_err(anyhow::Error::msg)?
        .unwrap_or_default();
    let fleet = Fleet::start(&b.herald, &d.redis, 1, &worker_env).await?;
    let done = Arc::new(AtomicBool::new(false));
    let deadlines = tokio::spawn(lease_deadlines(d.producer.store().clone(), done.clone()));
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
    done.store(true, Relaxed);
    let deadlines = deadlines.await??;
    fleet.stop().await;
    let mib = |k: u64| round(k as f64 / 1024.0, 1);
    let lease_ms = lease.as_millis() as i64;
    let mut claim_to_receipt: Vec<i64> = {
        let arrivals = tracker.arrivals.as_ref().expect("armed with arrivals");
        let arrivals = arrivals.lock().expect("lock");
        arrivals
            .iter()
            .filter_map(|(webhook_id, at)| {
                let deadline = deadlines.get(webhook_id.strip_prefix("msg_")?)?;
                Some((*at as i64 - (deadline - lease_ms)).max(0))
            })
            .collect()
    };
    claim_to_receipt.sort_unstable();
    let pct = |p: f64| -> Value {
        if claim_to_receipt.is_empty() {
            return Value::Null;
        }
        let i =
            ((claim_to_receipt.len() as f64 * p).ceil() as usize).clamp(1, claim_to_receipt.len());
        json!(claim_to_receipt[i - 1])
    };
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
        "claim_to_receipt_ms": {
            "jobs": claim_to_receipt.len(),
            "p50": pct(0.5),
            "p99": pct(0.99),
            "max": claim_to_receipt.last(),
        },
    }))
}

/// Job id -> lease deadline (Redis clock, ms) of every job seen in flight, read from every
/// shard's `inflight` set each [`POLL`] until `done`. A job leased again keeps its first
/// deadline: its first claim is the one measured.
async fn lease_deadlines(
    store: herald_store::Store,
    done: Arc<AtomicBool>,
) -> anyhow::Result<HashMap<String, i64>> {
    let mut seen = HashMap::new();
    let mut conn = store.conn().await?;
    while !done.load(Relaxed) {
        for shard in 0..store.shards() {
            let leases: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(&store.keys(shard).inflight)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await?;
            for (id, deadline) in leases {
                seen.entry(id).or_insert(deadline as i64);
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(seen)
}
