//! Producing: enqueueing delivery jobs, one or a pipelined batch, with wake-up hints.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::{EndpointId, JobId};
use redis::{FromRedisValue, Value};
use serde::Serialize;

use crate::scripts::EnqueueCode;
use crate::store::{protocol, Result};
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

impl NewJob {
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
            .arg(&keys.queue)
            .arg(&keys.jobs)
            .arg(&keys.endpoints)
            .arg(idem_key)
            .arg(&keys.disabled)
            .arg(keys.parked(job.endpoint.as_str()))
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
        let status = match EnqueueCode::from_code(code) {
            Some(EnqueueCode::Queued) => EnqueueStatus::Queued,
            Some(EnqueueCode::Parked) => EnqueueStatus::Parked,
            Some(EnqueueCode::Duplicate) => EnqueueStatus::Duplicate,
            Some(EnqueueCode::UnknownEndpoint) => {
                return Err(StoreError::UnknownEndpoint(job.endpoint.to_string()))
            }
            Some(EnqueueCode::DuplicateJobId) => {
                return Err(StoreError::DuplicateJobId(job.id.to_string()))
            }
            Some(EnqueueCode::InvalidArgument) => {
                return Err(StoreError::InvalidArgument(
                    "job id, endpoint id, delay or payload refused by enqueue-6.lua".into(),
                ))
            }
            None => return Err(protocol("enqueue", format!("code {code}"))),
        };
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

    /// Enqueues one job, then leaves a wake-up hint for idle workers.
    pub async fn enqueue(&self, job: &NewJob) -> Result<Enqueued> {
        let mut results = self.enqueue_batch(std::slice::from_ref(job)).await?;
        results.pop().expect("one result per job")
    }

    /// Enqueues many jobs in one pipelined round trip (plus one for the wake-up hints of delayed
    /// jobs). Each job succeeds or fails on its own; the outer error is for Redis failing as a
    /// whole.
    pub async fn enqueue_batch(&self, jobs: &[NewJob]) -> Result<Vec<Result<Enqueued>>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        for job in jobs {
            pipe.add_command(self.enqueue_cmd(job));
        }
        // Jobs due at once get their wake-up hint in the same round trip, after them (a
        // pipeline runs in order, so a worker woken by the hint finds the job). Score 0 reads
        // "due already" whatever the clocks say. Delayed jobs get theirs below, with their
        // due time from the Redis clock.
        let immediate: std::collections::BTreeSet<u16> = jobs
            .iter()
            .filter(|j| j.delay.is_zero())
            .map(|j| self.shard_of(&j.endpoint))
            .collect();
        for shard in &immediate {
            pipe.cmd("ZADD")
                .arg(self.inner.namespace.wake_key())
                .arg("LT")
                .arg(0)
                .arg(shard)
                .ignore();
        }
        let (replies, rerun): (Vec<Value>, bool) = match pipe.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis lost its script cache (restart, SCRIPT FLUSH): load and run again. A
                // job of the first run that did land answers "duplicate id" now.
                self.inner.scripts.enqueue.load_async(&mut conn).await?;
                (pipe.query_async(&mut conn).await?, true)
            }
            other => (other?, false),
        };
        let mut earliest: BTreeMap<u16, i64> = BTreeMap::new();
        let results: Vec<Result<Enqueued>> = jobs
            .iter()
            .zip(replies)
            .map(|(job, reply)| match self.enqueue_reply(job, reply) {
                Err(StoreError::DuplicateJobId(id)) if rerun => Ok(Enqueued {
                    job_id: id,
                    status: EnqueueStatus::Queued,
                    due_ms: 0,
                    shard: self.shard_of(&job.endpoint),
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
            let mut pipe = redis::pipe();
            for (shard, due) in earliest {
                pipe.cmd("ZADD")
                    .arg(self.inner.namespace.wake_key())
                    .arg("LT")
                    .arg(due)
                    .arg(shard)
                    .ignore();
            }
            // A hint only: if it fails, idle workers find the jobs at their next scan.
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::debug!(error = %e, "wake-up hint not written");
            }
        }
        Ok(results)
    }
}
