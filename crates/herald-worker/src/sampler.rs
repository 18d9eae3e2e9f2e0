//! The store sampler: one worker at a time counts the jobs in the store by state (and the
//! disabled and held-back endpoints), finds how long the oldest due job has waited and reads
//! Redis's memory use for `/metrics`, and every worker checks at start-up that Redis keeps
//! queued jobs.
//!
//! Counting costs a few commands per shard, so the fleet shares it: each worker tries every
//! [`SAMPLE_EVERY`] (jittered) to take or renew a short lock (`SET NX PX` on the namespace's
//! sampler key, holding this worker's random id). The holder keeps renewing it, so the series
//! stays on one worker; a worker without a metrics server (`HERALD_METRICS_ADDR` empty) never
//! tries, having nowhere to show a sample. A draining holder releases it, so the next worker
//! to try takes over; if the holder dies, the lock runs out after [`LOCK_TTL`] first. A worker
//! that fails to renew stops reporting at once, and its last sample disappears from `/metrics`
//! after [`LOCK_TTL`] in any case (see [`crate::telemetry::StoreGauges`]), so two workers never
//! show different numbers for long.
//!
//! Every Redis answer here also tells the worker that Redis is reachable, so `/readyz` recovers
//! after an outage even while the claim loop has nothing to claim.

use std::sync::Arc;
use std::time::Duration;

use herald_store::{Conn, Stats, Store, StoreError};
use rand::Rng;
use redis::FromRedisValue;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::telemetry::{RedisMemory, RedisOp, StoreSample, QUEUE_STATES};
use crate::Ctx;

/// How often each worker tries to take or renew the sampler lock (±10 % jitter), and so how
/// often the holder samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// How long the lock outlives its last renewal, and how long a sample stays on `/metrics`:
/// two periods, so one late renewal does not hand the lock over.
pub const LOCK_TTL: Duration = Duration::from_secs(20);

/// Samples the store while this worker holds the sampler lock, until `shutdown`.
pub(crate) async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    warn_if_redis_loses_jobs(&ctx.store).await;
    if ctx.cfg.metrics_addr.is_none() {
        // Its samples would be shown nowhere, and while it held the lock the workers that
        // serve /metrics would show none either.
        info!(
            "no metrics server: this worker leaves sampling queue depth to workers that have one"
        );
        return;
    }
    let id = format!("{:032x}", rand::rng().random::<u128>());
    // Whether this worker held the lock at the last try (None: not known yet); changes are
    // logged, so that an operator sees which worker samples.
    let mut leading: Option<bool> = None;
    // A connection of its own: a pooled one would be checked (`PING`, `UNWATCH`) at every
    // checkout, doubling what an idle worker sends.
    let mut conn: Option<Conn> = None;
    loop {
        let result = tokio::select! {
            r = tick(&ctx, &mut conn, &id) => r,
            _ = shutdown.cancelled() => break,
        };
        match result {
            Ok(Some(sample)) => {
                ctx.health.set_redis_ok(true);
                debug!(?sample, "queue depth sampled");
                ctx.health.store.record(sample, LOCK_TTL);
                // Logged after the sample is on /metrics (tests wait for this line).
                if leading != Some(true) {
                    info!("this worker samples queue depth for the fleet");
                }
                leading = Some(true);
            }
            Ok(None) => {
                ctx.health.set_redis_ok(true);
                if leading != Some(false) {
                    info!("another worker samples queue depth");
                    ctx.health.store.forget();
                }
                leading = Some(false);
            }
            Err(e) => {
                ctx.redis_failed(RedisOp::Sample, &e);
                conn = None;
                leading = None;
                ctx.health.store.forget();
            }
        }
        let every = SAMPLE_EVERY.mul_f64(rand::rng().random_range(0.9..=1.1));
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // Draining: hand the lock over at once instead of letting it run out, so that the next
    // worker to try (within one period) takes over.
    ctx.health.store.forget();
    if leading == Some(true) {
        match tokio::time::timeout(RELEASE_TIMEOUT, release_lock(&ctx.store, &id)).await {
            Ok(Ok(())) => debug!("sampler lock released"),
            Ok(Err(e)) => debug!(error = %e, "sampler lock not released; it runs out by itself"),
            Err(_) => debug!("sampler lock not released in time; it runs out by itself"),
        }
    }
}

/// Longest wait for an answer on the sampler's connection before it is dropped and opened
/// again.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a draining worker tries to release the sampler lock.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);

/// Deletes the lock if this worker holds it. A lock that changed hands between the `GET` and
/// the `DEL` is deleted too; its holder takes it again at its next try.
async fn release_lock(store: &Store, id: &str) -> Result<(), StoreError> {
    let key = store.namespace().sampler_lock_key();
    let mut conn = store.conn().await?;
    let holder: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
    if holder.as_deref() == Some(id) {
        let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
    }
    Ok(())
}

