//! Producing: enqueueing delivery jobs, one or a pipelined batch, with wake-up hints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use herald_core::{EndpointId, JobId};
use redis::{FromRedisValue, Value};
use serde::Serialize;

use crate::connection::{is_dropped, run_split, run_split_waiting, Conn};
use crate::error::{protocol, Result};
use crate::keys::wake_endpoints_key;
use crate::record::JobRecord;
use crate::scripts::EnqueueCode;
use crate::store::{wake_cmd, wake_endpoints_cmd};
use crate::{Store, StoreError};

/// A new delivery job, as a producer describes it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub endpoint: EndpointId,
    /// The JSON body to POST (validated by the producer library before it gets here).
    pub payload: Vec<u8>,
    /// Wait this long before the first attempt.
    pub delay: Duration,
    /// A key that makes a repeated enqueue a no-op answering the first job's id.
    pub idempotency_key: Option<String>,
    /// How long the idempotency key is remembered.
    pub idempotency_ttl: Duration,
}

/// The longest delay before a job's first attempt, in ms: the enqueue scripts' own bound
/// (over 300 years).
pub const MAX_DELAY_MS: u64 = 10_000_000_000_000;

impl NewJob {
    /// Refuses, with the reason, what the enqueue scripts would refuse without one: an empty
    /// payload, a delay beyond [`MAX_DELAY_MS`], an idempotency key kept for less than 1 ms.
    /// (Ids are checked by their types.)
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.payload.is_empty() {
            return Err("the payload is empty".into());
        }
        if self.delay.as_millis() > u128::from(MAX_DELAY_MS) {
            return Err(format!(
                "a delay is at most {MAX_DELAY_MS} ms (over 300 years), not {}",
                humantime::format_duration(self.delay)
            ));
        }
        if self.idempotency_key.is_some() && self.idempotency_ttl.as_millis() == 0 {
            return Err("an idempotency key is kept for at least 1 ms".into());
        }
        Ok(())
    }

    /// A job due at once, with a fresh id and no idempotency key.
    pub fn new(endpoint: EndpointId, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            id: JobId::generate(),
            endpoint,
            payload: payload.into(),
            delay: Duration::ZERO,
            idempotency_key: None,
            idempotency_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Where an enqueued job went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnqueueStatus {
    /// In the queue, due at `due_ms`.
    Queued,
    /// The endpoint is disabled: the job waits, spending no attempt, until it is enabled.
    Parked,
    /// The idempotency key was used before: nothing was written; `job_id` is the first job's.
    Duplicate,
}

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub job_id: String,
    pub status: EnqueueStatus,
    /// When the first attempt is due (ms, Redis clock); 0 unless queued.
    pub due_ms: i64,
    pub shard: u16,
}

impl Enqueued {
    /// True when this call wrote a new job (queued or parked).
    pub fn created(&self) -> bool {
        self.status != EnqueueStatus::Duplicate
    }
}

/// One script call of a batch.
enum Call {
    /// One job through `enqueue-6.lua`: a job with an idempotency key, or a shard's only job.
    One(usize),
    /// Jobs of one shard, none with an idempotency key, through `enqueue-batch-4.lua`.
    Many(u16, Vec<usize>),
}

/// Most jobs in one `enqueue-batch-4.lua` call: a script holds Redis for the whole call (about
/// 8 µs per 1 KiB job), longer runs are split.
const MOST_PER_CALL: usize = 500;

/// Splits a batch into script calls: shard by shard, and within a shard, runs of jobs without
/// an idempotency key between the jobs that have one, so that each shard sees its jobs in the
/// order given (which decides which of two jobs with the same id is written).
fn plan(jobs: &[NewJob], shards: &[u16]) -> Vec<Call> {
    let mut by_shard: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        by_shard.entry(*shard).or_default().push(i);
    }
    let mut calls = Vec::new();
    for (shard, indices) in by_shard {
        let mut run = Vec::new();
        let flush = |calls: &mut Vec<Call>, run: &mut Vec<usize>| {
            for part in std::mem::take(run).chunks(MOST_PER_CALL) {
                match part {
                    [one] => calls.push(Call::One(*one)),
                    _ => calls.push(Call::Many(shard, part.to_vec())),
                }
            }
        };
        for i in indices {
            if jobs[i].idempotency_key.is_some() {
                flush(&mut calls, &mut run);
                calls.push(Call::One(i));
            } else {
                run.push(i);
            }
        }
        flush(&mut calls, &mut run);
    }
    calls
}

