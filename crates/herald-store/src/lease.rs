//! The worker's side of the store: claiming due jobs under a lease, endpoint by endpoint within
//! their flow control, settling them (acknowledge, retry, discard, hand back) with their fencing
//! token, taking back expired leases, waiting for wake-up hints, and the periodic housekeeping
//! (dead-letter bounds, parked jobs past the retry window).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, ScriptInvocation, Value};

use herald_core::EndpointId;

use crate::error::{protocol, Result};
use crate::keys::wake_endpoints_key;
use crate::record::JobRecord;
use crate::{ShardKeys, Store, StoreError};

/// Attempts kept per endpoint in its attempt log.
pub const ATTEMPT_LOG_LEN: usize = 50;

/// Most endpoint hints one wait takes (see [`Store::wait_wake`]).
pub const ENDPOINT_HINTS_PER_WAKE: usize = 256;

/// What one wait for wake-up hints brought.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Woken {
    /// `(shard, at_ms)`: the shard may have work due at `at_ms`, the earliest first.
    pub shards: Vec<(u16, i64)>,
    /// `(shard, endpoint)`: the endpoint was just given jobs due at once.
    pub endpoints: Vec<(u16, EndpointId)>,
}

impl Woken {
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty() && self.endpoints.is_empty()
    }

    /// Adds what `other` brought.
    pub fn extend(&mut self, other: Woken) {
        self.shards.extend(other.shards);
        self.endpoints.extend(other.endpoints);
    }
}

/// One leased job, as the claim script hands it out.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: String,
    /// The fencing token of this lease; settling needs it (with `attempts`).
    pub token: u64,
    /// The attempt this lease is for, counted from 1 (1 on the first attempt).
    pub attempts: u32,
    pub enqueued_ms: i64,
    pub endpoint: String,
    /// The endpoint's stored JSON (`EndpointRecord`), read in the same script; shared by the
    /// jobs of one claim that have the same endpoint.
    pub endpoint_json: Arc<[u8]>,
    pub payload: Vec<u8>,
    /// Leased from the slow lane: its endpoint is judged slow (see [`Store::claim_lanes`]).
    pub slow: bool,
    /// Its endpoint is judged slow: leased from the slow lane, or a main-lane probe of an
    /// endpoint with nothing in flight. A quick answer judges the endpoint fast again.
    pub judged_slow: bool,
}

/// Endpoints a claim held back with due work, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// At their configured in-flight limit.
    pub in_flight: u64,
    /// At their adaptive limit, below the configured one.
    pub adaptive: u64,
    /// Out of rate.
    pub rate: u64,
    /// Paused by a `Retry-After`.
    pub pause: u64,
    /// Judged slow, with no room left in the claiming worker's slow lane.
    pub slow: u64,
}

/// The answer of one claim call.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Redis time of the claim (ms).
    pub now_ms: i64,
    /// When the shard's next endpoint may be served (ms), if any may be by time alone (an
    /// endpoint at its in-flight limit waits for a settlement instead).
    pub next_ready_ms: Option<i64>,
    /// The shard's earliest lease deadline (ms), if any job is in flight.
    pub next_lease_deadline_ms: Option<i64>,
    /// Jobs sent to the dead-letter store by this call because their endpoint was deleted or
    /// never existed.
    pub discarded_gone: u64,
    /// Jobs sent to the dead-letter store by this call because their record is unreadable.
    pub discarded_malformed: u64,
    pub held: Held,
    /// The endpoints whose turn has come, oldest first: what the next claim of this shard
    /// should name.
    pub candidates: Vec<String>,
    pub jobs: Vec<ClaimedJob>,
}

/// What taking back expired leases did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Leases taken back.
    pub expired: u64,
    /// Of those, jobs sent to the dead-letter store (it was their last attempt).
    pub discarded: u64,
    /// Endpoints that were at their in-flight limit and may be served again.
    pub unblocked: u64,
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
    /// The Redis time of the claim ([`Claim::now_ms`]): a failure tells of the endpoint as it
    /// was then, so it strikes, cuts and pauses only if the endpoint has not changed since
    /// (issue 18), and one wave of failures cuts the adaptive limit once.
    pub claimed_ms: i64,
    /// The attempt showed the receiver struggling (timeout, 5xx, 429): its adaptive limit is
    /// to be cut.
    pub congested: bool,
    /// The receiver asked for a pause (`Retry-After` on 429 or 503): the endpoint's whole queue
    /// waits this long.
    pub pause: Option<Duration>,
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
    /// Endpoints that were at their in-flight limit and may be served again: the shard is
    /// worth a claim.
    pub unblocked: u64,
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

