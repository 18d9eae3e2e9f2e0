//! Redis-bound claim and settle, the HTTP side left out: a backlog of due jobs over many
//! endpoints and every shard, enqueued before the clock starts, then drained by concurrent loops
//! that each claim a batch from a shard and acknowledge the whole batch at once. The loops call
//! the store as the worker's claim loop and settler do: the same claims (lease, candidates,
//! in-flight limit), the same wake-up hints after a full claim and after a settlement, the same
//! acks, with successes sampled into the attempt log as a worker samples them. Run on one node
//! and on a cluster (`--cluster-masters`), it shows how claim and settle scale with masters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use herald_core::DEFAULT_MAX_IN_FLIGHT;
use herald_store::{Claim, Conn, Settle, Settlement, Store, Strike};
use serde_json::{json, Value};

use super::shared::{enqueue, loadavg, round, Bench, Deployment, NAMESPACE};
use crate::env::{self, Redis};

#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Due jobs in the backlog of each run.
    #[arg(long = "redis-jobs", id = "redis-jobs", default_value_t = 200_000)]
    pub jobs: u64,
    /// Concurrent claim-and-ack loops, one run per count, in order.
    #[arg(
        long = "redis-loops",
        id = "redis-loops",
        value_delimiter = ',',
        default_value = "16"
    )]
    pub loops: Vec<usize>,
    /// Jobs per claim (the worker's HERALD_CLAIM_BATCH), one run per size, in order; every
    /// loop count runs with every size.
    #[arg(
        long = "redis-batch",
        id = "redis-batch",
        value_delimiter = ',',
        default_value = "100"
    )]
    pub batch: Vec<usize>,
    /// Redis connections the loops share, in turn (as a worker's claim loop and settler share
    /// one on a cluster); 0: one per loop.
    #[arg(
        long = "redis-connections",
        id = "redis-connections",
        default_value_t = 0
    )]
    pub connections: usize,
}

/// The worker's defaults: the lease of a claim, and the strikes that disable an endpoint.
const LEASE: Duration = Duration::from_secs(60);
const DISABLE_AFTER: u32 = 5;

/// A worker logs at most one success per endpoint in this time (as `delivery.rs` does).
const SUCCESS_LOG_EVERY: Duration = Duration::from_secs(1);

/// For every loop count and claim size: a backlog of `jobs` due jobs, then the loops until it
/// is drained; jobs settled per second, Redis CPU per job (summed over the masters, and each
/// master's share), the benchmark process's CPU per job.
pub async fn redis(b: &Bench, args: &RedisArgs) -> anyhow::Result<Value> {
    let d = b.deploy().await?;
    let store = d.producer.store().clone();
    let placement = placement(&d.redis, &store).await?;
    let mut runs = Vec::new();
    let mut first_job = 0;
    for &loops in &args.loops {
        for &batch in &args.batch {
            let jobs = first_job..first_job + args.jobs;
            first_job = jobs.end;
            runs.push(run(b, &d, &placement, jobs, loops.max(1), batch.max(1), args).await?);
        }
    }
    Ok(json!({
        "redis_masters": d.redis.masters(),
        "redis_cluster": d.redis.is_cluster(),
        "shards": store.shards(),
        "endpoints": d.endpoints.len(),
        "payload_bytes": b.common.payload,
        "shards_per_master": placement.iter().fold(vec![0; d.redis.masters()], |mut n, m| {
            n[*m] += 1;
            n
        }),
        "runs": runs,
    }))
}

/// Which master serves each shard (0 on one node).
async fn placement(redis: &Redis, store: &Store) -> anyhow::Result<Vec<usize>> {
    let mut out = Vec::new();
    for shard in 0..store.shards() {
        out.push(redis.master_of_key(&store.keys(shard).jobs).await?);
    }
    Ok(out)
}