/// What a script's code means for one job; `script` names the script in errors.
fn status_of(job: &NewJob, code: i64, script: &'static str) -> Result<EnqueueStatus> {
    match EnqueueCode::from_code(code) {
        Some(EnqueueCode::Queued) => Ok(EnqueueStatus::Queued),
        Some(EnqueueCode::Parked) => Ok(EnqueueStatus::Parked),
        Some(EnqueueCode::Duplicate) => Ok(EnqueueStatus::Duplicate),
        Some(EnqueueCode::UnknownEndpoint) => {
            Err(StoreError::UnknownEndpoint(job.endpoint.to_string()))
        }
        Some(EnqueueCode::DuplicateJobId) => Err(StoreError::DuplicateJobId(job.id.to_string())),
        Some(EnqueueCode::InvalidArgument) => Err(StoreError::InvalidArgument(format!(
            "job id, endpoint id, delay or payload refused by {script}"
        ))),
        None => Err(protocol(script, format!("code {code}"))),
    }
}

impl Store {
    fn enqueue_cmd(&self, job: &NewJob) -> redis::Cmd {
        let keys = self.keys_of(&job.endpoint);
        let idem_key = keys.idempotency(
            job.idempotency_key
                .as_deref()
                .map(|k| (job.endpoint.as_str(), k)),
        );
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.inner.scripts.enqueue.get_hash())
            .arg(6)
            .arg(keys.queue(job.endpoint.as_str()))
            .arg(&keys.jobs)
            .arg(&keys.endpoints)
            .arg(idem_key)
            .arg(&keys.disabled)
            .arg(&keys.ready)
            .arg(job.id.to_string())
            .arg(job.endpoint.as_str())
            .arg(&job.payload)
            .arg(job.delay.as_millis() as u64)
            .arg(job.idempotency_key.as_deref().unwrap_or(""))
            .arg(job.idempotency_ttl.as_millis() as u64);
        cmd
    }

    fn enqueue_reply(&self, job: &NewJob, reply: Value) -> Result<Enqueued> {
        let mut items = match reply {
            Value::Array(items) if !items.is_empty() => items.into_iter(),
            other => return Err(protocol("enqueue", format!("{other:?}"))),
        };
        let code = i64::from_redis_value(items.next().expect("not empty"))?;
        let status = status_of(job, code, "enqueue-6.lua")?;
        let (Some(id), Some(due)) = (items.next(), items.next()) else {
            return Err(protocol("enqueue", "short reply"));
        };
        Ok(Enqueued {
            job_id: String::from_redis_value(id)?,
            status,
            due_ms: i64::from_redis_value(due)?,
            shard: self.shard_of(&job.endpoint),
        })
    }

    /// `enqueue-batch-4.lua` for jobs `run` of one shard: each endpoint once (its queue key and
    /// its id), then id, endpoint number, payload and delay of each job.
    fn enqueue_batch_cmd(&self, shard: u16, jobs: &[NewJob], run: &[usize]) -> redis::Cmd {
        let keys = self.keys(shard);
        let mut endpoints: Vec<&str> = Vec::new();
        let mut numbers: HashMap<&str, usize> = HashMap::new();
        let job_numbers: Vec<usize> = run
            .iter()
            .map(|&i| {
                let endpoint = jobs[i].endpoint.as_str();
                *numbers.entry(endpoint).or_insert_with(|| {
                    endpoints.push(endpoint);
                    endpoints.len()
                })
            })
            .collect();
        // Sized up front: growing a buffer of a few hundred KiB would copy it again and again.
        let data: usize = run
            .iter()
            .map(|&i| jobs[i].payload.len() + 48)
            .sum::<usize>()
            + endpoints.iter().map(|e| 2 * e.len() + 64).sum::<usize>()
            + 256;
        let mut cmd = redis::Cmd::with_capacity(7 + 2 * endpoints.len() + 4 * run.len(), data);
        cmd.arg("EVALSHA")
            .arg(self.inner.scripts.enqueue_batch.get_hash())
            .arg(4 + endpoints.len())
            .arg(&keys.jobs)
            .arg(&keys.endpoints)
            .arg(&keys.disabled)
            .arg(&keys.ready);
        for endpoint in &endpoints {
            cmd.arg(keys.queue(endpoint));
        }
        for endpoint in &endpoints {
            cmd.arg(*endpoint);
        }
        let mut id = String::with_capacity(26);
        for (&i, number) in run.iter().zip(job_numbers) {
            let job = &jobs[i];
            id.clear();
            write!(id, "{}", job.id).expect("writing to a String");
            cmd.arg(id.as_str())
                .arg(number)
                .arg(&job.payload)
                .arg(job.delay.as_millis() as u64);
        }
        cmd
    }

    /// Reads `{now_ms, code per job}` of `enqueue-batch-4.lua` into the results of `run`.
    fn enqueue_batch_reply(
        &self,
        shard: u16,
        jobs: &[NewJob],
        run: &[usize],
        reply: Value,
        results: &mut [Option<Result<Enqueued>>],
    ) {
        const SCRIPT: &str = "enqueue-batch-4.lua";
        let parsed = match reply {
            Value::Array(items) if items.len() == run.len() + 1 => items
                .into_iter()
                .map(|v| i64::from_redis_value(v).map_err(StoreError::from))
                .collect::<Result<Vec<i64>>>(),
            other => Err(protocol(SCRIPT, format!("{other:?}"))),
        };
        let codes = match parsed {
            Ok(codes) => codes,
            Err(e) => {
                let detail = e.to_string();
                for &i in run {
                    results[i] = Some(Err(protocol(SCRIPT, detail.clone())));
                }
                return;
            }
        };
        let now = codes[0];
        for (&i, &code) in run.iter().zip(&codes[1..]) {
            let job = &jobs[i];
            results[i] = Some(match status_of(job, code, SCRIPT) {
                Ok(EnqueueStatus::Duplicate) => Err(protocol(SCRIPT, "code 0")),
                Ok(status) => Ok(Enqueued {
                    job_id: job.id.to_string(),
                    status,
                    due_ms: match status {
                        EnqueueStatus::Queued => now + job.delay.as_millis() as i64,
                        _ => 0,
                    },
                    shard,
                }),
                Err(e) => Err(e),
            });
        }
    }

    /// On a cluster, a pipeline that met a redirection or a slot in migration partway is sent
    /// again whole by the client, so a script call of it may run twice: its jobs then answer
    /// "duplicate id" although this very call wrote them. A job whose id answers so, and whose
    /// stored record holds this job's endpoint and payload, is reported queued.
    async fn own_duplicates(
        &self,
        conn: &Conn,
        jobs: &[NewJob],
        slots: &mut [Option<Result<Enqueued>>],
    ) -> Result<()> {
        let dups: Vec<usize> = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Some(Err(StoreError::DuplicateJobId(_)))))
            .map(|(i, _)| i)
            .collect();
        if dups.is_empty() {
            return Ok(());
        }
        let reads = dups
            .iter()
            .map(|&i| {
                let jobs_key = &self.keys_of(&jobs[i].endpoint).jobs;
                (
                    jobs_key.clone(),
                    redis::Cmd::hget(jobs_key, jobs[i].id.to_string()),
                )
            })
            .collect();
        let records = run_split(conn, reads).await?;
        for (i, raw) in dups.into_iter().zip(records) {
            let job = &jobs[i];
            let record = Option::<Vec<u8>>::from_redis_value(raw)?.and_then(JobRecord::from_vec);
            if record
                .is_some_and(|r| r.endpoint == job.endpoint.as_str() && r.payload == job.payload)
            {
                slots[i] = Some(Ok(Enqueued {
                    job_id: job.id.to_string(),
                    status: EnqueueStatus::Queued,
                    due_ms: 0,
                    shard: self.shard_of(&job.endpoint),
                }));
            }
        }
        Ok(())
    }

    /// Enqueues one job, then leaves a wake-up hint for idle workers.
    pub async fn enqueue(&self, job: &NewJob) -> Result<Enqueued> {
        let mut results = self.enqueue_batch(std::slice::from_ref(job)).await?;
        results.pop().expect("one result per job")
    }

    /// Enqueues many jobs in one pipelined round trip (plus one for the wake-up hints of delayed
    /// jobs, and on a cluster for those of jobs due at once). Each job succeeds or fails on its
    /// own; the outer error is for Redis failing as a whole. The results are in the order of
    /// `jobs`. On a cluster the calls go as one pipeline per slot, side by side.
    ///
    /// With [`StoreConfig::enqueue_wait`](crate::StoreConfig) set, the writes are not answered
    /// until that many replicas of each master involved acknowledged them (`WAIT`); fewer in
    /// time fail the call with [`StoreError::NotReplicated`], though the jobs were written.
    ///
    /// The jobs of one shard that have no idempotency key go through `enqueue-batch-4.lua`, one
    /// call per shard; a job with an idempotency key, or a shard's only job, goes through
    /// `enqueue-6.lua`. Each shard sees its jobs in the order given.
    ///
    /// A job the scripts would refuse (see [`NewJob::check`]) is refused here with the reason,
    /// and the others go on.
    pub async fn enqueue_batch(&self, jobs: &[NewJob]) -> Result<Vec<Result<Enqueued>>> {
        // Nothing allocated on the way of a batch that passes, the usual case.
        if jobs.iter().all(|j| j.check().is_ok()) {
            return self.enqueue_checked(jobs).await;
        }
        let refused: Vec<Option<String>> = jobs.iter().map(|j| j.check().err()).collect();
        let valid: Vec<NewJob> = jobs
            .iter()
            .zip(&refused)
            .filter(|(_, r)| r.is_none())
            .map(|(j, _)| j.clone())
            .collect();
        let mut done = self.enqueue_checked(&valid).await?.into_iter();
        Ok(refused
            .into_iter()
            .map(|r| match r {
                Some(why) => Err(StoreError::InvalidArgument(why)),
                None => done.next().expect("one result per valid job"),
            })
            .collect())
    }

    /// [`Store::enqueue_batch`] of jobs that passed [`NewJob::check`].
    async fn enqueue_checked(&self, jobs: &[NewJob]) -> Result<Vec<Result<Enqueued>>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let shards: Vec<u16> = jobs.iter().map(|j| self.shard_of(&j.endpoint)).collect();
        let calls = plan(jobs, &shards);
        let mut cmds: Vec<(String, redis::Cmd)> = calls
            .iter()
            .map(|call| match call {
                Call::One(i) => (
                    self.keys_of(&jobs[*i].endpoint).jobs.clone(),
                    self.enqueue_cmd(&jobs[*i]),
                ),
                Call::Many(shard, run) => (
                    self.keys(*shard).jobs.clone(),
                    self.enqueue_batch_cmd(*shard, jobs, run),
                ),
            })
            .collect();
        // Jobs due at once get their wake-up hint (score 0 reads "due already" whatever the
        // clocks say) after them, so that a worker woken by the hint finds the job: on one node
        // in the same pipeline, which runs in order; on a cluster, where the hint set may live
        // on another master, once the jobs are written. Delayed jobs get theirs below, with
        // their due time from the Redis clock.
        // Each woken worker also learns which endpoints have those jobs, so that its first
        // claim of their shard can lease them (see `keys::wake_endpoints_key`): these go before
        // the hints, beside each hint set.
        let mut immediate: BTreeSet<u16> = BTreeSet::new();
        let mut fresh: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (job, &shard) in jobs.iter().zip(&shards) {
            if job.delay.is_zero() {
                immediate.insert(shard);
                fresh
                    .entry(self.wake_key(shard))
                    .or_default()
                    .insert(job.endpoint.as_str());
            }
        }
        let hints: Vec<(String, redis::Cmd)> = fresh
            .into_iter()
            .map(|(wake, endpoints)| {
                let key = wake_endpoints_key(wake);
                let cmd = wake_endpoints_cmd(&key, endpoints);
                (key, cmd)
            })
            .chain(immediate.iter().map(|&shard| {
                let key = self.wake_key(shard);
                (key.to_owned(), wake_cmd(key, shard, 0))
            }))
            .collect();
        let cluster = self.is_cluster();
        if !cluster {
            cmds.extend(hints.iter().cloned());
        }
        let wait = self.inner.enqueue_wait;
        let backend = &self.inner.backend;
        // Without waiting for replicas, enqueues share one connection with no check before
        // each call (a pooled one costs a `PING` round trip per checkout); `WAIT` holds its
        // connection until the replicas answer, so waiting enqueues take pooled ones.
        let (_pooled, mut conn) = if wait.is_none() {
            (None, backend.calls().await?)
        } else {
            let pooled = self.conn().await?;
            let conn = pooled.shared();
            (Some(pooled), conn)
        };
        let (mut replies, rerun): (Vec<Value>, bool) =
            match run_split_waiting(&conn, cmds.clone(), wait).await {
                Err(StoreError::Redis(e))
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                        || (wait.is_none() && !cluster && is_dropped(&e)) =>
                {
                    // Redis lost its script cache (restart, SCRIPT FLUSH), or the shared
                    // connection was gone (Redis restarted, the network cut it): load the
                    // scripts and run again, on a new connection for the latter. A job of the
                    // first run that did land answers "duplicate id" now.
                    if is_dropped(&e) {
                        backend.drop_calls(&e);
                        conn = backend.calls().await?;
                    }
                    let scripts = &self.inner.scripts;
                    scripts.enqueue.load_async(&mut conn).await?;
                    scripts.enqueue_batch.load_async(&mut conn).await?;
                    let again = run_split_waiting(&conn, cmds, wait).await;
                    if let Err(StoreError::Redis(e)) = &again {
                        backend.drop_calls(e);
                    }
                    (again?, true)
                }
                other => (other?, false),
            };
        if cluster {
            // A hint only: if it fails, idle workers find the jobs at their next scan.
            if let Err(e) = run_split(&conn, hints).await {
                tracing::debug!(error = %e, "wake-up hint not written");
            }
        } else {
            replies.truncate(calls.len());
        }
        if replies.len() != calls.len() {
            return Err(protocol(
                "enqueue",
                format!("{} replies to {} calls", replies.len(), calls.len()),
            ));
        }
        let mut slots: Vec<Option<Result<Enqueued>>> = (0..jobs.len()).map(|_| None).collect();
        for (call, reply) in calls.iter().zip(replies) {
            match call {
                Call::One(i) => slots[*i] = Some(self.enqueue_reply(&jobs[*i], reply)),
                Call::Many(shard, run) => {
                    self.enqueue_batch_reply(*shard, jobs, run, reply, &mut slots)
                }
            }
        }
        if cluster {
            self.own_duplicates(&conn, jobs, &mut slots).await?;
        }
        let mut earliest: BTreeMap<u16, i64> = BTreeMap::new();
        let results: Vec<Result<Enqueued>> = shards
            .iter()
            .zip(slots)
            .map(|(shard, slot)| match slot.expect("every job has a call") {
                Err(StoreError::DuplicateJobId(id)) if rerun => Ok(Enqueued {
                    job_id: id,
                    status: EnqueueStatus::Queued,
                    due_ms: 0,
                    shard: *shard,
                }),
                other => other,
            })
            .inspect(|r| {
                if let Ok(e) = r {
                    if e.status == EnqueueStatus::Queued && !immediate.contains(&e.shard) {
                        let slot = earliest.entry(e.shard).or_insert(e.due_ms);
                        *slot = (*slot).min(e.due_ms);
                    }
                }
            })
            .collect();
        if !earliest.is_empty() {
            let hints = earliest
                .into_iter()
                .map(|(shard, due)| {
                    let key = self.wake_key(shard);
                    (key.to_owned(), wake_cmd(key, shard, due))
                })
                .collect();
            // A hint only: if it fails, idle workers find the jobs at their next scan.
            if let Err(e) = run_split(&conn, hints).await {
                tracing::debug!(error = %e, "wake-up hint not written");
            }
        }
        Ok(results)
    }
}
