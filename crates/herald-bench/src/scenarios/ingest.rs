//! HTTP ingest: producers that cannot reach Redis enqueue through `herald serve`, one job per
//! request (`POST /api/v1/endpoints/{id}/jobs`), while one worker delivers them.
//!
//! The load comes from `h2load` (Debian's `nghttp2-client`): `--ingest-connections` HTTP/1.1
//! connections, `--ingest-jobs` requests of a `--payload`-byte JSON body spread over
//! `--ingest-endpoints` endpoints, with an admin token. Redis keeps an append-only file
//! (`appendfsync everysec`), as in production. Reported: `serve`'s CPU per enqueue, the
//! worker's and Redis' per job, the ingest rate h2load saw, and the end-to-end rate (first
//! request to the last job received).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Value};

use super::shared::{round, wait_for, Bench, NAMESPACE};
use crate::env::{self, Fleet, Serve};
use crate::receiver::Tracker;

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Requests sent, one job each.
    #[arg(long = "ingest-jobs", id = "ingest-jobs", default_value_t = 20_000)]
    pub jobs: u64,
    /// Client connections (HTTP/1.1, one request at a time on each).
    #[arg(long = "ingest-connections", default_value_t = 64)]
    pub connections: usize,
    /// Endpoints the requests are spread over, in turn.
    #[arg(long = "ingest-endpoints", default_value_t = 100)]
    pub endpoints: usize,
    /// Enqueue only: no worker delivers meanwhile.
    #[arg(long = "ingest-no-worker")]
    pub no_worker: bool,
}

/// What h2load reported.
#[derive(Debug, Default)]
struct H2load {
    seconds: f64,
    succeeded: u64,
    failed: u64,
}

/// Reads h2load's summary: `finished in 2.38s, …` and `requests: N total, N started, N done,
/// N succeeded, N failed, …`.
fn parse_h2load(out: &str) -> anyhow::Result<H2load> {
    let mut r = H2load::default();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("finished in ") {
            let t = rest.split(',').next().unwrap_or_default().trim();
            r.seconds = if let Some(ms) = t.strip_suffix("ms") {
                ms.parse::<f64>()? / 1000.0
            } else {
                t.trim_end_matches('s').parse()?
            };
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            for part in rest.split(',') {
                let mut words = part.split_whitespace();
                let (Some(n), Some(what)) = (words.next(), words.next()) else {
                    continue;
                };
                match what {
                    "succeeded" => r.succeeded = n.parse()?,
                    "failed" => r.failed = n.parse()?,
                    _ => {}
                }
            }
        }
    }
    anyhow::ensure!(r.seconds > 0.0, "no h2load summary in:\n{out}");
    Ok(r)
}

