//! What every scenario shares: the common settings ([`Common`]), the benchmark's fixed parts
//! ([`Bench`]), a fresh deployment under test ([`Deployment`]: its own Redis, one node or a
//! cluster, a producer, endpoints on the receiver), the enqueue loop, a feed paced at a fixed rate, waiting for
//! progress, how much of the machine other processes had, and a description of the machine.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use herald_core::EndpointId;
use herald_producer::{NewJob, Producer};
use herald_store::EnqueueStatus;
use serde_json::{json, Value};
use tokio::time::MissedTickBehavior;

use crate::env::{self, now_us, Fleet, MachineTicks, Redis};
use crate::receiver::{payload, Receiver};

/// The namespace every scenario uses (each has a Redis of its own).
pub(super) const NAMESPACE: &str = "herald";

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
    /// Run the benchmark's Redis as a local Redis Cluster of this many masters (no replicas),
    /// the workers and the producer in cluster mode (HERALD_REDIS_CLUSTER); 0: one node.
    #[arg(long, global = true, default_value_t = 0)]
    pub cluster_masters: usize,
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

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
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

pub(super) fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// The 1-minute load average: other work on the machine shows here.
pub(super) fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(-1.0)
}

/// One deployment under test: a fresh Redis, a producer, endpoints pointing at the receiver.
pub(super) struct Deployment {
    pub(super) redis: Redis,
    pub(super) producer: Producer,
    pub(super) endpoints: Vec<EndpointId>,
}

impl Bench {
    /// A fresh deployment with the `--endpoints` endpoints.
    pub(super) async fn deploy(&self) -> anyhow::Result<Deployment> {
        self.deploy_with(self.common.endpoints).await
    }

    /// A fresh deployment with `endpoints` endpoints: `bench-<i>` posts to the receiver's
    /// [`Receiver::url`] of `i`.
    pub(super) async fn deploy_with(&self, endpoints: usize) -> anyhow::Result<Deployment> {
        let redis = self.start_redis().await?;
        let producer = producer(&redis, self.common.shards)?;
        producer.store().check().await?;
        let mut tasks = tokio::task::JoinSet::new();
        let ids: Vec<EndpointId> = (0..endpoints)
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

    /// A fresh Redis: one node, or a cluster of `--cluster-masters` masters.
    pub(super) async fn start_redis(&self) -> anyhow::Result<Redis> {
        Redis::start_with(self.common.cluster_masters, self.common.appendonly).await
    }

    pub(super) fn worker_env(&self, concurrency: usize) -> Vec<(&str, String)> {
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

/// A producer on `redis`, in cluster mode on a cluster.
pub(super) fn producer(redis: &Redis, shards: u16) -> anyhow::Result<Producer> {
    Ok(if redis.is_cluster() {
        Producer::connect_cluster(&redis.url, NAMESPACE, shards)?
    } else {
        Producer::connect(&redis.url, NAMESPACE, shards)?
    })
}

/// What one enqueue run did.
pub(super) struct Enqueue {
    pub(super) jobs: u64,
    pub(super) seconds: f64,
}

impl Enqueue {
    pub(super) fn rate(&self) -> f64 {
        self.jobs as f64 / self.seconds
    }
}

/// Enqueues the jobs numbered `jobs` (job i for endpoint i mod endpoints) with `enqueue_batch`,
/// `batch` at a time, from `callers` concurrent tasks; every job must be queued.
pub(super) async fn enqueue(
    producer: &Producer,
    endpoints: &[EndpointId],
    jobs: Range<u64>,
    size: usize,
    delay: Duration,
    batch: usize,
    callers: usize,
) -> anyhow::Result<Enqueue> {
    let (first, n) = (jobs.start, jobs.end - jobs.start);
    let endpoints = Arc::new(endpoints.to_vec());
    let per_caller = n.div_ceil(callers.max(1) as u64);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..callers.max(1) as u64 {
        let (producer, endpoints) = (producer.clone(), endpoints.clone());
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

/// What a paced feed did.
pub(super) struct Feed {
    /// From the first enqueue call to the last one's answer.
    pub(super) offered_for: Duration,
    /// How long the enqueue calls themselves took, in µs: the producer's share of the latency.
    pub(super) calls_us: Histogram<u64>,
}

/// Offers jobs `0..total` at `rate` per second, one `enqueue_job` call each, job i for endpoint
/// i mod endpoints; each payload carries the clock of just before its call. Returns once every
/// call has answered.
pub(super) async fn feed(
    d: &Deployment,
    rate: u64,
    total: u64,
    size: usize,
) -> anyhow::Result<Feed> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let started = Instant::now();
    let calls = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let producer = d.producer.clone();
        let endpoint = d.endpoints[i as usize % d.endpoints.len()].clone();
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
    let calls_us = calls.lock().expect("lock").clone();
    Ok(Feed {
        offered_for,
        calls_us,
    })
}

/// The CPU time spent when a measurement started: the machine's, the benchmark's and its
/// Redis's, to tell at the end how much of the machine other processes had.
pub(super) struct Noise {
    ticks: MachineTicks,
    bench: f64,
    redis: f64,
}

impl Noise {
    pub(super) fn start(d: &Deployment) -> Self {
        Self {
            ticks: env::machine_ticks(),
            bench: env::cpu_seconds(None),
            redis: d.redis.cpu_seconds(),
        }
    }

    /// Other processes' share of the machine since [`Noise::start`], the workers of `fleet`
    /// (all their CPU time) counted as the benchmark's own.
    pub(super) fn since_start(&self, d: &Deployment, fleet: &Fleet) -> Value {
        let workers: f64 = fleet
            .pids()
            .into_iter()
            .map(|p| env::cpu_seconds(Some(p)))
            .sum();
        let ours =
            env::cpu_seconds(None) - self.bench + d.redis.cpu_seconds() - self.redis + workers;
        env::noise_since(self.ticks, ours)
    }
}

/// Waits until `done()` holds, failing when `progress()` stays the same for `stall`.
pub(super) async fn wait_for(
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
