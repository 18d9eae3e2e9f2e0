//! Fault injection against real processes: the `herald` binary, `redis-server`, a loopback
//! receiver, and a TCP proxy between the workers and Redis.
//!
//! - [`kill_workers`]: workers killed with SIGKILL in a loop while they deliver.
//! - [`redis_outage`]: Redis killed with SIGKILL and restarted from its append-only file
//!   (`appendfsync always` and `everysec`), and Redis frozen with SIGSTOP.
//! - [`half_open`]: the workers' Redis connections blackholed by the proxy (a flow dropped by
//!   a NAT or load balancer), idle and under load.
//! - [`operators`]: endpoints disabled, enabled, pointed elsewhere, deleted and recreated, and
//!   dead jobs replayed, from the CLI, while workers deliver.
//!
//! Every run ends the same way ([`Ledger::account`]): once no job is queued, parked or in
//! flight, every job enqueued was delivered or is in the dead-letter store with a reason that
//! the scenario allows; every delivery went to the URL of the endpoint that owned the job;
//! every repeated delivery repeats one that was in flight at a failure (a killed worker's, or
//! one made before Redis came back); and `herald check` finds the store's invariants intact.
//!
//! Each scenario runs short by default, as part of `cargo test`; `HERALD_FAULTS=long` runs the
//! long versions, whose figures are in `docs/RELIABILITY.md`:
//!
//! ```sh
//! HERALD_FAULTS=long cargo test --release --test it faults -- --test-threads=1 --nocapture
//! ```

mod half_open;
mod kill_workers;
mod operators;
mod redis_outage;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use redis::cluster::ClusterClient;
use redis::Commands;
use serde_json::{json, Value};

use crate::support::herald::Worker;
use crate::support::process::poll_until;
use crate::support::receiver::{Receiver, Request};
use crate::support::sockets::tcp_sockets_of;
use crate::support::{http_get, Herald, SAFETY_NET};

/// Short runs for `cargo test`, long ones with `HERALD_FAULTS=long`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Short,
    Long,
}

impl Scale {
    pub fn from_env() -> Scale {
        match std::env::var("HERALD_FAULTS").as_deref() {
            Ok("long") => Scale::Long,
            _ => Scale::Short,
        }
    }

    /// `short` or `long`, by scale.
    pub fn pick<T>(self, short: T, long: T) -> T {
        match self {
            Scale::Short => short,
            Scale::Long => long,
        }
    }

    /// The safety net of a wait for a whole run to drain: a run with kills waits for leases
    /// to run out, and a long run has many jobs.
    pub fn drain_net(self) -> Duration {
        self.pick(Duration::from_secs(180), Duration::from_secs(900))
    }
}

/// How often fault tests ask `herald stats` or a worker's `/readyz`.
const POLL: Duration = Duration::from_millis(100);

/// Most jobs in one `herald enqueue --ndjson`: at most what one call of `enqueue-batch-4.lua`
/// takes, so that a batch is written whole or not at all.
pub const BATCH: usize = 500;

/// The URL path of `endpoint` while it is owned by its `epoch`-th owner (0 until its first
/// delete, 1 after it is created again, ...); `variant` tells apart the URLs one owner sets.
pub fn hook_path(endpoint: &str, epoch: u32, variant: u32) -> String {
    format!("/hooks/{endpoint}/e{epoch}/v{variant}")
}

/// A set of workers that a test kills and replaces.
pub struct Fleet<'h> {
    herald: &'h Herald,
    env: Vec<(String, String)>,
    workers: Vec<Worker>,
    /// Workers killed so far: kept for their output, printed if the test fails.
    killed: Vec<Worker>,
}

