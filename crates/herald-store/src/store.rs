//! [`Store`]: the typed API over the key layout and the scripts, shared by the producer library,
//! the worker and the CLI.
//!
//! Hot-path calls (claim, settle) take a connection from the caller, so that a worker can keep
//! one multiplexed connection for its loops instead of taking one from the pool per call.
//! Administrative calls take a connection from the pool themselves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use herald_core::{shard_of, EndpointId, JobId};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, FromRedisValue, Value};
use serde::{Deserialize, Serialize};

use crate::keys::{Namespace, ShardKeys};
use crate::record::JobRecord;
use crate::scripts::{EnqueueCode, Scripts};
use crate::StoreError;

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How to reach Redis and which deployment to work on.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `redis://` or `rediss://` URL, with ACL user and password if any.
    pub redis_url: String,
    pub namespace: Namespace,
    /// Number of shards; fixed per deployment and checked against the stored value.
    pub shards: u16,
    /// Most pooled connections.
    pub pool_size: usize,
    /// How long a command may take before it fails (blocking waits use their own connection).
    pub response_timeout: Duration,
}

impl StoreConfig {
    pub fn new(redis_url: impl Into<String>, namespace: Namespace, shards: u16) -> Self {
        Self {
            redis_url: redis_url.into(),
            namespace,
            shards,
            pool_size: 16,
            response_timeout: Duration::from_secs(5),
        }
    }
}

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

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The job's id: the new one, or the first job's when the idempotency key was used before.
    pub job_id: String,
    /// False when the idempotency key made this enqueue a no-op.
    pub created: bool,
    /// When the first attempt is due (ms, Redis clock); 0 when not created.
    pub due_ms: i64,
    pub shard: u16,
}

/// An endpoint as stored in its shard's `endpoints` hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub url: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One leased job, as the claim script hands it out.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: String,
    /// The fencing token of this lease; settling needs it.
    pub token: u64,
    /// Attempts started so far, this one included (1 on the first attempt).
    pub attempts: u32,
    pub enqueued_ms: i64,
    pub endpoint: String,
    /// The endpoint's stored JSON ([`EndpointRecord`]), read in the same script.
    pub endpoint_json: Vec<u8>,
    pub payload: Vec<u8>,
}

/// The answer of one claim call.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Redis time of the claim (ms).
    pub now_ms: i64,
    /// When the shard's next queued job is due (ms), if any is queued.
    pub next_due_ms: Option<i64>,
    /// The shard's earliest lease deadline (ms), if any job is in flight.
    pub next_lease_deadline_ms: Option<i64>,
    /// Expired leases handled by this call.
    pub expired: u64,
    /// Jobs sent to the dead-letter store by this call (unreadable, unknown endpoint, lease
    /// expired on the last attempt).
    pub discarded: u64,
    pub jobs: Vec<ClaimedJob>,
}

/// How a leased job is settled.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Delivered: the job leaves the store.
    Ack,
    /// Failed; try again after `delay`.
    Retry { delay: Duration, error: String },
    /// Failed for good: into the dead-letter store.
    Discard { reason: String },
    /// Not attempted after all (shutdown): due again at once, attempt not counted.
    Release,
}

/// One settlement of one leased job.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub id: String,
    pub token: u64,
    pub action: Settle,
}

/// What a settle call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettleReport {
    /// One flag per settlement, in order: false when its token was stale and nothing changed.
    pub applied: Vec<bool>,
    /// The earliest retry time set by this call (ms), if any.
    pub next_due_ms: Option<i64>,
}

/// Job counts of one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShardStats {
    pub due: u64,
    pub scheduled: u64,
    pub in_flight: u64,
    pub dead: u64,
}

/// Job counts of the whole deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub now_ms: i64,
    #[serde(flatten)]
    pub total: ShardStats,
    pub shards: Vec<ShardStats>,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Due,
    Scheduled,
    InFlight,
    Dead,
    /// The record exists but no set holds it (an interrupted write; should not happen).
    Orphaned,
}