/// One run: enqueue the backlog (not timed), then drain it with `loops` loops claiming
/// `batch` jobs at a time.
async fn run(
    b: &Bench,
    d: &Deployment,
    placement: &[usize],
    jobs: std::ops::Range<u64>,
    loops: usize,
    batch: usize,
    args: &RedisArgs,
) -> anyhow::Result<Value> {
    let c = &b.common;
    let store = d.producer.store().clone();
    let n = jobs.end - jobs.start;
    enqueue(
        &d.producer,
        &d.endpoints,
        jobs.clone(),
        c.payload,
        Duration::ZERO,
        c.batch,
        4,
    )
    .await?;
    // The busiest master's share of the backlog: what bounds the speed-up of a cluster.
    let mut per_master = vec![0u64; d.redis.masters()];
    for j in jobs.clone() {
        let endpoint = &d.endpoints[(j % d.endpoints.len() as u64) as usize];
        per_master[placement[usize::from(store.shard_of(endpoint))]] += 1;
    }
    let connections = if args.connections == 0 {
        loops
    } else {
        args.connections.min(loops)
    };
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(store.dedicated(Some(Duration::from_secs(5))).await?);
    }
    let shared = Arc::new(Shared {
        store: store.clone(),
        settled: AtomicU64::new(0),
        claims: AtomicU64::new(0),
        empty_claims: AtomicU64::new(0),
        settle_calls: AtomicU64::new(0),
        logged: AtomicU64::new(0),
        drained: (0..store.shards())
            .map(|_| AtomicBool::new(false))
            .collect(),
        successes: Mutex::new(HashMap::new()),
    });

    let load = loadavg();
    let stats_before = d.redis.commandstats().await?;
    let cpu_before = d.redis.used_cpu_each().await?;
    let client_before = env::cpu_seconds(None);
    let ticks = env::machine_ticks();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for l in 0..loops {
        let first = (l * usize::from(store.shards()) / loops) as u16;
        let conn = conns[l % connections].clone();
        tasks.spawn(drain(shared.clone(), conn, first, batch));
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let client = env::cpu_seconds(None) - client_before;
    let cpu_after = d.redis.used_cpu_each().await?;
    let stats_after = d.redis.commandstats().await?;
    let masters_cpu: Vec<f64> = cpu_after
        .iter()
        .zip(&cpu_before)
        .map(|(a, b)| a - b)
        .collect();
    let redis_cpu: f64 = masters_cpu.iter().sum();
    let noise = env::noise_since(ticks, redis_cpu + client);

    let settled = shared.settled.load(Relaxed);
    anyhow::ensure!(settled == n, "{settled} jobs settled, not {n}");
    let (left, dead) = d.redis.jobs_in_store(NAMESPACE, c.shards).await?;
    anyhow::ensure!(
        left == 0,
        "{left} jobs left in the store ({dead} dead) after the run"
    );
    let delta = |name: &str| {
        let (c1, u1) = stats_after.get(name).copied().unwrap_or_default();
        let (c0, u0) = stats_before.get(name).copied().unwrap_or_default();
        (c1 - c0, u1 - u0)
    };
    let (script_calls, script_usec) = delta("evalsha");
    let commands: u64 = stats_after.values().map(|(calls, _)| calls).sum::<u64>()
        - stats_before.values().map(|(calls, _)| calls).sum::<u64>();
    let per_job = |x: f64| round(x * 1e6 / n as f64, 2);
    Ok(json!({
        "loops": loops,
        "claim_batch": batch,
        "connections": connections,
        "jobs": n,
        "seconds": round(seconds, 3),
        "jobs_per_s": (n as f64 / seconds).round(),
        "claims": shared.claims.load(Relaxed),
        "empty_claims": shared.empty_claims.load(Relaxed),
        "settle_calls": shared.settle_calls.load(Relaxed),
        "attempt_log_entries": shared.logged.load(Relaxed),
        "busiest_master_job_share": round(
            *per_master.iter().max().unwrap_or(&0) as f64 / n as f64,
            3
        ),
        // CPU per job in µs (Redis: INFO cpu, summed over the masters) and CPU seconds per
        // second of the run (2.0 is both cores of a 2-core machine).
        "redis_cpu_us_per_job": per_job(redis_cpu),
        "client_cpu_us_per_job": per_job(client),
        "cpu": {
            "redis": round(redis_cpu / seconds, 2),
            "redis_per_master": masters_cpu.iter().map(|s| round(s / seconds, 2)).collect::<Vec<_>>(),
            "client": round(client / seconds, 2),
        },
        // Time inside the scripts (INFO commandstats of EVALSHA), per job; the commands Redis
        // ran (INFO commandstats: those the scripts ran included), per job.
        "script_calls": script_calls,
        "script_usec_per_job": round(script_usec as f64 / n as f64, 2),
        "redis_commands_per_job": round(commands as f64 / n as f64, 3),
        "loadavg_before": load,
        "noise": noise,
    }))
}

/// What the loops share.
struct Shared {
    store: Store,
    settled: AtomicU64,
    claims: AtomicU64,
    empty_claims: AtomicU64,
    settle_calls: AtomicU64,
    logged: AtomicU64,
    /// Per shard: nothing queued and nothing in flight any more.
    drained: Vec<AtomicBool>,
    /// When each endpoint last had a success logged: the loops sample as one worker does.
    successes: Mutex<HashMap<String, Instant>>,
}