impl<'h> Fleet<'h> {
    /// Starts `size` workers with `env` over the test defaults. The dead-letter store is never
    /// trimmed (its bound is far above any run): the ledger reads every dead job back.
    pub fn start(herald: &'h Herald, size: usize, env: &[(&str, &str)]) -> Fleet<'h> {
        let env: Vec<(String, String)> = [("HERALD_DEAD_MAX", "100000000")]
            .iter()
            .chain(env)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut fleet = Fleet {
            herald,
            env,
            workers: Vec::new(),
            killed: Vec::new(),
        };
        for _ in 0..size {
            let worker = fleet.spawn();
            fleet.workers.push(worker);
        }
        fleet
    }

    fn spawn(&self) -> Worker {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.herald.spawn_worker(&env)
    }

    /// Kills worker `i` with SIGKILL and starts another in its place. The worker is frozen
    /// (SIGSTOP) first, so that the local ports of its connections, read from `/proc`, are all
    /// it ever used to deliver: its requests are those that arrived from them.
    pub fn kill_and_replace(&mut self, i: usize, rx: &Receiver, lease: Duration) -> Failure {
        let victim = &self.workers[i];
        let at = Instant::now();
        victim.signal(Signal::SIGSTOP);
        let ports: HashSet<u16> = tcp_sockets_of(victim.pid())
            .iter()
            .map(|s| s.local_port)
            .collect();
        let on_the_wire = rx
            .open_requests()
            .iter()
            .filter(|r| ports.contains(&r.peer.port()))
            .count();
        victim.sigkill();
        victim.wait(SAFETY_NET);
        let replacement = self.spawn();
        let victim = std::mem::replace(&mut self.workers[i], replacement);
        self.killed.push(victim);
        Failure {
            what: format!("worker {i} killed"),
            since: at - lease,
            until: Instant::now(),
            ports: Some(ports),
            on_the_wire,
        }
    }

    /// Waits until every worker's `/readyz` answers `status`.
    pub fn wait_for_readyz(&self, status: u16, timeout: Duration) {
        for worker in &self.workers {
            let addr = worker.metrics_addr().expect("metrics address");
            poll_until(
                &format!("/readyz of {addr} to answer {status}"),
                timeout,
                POLL,
                || match http_get(addr, "/readyz") {
                    (s, _) if s == status => Ok(()),
                    (s, body) => Err(format!("{s} {body}")),
                },
            );
        }
    }

    /// The sum over the running workers of metric `name` (every label set together).
    pub fn metric(&self, name: &str) -> f64 {
        self.workers.iter().map(|w| w.metric(name)).sum()
    }

    /// Stops every worker with SIGTERM and checks that each drained and exited 0.
    pub fn stop(self) {
        for worker in &self.workers {
            worker.sigterm();
        }
        for worker in &self.workers {
            worker.stop(SAFETY_NET);
        }
    }
}

/// One injected failure, as the ledger needs it to tell which repeated deliveries it explains.
#[derive(Debug, Clone)]
pub struct Failure {
    pub what: String,
    /// The earliest a delivery it left unsettled may have arrived: one lease before it began
    /// (a delivery outlasting its lease is settled, or taken back, before then).
    pub since: Instant,
    /// When it was over: the worker dead, Redis answering again, the connection healed.
    pub until: Instant,
    /// For a killed worker, the local ports of its sockets: its deliveries came from them.
    /// `None` for a failure of Redis or of the network, which every worker suffers.
    pub ports: Option<HashSet<u16>>,
    /// Deliveries on the wire when it began: requests the receiver had not answered yet (of
    /// the killed worker, for a kill).
    pub on_the_wire: usize,
}

impl Failure {
    /// A failure that every worker suffers (Redis or the network), beginning now; `lease` is
    /// the workers' lease.
    pub fn shared(what: &str, rx: &Receiver, lease: Duration) -> Failure {
        Failure {
            what: what.to_owned(),
            since: Instant::now() - lease,
            until: Instant::now(),
            ports: None,
            on_the_wire: rx.open_requests().len(),
        }
    }

    /// Marks the failure over now.
    pub fn over(mut self) -> Failure {
        self.until = Instant::now();
        self
    }

    /// Whether `delivery` may have been left unsettled by this failure: a killed worker's
    /// delivery, or one that arrived before Redis (or the network) was back.
    fn explains(&self, delivery: &Request) -> bool {
        let during = (self.since..=self.until).contains(&delivery.received_at);
        match &self.ports {
            Some(ports) => during && ports.contains(&delivery.peer.port()),
            None => during,
        }
    }
}

/// A job the test enqueued: its endpoint and that endpoint's owner at the time.
#[derive(Debug, Clone)]
pub struct Job {
    pub endpoint: String,
    pub epoch: u32,
}

/// For runs in which no job may die.
pub fn none_dead(_: &Job, _: &str) -> bool {
    false
}

/// Every job a run enqueued and every failure it injected; [`account`](Self::account) checks
/// that each job is accounted for. Shared by the threads of a run.
#[derive(Debug, Default)]
pub struct Ledger {
    state: Mutex<LedgerState>,
}

#[derive(Debug, Default)]
struct LedgerState {
    /// Jobs by the number `n` of their payload `{"n": n, ...}`.
    jobs: BTreeMap<u64, Job>,
    next: u64,
    failures: Vec<Failure>,
}

/// What `herald enqueue` did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Every job of the batch was written.
    All,
    /// None was: the endpoint does not exist.
    UnknownEndpoint,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enqueues `count` jobs for `endpoint` (owned by its `epoch`-th owner) with one `herald
    /// enqueue --ndjson`, and records them if they were written.
    pub fn enqueue(&self, herald: &Herald, endpoint: &str, epoch: u32, count: usize) -> Enqueued {
        assert!(count <= BATCH, "a batch of {count} may be written in part");
        let first = {
            let mut state = self.lock();
            let first = state.next;
            state.next += count as u64;
            first
        };
        let mut lines = String::new();
        for n in first..first + count as u64 {
            lines.push_str(&json!({"n": n, "endpoint": endpoint, "epoch": epoch}).to_string());
            lines.push('\n');
        }
        let out = herald.run_stdin(&["enqueue", endpoint, "-", "--ndjson", "--json"], lines);
        if out.status.code() == Some(2) && out.stderr.contains("unknown endpoint") {
            return Enqueued::UnknownEndpoint;
        }
        let out = out.assert_success();
        assert_eq!(
            out.json()["enqueued"].as_u64(),
            Some(count as u64),
            "`{}`:\n{out}",
            out.command
        );
        let mut state = self.lock();
        for n in first..first + count as u64 {
            let job = Job {
                endpoint: endpoint.to_owned(),
                epoch,
            };
            state.jobs.insert(n, job);
        }
        Enqueued::All
    }