/// Everything the store knows about one job.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    pub id: String,
    pub shard: u16,
    pub state: JobState,
    pub attempts: Option<u32>,
    pub endpoint: Option<String>,
    pub enqueued_at_ms: Option<i64>,
    /// Next attempt (due, scheduled), lease deadline (in flight) or discard time (dead).
    pub next_attempt_at_ms: Option<i64>,
    pub lease_deadline_ms: Option<i64>,
    pub dead_at_ms: Option<i64>,
    pub last_error: Option<String>,
    /// The payload as stored: JSON when it parses, else absent (see `raw_record`).
    pub payload: Option<serde_json::Value>,
    /// The stored record, when it could not be parsed.
    pub raw_record: Option<String>,
}

/// One entry of the dead-letter store.
pub type DeadJob = JobInfo;

struct Inner {
    pool: Pool,
    client: redis::Client,
    namespace: Namespace,
    shards: u16,
    keys: Vec<ShardKeys>,
    scripts: Scripts,
}

/// The Redis store of one deployment. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL is left out on purpose: it may hold a password.
        f.debug_struct("Store")
            .field("namespace", &self.inner.namespace)
            .field("shards", &self.inner.shards)
            .finish_non_exhaustive()
    }
}

fn now_from_time(v: (i64, i64)) -> i64 {
    v.0 * 1000 + v.1 / 1000
}

