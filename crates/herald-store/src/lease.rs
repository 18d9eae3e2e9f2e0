//! The worker's side of the store: claiming due jobs under a lease, settling them (acknowledge,
//! retry, discard, park, hand back) with their fencing token, waiting for wake-up hints, and the
//! periodic housekeeping (dead-letter bounds, parked jobs past the retry window).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, Value};

use crate::record::JobRecord;
use crate::store::{protocol, Result};
use crate::Store;

/// Attempts kept per endpoint in its attempt log.
pub const ATTEMPT_LOG_LEN: usize = 50;

/// One leased job, as the claim script hands it out.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: String,
    /// The fencing token of this lease; settling needs it (with `attempts`).
    pub token: u64,
    /// The attempt this lease is for, counted from 1 (1 on the first attempt); for a job of a
    /// disabled endpoint, the attempts so far (nothing is attempted).
    pub attempts: u32,
    pub enqueued_ms: i64,
    pub endpoint: String,
    /// The endpoint's stored JSON (`EndpointRecord`), read in the same script; shared by the
    /// jobs of one claim that have the same endpoint.
    pub endpoint_json: Arc<[u8]>,
    pub payload: Vec<u8>,
    /// The endpoint is disabled: park the job ([`Settle::Park`]) instead of delivering it.
    pub endpoint_disabled: bool,
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
    /// Its endpoint is disabled: set aside until the endpoint is enabled, no attempt spent.
    Park,
    /// Not attempted after all (shutdown): due again at once, attempt not counted.
    Release,
}

/// What an attempt does to its endpoint's strike count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strike {
    /// Nothing (a success resets the count on its own).
    #[default]
    None,
    /// One more consecutive strike; the endpoint is disabled at the limit.
    One,
    /// Disable the endpoint at once (410 Gone).
    DisableNow,
}

/// One settlement of one leased job.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub id: String,
    /// The lease: the claim's token and attempt number ([`ClaimedJob::token`],
    /// [`ClaimedJob::attempts`]).
    pub token: u64,
    pub attempt: u32,
    pub endpoint: String,
    pub action: Settle,
    pub strike: Strike,
    /// The attempt log entry (JSON), if this attempt is to be logged.
    pub log_entry: Option<String>,
}

/// What a settle call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettleReport {
    /// One flag per settlement, in order: false when its token was stale and nothing changed.
    pub applied: Vec<bool>,
    /// Endpoints this call disabled (strike limit reached, or 410).
    pub disabled: Vec<String>,
    /// The earliest retry time set by this call (ms), if any.
    pub next_due_ms: Option<i64>,
}

/// A lease as `leases` holds it and the settling scripts compare it: `<token> <attempt>`.
fn lease_text(token: u64, attempt: u32) -> String {
    format!("{token} {attempt}")
}

/// The token and attempt number of a lease as `leases` holds it.
pub(crate) fn parse_lease(text: &str) -> Option<(u64, u32)> {
    let (token, attempt) = text.split_once(' ')?;
    Some((token.parse().ok()?, attempt.parse().ok()?))
}

fn flags(reply: &[i64], n: usize, script: &'static str) -> Result<()> {
    if reply.len() == n {
        Ok(())
    } else {
        Err(protocol(
            script,
            format!("{} flags for {n} jobs", reply.len()),
        ))
    }
}