/// The `ready` score of an endpoint at its in-flight limit (`BLOCKED` in the scripts).
pub(crate) const BLOCKED: f64 = 1e15;

/// Candidates a claim asks the next one to serve. Each endpoint served costs a claim a few
/// commands besides those of its jobs, so a claim serves a few endpoints with a larger share
/// each rather than one job of every ready endpoint; `ready`'s order (the endpoints that
/// waited longest first) still brings every endpoint's turn within a few claims.
const CANDIDATES: usize = 16;

/// How long an endpoint judged slow waits before a claim looks at it again, when the claim met
/// it with no room in the worker's slow lane: long enough that claims do not spin over a crowd
/// of slow endpoints, short against the seconds a slow delivery holds its slot.
pub const SLOW_LANE_WAIT: Duration = Duration::from_millis(250);

/// Checks a settling script's reply: `head` leading values, then one flag per job.
fn with_head(reply: Vec<i64>, head: usize, n: usize, script: &'static str) -> Result<Vec<i64>> {
    if reply.len() == head + n {
        Ok(reply)
    } else {
        Err(protocol(
            script,
            format!(
                "{} values for {n} jobs and {head} leading ones",
                reply.len()
            ),
        ))
    }
}

/// Settlements of one shard gathered into one call per kind (ack, fail, release), run in that
/// order.
struct SettlePart<'a> {
    keys: &'a ShardKeys,
    acks: ScriptInvocation<'a>,
    fails: ScriptInvocation<'a>,
    releases: ScriptInvocation<'a>,
    /// The positions in the batch of the items of each call.
    index: [Vec<usize>; 3],
}

impl<'a> SettlePart<'a> {
    fn new(store: &'a Store, shard: u16, disable_after: u32, default_max_in_flight: u32) -> Self {
        let k = store.keys(shard);
        let s = &store.inner.scripts;
        let (mut acks, mut fails, mut releases) = (
            s.ack.prepare_invoke(),
            s.fail.prepare_invoke(),
            s.release.prepare_invoke(),
        );
        acks.key(&k.inflight)
            .key(&k.leases)
            .key(&k.jobs)
            .key(&k.errors)
            .key(&k.strikes)
            .key(&k.busy)
            .key(&k.ready)
            .key(&k.flow)
            .arg(ATTEMPT_LOG_LEN);
        fails
            .key(&k.inflight)
            .key(&k.leases)
            .key(&k.jobs)
            .key(&k.errors)
            .key(&k.dead)
            .key(&k.strikes)
            .key(&k.disabled)
            .key(&k.busy)
            .key(&k.ready)
            .key(&k.flow)
            .key(&k.changed)
            .key(&k.deleted)
            .arg(disable_after)
            .arg(ATTEMPT_LOG_LEN)
            .arg(default_max_in_flight);
        releases
            .key(&k.inflight)
            .key(&k.leases)
            .key(&k.busy)
            .key(&k.ready)
            .key(&k.disabled)
            .key(&k.jobs)
            .key(&k.deleted)
            .key(&k.dead)
            .key(&k.errors);
        Self {
            keys: k,
            acks,
            fails,
            releases,
            index: Default::default(),
        }
    }

    /// Adds item `i` of the batch to the call of its kind.
    fn push(&mut self, i: usize, item: &Settlement) {
        let k = self.keys;
        let lease = lease_text(item.token, item.attempt);
        let entry = item.log_entry.as_deref().unwrap_or("");
        let strike = match item.strike {
            Strike::None => 0,
            Strike::One => 1,
            Strike::DisableNow => 2,
        };
        let (delay, error) = match &item.action {
            Settle::Ack => {
                self.acks
                    .key(k.attempts(&item.endpoint))
                    .arg(&item.id)
                    .arg(&lease)
                    .arg(&item.endpoint)
                    .arg(entry);
                self.index[0].push(i);
                return;
            }
            Settle::Release => {
                self.releases
                    .key(k.queue(&item.endpoint))
                    .arg(&item.id)
                    .arg(&lease)
                    .arg(&item.endpoint);
                self.index[2].push(i);
                return;
            }
            Settle::Retry { delay, error } => (delay.as_millis() as i64, error),
            Settle::Discard { reason } => (-1, reason),
        };
        self.fails
            .key(k.queue(&item.endpoint))
            .key(k.attempts(&item.endpoint))
            .arg(&item.id)
            .arg(&lease)
            .arg(delay)
            .arg(error)
            .arg(&item.endpoint)
            .arg(strike)
            .arg(entry)
            .arg(item.claimed_ms.max(0))
            .arg(u8::from(item.congested))
            .arg(item.pause.map_or(0, |d| d.as_millis() as u64));
        self.index[1].push(i);
    }

