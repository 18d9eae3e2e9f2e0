//! Inspection and administration: job counts by state, one job's whereabouts, and the
//! dead-letter store (list, replay, purge).

use std::collections::HashSet;
use std::time::Duration;

use futures::future::try_join_all;
use redis::FromRedisValue;
use serde::Serialize;

use crate::connection::{Conn, Pooled};
use crate::endpoints::FlowState;
use crate::error::{protocol, Result};
use crate::lease::{parse_lease, BLOCKED};
use crate::record::JobRecord;
use crate::Store;

/// Job counts of one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShardStats {
    pub due: u64,
    pub scheduled: u64,
    pub in_flight: u64,
    pub parked: u64,
    pub dead: u64,
    /// Endpoints held back now: at their in-flight or adaptive limit, or paused.
    pub held_back_endpoints: u64,
    /// When the oldest due job became due (Redis time, ms): the earliest head of the queues
    /// of enabled endpoints that is not later than now. `None` when no job is due.
    pub oldest_due_ms: Option<i64>,
}

/// Job counts of the whole deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub now_ms: i64,
    #[serde(flatten)]
    pub total: ShardStats,
    /// Endpoints disabled right now.
    pub disabled_endpoints: u64,
    pub shards: Vec<ShardStats>,
    /// The endpoints holding the most delivery slots now, most first (at most
    /// [`BUSIEST_SHOWN`]): in an outage, the receivers that hang or crawl.
    pub busiest: Vec<BusyEndpoint>,
}

/// How many of the busiest endpoints [`Stats`] names.
pub const BUSIEST_SHOWN: usize = 5;

/// An endpoint and the delivery slots it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BusyEndpoint {
    pub id: String,
    /// Its deliveries in flight now, fleet-wide.
    pub in_flight: u64,
    /// Judged slow: served from the workers' slow lanes only.
    pub slow: bool,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Due,
    Scheduled,
    InFlight,
    /// Waiting while its endpoint is disabled.
    Parked,
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
    /// Attempts started so far; for a job in flight, the attempt under way included.
    pub attempts: Option<u32>,
    pub endpoint: Option<String>,
    pub enqueued_at_ms: Option<i64>,
    /// When the next attempt is due (due or scheduled jobs).
    pub next_attempt_at_ms: Option<i64>,
    pub lease_deadline_ms: Option<i64>,
    pub dead_at_ms: Option<i64>,
    pub last_error: Option<String>,
    /// The payload as stored, when it is JSON.
    pub payload: Option<serde_json::Value>,
    /// The payload's bytes (invalid UTF-8 replaced), when it is not JSON: what a worker
    /// discarded as `malformed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_payload: Option<String>,
    /// The stored record, when it could not be parsed.
    pub raw_record: Option<String>,
}

/// One entry of the dead-letter store.
pub type DeadJob = JobInfo;

/// Where a job was found, with the scores of the sets holding it.
#[derive(Debug, Default)]
struct Found {
    queued: Option<f64>,
    inflight: Option<f64>,
    dead: Option<f64>,
    last_error: Option<String>,
}

fn job_info(id: &str, shard: u16, state: JobState, raw: &[u8], found: Found) -> JobInfo {
    let record = JobRecord::parse(raw);
    let payload: Option<serde_json::Value> = record
        .as_ref()
        .and_then(|r| serde_json::from_slice(&r.payload).ok());
    JobInfo {
        id: id.to_owned(),
        shard,
        state,
        attempts: record.as_ref().map(|r| r.attempts),
        endpoint: record.as_ref().map(|r| r.endpoint.clone()),
        enqueued_at_ms: record.as_ref().map(|r| r.enqueued_ms),
        next_attempt_at_ms: found.queued.map(|s| s as i64),
        lease_deadline_ms: found.inflight.map(|s| s as i64),
        dead_at_ms: found.dead.map(|s| s as i64),
        last_error: found.last_error,
        payload: payload.clone(),
        raw_payload: match (&record, payload) {
            (Some(r), None) => Some(String::from_utf8_lossy(&r.payload).into_owned()),
            _ => None,
        },
        raw_record: match record {
            Some(_) => None,
            None => Some(String::from_utf8_lossy(raw).into_owned()),
        },
    }
}