/// Takes or renews the lock; if this worker holds it, samples the store. Opens `conn` when
/// there is none.
async fn tick(
    ctx: &Ctx,
    conn: &mut Option<Conn>,
    id: &str,
) -> Result<Option<StoreSample>, StoreError> {
    let conn = match conn {
        Some(c) => c,
        None => conn.insert(ctx.store.dedicated(Some(REDIS_TIMEOUT)).await?),
    };
    if !hold_lock(&ctx.store, conn, id).await? {
        return Ok(None);
    }
    let stats = ctx.store.stats_on(conn).await?;
    let memory = fullest(
        info_of_each_master(conn, "memory")
            .await?
            .iter()
            .filter_map(|(_, info)| redis_memory(info)),
    );
    Ok(Some(sample(&stats, memory)))
}

/// `INFO <section>` of every master (the one node, or each master of a cluster), with the
/// master's address (empty on one node).
async fn info_of_each_master(
    conn: &mut Conn,
    section: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg(section);
    conn.on_each_master(&cmd)
        .await?
        .into_iter()
        .map(|(addr, v)| Ok((addr, String::from_redis_value(v)?)))
        .collect()
}

/// Of several masters' memory, the one closest to its limit (the most used when none has
/// one): a cluster is full when one master is.
fn fullest(memory: impl Iterator<Item = RedisMemory>) -> Option<RedisMemory> {
    let share = |m: &RedisMemory| match m.max_bytes {
        0 => 0.0,
        max => m.used_bytes as f64 / max as f64,
    };
    memory.max_by(|a, b| {
        share(a)
            .total_cmp(&share(b))
            .then(a.used_bytes.cmp(&b.used_bytes))
    })
}

/// `SET key id NX PX ttl`, or `PEXPIRE` when the key already holds this worker's id.
///
/// Between the `GET` and the `PEXPIRE` the lock may expire and be taken by another worker; then
/// this worker extends the other's lock and both report for one period, which the dashboard's
/// `max by (state)` hides. A script would close that window; it is not worth one.
async fn hold_lock(store: &Store, conn: &mut Conn, id: &str) -> Result<bool, StoreError> {
    let key = store.namespace().sampler_lock_key();
    let ttl_ms = LOCK_TTL.as_millis() as u64;
    let (taken, holder): (Option<String>, Option<String>) = redis::pipe()
        .cmd("SET")
        .arg(&key)
        .arg(id)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms)
        .cmd("GET")
        .arg(&key)
        .query_async(conn)
        .await?;
    if taken.is_some() {
        return Ok(true);
    }
    if holder.as_deref() != Some(id) {
        return Ok(false);
    }
    let renewed: bool = redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(ttl_ms)
        .query_async(conn)
        .await?;
    Ok(renewed)
}

/// Jobs by state, the disabled and held-back endpoints, the oldest due job's wait (both times
/// from the Redis clock), and Redis's memory.
fn sample(stats: &Stats, redis_memory: Option<RedisMemory>) -> StoreSample {
    let t = &stats.total;
    let counts = [t.due, t.scheduled, t.in_flight, t.parked, t.dead];
    StoreSample {
        jobs: QUEUE_STATES.into_iter().zip(counts).collect(),
        disabled_endpoints: stats.disabled_endpoints,
        held_back_endpoints: t.held_back_endpoints,
        oldest_due_age_ms: t
            .oldest_due_ms
            .map_or(0, |at| stats.now_ms.saturating_sub(at).max(0) as u64),
        redis_memory,
    }
}

/// `used_memory` and `maxmemory` of an `INFO memory` answer; `None` unless both are there.
fn redis_memory(info: &str) -> Option<RedisMemory> {
    let bytes = |name| info_field(info, name)?.parse::<u64>().ok();
    Some(RedisMemory {
        used_bytes: bytes("used_memory")?,
        max_bytes: bytes("maxmemory")?,
    })
}

/// Logs a warning for each Redis setting that can lose queued jobs, on each master; never
/// refuses to run.
async fn warn_if_redis_loses_jobs(store: &Store) {
    match redis_settings(store).await {
        Ok(masters) => {
            for (master, settings) in masters {
                for w in settings.warnings() {
                    if master.is_empty() {
                        warn!("{w}");
                    } else {
                        warn!(master, "{w}");
                    }
                }
            }
        }
        Err(e) => info!(error = %e, "could not check Redis persistence and eviction settings"),
    }
}

/// The Redis settings that decide whether queued jobs survive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RedisSettings {
    /// `maxmemory-policy` (from `INFO memory`).
    maxmemory_policy: Option<String>,
    /// Whether the append-only file is on (from `INFO persistence`).
    aof: Option<bool>,
    /// RDB save points (`CONFIG GET save`); `None` when `CONFIG` is refused (managed Redis).
    save: Option<String>,
}