    /// Runs the calls (acks, then failures, then hand-backs) and records their results.
    async fn run<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        items: &[Settlement],
        report: &mut SettleReport,
    ) -> Result<()> {
        let index = &self.index;
        if !index[0].is_empty() {
            let reply: Vec<i64> = self.acks.invoke_async(conn).await?;
            let flags = with_head(reply, 1, index[0].len(), "ack")?;
            report.unblocked += flags[0].max(0) as u64;
            for (i, f) in index[0].iter().zip(&flags[1..]) {
                report.applied[*i] = *f == 1;
            }
        }
        if !index[1].is_empty() {
            let reply: Vec<i64> = self.fails.invoke_async(conn).await?;
            let flags = with_head(reply, 2, index[1].len(), "fail")?;
            if flags[0] >= 0 {
                report.next_due_ms = Some(report.next_due_ms.map_or(flags[0], |d| d.min(flags[0])));
            }
            report.unblocked += flags[1].max(0) as u64;
            for (i, f) in index[1].iter().zip(&flags[2..]) {
                report.applied[*i] = *f >= 1;
                if *f == 2 {
                    report.disabled.push(items[*i].endpoint.clone());
                }
            }
        }
        if !index[2].is_empty() {
            let reply: Vec<i64> = self.releases.invoke_async(conn).await?;
            let flags = with_head(reply, 1, index[2].len(), "release")?;
            report.unblocked += flags[0].max(0) as u64;
            for (i, f) in index[2].iter().zip(&flags[1..]) {
                report.applied[*i] = *f == 1;
            }
        }
        Ok(())
    }
}