    /// Notes a failure injected into the run.
    pub fn failure(&self, failure: Failure) {
        self.lock().failures.push(failure);
    }

    /// Waits until no job is queued, parked or in flight, then checks that every job was
    /// delivered or is dead with a reason that `may_die` allows it, that each delivery went to
    /// its owner's URL, that every repeated delivery is explained by a failure, and that
    /// `herald check` is clean. Returns the run's figures.
    pub fn account(
        &self,
        scenario: &str,
        herald: &Herald,
        rx: &Receiver,
        may_die: impl Fn(&Job, &str) -> bool,
        timeout: Duration,
    ) -> Figures {
        let settled_at = poll_until("every job delivered or dead", timeout, POLL, || {
            let stats = herald.stats();
            if stats.queued() == 0 && stats.in_flight == 0 && stats.parked == 0 {
                Ok(Instant::now())
            } else {
                Err(format!("{stats:?}"))
            }
        });
        let state = self.lock();
        let requests = rx.requests();
        let mut deliveries: BTreeMap<u64, Vec<&Request>> = BTreeMap::new();
        for request in &requests {
            let n = request.json()["n"]
                .as_u64()
                .unwrap_or_else(|| panic!("a delivery of no job of this run: {request:?}"));
            let job = state
                .jobs
                .get(&n)
                .unwrap_or_else(|| panic!("job {n} was delivered but never enqueued"));
            assert_eq!(
                request.path,
                hook_path(&job.endpoint, job.epoch, variant_of(&request.path)),
                "job {n} of {} (owner {}) was delivered to another owner's URL",
                job.endpoint,
                job.epoch
            );
            deliveries.entry(n).or_default().push(request);
        }

        let out = herald.ok(&["dead", "list", "--limit", "100000000", "--json"]);
        let entries = out.json()["items"]
            .as_array()
            .expect("an \"items\" array")
            .clone();
        let numbers = payload_numbers(herald, &entries);
        let mut dead: BTreeMap<u64, String> = BTreeMap::new();
        for (entry, n) in entries.iter().zip(numbers) {
            let n = n.unwrap_or_else(|| panic!("a dead job of no job of this run: {entry}"));
            let reason = entry["last_error"].as_str().unwrap_or_default().to_owned();
            let job = state
                .jobs
                .get(&n)
                .unwrap_or_else(|| panic!("job {n} is dead but was never enqueued: {entry}"));
            assert!(
                may_die(job, &reason),
                "job {n} ({job:?}) is dead with a reason this run does not allow: {entry}"
            );
            assert!(dead.insert(n, reason).is_none(), "job {n} is dead twice");
        }

        let lost: Vec<u64> = state
            .jobs
            .keys()
            .filter(|n| !deliveries.contains_key(n) && !dead.contains_key(n))
            .copied()
            .collect();
        if !lost.is_empty() {
            let shown: Vec<String> = lost
                .iter()
                .take(5)
                .map(|n| format!("job {n}: {:?}", state.jobs[n]))
                .collect();
            panic!(
                "{} of {} jobs neither delivered nor dead, e.g.:\n{}\nherald check:\n{}",
                lost.len(),
                state.jobs.len(),
                shown.join("\n"),
                herald.run(&["check"])
            );
        }

        // A repeated delivery repeats one that a failure left unsettled; so does any delivery
        // of a job that then died, unless its endpoint was deleted meanwhile.
        let mut figures = Figures {
            scenario: scenario.to_owned(),
            jobs: state.jobs.len(),
            failures: state.failures.len(),
            on_the_wire: state.failures.iter().map(|f| f.on_the_wire).sum(),
            ..Figures::default()
        };
        for (n, got) in &deliveries {
            let unsettled: &[&Request] = match dead.get(n) {
                Some(reason) if reason.starts_with("endpoint deleted") => &[],
                Some(_) => got,
                None => &got[..got.len() - 1],
            };
            for delivery in unsettled {
                assert!(
                    state.failures.iter().any(|f| f.explains(delivery)),
                    "job {n} was delivered {} times ({}), and no failure explains the delivery \
                     at {:?} from {} (failures: {:?})",
                    got.len(),
                    if dead.contains_key(n) {
                        "then died"
                    } else {
                        "delivered"
                    },
                    delivery.received_at,
                    delivery.peer,
                    state.failures.iter().map(|f| &f.what).collect::<Vec<_>>()
                );
            }
            figures.duplicates += got.len() - 1;
        }
        figures.delivered = deliveries.keys().filter(|n| !dead.contains_key(n)).count();
        for reason in dead.values() {
            let class = reason.split([':', ';']).next().unwrap_or_default();
            *figures.dead.entry(class.to_owned()).or_default() += 1;
        }
        figures.resume = state
            .failures
            .iter()
            .filter(|f| f.ports.is_none())
            .filter_map(|f| {
                let first = requests
                    .iter()
                    .map(|r| r.received_at)
                    .filter(|at| *at > f.until)
                    .min()?;
                Some(first - f.until)
            })
            .collect();
        figures.drained_in = settled_at
            - state
                .failures
                .iter()
                .map(|f| f.until)
                .max()
                .unwrap_or(settled_at);
        drop(state);

        herald.assert_check_clean();
        eprintln!("{figures}");
        figures
    }
}

