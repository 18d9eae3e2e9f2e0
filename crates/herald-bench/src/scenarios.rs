//! What the benchmark measures. Each scenario sets up its environment, runs, and returns its
//! figures as a JSON object.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use herald_core::EndpointId;
use herald_producer::{NewJob, Producer};
use serde_json::json;
use tokio::time::MissedTickBehavior;

use crate::env::{commands_processed, now_us, receiver, Fleet, Redis};

#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// Offered rate, jobs per second.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// How long to offer load.
    #[arg(long, default_value = "10s", value_parser = humantime_duration)]
    duration: Duration,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Endpoints the jobs are spread over.
    #[arg(long, default_value_t = 100)]
    endpoints: usize,
}

#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Worker processes in the idle fleet.
    #[arg(long, default_value_t = 10)]
    workers: usize,
    /// How long to count commands.
    #[arg(long, default_value = "30s", value_parser = humantime_duration)]
    duration: Duration,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s"))?;
    total += match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    Ok(total)
}

async fn register(
    producer: &Producer,
    url: &str,
    endpoints: usize,
) -> anyhow::Result<Vec<EndpointId>> {
    let mut ids = Vec::with_capacity(endpoints);
    for i in 0..endpoints {
        let id = EndpointId::new(format!("bench-{i}"))?;
        producer.store().set_endpoint(&id, url, None).await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Enqueue-to-receipt latency at a fixed offered rate, workers idle between jobs.
pub async fn latency(herald: &Path, args: LatencyArgs) -> anyhow::Result<serde_json::Value> {
    let redis = Redis::start().await?;
    let (url, received) = receiver().await?;
    let producer = Producer::connect(&redis.url, "herald", 16)?;
    producer.store().check().await?;
    let endpoints = register(&producer, &url, args.endpoints).await?;
    let fleet = Fleet::start(
        herald,
        &redis.url,
        args.workers,
        &[("HERALD_ALLOW_TARGETS", "127.0.0.0/8")],
    )
    .await?;

    let total = args.rate * args.duration.as_secs().max(1);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let producer = producer.clone();
        let endpoint = endpoints[i as usize % endpoints.len()].clone();
        tasks.spawn(async move {
            let payload = serde_json::to_vec(&json!({ "t": now_us(), "i": i })).expect("json");
            producer.enqueue_job(NewJob::new(endpoint, payload)).await
        });
        while let Some(r) = tasks.try_join_next() {
            r??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let offered_for = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let notified = received.notify.notified();
        if *received.count.lock().expect("lock") >= total || Instant::now() > deadline {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
    fleet.stop().await;
    let count = *received.count.lock().expect("lock");
    let h = received.latency_us.lock().expect("lock");
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(json!({
        "scenario": "latency",
        "workers": args.workers,
        "endpoints": args.endpoints,
        "offered_rate_per_s": args.rate,
        "achieved_rate_per_s": (total as f64 / offered_for.as_secs_f64()).round(),
        "jobs": total,
        "received": count,
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    }))
}

/// Commands per second that an idle fleet costs Redis.
pub async fn idle(herald: &Path, args: IdleArgs) -> anyhow::Result<serde_json::Value> {
    let redis = Redis::start().await?;
    let fleet = Fleet::start(herald, &redis.url, args.workers, &[]).await?;
    let mut conn = redis.client()?.get_multiplexed_async_connection().await?;
    // Let start-up traffic (script loading, first scan) pass.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = commands_processed(&mut conn).await?;
    tokio::time::sleep(args.duration).await;
    let after = commands_processed(&mut conn).await?;
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await?;
    fleet.stop().await;
    // The second INFO call is in the count; subtract it.
    let per_s = (after - before - 1) as f64 / args.duration.as_secs_f64();
    let calls: serde_json::Map<String, serde_json::Value> = stats
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_owned(), json!(calls.parse::<u64>().ok()?)))
        })
        .collect();
    Ok(json!({
        "scenario": "idle",
        "workers": args.workers,
        "seconds": args.duration.as_secs(),
        "commands_per_s": (per_s * 100.0).round() / 100.0,
        "commands_per_s_per_worker": (per_s / args.workers as f64 * 100.0).round() / 100.0,
        "calls_since_start": calls,
    }))
}