impl Store {
    /// Leases up to `max` due jobs of one shard, serving the `candidates` endpoints (those the
    /// previous claim of this shard answered) endpoint by endpoint. `default_max_in_flight` is
    /// the limit of an endpoint without flow settings.
    ///
    /// Send it on a pooled connection: the claim carries the Redis time after which its caller
    /// will have given up waiting (the pool's response timeout), and Redis runs it as a no-op
    /// after that, so a claim held up (Redis paused, a slow network) never leases jobs that
    /// nobody will deliver.
    ///
    /// Endpoints judged slow take from `max` like the others; [`Store::claim_lanes`] gives them
    /// a budget of their own.
    pub async fn claim<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        max: usize,
        lease: Duration,
        candidates: &[String],
        default_max_in_flight: u32,
    ) -> Result<Claim> {
        self.claim_with(
            conn,
            shard,
            max,
            -1,
            lease,
            candidates,
            default_max_in_flight,
        )
        .await
    }

    /// [`Store::claim`] with two lanes: up to `main` jobs of endpoints in good standing, and up
    /// to `slow` jobs of endpoints judged slow (a delivery to them outlasted the workers'
    /// `HERALD_SLOW_AFTER`, see [`Store::judge_speed`]). A slow endpoint met with `slow` at 0
    /// keeps its jobs and is looked at again after [`SLOW_LANE_WAIT`]. The slow lane's jobs
    /// come last in [`Claim::jobs`], with [`ClaimedJob::slow`] set. An endpoint judged slow
    /// with nothing in flight takes one job (a probe) from the main lane.
    #[allow(clippy::too_many_arguments)]
    pub async fn claim_lanes<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        main: usize,
        slow: usize,
        lease: Duration,
        candidates: &[String],
        default_max_in_flight: u32,
    ) -> Result<Claim> {
        let slow = i64::try_from(slow).unwrap_or(i64::MAX);
        self.claim_with(
            conn,
            shard,
            main,
            slow,
            lease,
            candidates,
            default_max_in_flight,
        )
        .await
    }

    /// Records what a worker saw of endpoints' speed, in one shard: `true` judges an endpoint
    /// slow (a delivery to it outlasted `HERALD_SLOW_AFTER`), `false` fast again (a delivery
    /// from the slow lane came back quicker). Returns how many judgements changed.
    pub async fn judge_speed<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        verdicts: &[(String, bool)],
    ) -> Result<u64> {
        let k = self.keys(shard);
        let mut call = self.inner.scripts.slow.prepare_invoke();
        call.key(&k.flow);
        for (endpoint, slow) in verdicts {
            call.arg(endpoint).arg(u8::from(*slow));
        }
        Ok(call.invoke_async(conn).await?)
    }

    #[allow(clippy::too_many_arguments)]
    async fn claim_with<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        max: usize,
        slow: i64,
        lease: Duration,
        candidates: &[String],
        default_max_in_flight: u32,
    ) -> Result<Claim> {
        let k = self.keys(shard);
        let mut call = self.inner.scripts.claim.prepare_invoke();
        call.key(&k.ready)
            .key(&k.busy)
            .key(&k.flow)
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
            .arg(default_max_in_flight)
            .arg(CANDIDATES)
            .arg(self.given_up_after().unwrap_or(0))
            .arg(slow)
            .arg(SLOW_LANE_WAIT.as_millis() as u64);
        for endpoint in candidates {
            call.key(k.queue(endpoint)).arg(endpoint);
        }
        let reply: Vec<Value> = call.invoke_async(conn).await?;
        let claim = parse_claim(reply)?;
        self.observe_clock(claim.now_ms);
        Ok(claim)
    }

    /// Takes back the leases of one shard that expired by `now_ms` (Redis time), at most 100
    /// per call: each counts as a failed attempt, and its job is due again at once, or dead
    /// when that was its last attempt.
    pub async fn expire<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        now_ms: i64,
        max_attempts: u32,
    ) -> Result<Expired> {
        let k = self.keys(shard);
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&k.inflight)
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(100)
            .query_async(conn)
            .await?;
        if ids.is_empty() {
            return Ok(Expired::default());
        }
        let records: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(&k.jobs)
            .arg(&ids)
            .query_async(conn)
            .await?;
        let mut call = self.inner.scripts.expire.prepare_invoke();
        call.key(&k.inflight)
            .key(&k.leases)
            .key(&k.jobs)
            .key(&k.errors)
            .key(&k.dead)
            .key(&k.busy)
            .key(&k.ready)
            .key(&k.disabled)
            .key(&k.deleted)
            .arg(max_attempts);
        for (id, record) in ids.iter().zip(records) {
            // A job without a readable record only loses its lease; any queue key of the shard
            // does for it.
            let endpoint = record
                .as_deref()
                .and_then(JobRecord::endpoint_of)
                .unwrap_or_default();
            call.key(k.queue(&endpoint)).arg(id).arg(endpoint);
        }
        let (expired, discarded, unblocked): (u64, u64, u64) = call.invoke_async(conn).await?;
        Ok(Expired {
            expired,
            discarded,
            unblocked,
        })
    }

    /// Settles leased jobs of one shard, in the order given as far as it matters: an
    /// endpoint's acks and failures apply in the order of `items` (a success resets its
    /// strikes and grows its adaptive limit; a failure counts a strike and may cut it), so the
    /// batch is cut where an endpoint's settlements change between success and failure. Each
    /// part costs one script call per kind of settlement present in it; a batch in which no
    /// endpoint has both costs at most three. `disable_after` is the strike count that
    /// disables an endpoint; `default_max_in_flight` the limit of an endpoint without flow
    /// settings.
    pub async fn settle<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        items: &[Settlement],
        disable_after: u32,
        default_max_in_flight: u32,
    ) -> Result<SettleReport> {
        let mut report = SettleReport {
            applied: vec![false; items.len()],
            ..SettleReport::default()
        };
        let mut part = SettlePart::new(self, shard, disable_after, default_max_in_flight);
        // Per endpoint of the current part: whether its settlements there are successes.
        let mut outcome: HashMap<&str, bool> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let success = match item.action {
                Settle::Ack => Some(true),
                Settle::Retry { .. } | Settle::Discard { .. } => Some(false),
                Settle::Release => None,
            };
            if let Some(success) = success {
                if outcome.insert(&item.endpoint, success) == Some(!success) {
                    part.run(conn, items, &mut report).await?;
                    part = SettlePart::new(self, shard, disable_after, default_max_in_flight);
                    outcome.clear();
                    outcome.insert(&item.endpoint, success);
                }
            }
            part.push(i, item);
        }
        part.run(conn, items, &mut report).await?;
        Ok(report)
    }

    /// Blocks up to `timeout` for a wake-up hint in the set `wake` (one of
    /// [`Store::wake_groups`]), then takes the set's other pending hints too (at most one per
    /// shard exists) and up to [`ENDPOINT_HINTS_PER_WAKE`] endpoint hints from the set beside
    /// it, in one more round trip; returns the hints, the earliest first, or nothing when the
    /// time ran out. Use a [`Store::dedicated`] connection: the command blocks the connection.
    ///
    /// Redis answers by `timeout` at the latest; without an answer by then plus the response
    /// timeout, the wait fails with [`StoreError::WaitTimeout`]:
    /// the connection is presumed dead, and the caller should drop it and open another.
    pub async fn wait_wake<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        wake: &str,
        timeout: Duration,
    ) -> Result<Woken> {
        let timeout = timeout.max(Duration::from_millis(1));
        let deadline = timeout + self.inner.response_timeout;
        let endpoints_key = wake_endpoints_key(wake);
        let wait = async {
            let first: Option<(String, u16, f64)> = redis::cmd("BZPOPMIN")
                .arg(wake)
                .arg(timeout.as_secs_f64())
                .query_async(conn)
                .await?;
            let Some((_, shard, at)) = first else {
                return Ok((Vec::new(), Vec::new()));
            };
            // Woken: the other pending hints and the endpoints, in one round trip. (Sent
            // only when woken, so that an idle worker's wait costs one command.)
            type Popped = (Vec<(u16, f64)>, Vec<(String, f64)>);
            let (rest, endpoints): Popped = redis::pipe()
                .cmd("ZPOPMIN")
                .arg(wake)
                .arg(self.inner.shards)
                .cmd("ZPOPMIN")
                .arg(&endpoints_key)
                .arg(ENDPOINT_HINTS_PER_WAKE)
                .query_async(conn)
                .await?;
            let shards: Vec<(u16, f64)> = std::iter::once((shard, at)).chain(rest).collect();
            Ok::<_, StoreError>((shards, endpoints))
        };
        let (shards, endpoints) = tokio::time::timeout(deadline, wait)
            .await
            .map_err(|_| StoreError::WaitTimeout(deadline))??;
        let shards = shards
            .into_iter()
            .filter(|(shard, _)| *shard < self.inner.shards)
            .map(|(shard, at)| (shard, at as i64))
            .collect();
        let endpoints = endpoints
            .into_iter()
            .filter_map(|(e, _)| EndpointId::new(e).ok())
            .map(|e| (self.shard_of(&e), e))
            .collect();
        Ok(Woken { shards, endpoints })
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
                    .key(k.queue(&endpoint))
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
    const HEAD: usize = 13;
    const PER_JOB: usize = 4;
    if reply.len() < HEAD {
        return Err(protocol("claim", format!("{} entries", reply.len())));
    }
    let mut it = reply.into_iter();
    let int = |v: Option<Value>| -> Result<i64> {
        Ok(i64::from_redis_value(v.expect("length checked"))?)
    };
    let now_ms = int(it.next())?;
    let next_ready = int(it.next())?;
    let next_lease = int(it.next())?;
    let discarded_gone = int(it.next())? as u64;
    let discarded_malformed = int(it.next())? as u64;
    let held = Held {
        in_flight: int(it.next())? as u64,
        adaptive: int(it.next())? as u64,
        rate: int(it.next())? as u64,
        pause: int(it.next())? as u64,
        slow: int(it.next())? as u64,
    };
    let probes = usize::try_from(int(it.next())?).unwrap_or(usize::MAX);
    let slow_jobs = usize::try_from(int(it.next())?).unwrap_or(usize::MAX);
    let count = usize::try_from(int(it.next())?).unwrap_or(usize::MAX);
    if it.len() < count || (it.len() - count) % PER_JOB != 0 {
        return Err(protocol(
            "claim",
            format!("{} entries after {count} candidates", it.len()),
        ));
    }
    let candidates = it
        .by_ref()
        .take(count)
        .map(String::from_redis_value)
        .collect::<Result<Vec<_>, _>>()?;
    let count = it.len() / PER_JOB;
    if slow_jobs.saturating_add(probes) > count {
        return Err(protocol(
            "claim",
            format!("{slow_jobs} slow jobs and {probes} probes of {count}"),
        ));
    }
    let mut jobs = Vec::with_capacity(count);
    // The script sends each endpoint's JSON with the first of its jobs only.
    let mut endpoints: HashMap<String, Arc<[u8]>> = HashMap::new();
    let mut take = || it.next().expect("length checked");
    for n in 0..count {
        let id = String::from_redis_value(take())?;
        let lease = String::from_redis_value(take())?;
        let record = Vec::<u8>::from_redis_value(take())?;
        let endpoint_json = Vec::<u8>::from_redis_value(take())?;
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
            slow: n >= count - slow_jobs,
            judged_slow: n >= count - slow_jobs - probes,
        });
    }
    Ok(Claim {
        now_ms,
        next_ready_ms: (next_ready >= 0).then_some(next_ready),
        next_lease_deadline_ms: (next_lease >= 0).then_some(next_lease),
        discarded_gone,
        discarded_malformed,
        held,
        candidates,
        jobs,
    })
}
