//! What the benchmark measures. Each scenario sets up what it needs (its own `redis-server`,
//! endpoints on the shared receiver, `herald worker` processes), runs, and returns its figures
//! as a JSON object. [`all`] runs every one of them in turn.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use herald_core::EndpointId;
use herald_producer::{NewJob, Producer};
use herald_store::EnqueueStatus;
use serde_json::{json, Value};
use tokio::time::MissedTickBehavior;

use crate::env::{self, commandstats, info_u64, jobs_in_store, now_us, Fleet, Redis};
use crate::receiver::{payload, Receiver, Tracker};

/// The namespace every scenario uses (each has a Redis of its own).
const NAMESPACE: &str = "herald";

/// Settings shared by every scenario.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Endpoints the jobs are spread over (job i goes to endpoint i mod endpoints).
    #[arg(long, global = true, default_value_t = 1000)]
    pub endpoints: usize,
    /// Payload size in bytes.
    #[arg(long, global = true, default_value_t = 1024)]
    pub payload: usize,
    /// Deliveries in flight per worker (HERALD_CONCURRENCY), and requests in flight in the
    /// bare reqwest loop of the ceiling.
    #[arg(long, global = true, default_value_t = 200)]
    pub concurrency: usize,
    /// Shards (HERALD_SHARDS).
    #[arg(long, global = true, default_value_t = 16)]
    pub shards: u16,
    /// Jobs per `enqueue_batch` call.
    #[arg(long, global = true, default_value_t = 1000)]
    pub batch: usize,
    /// Run the benchmark's Redis with the append-only file (`appendfsync everysec`), as a
    /// production Redis that keeps its jobs would; off by default (no persistence).
    #[arg(long, global = true)]
    pub appendonly: bool,
    /// Extra environment of every `herald worker`, e.g. `--worker-env HERALD_CLAIM_BATCH=500`
    /// (repeatable).
    #[arg(long = "worker-env", global = true, value_parser = parse_env)]
    pub worker_env: Vec<(String, String)>,
    /// Longest a measurement may go without progress before the run fails.
    #[arg(long, global = true, default_value = "60s", value_parser = parse_duration)]
    pub stall: Duration,
}

/// What every scenario gets: the `herald` binary, the receiver, the common settings.
#[derive(Debug, Clone)]
pub struct Bench {
    pub herald: PathBuf,
    pub receiver: Receiver,
    pub common: Common,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?}: the unit must be ms, s, m or h")),
    })
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// The 1-minute load average: other work on the machine shows here.
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(-1.0)
}

/// One deployment under test: a fresh Redis, a producer, endpoints pointing at the receiver.
struct Deployment {
    redis: Redis,
    producer: Producer,
    endpoints: Vec<EndpointId>,
}