/// The reply of `stats-4.lua`: in flight, dead, the disabled endpoints, and `ready` with scores.
#[allow(clippy::type_complexity)]
fn parse_stats(
    reply: Vec<redis::Value>,
) -> Result<(u64, u64, HashSet<String>, Vec<(String, f64)>)> {
    let bad = || protocol("stats", "short reply");
    let mut it = reply.into_iter();
    let mut int = || -> Result<u64> { Ok(u64::from_redis_value(it.next().ok_or_else(bad)?)?) };
    let (in_flight, dead, d) = (int()?, int()?, int()? as usize);
    let disabled = it
        .by_ref()
        .take(d)
        .map(String::from_redis_value)
        .collect::<Result<HashSet<_>, _>>()?;
    let rest: Vec<redis::Value> = it.collect();
    if disabled.len() != d || rest.len() % 2 != 0 {
        return Err(bad());
    }
    let mut ready = Vec::with_capacity(rest.len() / 2);
    let mut rest = rest.into_iter();
    while let (Some(e), Some(at)) = (rest.next(), rest.next()) {
        ready.push((String::from_redis_value(e)?, f64::from_redis_value(at)?));
    }
    Ok((in_flight, dead, disabled, ready))
}

impl Store {
    /// Job counts by state, per shard and in total, counted from one Redis instant.
    pub async fn stats(&self) -> Result<Stats> {
        let conn = self.conn().await?;
        self.stats_on(&conn.shared()).await
    }

    /// [`Store::stats`] on a connection of the caller's. Costs a few commands per shard, three
    /// per enabled endpoint with queued jobs (counts and the head of its queue) and one per
    /// disabled endpoint, pipelined: an idle deployment costs no more than its shard count.
    pub async fn stats_on(&self, conn: &Conn) -> Result<Stats> {
        let mut c = conn.clone();
        let mut stats = Stats {
            now_ms: self.now_ms(&mut c).await?,
            ..Stats::default()
        };
        let now = stats.now_ms;
        // Every shard at once: on a cluster each goes to its master, side by side.
        let shards = try_join_all((0..self.inner.shards).map(|shard| {
            let mut c = conn.clone();
            async move { self.shard_stats(&mut c, shard, now).await }
        }))
        .await?;
        for (s, disabled, busiest) in shards {
            stats.busiest.extend(busiest);
            stats.total.due += s.due;
            stats.total.scheduled += s.scheduled;
            stats.total.in_flight += s.in_flight;
            stats.total.parked += s.parked;
            stats.total.dead += s.dead;
            stats.total.held_back_endpoints += s.held_back_endpoints;
            stats.total.oldest_due_ms = match (stats.total.oldest_due_ms, s.oldest_due_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            stats.disabled_endpoints += disabled;
            stats.shards.push(s);
        }
        stats
            .busiest
            .sort_by(|a, b| b.in_flight.cmp(&a.in_flight).then(a.id.cmp(&b.id)));
        stats.busiest.truncate(BUSIEST_SHOWN);
        Ok(stats)
    }

    /// One shard's counts at `now` (Redis ms), how many of its endpoints are disabled, and its
    /// busiest endpoints.
    async fn shard_stats(
        &self,
        conn: &mut Conn,
        shard: u16,
        now: i64,
    ) -> Result<(ShardStats, u64, Vec<BusyEndpoint>)> {
        let k = self.keys(shard);
        let reply: Vec<redis::Value> = self
            .inner
            .scripts
            .stats
            .key(&k.ready)
            .key(&k.disabled)
            .key(&k.inflight)
            .key(&k.dead)
            .invoke_async(conn)
            .await?;
        let (in_flight, dead, disabled, ready) = parse_stats(reply)?;
        let mut s = ShardStats {
            in_flight,
            dead,
            ..ShardStats::default()
        };
        // Enabled endpoints with queued jobs are in `ready`; a disabled one may still be
        // there until a claim visits it.
        let enabled: Vec<&(String, f64)> = ready
            .iter()
            .filter(|(e, _)| !disabled.contains(e))
            .collect();
        let later: Vec<&str> = enabled
            .iter()
            .filter(|(_, at)| *at > now as f64 && *at < BLOCKED)
            .map(|(e, _)| e.as_str())
            .collect();
        s.held_back_endpoints = enabled.iter().filter(|(_, at)| *at >= BLOCKED).count() as u64;
        let enabled: Vec<&str> = enabled.iter().map(|(e, _)| e.as_str()).collect();
        count_queues(conn, k, &enabled, now, &mut s).await?;
        let disabled: Vec<&String> = disabled.iter().collect();
        for chunk in disabled.chunks(500) {
            let mut pipe = redis::pipe();
            for e in chunk {
                pipe.zcard(k.queue(e));
            }
            let counts: Vec<u64> = pipe.query_async(conn).await?;
            s.parked += counts.iter().sum::<u64>();
        }
        // Waiting for a later time: their next job, their rate, or a pause (which the flow
        // record tells).
        for chunk in later.chunks(500) {
            let flows: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&k.flow)
                .arg(chunk)
                .query_async(conn)
                .await?;
            s.held_back_endpoints += flows
                .iter()
                .flatten()
                .filter(|f| FlowState::parse(f).is_some_and(|f| f.paused_ms > now))
                .count() as u64;
        }
        // Only a shard with deliveries in flight has busy endpoints: an idle one costs nothing.
        let busiest = if s.in_flight > 0 {
            self.busiest_of(conn, shard).await?
        } else {
            Vec::new()
        };
        Ok((s, disabled.len() as u64, busiest))
    }