impl Store {
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
            .key(&k.disabled)
            .key(&k.deleted)
            .arg(max)
            .arg(lease.as_millis() as u64)
            .arg(max_attempts)
            .arg(100)
            .invoke_async(conn)
            .await?;
        parse_claim(reply)
    }

    /// Settles leased jobs of one shard: one script call per kind of settlement present.
    /// `disable_after` is the strike count that disables an endpoint.
    pub async fn settle<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        items: &[Settlement],
        disable_after: u32,
    ) -> Result<SettleReport> {
        let k = self.keys(shard);
        let s = &self.inner.scripts;
        let mut report = SettleReport {
            applied: vec![false; items.len()],
            ..SettleReport::default()
        };
        let (mut acks, mut fails, mut parks, mut releases) = (
            s.ack.prepare_invoke(),
            s.fail.prepare_invoke(),
            s.park.prepare_invoke(),
            s.release.prepare_invoke(),
        );
        acks.key(&k.inflight)
            .key(&k.leases)
            .key(&k.jobs)
            .key(&k.errors)
            .key(&k.strikes)
            .arg(ATTEMPT_LOG_LEN);
        fails
            .key(&k.inflight)
            .key(&k.leases)
            .key(&k.queue)
            .key(&k.errors)
            .key(&k.dead)
            .key(&k.strikes)
            .key(&k.disabled)
            .key(&k.jobs)
            .arg(disable_after)
            .arg(ATTEMPT_LOG_LEN);
        parks.key(&k.inflight).key(&k.leases).key(&k.jobs);
        releases.key(&k.inflight).key(&k.leases).key(&k.queue);
        let mut index: [Vec<usize>; 4] = Default::default();
        for (i, item) in items.iter().enumerate() {
            let log_key = k.attempts(&item.endpoint);
            let lease = lease_text(item.token, item.attempt);
            let entry = item.log_entry.as_deref().unwrap_or("");
            let strike = match item.strike {
                Strike::None => 0,
                Strike::One => 1,
                Strike::DisableNow => 2,
            };
            let mut fail = |delay: i64, error: &str| {
                fails
                    .key(&log_key)
                    .arg(&item.id)
                    .arg(&lease)
                    .arg(delay)
                    .arg(error)
                    .arg(&item.endpoint)
                    .arg(strike)
                    .arg(entry);
                index[1].push(i);
            };
            match &item.action {
                Settle::Ack => {
                    acks.key(&log_key)
                        .arg(&item.id)
                        .arg(&lease)
                        .arg(&item.endpoint)
                        .arg(entry);
                    index[0].push(i);
                }
                Settle::Retry { delay, error } => fail(delay.as_millis() as i64, error),
                Settle::Discard { reason } => fail(-1, reason),
                Settle::Park => {
                    parks
                        .key(k.parked(&item.endpoint))
                        .arg(&item.id)
                        .arg(&lease);
                    index[2].push(i);
                }
                Settle::Release => {
                    releases.arg(&item.id).arg(&lease);
                    index[3].push(i);
                }
            }
        }
        if !index[0].is_empty() {
            let reply: Vec<i64> = acks.invoke_async(conn).await?;
            flags(&reply, index[0].len(), "ack")?;
            for (i, f) in index[0].iter().zip(reply) {
                report.applied[*i] = f == 1;
            }
        }
        if !index[1].is_empty() {
            let mut reply: Vec<i64> = fails.invoke_async(conn).await?;
            if reply.is_empty() {
                return Err(protocol("fail", "empty reply"));
            }
            let next = reply.remove(0);
            report.next_due_ms = (next >= 0).then_some(next);
            flags(&reply, index[1].len(), "fail")?;
            for (i, f) in index[1].iter().zip(reply) {
                report.applied[*i] = f >= 1;
                if f == 2 {
                    report.disabled.push(items[*i].endpoint.clone());
                }
            }
        }
        if !index[2].is_empty() {
            let reply: Vec<i64> = parks.invoke_async(conn).await?;
            flags(&reply, index[2].len(), "park")?;
            for (i, f) in index[2].iter().zip(reply) {
                report.applied[*i] = f == 1;
            }
        }
        if !index[3].is_empty() {
            let reply: Vec<i64> = releases.invoke_async(conn).await?;
            flags(&reply, index[3].len(), "release")?;
            for (i, f) in index[3].iter().zip(reply) {
                report.applied[*i] = f == 1;
            }
        }
        Ok(report)
    }

    /// Blocks up to `timeout` for a wake-up hint, then takes the other pending hints too (at
    /// most one per shard exists); returns `(shard, at_ms)` of each, the earliest first, or
    /// nothing when the time ran out. Use a [`Store::dedicated`] connection: the command
    /// blocks the connection.
    pub async fn wait_wake<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        timeout: Duration,
    ) -> Result<Vec<(u16, i64)>> {
        let wake = self.inner.namespace.wake_key();
        let first: Option<(String, u16, f64)> = redis::cmd("BZPOPMIN")
            .arg(&wake)
            .arg(timeout.as_secs_f64().max(0.001))
            .query_async(conn)
            .await?;
        let Some((_, shard, at)) = first else {
            return Ok(Vec::new());
        };
        let rest: Vec<(u16, f64)> = redis::cmd("ZPOPMIN")
            .arg(&wake)
            .arg(self.inner.shards)
            .query_async(conn)
            .await?;
        Ok(std::iter::once((shard, at))
            .chain(rest)
            .filter(|(shard, _)| *shard < self.inner.shards)
            .map(|(shard, at)| (shard, at as i64))
            .collect())
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

    /// Discards parked jobs of one shard's disabled endpoints that are older than `window`
    /// (counted from their first enqueue). Returns how many were discarded.
    pub async fn sweep_parked<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        window: Duration,
    ) -> Result<u64> {
        let k = self.keys(shard);
        let disabled: Vec<String> = redis::cmd("HKEYS")
            .arg(&k.disabled)
            .query_async(conn)
            .await?;
        let mut swept = 0;
        for endpoint in disabled {
            loop {
                let n: u64 = self
                    .inner
                    .scripts
                    .sweep_parked
                    .key(k.parked(&endpoint))
                    .key(&k.dead)
                    .key(&k.errors)
                    .arg(window.as_millis() as u64)
                    .arg(1000)
                    .invoke_async(conn)
                    .await?;
                swept += n;
                if n < 1000 {
                    break;
                }
            }
        }
        Ok(swept)
    }
}