/// Writes the request body and the list of request URLs (one per endpoint) into `dir`.
fn request_files(
    dir: &Path,
    base: &str,
    endpoints: usize,
    payload: usize,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let body = dir.join("body.json");
    let filler = payload.saturating_sub(r#"{"event":"ingest","pad":""}"#.len());
    let doc = json!({ "event": "ingest", "pad": "x".repeat(filler) });
    std::fs::write(&body, serde_json::to_vec(&doc)?)?;
    let uris = dir.join("uris.txt");
    let list: String = (0..endpoints)
        .map(|i| format!("{base}/api/v1/endpoints/bench-{i}/jobs\n"))
        .collect();
    std::fs::write(&uris, list)?;
    Ok((body, uris))
}

pub async fn ingest(b: &Bench, args: &IngestArgs) -> anyhow::Result<Value> {
    let h2load = which_h2load()?;
    // As in production: an append-only file, flushed every second.
    let mut b = b.clone();
    b.common.appendonly = true;
    let d = b.deploy_with(args.endpoints).await?;
    let token = std::process::Command::new(&b.herald)
        .args(["token", "new", "--scope", "admin", "--json"])
        .output()
        .context("herald token new")?;
    let token: Value = serde_json::from_slice(&token.stdout).context("herald token new --json")?;
    let hashed = token["hashed"].as_str().context("hashed")?;
    let serve = Serve::start(&b.herald, &d.redis, NAMESPACE, b.common.shards, hashed).await?;
    let bearer = format!(
        "authorization: Bearer {}",
        token["token"].as_str().context("token")?
    );
    let dir = std::env::temp_dir().join(format!("herald-bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (body, uris) = request_files(&dir, &serve.base, args.endpoints, b.common.payload)?;

    let tracker = b.receiver.arm(Tracker::new(0, false, Duration::ZERO)?);
    let fleet = if args.no_worker {
        None
    } else {
        Some(Fleet::start(&b.herald, &d.redis, 1, &b.worker_env(b.common.concurrency)).await?)
    };
    let worker_pid = fleet.as_ref().map(|f| f.pids()[0]);
    let serve_pid = serve.child.id();
    let (cpu_serve, cpu_worker, cpu_redis) = (
        env::cpu_seconds(serve_pid),
        env::cpu_seconds(worker_pid),
        d.redis.cpu_seconds(),
    );
    let ticks = env::machine_ticks();
    let load = super::shared::loadavg();
    let started = Instant::now();
    let out = tokio::process::Command::new(&h2load)
        .arg("--h1")
        .args(["-c", &args.connections.to_string()])
        .args(["-n", &args.jobs.to_string()])
        .arg("-d")
        .arg(&body)
        .args(["-H", &bearer, "-H", "content-type: application/json"])
        .arg("-i")
        .arg(&uris)
        .output()
        .await
        .context("running h2load")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(out.status.success(), "h2load failed: {text}");
    let h2 = parse_h2load(&text)?;
    let serve_cpu = env::cpu_seconds(serve_pid) - cpu_serve;
    anyhow::ensure!(
        h2.succeeded == args.jobs && h2.failed == 0,
        "{} of {} enqueues succeeded ({} failed)",
        h2.succeeded,
        args.jobs,
        h2.failed
    );
    let delivered_s = if fleet.is_some() {
        let t = tracker.clone();
        wait_for(
            "ingested jobs delivered",
            b.common.stall,
            Duration::from_millis(5),
            || t.requests.load(std::sync::atomic::Ordering::Relaxed),
            || t.requests.load(std::sync::atomic::Ordering::Relaxed) >= args.jobs,
        )
        .await?;
        Some(started.elapsed().as_secs_f64())
    } else {
        None
    };
    let worker_cpu = env::cpu_seconds(worker_pid) - cpu_worker;
    let redis_cpu = d.redis.cpu_seconds() - cpu_redis;
    let ours = serve_cpu + worker_cpu + redis_cpu;
    let noise = env::noise_since(ticks, ours);
    if let Some(f) = fleet {
        f.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let ms_per_job = |s: f64| round(s * 1000.0 / args.jobs as f64, 4);
    Ok(json!({
        "jobs": args.jobs,
        "connections": args.connections,
        "endpoints": args.endpoints,
        "payload_bytes": b.common.payload,
        "worker": !args.no_worker,
        "enqueued_per_s": round(args.jobs as f64 / h2.seconds, 0),
        "end_to_end_per_s": delivered_s.map(|s| round(args.jobs as f64 / s, 0)),
        "delivered": tracker.requests.load(std::sync::atomic::Ordering::Relaxed),
        "serve_cpu_ms_per_job": ms_per_job(serve_cpu),
        "worker_cpu_ms_per_job": ms_per_job(worker_cpu),
        "redis_cpu_ms_per_job": ms_per_job(redis_cpu),
        "loadavg_before": load,
        "noise": noise,
    }))
}

/// The `h2load` on `PATH`, or an error saying how to get it.
fn which_h2load() -> anyhow::Result<std::path::PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("h2load"))
        .find(|p| p.is_file())
        .context("h2load not found on PATH: install it (Debian: apt-get install nghttp2-client)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2load_summary_is_read() {
        let out = "finished in 2.38s, 8396.87 req/s, 1.92MB/s\n\
                   requests: 20000 total, 20000 started, 20000 done, 19990 succeeded, 10 failed, 0 errored, 0 timeout\n";
        let r = parse_h2load(out).unwrap();
        assert_eq!((r.succeeded, r.failed), (19990, 10));
        assert!((r.seconds - 2.38).abs() < 1e-9);
        let r = parse_h2load("finished in 812.5ms, 1 req/s\nrequests: 1 total, 1 started, 1 done, 1 succeeded, 0 failed\n").unwrap();
        assert!((r.seconds - 0.8125).abs() < 1e-9);
        assert!(parse_h2load("nothing").is_err());
    }
}