    /// The [`BUSIEST_SHOWN`] endpoints of one shard with the most deliveries in flight.
    async fn busiest_of(&self, conn: &mut Conn, shard: u16) -> Result<Vec<BusyEndpoint>> {
        let k = self.keys(shard);
        let busy: Vec<(String, i64)> = redis::cmd("HGETALL").arg(&k.busy).query_async(conn).await?;
        let mut busiest: Vec<BusyEndpoint> = busy
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(id, n)| BusyEndpoint {
                id,
                in_flight: n as u64,
                slow: false,
            })
            .collect();
        busiest.sort_by(|a, b| b.in_flight.cmp(&a.in_flight).then(a.id.cmp(&b.id)));
        busiest.truncate(BUSIEST_SHOWN);
        if busiest.is_empty() {
            return Ok(busiest);
        }
        let flows: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&k.flow)
            .arg(busiest.iter().map(|b| b.id.as_str()).collect::<Vec<_>>())
            .query_async(conn)
            .await?;
        for (b, flow) in busiest.iter_mut().zip(flows) {
            b.slow = flow
                .as_deref()
                .and_then(FlowState::parse)
                .is_some_and(|f| f.slow);
        }
        Ok(busiest)
    }

    /// Looks a job up in every shard (job ids do not name their shard).
    pub async fn job(&self, id: &str) -> Result<Option<JobInfo>> {
        let mut conn = self.conn().await?;
        let now = self.now_ms(&mut conn).await?;
        for shard in 0..self.inner.shards {
            let k = self.keys(shard);
            #[allow(clippy::type_complexity)]
            let (raw, inflight, dead, last_error, lease): (
                Option<Vec<u8>>,
                Option<f64>,
                Option<f64>,
                Option<String>,
                Option<String>,
            ) = redis::pipe()
                .hget(&k.jobs, id)
                .zscore(&k.inflight, id)
                .zscore(&k.dead, id)
                .hget(&k.errors, id)
                .hget(&k.leases, id)
                .query_async(&mut conn)
                .await?;
            let Some(raw) = raw else { continue };
            let (queued, disabled) = match JobRecord::endpoint_of(&raw) {
                Some(endpoint) => {
                    redis::pipe()
                        .zscore(k.queue(&endpoint), id)
                        .hexists(&k.disabled, &endpoint)
                        .query_async(&mut conn)
                        .await?
                }
                None => (None, false),
            };
            let state = match (queued, inflight, dead) {
                (Some(_), ..) if disabled => JobState::Parked,
                (Some(at), ..) if at as i64 <= now => JobState::Due,
                (Some(_), ..) => JobState::Scheduled,
                (_, Some(_), _) => JobState::InFlight,
                (.., Some(_)) => JobState::Dead,
                _ => JobState::Orphaned,
            };
            let found = Found {
                queued,
                inflight,
                dead,
                last_error,
            };
            let mut info = job_info(id, shard, state, &raw, found);
            // In flight, the attempt under way is counted in its lease ("<token> <attempt>").
            if let Some((_, attempt)) = lease.as_deref().and_then(parse_lease) {
                info.attempts = Some(attempt);
            }
            return Ok(Some(info));
        }
        Ok(None)
    }

    /// The newest `limit` entries of the dead-letter store, newest first.
    pub async fn dead_list(&self, limit: usize) -> Result<Vec<DeadJob>> {
        let mut conn = self.conn().await?;
        let mut all = Vec::new();
        if limit == 0 {
            return Ok(all);
        }
        for shard in 0..self.inner.shards {
            let k = self.keys(shard);
            let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(&k.dead)
                .arg(0)
                .arg(limit - 1)
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
            for (((id, at), raw), last_error) in entries.iter().zip(records).zip(errors) {
                let found = Found {
                    dead: Some(*at),
                    last_error,
                    ..Found::default()
                };
                let raw = raw.unwrap_or_default();
                all.push(job_info(id, shard, JobState::Dead, &raw, found));
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

    pub(crate) async fn replay_in(
        &self,
        conn: &mut Pooled,
        shard: u16,
        ids: &[String],
    ) -> Result<u64> {
        let k = self.keys(shard);
        // The script needs each job's queue key, so its endpoint is read from its record first.
        let records: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(&k.jobs)
            .arg(ids)
            .query_async(conn)
            .await?;
        let mut call = self.inner.scripts.replay.prepare_invoke();
        call.key(&k.dead)
            .key(&k.jobs)
            .key(&k.errors)
            .key(&k.ready)
            .key(&k.disabled);
        let mut any = false;
        for (id, record) in ids.iter().zip(records) {
            if let Some(endpoint) = record.as_deref().and_then(JobRecord::endpoint_of) {
                call.key(k.queue(&endpoint)).arg(id).arg(endpoint);
                any = true;
            }
        }
        if !any {
            return Ok(0);
        }
        let flags: Vec<i64> = call.invoke_async(conn).await?;
        let replayed = flags.iter().filter(|f| **f == 1).count() as u64;
        if replayed > 0 {
            let now = self.now_ms(conn).await?;
            self.wake(conn, shard, now).await?;
        }
        Ok(replayed)
    }

    /// Replays every job that was dead when the call began and whose record is readable, each
    /// once. Returns how many were replayed.
    ///
    /// A job that dies again meanwhile (one of a deleted endpoint goes straight back) is left
    /// for the next replay: taking it again would replay it once more for every turn of a
    /// worker, and, with workers faster than the replay, never end.
    pub async fn dead_replay_all(&self) -> Result<u64> {
        let mut conn = self.conn().await?;
        let began_ms = self.now_ms(&mut conn).await?;
        let mut replayed = 0;
        for shard in 0..self.inner.shards {
            let k = self.keys(shard);
            let mut offset = 0usize;
            loop {
                // Dead before the call began: a job sent back since has a later time.
                let ids: Vec<String> = redis::cmd("ZRANGE")
                    .arg(&k.dead)
                    .arg("-inf")
                    .arg(format!("({began_ms}"))
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(offset)
                    .arg(500)
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

/// Adds the due and scheduled jobs of these endpoints' queues to `s`, and the oldest due.
async fn count_queues(
    conn: &mut Conn,
    k: &crate::ShardKeys,
    endpoints: &[&str],
    now: i64,
    s: &mut ShardStats,
) -> Result<()> {
    for chunk in endpoints.chunks(500) {
        let mut pipe = redis::pipe();
        for e in chunk {
            let queue = k.queue(e);
            pipe.zcount(&queue, "-inf", now)
                .zcard(&queue)
                .zrange_withscores(&queue, 0, 0);
        }
        let replies: Vec<redis::Value> = pipe.query_async(conn).await?;
        let bad = || protocol("stats", "short queue reply");
        let mut replies = replies.into_iter();
        while let Some(due) = replies.next() {
            let due = u64::from_redis_value(due)?;
            let all = u64::from_redis_value(replies.next().ok_or_else(bad)?)?;
            let head: Vec<(String, f64)> =
                FromRedisValue::from_redis_value(replies.next().ok_or_else(bad)?)?;
            s.due += due;
            s.scheduled += all.saturating_sub(due);
            if let Some((_, at)) = head.first() {
                let at = *at as i64;
                if at <= now {
                    s.oldest_due_ms = Some(s.oldest_due_ms.map_or(at, |o| o.min(at)));
                }
            }
        }
    }
    Ok(())
}
