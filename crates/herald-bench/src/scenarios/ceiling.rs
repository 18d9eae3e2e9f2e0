//! (a) The ceiling: what a bare reqwest POST loop gets from the receiver without Redis or
//! herald, run as a separate process ([`post_loop`], the hidden `herald-bench post-loop`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Value};

use super::shared::{loadavg, parse_duration, round, Bench};
use crate::env;
use crate::receiver::{payload, Tracker};

#[derive(Debug, Clone, Args)]
pub struct CeilingArgs {
    /// How long to measure the ceiling, after the warm-up.
    #[arg(long = "ceiling-duration", id = "ceiling-duration", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long to run the ceiling's loop before measuring.
    #[arg(long = "ceiling-warmup", id = "ceiling-warmup", default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
}

/// The ceiling: a bare reqwest POST loop (another process: `herald-bench post-loop`) against
/// the receiver, at the workers' concurrency, without Redis.
pub async fn ceiling(b: &Bench, args: &CeilingArgs) -> anyhow::Result<Value> {
    let c = &b.common;
    let tracker = b.receiver.arm(Tracker::new(0, false, Duration::ZERO)?);
    let load = loadavg();
    let ticks = env::machine_ticks();
    let cpu_bench = env::cpu_seconds(None);
    let exe = std::env::current_exe()?;
    let out = tokio::process::Command::new(exe)
        .arg("post-loop")
        .args(["--base", &b.receiver.base_url])
        .args(["--endpoints", &c.endpoints.to_string()])
        .args(["--payload", &c.payload.to_string()])
        .args(["--concurrency", &c.concurrency.to_string()])
        .args(["--duration", &format!("{}ms", args.duration.as_millis())])
        .args(["--warmup", &format!("{}ms", args.warmup.as_millis())])
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "post-loop failed: {}", out.status);
    let mut v: Value = serde_json::from_slice(&out.stdout).context("post-loop output")?;
    let received = tracker.requests.load(std::sync::atomic::Ordering::Relaxed);
    v["received"] = json!(received);
    v["receiver_cpu_us_per_request"] = json!(round(
        (env::cpu_seconds(None) - cpu_bench) * 1e6 / received.max(1) as f64,
        1
    ));
    v["loadavg_before"] = json!(load);
    // The client's CPU over the whole run is not known here (it reports its measured window
    // only), so the noise figure counts the client's warm-up as other processes' time.
    let client = v["client_cpu_us_per_request"].as_f64().unwrap_or(0.0)
        * v["requests"].as_f64().unwrap_or(0.0)
        / 1e6;
    v["noise"] = env::noise_since(ticks, env::cpu_seconds(None) - cpu_bench + client);
    Ok(v)
}

#[derive(Debug, Clone, Args)]
pub struct PostLoopArgs {
    /// `http://host:port` of the receiver.
    #[arg(long)]
    pub base: String,
    #[arg(long)]
    pub endpoints: usize,
    #[arg(long)]
    pub payload: usize,
    #[arg(long)]
    pub concurrency: usize,
    #[arg(long, value_parser = parse_duration)]
    pub duration: Duration,
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Duration,
}

/// The bare loop: `concurrency` tasks POSTing 1 KiB JSON with one keep-alive reqwest client
/// set up like the worker's (no redirects, no proxy, TCP_NODELAY, timeouts), reading each
/// answer in full. Prints {requests, seconds, requests_per_s, errors}.
pub async fn post_loop(args: PostLoopArgs) -> anyhow::Result<Value> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(args.concurrency.max(1))
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .no_proxy()
        .build()?;
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let urls: Arc<Vec<String>> = Arc::new(
        (0..args.endpoints.max(1))
            .map(|i| format!("{}/hook/{i}", args.base))
            .collect(),
    );
    let body = bytes::Bytes::from(payload(0, 0, args.payload));
    let mut tasks = Vec::new();
    for t in 0..args.concurrency.max(1) {
        let (client, done, errors, stop, urls, body) = (
            client.clone(),
            done.clone(),
            errors.clone(),
            stop.clone(),
            urls.clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while !stop.load(Relaxed) {
                let r = client
                    .post(&urls[i % urls.len()])
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match r {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    done.fetch_add(1, Relaxed);
                } else {
                    errors.fetch_add(1, Relaxed);
                }
                i += args.concurrency;
            }
        }));
    }
    tokio::time::sleep(args.warmup).await;
    let (c0, t0, cpu0) = (done.load(Relaxed), Instant::now(), env::cpu_seconds(None));
    tokio::time::sleep(args.duration).await;
    let (c1, secs) = (done.load(Relaxed), t0.elapsed().as_secs_f64());
    let cpu = env::cpu_seconds(None) - cpu0;
    stop.store(true, Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Ok(json!({
        "concurrency": args.concurrency,
        "requests": c1 - c0,
        "seconds": round(secs, 3),
        "requests_per_s": ((c1 - c0) as f64 / secs).round(),
        "errors": errors.load(Relaxed),
        "client_cpu_us_per_request": round(cpu * 1e6 / (c1 - c0).max(1) as f64, 1),
    }))
}