impl Shared {
    /// Whether a success of `endpoint` goes into its attempt log now.
    fn admit(&self, endpoint: &str) -> bool {
        let now = Instant::now();
        let mut last = self.successes.lock().expect("lock");
        match last.get_mut(endpoint) {
            Some(at) if now.duration_since(*at) < SUCCESS_LOG_EVERY => false,
            Some(at) => {
                *at = now;
                true
            }
            None => {
                last.insert(endpoint.to_owned(), now);
                true
            }
        }
    }

    /// The settlement of a delivered job, with its attempt-log entry if sampled.
    fn ack(&self, job: herald_store::ClaimedJob, claimed_at_ms: i64) -> Settlement {
        let log_entry = self.admit(&job.endpoint).then(|| {
            self.logged.fetch_add(1, Relaxed);
            json!({
                "at_ms": claimed_at_ms,
                "job_id": job.id,
                "attempt": job.attempts,
                "outcome": "delivered",
                "status": 200,
                "latency_ms": 0,
                "error": null,
                "response_body": "",
            })
            .to_string()
        });
        Settlement {
            id: job.id,
            token: job.token,
            attempt: job.attempts,
            endpoint: job.endpoint,
            action: Settle::Ack,
            strike: Strike::None,
            claimed_ms: claimed_at_ms,
            congested: false,
            pause: None,
            log_entry,
        }
    }
}

/// One loop: from shard `first` on, claims up to `batch` jobs and acknowledges them all, and
/// stays on the shard while its claims say more is due (as the claim loop keeps a hot shard
/// hot), then moves to the next shard not yet drained; ends when every shard is drained.
async fn drain(
    shared: Arc<Shared>,
    mut conn: Conn,
    first: u16,
    batch: usize,
) -> anyhow::Result<()> {
    let store = &shared.store;
    let shards = store.shards();
    // Per shard, the endpoints this loop's last claim named as next, as a worker keeps them.
    let mut candidates: Vec<Vec<String>> = vec![Vec::new(); usize::from(shards)];
    let mut shard = first;
    loop {
        if shared.drained.iter().all(|d| d.load(Relaxed)) {
            return Ok(());
        }
        let s = usize::from(shard);
        if shared.drained[s].load(Relaxed) {
            shard = (shard + 1) % shards;
            continue;
        }
        let claim: Claim = store
            .claim(
                &mut conn,
                shard,
                batch,
                LEASE,
                &candidates[s],
                DEFAULT_MAX_IN_FLIGHT,
            )
            .await?;
        shared.claims.fetch_add(1, Relaxed);
        let got = claim.jobs.len();
        let more = claim.next_ready_ms.is_some_and(|at| at <= claim.now_ms);
        // As the claim loop: more due than it took, so it wakes another worker.
        if got == batch && more {
            store.wake(&mut conn, shard, claim.now_ms).await?;
        }
        candidates[s] = claim.candidates;
        if got == 0 {
            shared.empty_claims.fetch_add(1, Relaxed);
            // Nothing to serve, nothing due later, nothing in flight: no job is left.
            if candidates[s].is_empty()
                && claim.next_ready_ms.is_none()
                && claim.next_lease_deadline_ms.is_none()
            {
                shared.drained[s].store(true, Relaxed);
            }
            // A claim without candidates only names them: try again with them.
            if candidates[s].is_empty() {
                shard = (shard + 1) % shards;
            }
            continue;
        }
        let settlements: Vec<Settlement> = claim
            .jobs
            .into_iter()
            .map(|job| shared.ack(job, claim.now_ms))
            .collect();
        let report = store
            .settle(
                &mut conn,
                shard,
                &settlements,
                DISABLE_AFTER,
                DEFAULT_MAX_IN_FLIGHT,
            )
            .await?;
        shared.settle_calls.fetch_add(1, Relaxed);
        anyhow::ensure!(report.applied.iter().all(|a| *a), "an ack was refused");
        // As the settler: an endpoint that was at its limit has a free slot.
        let wake_at = match (report.unblocked > 0, report.next_due_ms) {
            (true, _) => Some(0),
            (false, at) => at,
        };
        if let Some(at) = wake_at {
            store.wake(&mut conn, shard, at).await?;
        }
        shared.settled.fetch_add(got as u64, Relaxed);
        if !more {
            shard = (shard + 1) % shards;
        }
    }
}