fn parse_claim(reply: Vec<Value>) -> Result<Claim> {
    const HEAD: usize = 5;
    const PER_JOB: usize = 5;
    if reply.len() < HEAD || (reply.len() - HEAD) % PER_JOB != 0 {
        return Err(protocol("claim", format!("{} entries", reply.len())));
    }
    let mut it = reply.into_iter();
    let int = |v: Option<Value>| -> Result<i64> {
        Ok(i64::from_redis_value(v.expect("length checked"))?)
    };
    let now_ms = int(it.next())?;
    let next_due = int(it.next())?;
    let next_lease = int(it.next())?;
    let expired = int(it.next())? as u64;
    let discarded = int(it.next())? as u64;
    let count = it.len() / PER_JOB;
    let mut jobs = Vec::with_capacity(count);
    // The script sends each endpoint's JSON with the first of its jobs only.
    let mut endpoints: HashMap<String, Arc<[u8]>> = HashMap::new();
    let mut take = || it.next().expect("length checked");
    for _ in 0..count {
        let id = String::from_redis_value(take())?;
        let lease = String::from_redis_value(take())?;
        let record = Vec::<u8>::from_redis_value(take())?;
        let endpoint_json = Vec::<u8>::from_redis_value(take())?;
        let state = String::from_redis_value(take())?;
        let (token, attempts) = parse_lease(&lease)
            .ok_or_else(|| protocol("claim", format!("lease {lease:?} of job {id}")))?;
        // The script leased it, so its header did parse there.
        let record = JobRecord::from_vec(record)
            .ok_or_else(|| protocol("claim", format!("record of job {id}")))?;
        let endpoint_json = if endpoint_json.is_empty() {
            endpoints
                .get(&record.endpoint)
                .cloned()
                .ok_or_else(|| protocol("claim", format!("no endpoint JSON for job {id}")))?
        } else {
            let json: Arc<[u8]> = endpoint_json.into();
            endpoints.insert(record.endpoint.clone(), json.clone());
            json
        };
        jobs.push(ClaimedJob {
            id,
            token,
            attempts,
            enqueued_ms: record.enqueued_ms,
            endpoint: record.endpoint,
            endpoint_json,
            payload: record.payload,
            endpoint_disabled: state == "disabled",
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