/// The number `n` in the payload of each job of `entries` (`herald dead list --json`), read
/// from its record in Redis: the listing names jobs, not what they carry.
fn payload_numbers(herald: &Herald, entries: &[Value]) -> Vec<Option<u64>> {
    if entries.is_empty() {
        return Vec::new();
    }
    let ns = herald.namespace();
    let fields: Vec<(String, &str)> = entries
        .iter()
        .map(|entry| {
            let shard = entry["shard"].as_u64().expect("a shard number");
            let id = entry["id"].as_str().expect("a job id");
            (format!("{ns}:v2:{{{ns}.{shard}}}:jobs"), id)
        })
        .collect();
    let url = herald.redis_url();
    let records: Vec<Option<Vec<u8>>> = if herald.is_cluster() {
        // The shards' keys are spread over the masters: one HGET at a time, each routed.
        let mut con = ClusterClient::new(url.split(',').collect::<Vec<_>>())
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("connect to the cluster {url}: {e}"));
        fields
            .iter()
            .map(|(key, id)| con.hget(key, id))
            .collect::<redis::RedisResult<_>>()
            .expect("HGET the dead jobs' records")
    } else {
        let mut con = redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        let mut pipe = redis::pipe();
        for (key, id) in &fields {
            pipe.hget(key, id);
        }
        pipe.query(&mut con).expect("HGET the dead jobs' records")
    };
    records
        .into_iter()
        .map(|record| {
            // `1 <attempts> <enqueued_ms> <endpoint>\n<payload>`
            let record = record?;
            let start = record.iter().position(|b| *b == b'\n')? + 1;
            let payload: Value = serde_json::from_slice(&record[start..]).ok()?;
            payload["n"].as_u64()
        })
        .collect()
}

/// The `v<variant>` at the end of a [`hook_path`].
fn variant_of(path: &str) -> u32 {
    path.rsplit_once("/v")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(u32::MAX)
}

/// What one run did, for the failure messages and `docs/RELIABILITY.md`.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub scenario: String,
    pub jobs: usize,
    /// Jobs delivered (at least once) and not dead.
    pub delivered: usize,
    /// Dead jobs by reason.
    pub dead: BTreeMap<String, usize>,
    /// Deliveries beyond the first of each job.
    pub duplicates: usize,
    pub failures: usize,
    /// Deliveries on the wire at the failures.
    pub on_the_wire: usize,
    /// Per failure of Redis or the network: from its end to the next delivery.
    pub resume: Vec<Duration>,
    /// From the end of the last failure until no job was queued or in flight.
    pub drained_in: Duration,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dead: usize = self.dead.values().sum();
        write!(
            f,
            "faults {}: {} jobs, {} delivered, {dead} dead {:?}; {} duplicates",
            self.scenario, self.jobs, self.delivered, self.dead, self.duplicates
        )?;
        if self.failures > 0 {
            write!(
                f,
                " against {} deliveries on the wire at {} failures",
                self.on_the_wire, self.failures
            )?;
        }
        if !self.resume.is_empty() {
            let resume: Vec<String> = self
                .resume
                .iter()
                .map(|d| format!("{:.2}s", d.as_secs_f64()))
                .collect();
            write!(
                f,
                "; next delivery {} after the failure ended",
                resume.join(", ")
            )?;
        }
        if self.failures > 0 {
            write!(
                f,
                "; drained {:.1}s after the last failure",
                self.drained_in.as_secs_f64()
            )?;
        }
        write!(f, "; herald check clean")
    }
}