impl Bench {
    async fn deploy(&self) -> anyhow::Result<Deployment> {
        let redis = Redis::start(self.common.appendonly).await?;
        let producer = Producer::connect(&redis.url, NAMESPACE, self.common.shards)?;
        producer.store().check().await?;
        let mut tasks = tokio::task::JoinSet::new();
        let ids: Vec<EndpointId> = (0..self.common.endpoints)
            .map(|i| EndpointId::new(format!("bench-{i}")))
            .collect::<Result<_, _>>()?;
        for chunk in ids.chunks(ids.len().div_ceil(8).max(1)) {
            let (producer, receiver) = (producer.clone(), self.receiver.clone());
            let chunk: Vec<(usize, EndpointId)> = chunk
                .iter()
                .map(|id| {
                    let i = id.as_str()["bench-".len()..].parse().expect("index");
                    (i, id.clone())
                })
                .collect();
            tasks.spawn(async move {
                for (i, id) in chunk {
                    producer
                        .store()
                        .set_endpoint(&id, &receiver.url(i), None)
                        .await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        Ok(Deployment {
            redis,
            producer,
            endpoints: ids,
        })
    }

    fn worker_env(&self, concurrency: usize) -> Vec<(&str, String)> {
        let mut env = vec![
            ("HERALD_CONCURRENCY", concurrency.to_string()),
            ("HERALD_SHARDS", self.common.shards.to_string()),
        ];
        for (k, v) in &self.common.worker_env {
            env.push((k.as_str(), v.clone()));
        }
        env
    }
}

/// What one enqueue run did.
struct Enqueue {
    jobs: u64,
    seconds: f64,
}

impl Enqueue {
    fn rate(&self) -> f64 {
        self.jobs as f64 / self.seconds
    }
}

/// Enqueues jobs `first..first + n` with `enqueue_batch`, `batch` at a time, from `callers`
/// concurrent tasks; every job must be queued.
async fn enqueue(
    d: &Deployment,
    first: u64,
    n: u64,
    size: usize,
    delay: Duration,
    batch: usize,
    callers: usize,
) -> anyhow::Result<Enqueue> {
    let endpoints = Arc::new(d.endpoints.clone());
    let per_caller = n.div_ceil(callers.max(1) as u64);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..callers.max(1) as u64 {
        let (producer, endpoints) = (d.producer.clone(), endpoints.clone());
        let start = first + c * per_caller;
        let end = (start + per_caller).min(first + n);
        tasks.spawn(async move {
            let mut i = start;
            while i < end {
                let upto = (i + batch as u64).min(end);
                let t = now_us();
                let jobs: Vec<NewJob> = (i..upto)
                    .map(|j| {
                        let endpoint = endpoints[(j % endpoints.len() as u64) as usize].clone();
                        let mut job = NewJob::new(endpoint, payload(j, t, size));
                        job.delay = delay;
                        job
                    })
                    .collect();
                for r in producer.enqueue_batch(&jobs).await? {
                    let e = r?;
                    anyhow::ensure!(
                        e.status == EnqueueStatus::Queued,
                        "job {} was {:?}, not queued",
                        e.job_id,
                        e.status
                    );
                }
                i = upto;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(Enqueue {
        jobs: n,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Waits until `done()` holds, failing when `progress()` stays the same for `stall`.
async fn wait_for(
    what: &str,
    stall: Duration,
    every: Duration,
    mut progress: impl FnMut() -> u64,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let mut last = (progress(), Instant::now());
    while !done() {
        tokio::time::sleep(every).await;
        let p = progress();
        if p != last.0 {
            last = (p, Instant::now());
        } else if last.1.elapsed() > stall {
            anyhow::bail!("{what}: no progress for {stall:?} (at {p})");
        }
    }
    Ok(())
}

/// Enqueues `n` due jobs, then runs `workers` worker processes until every job is delivered
/// and acknowledged (`backlog` jobs, scheduled for later, stay in the store).
async fn deliver_all(
    b: &Bench,
    d: &Deployment,
    workers: usize,
    n: u64,
    backlog: u64,
) -> anyhow::Result<Value> {
    let c = &b.common;
    let tracker = b.receiver.arm(Tracker::new(n, false, Duration::ZERO)?);
    let mut conn = d.redis.conn().await?;
    let mem_before = info_u64(&mut conn, "memory", "used_memory").await?;
    let enq = enqueue(d, 0, n, c.payload, Duration::ZERO, c.batch, 1).await?;
    let mem_after = info_u64(&mut conn, "memory", "used_memory").await?;
    let load = loadavg();
    let stats_before = commandstats(&mut conn).await?;

    let cpu_redis = env::cpu_seconds(d.redis.pid());
    let cpu_bench = env::cpu_seconds(None);
    let ticks = env::machine_ticks();
    let fleet = Fleet::start(
        &b.herald,
        &d.redis.url,
        workers,
        &b.worker_env(c.concurrency),
    )
    .await?;
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
        (left, dead) = jobs_in_store(&mut conn, NAMESPACE, c.shards).await?;
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
    let cpu_redis = env::cpu_seconds(d.redis.pid()) - cpu_redis;
    let cpu_bench = env::cpu_seconds(None) - cpu_bench;
    let cpu_workers: f64 = fleet
        .pids()
        .into_iter()
        .map(|p| env::cpu_seconds(Some(p)))
        .sum();
    let noise = env::noise_since(ticks, cpu_redis + cpu_bench + cpu_workers);
    let rss = fleet.peak_rss_kib();
    fleet.stop().await;
    let stats_after = commandstats(&mut conn).await?;

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

// ---------------------------------------------------------------------------------------------
// (a) the ceiling

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

// ---------------------------------------------------------------------------------------------
// (b) end-to-end throughput

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

// ---------------------------------------------------------------------------------------------
// (c) latency at a fixed offered rate

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

// ---------------------------------------------------------------------------------------------
// (d) backlog scaling

#[derive(Debug, Clone, Args)]
pub struct BacklogArgs {
    /// Due jobs delivered in each run.
    #[arg(long, default_value_t = 200_000)]
    pub jobs: u64,
    /// Jobs scheduled for later, sitting in the sets during the second run.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: u64,
    /// How far in the future the backlog is scheduled.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub backlog_delay: Duration,
    /// Worker processes.
    #[arg(long = "backlog-workers", id = "backlog-workers", default_value_t = 2)]
    pub workers: usize,
}

/// End-to-end throughput with an empty store, then again with `backlog` jobs scheduled in the
/// future in the same shards.
pub async fn backlog(b: &Bench, args: &BacklogArgs) -> anyhow::Result<Value> {
    let c = &b.common;
    let d = b.deploy().await?;
    let empty = deliver_all(b, &d, args.workers, args.jobs, 0).await?;
    let fill = enqueue(
        &d,
        args.jobs,
        args.backlog,
        c.payload,
        args.backlog_delay,
        c.batch,
        4,
    )
    .await?;
    let mut conn = d.redis.conn().await?;
    let used = info_u64(&mut conn, "memory", "used_memory").await?;
    let full = deliver_all(b, &d, args.workers, args.jobs, args.backlog).await?;
    let (e, f) = (
        empty["deliveries_per_s"].as_f64().unwrap_or(0.0),
        full["deliveries_per_s"].as_f64().unwrap_or(0.0),
    );
    Ok(json!({
        "backlog": args.backlog,
        "backlog_enqueue_jobs_per_s": fill.rate().round(),
        "redis_used_memory_mib_with_backlog": round(used as f64 / 1048576.0, 1),
        "empty": empty,
        "with_backlog": full,
        "ratio": round(f / e.max(1.0), 3),
    }))
}

// ---------------------------------------------------------------------------------------------
// (e) enqueue throughput, and Redis memory per queued job

#[derive(Debug, Clone, Args)]
pub struct EnqueueArgs {
    /// Jobs enqueued in each run.
    #[arg(long, default_value_t = 200_000)]
    pub jobs: u64,
    /// Concurrent callers of each run, in order (each on a fresh Redis).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub callers: Vec<usize>,
}

/// `enqueue_batch` throughput with 1 and more concurrent callers, and the growth of Redis's
/// `used_memory` per queued job.
pub async fn enqueue_rate(b: &Bench, args: &EnqueueArgs) -> anyhow::Result<Value> {
    let c = &b.common;
    let mut runs = Vec::new();
    for &callers in &args.callers {
        let d = b.deploy().await?;
        let mut conn = d.redis.conn().await?;
        let before = info_u64(&mut conn, "memory", "used_memory").await?;
        let load = loadavg();
        let (cpu_redis, cpu_bench) = (env::cpu_seconds(d.redis.pid()), env::cpu_seconds(None));
        let ticks = env::machine_ticks();
        let stats_before = commandstats(&mut conn).await?;
        let e = enqueue(
            &d,
            0,
            args.jobs,
            c.payload,
            Duration::ZERO,
            c.batch,
            callers,
        )
        .await?;
        let stats_after = commandstats(&mut conn).await?;
        let script = |s: &std::collections::BTreeMap<String, (u64, u64)>| {
            s.get("evalsha").copied().unwrap_or_default()
        };
        let (calls, usec) = (
            script(&stats_after).0 - script(&stats_before).0,
            script(&stats_after).1 - script(&stats_before).1,
        );
        let cpu_redis = env::cpu_seconds(d.redis.pid()) - cpu_redis;
        let cpu_bench = env::cpu_seconds(None) - cpu_bench;
        let after = info_u64(&mut conn, "memory", "used_memory").await?;
        let (jobs, _) = jobs_in_store(&mut conn, NAMESPACE, c.shards).await?;
        anyhow::ensure!(
            jobs == args.jobs,
            "{jobs} jobs in the store, not {}",
            args.jobs
        );
        let per_job = (after as f64 - before as f64) / args.jobs as f64;
        runs.push(json!({
            "callers": callers,
            "batch": c.batch,
            "jobs": args.jobs,
            "seconds": round(e.seconds, 3),
            "jobs_per_s": e.rate().round(),
            "redis_bytes_per_job": round(per_job, 1),
            "redis_bytes_per_job_over_payload": round(per_job - c.payload as f64, 1),
            // CPU seconds per second of the run, and µs per job: Redis, and the producer.
            "cpu": {
                "redis": round(cpu_redis / e.seconds, 2),
                "producer": round(cpu_bench / e.seconds, 2),
            },
            "cpu_us_per_job": {
                "redis": round(cpu_redis * 1e6 / args.jobs as f64, 1),
                "producer": round(cpu_bench * 1e6 / args.jobs as f64, 1),
            },
            // Time Redis spent inside the enqueue scripts (INFO commandstats of EVALSHA: one
            // enqueue-batch-4.lua call per shard of each batch), per call and per job.
            "script_calls": calls,
            "script_usec_per_call": round(usec as f64 / calls.max(1) as f64, 2),
            "script_usec_per_job": round(usec as f64 / args.jobs as f64, 2),
            "loadavg_before": load,
            "noise": env::noise_since(ticks, cpu_redis + cpu_bench),
        }));
    }
    Ok(json!({ "payload_bytes": c.payload, "runs": runs }))
}

// ---------------------------------------------------------------------------------------------
// (f) worker memory at 1,000 deliveries in flight

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
    let fleet = Fleet::start(&b.herald, &d.redis.url, 1, &b.worker_env(args.in_flight)).await?;
    let pid = fleet.pids()[0];
    let (_, idle_rss) = env::memory_kib(pid)?;
    enqueue(&d, 0, args.jobs, c.payload, Duration::ZERO, c.batch, 1).await?;
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

// ---------------------------------------------------------------------------------------------
// Issue 2: an idle fleet's cost, and pickup latency with an idle fleet

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
        &d.redis.url,
        args.workers,
        &b.worker_env(c.concurrency),
    )
    .await?;
    tokio::time::sleep(args.settle).await;
    let mut conn = d.redis.conn().await?;
    let port = d.redis.port;
    let duration = args.duration;
    let monitor = tokio::spawn(async move { env::monitor(port, duration).await });
    let before = info_u64(&mut conn, "stats", "total_commands_processed").await?;
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    let after = info_u64(&mut conn, "stats", "total_commands_processed").await?;
    let secs = started.elapsed().as_secs_f64();
    let (mut top, lua) = monitor.await??;
    // The benchmark's own INFO calls are not the fleet's.
    top.remove("INFO");
    let top_total: u64 = top.values().sum();
    let lua_total: u64 = lua.values().sum();
    let per_s = |n: u64| round(n as f64 / duration.as_secs_f64(), 2);
    // Two of ours: the first INFO (counted after it ran) and the MONITOR, whichever came first.
    let total = (after - before).saturating_sub(2);

    // Pickup latency, same fleet.
    let tracker = b
        .receiver
        .arm(Tracker::new(args.pickups, true, Duration::ZERO)?);
    for i in 0..args.pickups {
        let endpoint = d.endpoints[i as usize % d.endpoints.len()].clone();
        let job = NewJob::new(endpoint, payload(i, now_us(), c.payload));
        d.producer.enqueue_job(job).await?;
        let t = tracker.clone();
        wait_for(
            "pickup",
            c.stall,
            Duration::from_millis(1),
            || t.unique(),
            || t.unique() > i,
        )
        .await?;
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

// ---------------------------------------------------------------------------------------------
// Where Redis's time goes: the hot scripts one at a time

#[derive(Debug, Clone, Args)]
pub struct ScriptsArgs {
    /// Jobs enqueued, claimed and acknowledged in each round.
    #[arg(long = "script-jobs", id = "script-jobs", default_value_t = 100_000)]
    pub jobs: u64,
    /// Jobs per claim call (the worker's HERALD_CLAIM_BATCH).
    #[arg(long = "claim-batch", default_value_t = 100)]
    pub claim_batch: usize,
}

/// Redis time per job of each hot-path script, measured alone through the store API (no
/// workers, no HTTP): `enqueue-batch-4.lua` (one call per shard of each batch),
/// `claim-12.lua` (batches of `claim_batch` per shard) and `ack-8.lua` (one call per shard per
/// batch, as the settler does), the last with and without the attempt-log entry a worker
/// writes for each delivery.
pub async fn scripts(b: &Bench, args: &ScriptsArgs) -> anyhow::Result<Value> {
    let c = &b.common;
    let d = b.deploy().await?;
    let store = d.producer.store().clone();
    // Every job is claimed before any is acknowledged: no in-flight limit may bind.
    for id in &d.endpoints {
        let url = store.endpoint(id).await?.expect("deployed").url;
        let flow = herald_store::FlowChange {
            max_in_flight: Some(herald_core::MAX_IN_FLIGHT_CEILING),
            rate: None,
        };
        store.set_endpoint_with(id, &url, None, flow).await?;
    }
    let mut conn = d.redis.conn().await?;
    let mut out = serde_json::Map::new();
    for with_log in [true, false] {
        let mut phase = serde_json::Map::new();
        let mut measure = Measure::start(&d, &mut conn).await?;
        enqueue(&d, 0, args.jobs, c.payload, Duration::ZERO, c.batch, 1).await?;
        phase.insert(
            "enqueue".into(),
            measure.stop(&d, &mut conn, args.jobs).await?,
        );

        let mut measure = Measure::start(&d, &mut conn).await?;
        let mut claimed = Vec::new();
        for shard in 0..c.shards {
            let mut candidates = Vec::new();
            loop {
                let claim = store
                    .claim(
                        &mut conn,
                        shard,
                        args.claim_batch,
                        Duration::from_secs(300),
                        &candidates,
                        herald_core::MAX_IN_FLIGHT_CEILING,
                    )
                    .await?;
                if claim.jobs.is_empty() && claim.candidates.is_empty() {
                    break;
                }
                candidates = claim.candidates;
                claimed.extend(claim.jobs.into_iter().map(|j| (shard, j)));
            }
        }
        anyhow::ensure!(
            claimed.len() as u64 == args.jobs,
            "claimed {}",
            claimed.len()
        );
        phase.insert(
            "claim".into(),
            measure.stop(&d, &mut conn, args.jobs).await?,
        );

        let mut measure = Measure::start(&d, &mut conn).await?;
        for chunk in claimed.chunks(1024) {
            let mut by_shard: std::collections::BTreeMap<u16, Vec<herald_store::Settlement>> =
                Default::default();
            for (shard, job) in chunk {
                // What a worker logs for a delivered attempt (delivery.rs).
                let entry = with_log.then(|| {
                    json!({
                        "at_ms": 1_795_730_620_170i64, "job_id": job.id, "attempt": job.attempts,
                        "outcome": "delivered", "status": 200, "latency_ms": 1, "error": null,
                        "response_body": "ok",
                    })
                    .to_string()
                });
                by_shard
                    .entry(*shard)
                    .or_default()
                    .push(herald_store::Settlement {
                        id: job.id.clone(),
                        token: job.token,
                        attempt: job.attempts,
                        endpoint: job.endpoint.clone(),
                        action: herald_store::Settle::Ack,
                        strike: herald_store::Strike::None,
                        congestion: None,
                        pause: None,
                        log_entry: entry,
                    });
            }
            for (shard, items) in by_shard {
                let report = store
                    .settle(
                        &mut conn,
                        shard,
                        &items,
                        5,
                        herald_core::MAX_IN_FLIGHT_CEILING,
                    )
                    .await?;
                anyhow::ensure!(report.applied.iter().all(|a| *a), "an ack was refused");
            }
        }
        phase.insert("ack".into(), measure.stop(&d, &mut conn, args.jobs).await?);
        let (left, _) = jobs_in_store(&mut conn, NAMESPACE, c.shards).await?;
        anyhow::ensure!(left == 0, "{left} jobs left after the acks");
        out.insert(
            if with_log {
                "with_attempt_log"
            } else {
                "without_attempt_log"
            }
            .into(),
            Value::Object(phase),
        );
    }
    out.insert("jobs".into(), json!(args.jobs));
    out.insert("claim_batch".into(), json!(args.claim_batch));
    Ok(Value::Object(out))
}

/// Redis's CPU time and script time between two points.
struct Measure {
    cpu: f64,
    script: (u64, u64),
    started: Instant,
}

impl Measure {
    async fn start(
        d: &Deployment,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> anyhow::Result<Self> {
        let script = commandstats(conn)
            .await?
            .get("evalsha")
            .copied()
            .unwrap_or_default();
        Ok(Self {
            cpu: env::cpu_seconds(d.redis.pid()),
            script,
            started: Instant::now(),
        })
    }

    async fn stop(
        &mut self,
        d: &Deployment,
        conn: &mut redis::aio::MultiplexedConnection,
        jobs: u64,
    ) -> anyhow::Result<Value> {
        let secs = self.started.elapsed().as_secs_f64();
        let cpu = env::cpu_seconds(d.redis.pid()) - self.cpu;
        let (calls, usec) = commandstats(conn)
            .await?
            .get("evalsha")
            .copied()
            .unwrap_or_default();
        let (calls, usec) = (calls - self.script.0, usec - self.script.1);
        Ok(json!({
            "script_calls": calls,
            "script_usec_per_job": round(usec as f64 / jobs as f64, 2),
            "redis_cpu_us_per_job": round(cpu * 1e6 / jobs as f64, 2),
            "jobs_per_s": (jobs as f64 / secs).round(),
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Everything

#[derive(Debug, Clone, Args)]
pub struct AllArgs {
    /// Jobs of each end-to-end run and of the enqueue runs.
    #[arg(long, default_value_t = 200_000)]
    pub jobs: u64,
    /// Worker processes of the end-to-end runs, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Concurrent callers of the enqueue runs.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub callers: Vec<usize>,
    #[command(flatten)]
    pub ceiling: CeilingArgs,
    #[arg(long = "latency-rate", default_value_t = 2000)]
    pub latency_rate: u64,
    #[arg(long = "latency-duration", default_value = "10s", value_parser = parse_duration)]
    pub latency_duration: Duration,
    #[arg(long = "latency-workers", default_value_t = 2)]
    pub latency_workers: usize,
    /// Jobs scheduled for later in the backlog run.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: u64,
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub backlog_delay: Duration,
    #[arg(long = "backlog-workers", default_value_t = 2)]
    pub backlog_workers: usize,
    #[command(flatten)]
    pub memory: MemoryArgs,
    #[command(flatten)]
    pub idle: IdleArgs,
    #[command(flatten)]
    pub scripts: ScriptsArgs,
    /// Scenarios to leave out, comma-separated (throughput, enqueue, latency, backlog, memory,
    /// idle, scripts).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
}

/// Every scenario in turn; their results keyed by name.
pub async fn all(b: &Bench, args: &AllArgs) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    let on = |name: &str| !args.skip.iter().any(|s| s == name);
    let step = |name: &str| eprintln!("herald-bench: {name}…");
    if on("throughput") {
        step("throughput (ceiling, then end-to-end)");
        let t = ThroughputArgs {
            jobs: args.jobs,
            workers: args.workers.clone(),
            ceiling: args.ceiling.clone(),
        };
        out.insert("throughput".into(), throughput(b, &t).await?);
    }
    if on("enqueue") {
        step("enqueue");
        let e = EnqueueArgs {
            jobs: args.jobs,
            callers: args.callers.clone(),
        };
        out.insert("enqueue".into(), enqueue_rate(b, &e).await?);
    }
    if on("latency") {
        step("latency");
        let l = LatencyArgs {
            rate: args.latency_rate,
            duration: args.latency_duration,
            workers: args.latency_workers,
        };
        out.insert("latency".into(), latency(b, &l).await?);
    }
    if on("backlog") {
        step("backlog");
        let k = BacklogArgs {
            jobs: args.jobs,
            backlog: args.backlog,
            backlog_delay: args.backlog_delay,
            workers: args.backlog_workers,
        };
        out.insert("backlog".into(), backlog(b, &k).await?);
    }
    if on("memory") {
        step("memory");
        out.insert("memory".into(), memory(b, &args.memory).await?);
    }
    if on("idle") {
        step("idle");
        out.insert("idle".into(), idle(b, &args.idle).await?);
    }
    if on("scripts") {
        step("scripts");
        out.insert("scripts".into(), scripts(b, &args.scripts).await?);
    }
    Ok(Value::Object(out))
}

/// The machine the figures come from.
pub async fn machine(herald: &Path) -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_default();
    let meminfo = read("/proc/meminfo");
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let version = |cmd: &Path, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory_gib": round(mem_kib as f64 / 1048576.0, 1),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "redis": version(Path::new("redis-server"), "--version"),
        "herald": version(herald, "--version"),
        "loadavg": read("/proc/loadavg").trim(),
    })
}
