//! Issue 2: what an idle fleet costs Redis in commands per second, and the pickup latency of a
//! single job with the fleet idle.

use std::time::{Duration, Instant};

use clap::Args;
use herald_producer::NewJob;
use herald_store::EnqueueStatus;
use serde_json::{json, Value};

use super::shared::{parse_duration, round, wait_for, Bench};
use crate::env::{now_us, Fleet};
use crate::receiver::{payload, Tracker};

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Worker processes in the idle fleet.
    #[arg(long = "idle-workers", id = "idle-workers", default_value_t = 10)]
    pub workers: usize,
    /// How long to count commands.
    #[arg(long = "idle-duration", id = "idle-duration", default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long to let start-up traffic pass before counting.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Jobs enqueued one at a time, each after the previous one arrived, for pickup latency.
    #[arg(long, default_value_t = 200)]
    pub pickups: u64,
    /// Pause after each pickup, so that the fleet is idle again.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub pickup_gap: Duration,
}

/// Commands per second that an idle fleet costs Redis (top-level, by name, through `MONITOR`;
/// and `total_commands_processed`, which also counts what scripts run); then the latency from
/// `enqueue` to receipt of single jobs enqueued for now while the fleet is idle.
pub async fn idle(b: &Bench, args: &IdleArgs) -> anyhow::Result<Value> {
    let c = &b.common;
    let d = b.deploy().await?;
    let fleet = Fleet::start(
        &b.herald,
        &d.redis,
        args.workers,
        &b.worker_env(c.concurrency),
    )
    .await?;
    tokio::time::sleep(args.settle).await;
    let duration = args.duration;
    let monitor = d.redis.monitor(duration);
    let count = async {
        let before = d
            .redis
            .info_each("stats", "total_commands_processed")
            .await?;
        let started = Instant::now();
        tokio::time::sleep(duration).await;
        let after = d
            .redis
            .info_each("stats", "total_commands_processed")
            .await?;
        anyhow::Ok((before, after, started.elapsed().as_secs_f64()))
    };
    let ((top, lua), (before, after, secs)) = tokio::try_join!(monitor, count)?;
    let mut top = top;
    // The benchmark's own INFO calls are not the fleet's.
    top.remove("INFO");
    let top_total: u64 = top.values().sum();
    let lua_total: u64 = lua.values().sum();
    let per_s = |n: u64| round(n as f64 / duration.as_secs_f64(), 2);
    // Two of ours per master: the first INFO (counted after it ran) and the MONITOR, whichever
    // came first.
    let total: u64 = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b).saturating_sub(2))
        .sum();

    // Pickup latency, same fleet.
    let tracker = b
        .receiver
        .arm(Tracker::new(args.pickups, true, Duration::ZERO)?);
    for i in 0..args.pickups {
        let endpoint = d.endpoints[i as usize % d.endpoints.len()].clone();
        let job = NewJob::new(endpoint, payload(i, now_us(), c.payload));
        let enqueued = d.producer.enqueue_job(job).await?;
        anyhow::ensure!(
            enqueued.status == EnqueueStatus::Queued,
            "pickup job {} was {:?}, not queued",
            enqueued.job_id,
            enqueued.status
        );
        let t = tracker.clone();
        let picked = wait_for(
            "pickup",
            c.stall,
            Duration::from_millis(1),
            || t.unique(),
            || t.unique() > i,
        )
        .await;
        if let Err(e) = picked {
            // Where the job stands tells a lost wake-up from a stuck delivery.
            let job = d.producer.store().job(&enqueued.job_id).await;
            return Err(e.context(format!("pickup job {}: {job:?}", enqueued.job_id)));
        }
        tokio::time::sleep(args.pickup_gap).await;
    }
    fleet.stop().await;
    let h = tracker
        .latency_us
        .as_ref()
        .expect("latency")
        .lock()
        .expect("lock");
    let ms = |us: u64| round(us as f64 / 1000.0, 3);
    Ok(json!({
        "redis_masters": d.redis.masters(),
        "redis_cluster": d.redis.is_cluster(),
        "workers": args.workers,
        "seconds": round(secs, 1),
        "top_level_commands_per_s": per_s(top_total),
        "top_level_commands_per_s_per_worker": round(per_s(top_total) / args.workers as f64, 3),
        "top_level_commands": top,
        "in_script_commands_per_s": per_s(lua_total),
        "in_script_commands": lua,
        "total_commands_processed_per_s": per_s(total),
        "pickup": {
            "jobs": args.pickups,
            "delivered": tracker.unique(),
            "duplicates": tracker.duplicates(),
            "p50_ms": ms(h.value_at_quantile(0.50)),
            "p99_ms": ms(h.value_at_quantile(0.99)),
            "max_ms": ms(h.max()),
        },
    }))
}