impl Store {
    /// Sets up the pool; connects lazily. Fails only on an unusable URL or settings.
    pub fn open(cfg: StoreConfig) -> Result<Self> {
        if cfg.shards == 0 {
            return Err(StoreError::Config("shards must be at least 1".into()));
        }
        let client = redis::Client::open(cfg.redis_url.as_str())
            .map_err(|e| StoreError::Config(format!("invalid Redis URL: {e}")))?;
        let conn_cfg = AsyncConnectionConfig::new()
            .set_response_timeout(Some(cfg.response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let manager = Manager::new_with_config(cfg.redis_url.as_str(), conn_cfg)
            .map_err(|e| StoreError::Config(format!("invalid Redis URL: {e}")))?;
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(cfg.response_timeout))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let keys = (0..cfg.shards).map(|s| cfg.namespace.shard(s)).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                client,
                namespace: cfg.namespace,
                shards: cfg.shards,
                keys,
                scripts: Scripts::default(),
            }),
        })
    }

    pub fn namespace(&self) -> &Namespace {
        &self.inner.namespace
    }

    pub fn shards(&self) -> u16 {
        self.inner.shards
    }

    /// The keys of one shard.
    pub fn keys(&self, shard: u16) -> &ShardKeys {
        &self.inner.keys[usize::from(shard)]
    }

    /// The shard of an endpoint.
    pub fn shard_of(&self, endpoint: &EndpointId) -> u16 {
        shard_of(endpoint, self.inner.shards)
    }

    /// A pooled connection.
    pub async fn conn(&self) -> Result<deadpool_redis::Connection> {
        Ok(self.inner.pool.get().await?)
    }

    /// A connection of its own, outside the pool, for blocking commands; `None` as the
    /// response timeout waits as long as the command blocks.
    pub async fn dedicated(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<MultiplexedConnection> {
        let cfg = AsyncConnectionConfig::new()
            .set_response_timeout(response_timeout)
            .set_connection_timeout(Some(Duration::from_secs(5)));
        Ok(self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?)
    }

    /// Checks that Redis answers and that the deployment's shard count matches this process's,
    /// recording it on first use.
    pub async fn check(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        let key = self.inner.namespace.meta_key();
        let (_, stored): (i64, u16) = redis::pipe()
            .hset_nx(&key, "shards", self.inner.shards)
            .hget(&key, "shards")
            .query_async(&mut conn)
            .await?;
        if stored != self.inner.shards {
            return Err(StoreError::ShardMismatch {
                namespace: self.inner.namespace.as_str().to_owned(),
                stored,
                configured: self.inner.shards,
            });
        }
        Ok(())
    }

    /// Loads every script into Redis's script cache (after a Redis restart, the scripts
    /// reload themselves on first use; this only saves that round trip).
    pub async fn load_scripts<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<()> {
        for script in self.inner.scripts.all() {
            script.load_async(conn).await?;
        }
        Ok(())
    }

    /// The Redis clock, in ms since the Unix epoch.
    pub async fn now_ms<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<i64> {
        let t: (i64, i64) = redis::cmd("TIME").query_async(conn).await?;
        Ok(now_from_time(t))
    }

    // ----- endpoints -----

    /// Creates or replaces an endpoint's URL. The URL must already be validated.
    pub async fn set_endpoint(&self, id: &EndpointId, url: &str) -> Result<EndpointRecord> {
        let mut conn = self.conn().await?;
        let keys = self.keys(self.shard_of(id));
        let now = self.now_ms(&mut conn).await?;
        let created_at_ms = match self.endpoint(id).await? {
            Some(existing) => existing.created_at_ms,
            None => now,
        };
        let record = EndpointRecord {
            url: url.to_owned(),
            created_at_ms,
            updated_at_ms: now,
        };
        let json = serde_json::to_string(&record).expect("endpoint record serialises");
        let _: () = redis::cmd("HSET")
            .arg(&keys.endpoints)
            .arg(id.as_str())
            .arg(json)
            .query_async(&mut conn)
            .await?;
        Ok(record)
    }

    /// An endpoint, if it exists.
    pub async fn endpoint(&self, id: &EndpointId) -> Result<Option<EndpointRecord>> {
        let mut conn = self.conn().await?;
        let keys = self.keys(self.shard_of(id));
        let raw: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(&keys.endpoints)
            .arg(id.as_str())
            .query_async(&mut conn)
            .await?;
        raw.map(|raw| {
            serde_json::from_slice(&raw).map_err(|source| StoreError::BadEndpoint {
                id: id.to_string(),
                source,
            })
        })
        .transpose()
    }

    // ----- producing -----

    fn enqueue_cmd(&self, job: &NewJob) -> redis::Cmd {
        let keys = self.keys(self.shard_of(&job.endpoint));
        let idem_key = keys.idempotency(job.idempotency_key.as_deref().unwrap_or(""));
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.inner.scripts.enqueue.get_hash())
            .arg(4)
            .arg(&keys.queue)
            .arg(&keys.jobs)
            .arg(&keys.endpoints)
            .arg(idem_key)
            .arg(job.id.to_string())
            .arg(job.endpoint.as_str())
            .arg(&job.payload)
            .arg(job.delay.as_millis() as u64)
            .arg(job.idempotency_key.as_deref().unwrap_or(""))
            .arg(job.idempotency_ttl.as_millis() as u64);
        cmd
    }

    fn enqueue_reply(&self, job: &NewJob, reply: Value) -> Result<Enqueued> {
        let (code, rest): (i64, Vec<Value>) = match reply {
            Value::Array(mut items) if !items.is_empty() => {
                let code = i64::from_redis_value(items.remove(0))?;
                (code, items)
            }
            other => {
                return Err(StoreError::Protocol {
                    script: "enqueue",
                    detail: format!("{other:?}"),
                })
            }
        };
        let shard = self.shard_of(&job.endpoint);
        match code {
            0 | 1 if rest.len() == 2 => {
                let mut rest = rest.into_iter();
                let job_id = String::from_redis_value(rest.next().expect("len 2"))?;
                let due_ms = i64::from_redis_value(rest.next().expect("len 2"))?;
                Ok(Enqueued {
                    job_id,
                    created: code == 1,
                    due_ms,
                    shard,
                })
            }
            code => match EnqueueCode::from_code(code) {
                Some(EnqueueCode::UnknownEndpoint) => {
                    Err(StoreError::UnknownEndpoint(job.endpoint.to_string()))
                }
                Some(EnqueueCode::DuplicateJobId) => {
                    Err(StoreError::DuplicateJobId(job.id.to_string()))
                }
                Some(EnqueueCode::InvalidArgument) => Err(StoreError::InvalidArgument(
                    "job id, endpoint id, delay or payload refused by enqueue-4.lua".into(),
                )),
                None => Err(StoreError::Protocol {
                    script: "enqueue",
                    detail: format!("code {code}"),
                }),
            },
        }
    }

    /// Enqueues one job, then leaves a wake-up hint for idle workers.
    pub async fn enqueue(&self, job: &NewJob) -> Result<Enqueued> {
        let mut results = self.enqueue_batch(std::slice::from_ref(job)).await?;
        results.pop().expect("one result per job")
    }

    /// Enqueues many jobs in one pipelined round trip (plus one for the wake-up hints). Each
    /// job succeeds or fails on its own; the outer error is for Redis failing as a whole.
    pub async fn enqueue_batch(&self, jobs: &[NewJob]) -> Result<Vec<Result<Enqueued>>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        for job in jobs {
            pipe.add_command(self.enqueue_cmd(job));
        }
        let replies: Vec<Value> = match pipe.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis lost its script cache (restart, SCRIPT FLUSH): load and run again. A
                // job of the first run that did land answers "duplicate id" now.
                self.inner.scripts.enqueue.load_async(&mut conn).await?;
                let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
                return self.finish_batch(&mut conn, jobs, replies, true).await;
            }
            other => other?,
        };
        self.finish_batch(&mut conn, jobs, replies, false).await
    }

    async fn finish_batch(
        &self,
        conn: &mut deadpool_redis::Connection,
        jobs: &[NewJob],
        replies: Vec<Value>,
        rerun: bool,
    ) -> Result<Vec<Result<Enqueued>>> {
        let mut earliest: BTreeMap<u16, i64> = BTreeMap::new();
        let results: Vec<Result<Enqueued>> = jobs
            .iter()
            .zip(replies)
            .map(|(job, reply)| match self.enqueue_reply(job, reply) {
                Err(StoreError::DuplicateJobId(id)) if rerun => Ok(Enqueued {
                    job_id: id,
                    created: true,
                    due_ms: 0,
                    shard: self.shard_of(&job.endpoint),
                }),
                other => other,
            })
            .inspect(|r| {
                if let Ok(e) = r {
                    if e.created {
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
            // A hint only: if it fails, idle workers find the jobs at their next poll.
            if let Err(e) = pipe.query_async::<()>(conn).await {
                tracing::debug!(error = %e, "wake-up hint not written");
            }
        }
        Ok(results)
    }

    // ----- the worker's hot path -----

    /// Leases up to `max` due jobs of one shard, after putting back expired leases.
    pub async fn claim<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        max: usize,
        lease: Duration,
        max_attempts: u32,
    ) -> Result<Claim> {
        let k = self.keys(shard);
        let reply: Vec<Value> = self
            .inner
            .scripts
            .claim
            .key(&k.queue)
            .key(&k.inflight)
            .key(&k.leases)
            .key(&k.jobs)
            .key(&k.errors)
            .key(&k.endpoints)
            .key(&k.dead)
            .key(&k.seq)
            .arg(max)
            .arg(lease.as_millis() as u64)
            .arg(max_attempts)
            .arg(100)
            .invoke_async(conn)
            .await?;
        parse_claim(reply)
    }

    /// Settles leased jobs of one shard: one script call per kind of settlement present.
    pub async fn settle<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        items: &[Settlement],
    ) -> Result<SettleReport> {
        let k = self.keys(shard);
        let s = &self.inner.scripts;
        let mut report = SettleReport {
            applied: vec![false; items.len()],
            next_due_ms: None,
        };
        let mut acks = s.ack.prepare_invoke();
        let mut retries = s.retry.prepare_invoke();
        let mut discards = s.discard.prepare_invoke();
        let mut releases = s.release.prepare_invoke();
        let mut index: [Vec<usize>; 4] = Default::default();
        for (i, item) in items.iter().enumerate() {
            match &item.action {
                Settle::Ack => {
                    acks.arg(&item.id).arg(item.token);
                    index[0].push(i);
                }
                Settle::Retry { delay, error } => {
                    retries
                        .arg(&item.id)
                        .arg(item.token)
                        .arg(delay.as_millis() as u64)
                        .arg(error);
                    index[1].push(i);
                }
                Settle::Discard { reason } => {
                    discards.arg(&item.id).arg(item.token).arg(reason);
                    index[2].push(i);
                }
                Settle::Release => {
                    releases.arg(&item.id).arg(item.token);
                    index[3].push(i);
                }
            }
        }
        if !index[0].is_empty() {
            let flags: Vec<i64> = acks
                .key(&k.inflight)
                .key(&k.leases)
                .key(&k.jobs)
                .key(&k.errors)
                .invoke_async(conn)
                .await?;
            mark(&mut report.applied, &index[0], &flags, "ack")?;
        }
        if !index[1].is_empty() {
            let mut reply: Vec<i64> = retries
                .key(&k.inflight)
                .key(&k.leases)
                .key(&k.queue)
                .key(&k.errors)
                .invoke_async(conn)
                .await?;
            if reply.is_empty() {
                return Err(protocol("retry", "empty reply"));
            }
            let next = reply.remove(0);
            report.next_due_ms = (next >= 0).then_some(next);
            mark(&mut report.applied, &index[1], &reply, "retry")?;
        }
        if !index[2].is_empty() {
            let flags: Vec<i64> = discards
                .key(&k.inflight)
                .key(&k.leases)
                .key(&k.dead)
                .key(&k.errors)
                .invoke_async(conn)
                .await?;
            mark(&mut report.applied, &index[2], &flags, "discard")?;
        }
        if !index[3].is_empty() {
            let flags: Vec<i64> = releases
                .key(&k.inflight)
                .key(&k.leases)
                .key(&k.queue)
                .key(&k.jobs)
                .invoke_async(conn)
                .await?;
            mark(&mut report.applied, &index[3], &flags, "release")?;
        }
        Ok(report)
    }

    /// Leaves a wake-up hint: `shard` may have work due at `at_ms`.
    pub async fn wake<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        at_ms: i64,
    ) -> Result<()> {
        let _: i64 = redis::cmd("ZADD")
            .arg(self.inner.namespace.wake_key())
            .arg("LT")
            .arg(at_ms)
            .arg(shard)
            .query_async(conn)
            .await?;
        Ok(())
    }

    /// Blocks up to `timeout` for a wake-up hint; returns `(shard, at_ms)` when one came.
    /// Use a [`Store::dedicated`] connection: the command blocks the connection.
    pub async fn wait_wake<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        timeout: Duration,
    ) -> Result<Option<(u16, i64)>> {
        let reply: Option<(String, u16, f64)> = redis::cmd("BZPOPMIN")
            .arg(self.inner.namespace.wake_key())
            .arg(timeout.as_secs_f64().max(0.001))
            .query_async(conn)
            .await?;
        Ok(reply
            .filter(|(_, shard, _)| *shard < self.inner.shards)
            .map(|(_, shard, at)| (shard, at as i64)))
    }

    /// Removes dead-letter entries of one shard beyond `keep` or older than `max_age`; at most
    /// `budget` per call. Returns how many were removed.
    pub async fn trim_dead<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        keep: u64,
        max_age: Duration,
        budget: u64,
    ) -> Result<u64> {
        let k = self.keys(shard);
        Ok(self
            .inner
            .scripts
            .dead_trim
            .key(&k.dead)
            .key(&k.jobs)
            .key(&k.errors)
            .arg(keep)
            .arg(max_age.as_millis() as u64)
            .arg(budget)
            .invoke_async(conn)
            .await?)
    }

    // ----- inspection and administration -----

    /// Job counts by state, per shard and in total, at one Redis instant per shard.
    pub async fn stats(&self) -> Result<Stats> {
        let mut conn = self.conn().await?;
        let mut stats = Stats::default();
        for shard in 0..self.inner.shards {
            let k = self.keys(shard);
            let (now, due, scheduled, in_flight, dead): (i64, u64, u64, u64, u64) = self
                .inner
                .scripts
                .stats
                .key(&k.queue)
                .key(&k.inflight)
                .key(&k.dead)
                .invoke_async(&mut conn)
                .await?;
            let s = ShardStats {
                due,
                scheduled,
                in_flight,
                dead,
            };
            stats.now_ms = now;
            stats.total.due += due;
            stats.total.scheduled += scheduled;
            stats.total.in_flight += in_flight;
            stats.total.dead += dead;
            stats.shards.push(s);
        }
        Ok(stats)
    }

    /// Looks a job up in every shard (job ids do not name their shard).
    pub async fn job(&self, id: &str) -> Result<Option<JobInfo>> {
        let mut conn = self.conn().await?;
        let now = self.now_ms(&mut conn).await?;
        for shard in 0..self.inner.shards {
            let k = self.keys(shard);
            #[allow(clippy::type_complexity)]
            let (raw, queued, inflight, dead, error): (
                Option<Vec<u8>>,
                Option<f64>,
                Option<f64>,
                Option<f64>,
                Option<String>,
            ) = redis::pipe()
                .hget(&k.jobs, id)
                .zscore(&k.queue, id)
                .zscore(&k.inflight, id)
                .zscore(&k.dead, id)
                .hget(&k.errors, id)
                .query_async(&mut conn)
                .await?;
            let Some(raw) = raw else { continue };
            let state = match (queued, inflight, dead) {
                (Some(at), _, _) if at as i64 <= now => JobState::Due,
                (Some(_), _, _) => JobState::Scheduled,
                (_, Some(_), _) => JobState::InFlight,
                (_, _, Some(_)) => JobState::Dead,
                _ => JobState::Orphaned,
            };
            return Ok(Some(job_info(
                id, shard, state, &raw, queued, inflight, dead, error,
            )));
        }
        Ok(None)
    }

    /// The newest `limit` entries of the dead-letter store, newest first.
    pub async fn dead_list(&self, limit: usize) -> Result<Vec<DeadJob>> {
        let mut conn = self.conn().await?;
        let mut all = Vec::new();
        for shard in 0..self.inner.shards {
            let k = self.keys(shard);
            let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(&k.dead)
                .arg(0)
                .arg(limit.saturating_sub(1))
                .arg("REV")
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await?;
            if entries.is_empty() {
                continue;
            }
            let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
            let (records, errors): (Vec<Option<Vec<u8>>>, Vec<Option<String>>) = redis::pipe()
                .cmd("HMGET")
                .arg(&k.jobs)
                .arg(&ids)
                .cmd("HMGET")
                .arg(&k.errors)
                .arg(&ids)
                .query_async(&mut conn)
                .await?;
            for (((id, at), raw), error) in entries.iter().zip(records).zip(errors) {
                let raw = raw.unwrap_or_default();
                all.push(job_info(
                    id,
                    shard,
                    JobState::Dead,
                    &raw,
                    None,
                    None,
                    Some(*at),
                    error,
                ));
            }
        }
        all.sort_by(|a, b| {
            b.dead_at_ms
                .cmp(&a.dead_at_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        all.truncate(limit);
        Ok(all)
    }

    /// Replays dead jobs by id (every shard is asked; an id not in the store is skipped).
    /// Returns how many were replayed.
    pub async fn dead_replay(&self, ids: &[String]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let mut replayed = 0;
        for shard in 0..self.inner.shards {
            replayed += self.replay_in(&mut conn, shard, ids).await?;
        }
        Ok(replayed)
    }

    async fn replay_in(
        &self,
        conn: &mut deadpool_redis::Connection,
        shard: u16,
        ids: &[String],
    ) -> Result<u64> {
        let k = self.keys(shard);
        let flags: Vec<i64> = self
            .inner
            .scripts
            .replay
            .key(&k.dead)
            .key(&k.queue)
            .key(&k.jobs)
            .key(&k.errors)
            .arg(ids)
            .invoke_async(conn)
            .await?;
        let replayed = flags.iter().filter(|f| **f == 1).count() as u64;
        if replayed > 0 {
            let now = self.now_ms(conn).await?;
            self.wake(conn, shard, now).await?;
        }
        Ok(replayed)
    }

    /// Replays every dead job whose record is readable. Returns how many were replayed.
    pub async fn dead_replay_all(&self) -> Result<u64> {
        let mut conn = self.conn().await?;
        let mut replayed = 0;
        for shard in 0..self.inner.shards {
            let k = self.keys(shard);
            let mut offset = 0usize;
            loop {
                let ids: Vec<String> = redis::cmd("ZRANGE")
                    .arg(&k.dead)
                    .arg(offset)
                    .arg(offset + 499)
                    .query_async(&mut conn)
                    .await?;
                if ids.is_empty() {
                    break;
                }
                let done = self.replay_in(&mut conn, shard, &ids).await?;
                replayed += done;
                // Unreadable records stay behind; step over them.
                offset += ids.len() - done as usize;
            }
        }
        Ok(replayed)
    }

    /// Deletes dead jobs by id. Returns how many were deleted.
    pub async fn dead_purge(&self, ids: &[String]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let mut purged = 0;
        for shard in 0..self.inner.shards {
            let k = self.keys(shard);
            let flags: Vec<i64> = self
                .inner
                .scripts
                .purge
                .key(&k.dead)
                .key(&k.jobs)
                .key(&k.errors)
                .arg(ids)
                .invoke_async(&mut conn)
                .await?;
            purged += flags.iter().filter(|f| **f == 1).count() as u64;
        }
        Ok(purged)
    }

    /// Empties the dead-letter store. Returns how many entries were deleted.
    pub async fn dead_purge_all(&self) -> Result<u64> {
        let mut conn = self.conn().await?;
        let mut purged = 0;
        for shard in 0..self.inner.shards {
            loop {
                let n = self
                    .trim_dead(
                        &mut conn,
                        shard,
                        0,
                        Duration::from_secs(u32::MAX.into()),
                        1000,
                    )
                    .await?;
                purged += n;
                if n < 1000 {
                    break;
                }
            }
        }
        Ok(purged)
    }
}

fn protocol(script: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Protocol {
        script,
        detail: detail.into(),
    }
}

fn mark(applied: &mut [bool], index: &[usize], flags: &[i64], script: &'static str) -> Result<()> {
    if flags.len() != index.len() {
        return Err(protocol(
            script,
            format!("{} flags for {} jobs", flags.len(), index.len()),
        ));
    }
    for (i, flag) in index.iter().zip(flags) {
        applied[*i] = *flag == 1;
    }
    Ok(())
}

fn parse_claim(reply: Vec<Value>) -> Result<Claim> {
    if reply.len() < 5 || (reply.len() - 5) % 7 != 0 {
        return Err(protocol("claim", format!("{} entries", reply.len())));
    }
    let mut it = reply.into_iter();
    let int = |it: &mut std::vec::IntoIter<Value>| -> Result<i64> {
        Ok(i64::from_redis_value(it.next().expect("length checked"))?)
    };
    let now_ms = int(&mut it)?;
    let next_due = int(&mut it)?;
    let next_lease = int(&mut it)?;
    let expired = int(&mut it)? as u64;
    let discarded = int(&mut it)? as u64;
    let mut jobs = Vec::with_capacity(it.len() / 7);
    while it.len() > 0 {
        let id = String::from_redis_value(it.next().expect("length checked"))?;
        let token = int(&mut it)? as u64;
        let attempts = int(&mut it)? as u32;
        let enqueued_ms = int(&mut it)?;
        let endpoint = String::from_redis_value(it.next().expect("length checked"))?;
        let endpoint_json = Vec::<u8>::from_redis_value(it.next().expect("length checked"))?;
        let payload = Vec::<u8>::from_redis_value(it.next().expect("length checked"))?;
        jobs.push(ClaimedJob {
            id,
            token,
            attempts,
            enqueued_ms,
            endpoint,
            endpoint_json,
            payload,
        });
    }
    Ok(Claim {
        now_ms,
        next_due_ms: (next_due >= 0).then_some(next_due),
        next_lease_deadline_ms: (next_lease >= 0).then_some(next_lease),
        expired,
        discarded,
        jobs,
    })
}

#[allow(clippy::too_many_arguments)]
fn job_info(
    id: &str,
    shard: u16,
    state: JobState,
    raw: &[u8],
    queued: Option<f64>,
    inflight: Option<f64>,
    dead: Option<f64>,
    last_error: Option<String>,
) -> JobInfo {
    let record = JobRecord::parse(raw);
    JobInfo {
        id: id.to_owned(),
        shard,
        state,
        attempts: record.as_ref().map(|r| r.attempts),
        endpoint: record.as_ref().map(|r| r.endpoint.clone()),
        enqueued_at_ms: record.as_ref().map(|r| r.enqueued_ms),
        next_attempt_at_ms: queued.map(|s| s as i64),
        lease_deadline_ms: inflight.map(|s| s as i64),
        dead_at_ms: dead.map(|s| s as i64),
        last_error,
        payload: record
            .as_ref()
            .and_then(|r| serde_json::from_slice(&r.payload).ok()),
        raw_record: match record {
            Some(_) => None,
            None => Some(String::from_utf8_lossy(raw).into_owned()),
        },
    }
}
