//! Endpoint isolation (issue 10): does one endpoint that never answers hold back the others?
//! One worker delivers a steady feed spread over healthy endpoints, first on its own (the
//! baseline), then with a backlog queued for an endpoint whose server accepts the connection,
//! reads the request and goes silent, so that each delivery to it holds a slot until the
//! request timeout.

use std::time::Duration;

use clap::Args;
use herald_core::EndpointId;
use serde_json::{json, Value};

use super::shared::{enqueue, feed, loadavg, parse_duration, round, wait_for, Bench, Noise};
use crate::env::Fleet;
use crate::receiver::Tracker;

#[derive(Debug, Clone, Args)]
pub struct IsolationArgs {
    /// Healthy endpoints the feed is spread over.
    #[arg(
        long = "isolation-endpoints",
        id = "isolation-endpoints",
        default_value_t = 50
    )]
    pub endpoints: usize,
    /// Jobs per second offered to the healthy endpoints, in total.
    #[arg(long = "isolation-rate", id = "isolation-rate", default_value_t = 300)]
    pub rate: u64,
    /// How long the healthy feed runs: the window the delivered rate is measured over.
    #[arg(long = "isolation-window", id = "isolation-window", default_value = "13s", value_parser = parse_duration)]
    pub window: Duration,
    /// How long after the window the jobs still on their way may take to arrive; those that
    /// have not arrived by then are reported missing.
    #[arg(long = "isolation-drain", id = "isolation-drain", default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Jobs queued for the hanging endpoint before the feed starts.
    #[arg(long = "hanging-jobs", id = "hanging-jobs", default_value_t = 2000)]
    pub hanging_jobs: u64,
    /// Deliveries in flight in the one worker (its HERALD_CONCURRENCY).
    #[arg(
        long = "isolation-concurrency",
        id = "isolation-concurrency",
        default_value_t = 100
    )]
    pub concurrency: usize,
    /// The worker's HERALD_REQUEST_TIMEOUT: how long a delivery to the hanging endpoint holds
    /// its slot.
    #[arg(long = "isolation-timeout", id = "isolation-timeout", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// The healthy endpoints' delivered rate and latency without a hanging endpoint, then with
/// one, each run on a fresh deployment; and the ratio of the two delivered rates.
pub async fn isolation(b: &Bench, args: &IsolationArgs) -> anyhow::Result<Value> {
    let without = run(b, args, 0).await?;
    let with = run(b, args, args.hanging_jobs).await?;
    let rate = |r: &Value| r["delivered_per_s"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "healthy_endpoints": args.endpoints,
        "offered_rate_per_s": args.rate,
        "window_s": args.window.as_secs_f64(),
        "drain_s": args.drain.as_secs_f64(),
        "concurrency": args.concurrency,
        "request_timeout_ms": args.timeout.as_millis() as u64,
        "without_hanging": without,
        "with_hanging": with,
        "delivered_rate_ratio": round(rate(&with) / rate(&without).max(1.0), 3),
    }))
}

/// One run: `hanging` jobs queued for the hanging endpoint (0: no such endpoint), one worker,
/// then the healthy feed for the window, and at most the drain for the jobs still on their way.
async fn run(b: &Bench, args: &IsolationArgs, hanging: u64) -> anyhow::Result<Value> {
    let c = &b.common;
    let d = b.deploy_with(args.endpoints).await?;
    let total = (args.rate as f64 * args.window.as_secs_f64()).max(1.0) as u64;
    let tracker = b.receiver.arm(Tracker::new(total, true, Duration::ZERO)?);
    if hanging > 0 {
        // The workers' warnings about this endpoint are expected; `Fleet` leaves them out by
        // its name.
        let id = EndpointId::new("hanging")?;
        d.producer
            .store()
            .set_endpoint(&id, &b.receiver.hanging_url(), None)
            .await?;
        // Numbered after the feed's jobs, so that no two jobs share a number.
        enqueue(
            &d.producer,
            &[id],
            total..total + hanging,
            c.payload,
            Duration::ZERO,
            c.batch,
            1,
        )
        .await?;
    }
    let mut env = b.worker_env(args.concurrency);
    env.push((
        "HERALD_REQUEST_TIMEOUT",
        format!("{}ms", args.timeout.as_millis()),
    ));
    let fleet = Fleet::start(&b.herald, &d.redis, 1, &env).await?;
    // Let start-up traffic pass, and the worker take its first jobs for the hanging endpoint.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let load = loadavg();
    let noise = Noise::start(&d);
    let fed = feed(&d, args.rate, total, c.payload).await?;
    let in_window = tracker.unique();
    let t = tracker.clone();
    let drain = tokio::time::timeout(
        args.drain,
        wait_for(
            "isolation deliveries",
            c.stall,
            Duration::from_millis(10),
            || t.unique(),
            || t.unique() >= total,
        ),
    )
    .await;
    // At the drain deadline the jobs still on their way count as missing, not as a failure.
    if let Ok(waited) = drain {
        waited?;
    }

    let delivered = tracker.unique();
    let h = tracker
        .latency_us
        .as_ref()
        .expect("latency")
        .lock()
        .expect("lock")
        .clone();
    // No percentile without a delivery (an empty histogram would say 0 ms).
    let ms = |us: u64| (!h.is_empty()).then(|| round(us as f64 / 1000.0, 3));
    let offered_s = fed.offered_for.as_secs_f64();
    let figures = json!({
        "hanging_jobs": hanging,
        "jobs": total,
        "achieved_rate_per_s": (total as f64 / offered_s).round(),
        "delivered_in_window": in_window,
        "delivered_per_s": round(in_window as f64 / offered_s, 1),
        "delivered": delivered,
        "duplicates": tracker.duplicates(),
        "missing": total - delivered.min(total),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
        "hanging_requests": tracker.hung.load(std::sync::atomic::Ordering::Relaxed),
        "hanging_at_once_max": tracker.max_in_flight.load(std::sync::atomic::Ordering::Relaxed),
        "loadavg_before": load,
        "noise": noise.since_start(&d, &fleet),
    });
    // Answer (and close) the requests the hanging endpoint still holds, so that nothing of this
    // run outlives it.
    tracker.release_hung();
    fleet.stop().await;
    Ok(figures)
}