/// The settings of every master, with its address (empty on one node).
async fn redis_settings(store: &Store) -> Result<Vec<(String, RedisSettings)>, StoreError> {
    let mut conn = store.conn().await?.shared();
    let memory = info_of_each_master(&mut conn, "memory").await?;
    let persistence = info_of_each_master(&mut conn, "persistence").await?;
    let mut all = Vec::new();
    for (master, memory) in memory {
        let persistence = persistence
            .iter()
            .find(|(m, _)| *m == master)
            .map(|(_, p)| p.as_str())
            .unwrap_or_default();
        let mut config = redis::cmd("CONFIG");
        config.arg("GET").arg("save");
        let save = match conn.on_master(&master, &config).await {
            Ok(v) => Vec::<String>::from_redis_value(v)?.get(1).cloned(),
            Err(e) => {
                debug!(error = %e, "CONFIG GET save refused");
                None
            }
        };
        let settings = RedisSettings {
            maxmemory_policy: info_field(&memory, "maxmemory_policy").map(str::to_owned),
            aof: info_field(persistence, "aof_enabled").map(|v| v == "1"),
            save,
        };
        all.push((master, settings));
    }
    Ok(all)
}

/// The value of `name` in an `INFO` answer (`name:value` lines).
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

impl RedisSettings {
    fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if let Some(policy) = self.maxmemory_policy.as_deref() {
            if policy != "noeviction" {
                w.push(format!(
                    "Redis maxmemory-policy is {policy}: under memory pressure Redis may evict queued jobs; set maxmemory-policy noeviction"
                ));
            }
        }
        let no_save_points = self.save.as_deref().is_some_and(|s| s.trim().is_empty());
        if self.aof == Some(false) && no_save_points {
            w.push(
                "Redis has no persistence (appendonly no and no save points): a Redis restart loses every queued job; set appendonly yes"
                    .to_owned(),
            );
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(policy: &str, aof: bool, save: Option<&str>) -> RedisSettings {
        RedisSettings {
            maxmemory_policy: Some(policy.to_owned()),
            aof: Some(aof),
            save: save.map(str::to_owned),
        }
    }

    #[test]
    fn info_fields_are_read_by_exact_name() {
        let info =
            "# Memory\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n";
        assert_eq!(info_field(info, "maxmemory_policy"), Some("noeviction"));
        assert_eq!(info_field(info, "maxmemory"), Some("0"));
        assert_eq!(info_field(info, "aof_enabled"), None);
    }

    #[test]
    fn redis_memory_is_read_from_info_memory() {
        let info = "# Memory\r\nused_memory:1052672\r\nused_memory_human:1.00M\r\n\
                    used_memory_rss:9437184\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\n\
                    maxmemory_policy:noeviction\r\n";
        assert_eq!(
            redis_memory(info),
            Some(RedisMemory {
                used_bytes: 1_052_672,
                max_bytes: 0
            })
        );
        let limited = "used_memory:500\r\nmaxmemory:1000\r\n";
        assert_eq!(
            redis_memory(limited),
            Some(RedisMemory {
                used_bytes: 500,
                max_bytes: 1000
            })
        );
        assert_eq!(redis_memory("used_memory:500\r\n"), None, "no maxmemory");
        assert_eq!(redis_memory(""), None);
    }

    #[test]
    fn warns_about_eviction_and_missing_persistence_only() {
        assert!(settings("noeviction", true, Some("")).warnings().is_empty());
        assert!(settings("noeviction", false, Some("3600 1"))
            .warnings()
            .is_empty());
        // CONFIG refused: the save points are unknown, so no persistence warning.
        assert!(settings("noeviction", false, None).warnings().is_empty());

        let w = settings("allkeys-lru", false, Some("")).warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("maxmemory-policy is allkeys-lru"), "{w:?}");
        assert!(w[1].contains("no persistence"), "{w:?}");
    }

    #[test]
    fn the_sample_names_every_state() {
        let mut stats = Stats::default();
        stats.total.due = 1;
        stats.total.scheduled = 2;
        stats.total.in_flight = 3;
        stats.total.parked = 4;
        stats.total.dead = 5;
        stats.disabled_endpoints = 6;
        stats.total.held_back_endpoints = 7;
        let s = sample(&stats, None);
        assert_eq!(
            s.jobs,
            [
                ("due", 1),
                ("scheduled", 2),
                ("in_flight", 3),
                ("parked", 4),
                ("dead", 5)
            ]
        );
        assert_eq!(s.disabled_endpoints, 6);
        assert_eq!(s.held_back_endpoints, 7);
        assert_eq!(s.oldest_due_age_ms, 0, "nothing due");
        assert_eq!(s.redis_memory, None);

        stats.now_ms = 1_000_000;
        stats.total.oldest_due_ms = Some(700_000);
        let memory = RedisMemory {
            used_bytes: 10,
            max_bytes: 20,
        };
        let s = sample(&stats, Some(memory));
        assert_eq!(s.oldest_due_age_ms, 300_000);
        assert_eq!(s.redis_memory, Some(memory));
    }
}
