//! [`Store`]: the handle on one deployment's Redis, shared by the producer library, the worker
//! and the CLI. The operations live in the modules next to this one (`produce`, `lease`,
//! `endpoints`, `admin`), each an `impl Store` block.
//!
//! Hot-path calls (claim, settle) take a connection from the caller, so that a worker can keep
//! one multiplexed connection for its loops instead of taking one from the pool per call.
//! Administrative calls take a connection from the pool themselves.
//!
//! No connection waits for Redis for ever: every command has a response timeout, a blocking
//! wait a deadline a little beyond its own timeout, and every socket TCP keepalive, so that a
//! peer gone without closing (a flow dropped by a NAT or a load balancer) is noticed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::{shard_of, EndpointId};
use redis::aio::ConnectionLike;

use crate::connection::{Backend, Conn, Pooled};
use crate::error::Result;
use crate::keys::{Namespace, ShardKeys, FORMAT_NUMBER};
use crate::scripts::Scripts;
use crate::StoreError;

/// How to reach Redis and which deployment to work on.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `redis://` or `rediss://` URL, with ACL user and password if any; on a cluster, one or
    /// more seed nodes' URLs, comma-separated.
    pub redis_url: String,
    /// Whether Redis is a Redis Cluster (`HERALD_REDIS_CLUSTER`).
    pub cluster: bool,
    /// `(replicas, timeout)`: enqueues answer once that many replicas of each master written
    /// acknowledged the writes (`WAIT`), so that a failover cannot lose an enqueued job
    /// (`HERALD_ENQUEUE_WAIT_REPLICAS`, `HERALD_ENQUEUE_WAIT_TIMEOUT`).
    pub enqueue_wait: Option<(u32, Duration)>,
    pub namespace: Namespace,
    /// Number of shards; fixed per deployment and checked against the stored value.
    pub shards: u16,
    /// Most pooled connections.
    pub pool_size: usize,
    /// How long a command may take before it fails; a blocking wait may take this much beyond
    /// its own timeout.
    pub response_timeout: Duration,
}

impl StoreConfig {
    pub fn new(redis_url: impl Into<String>, namespace: Namespace, shards: u16) -> Self {
        Self {
            redis_url: redis_url.into(),
            cluster: false,
            enqueue_wait: None,
            namespace,
            shards,
            pool_size: 16,
            response_timeout: Duration::from_secs(5),
        }
    }
}

pub(crate) struct Inner {
    pub backend: Backend,
    pub namespace: Namespace,
    pub shards: u16,
    pub keys: Vec<ShardKeys>,
    /// The wake-up hint set of each shard (see [`Store::wake_key`]).
    pub wake_keys: Vec<String>,
    pub scripts: Scripts,
    /// See [`StoreConfig::enqueue_wait`].
    pub enqueue_wait: Option<(u32, Duration)>,
    /// How long a pooled connection waits for a reply; a blocking wait, this much beyond its
    /// own timeout.
    pub response_timeout: Duration,
    /// The latest reading of the Redis clock (ms) and the moment it arrived: what a claim's
    /// "valid until" is reckoned from.
    pub clock: std::sync::Mutex<Option<(Instant, i64)>>,
}

/// The Redis store of one deployment. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
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

/// Redis `TIME` as ms since the Unix epoch.
pub(crate) fn now_from_time(v: (i64, i64)) -> i64 {
    v.0 * 1000 + v.1 / 1000
}

impl Store {
    /// Sets up the clients; connects lazily. Fails only on an unusable URL or settings.
    pub fn open(cfg: StoreConfig) -> Result<Self> {
        if cfg.shards == 0 {
            return Err(StoreError::Config("shards must be at least 1".into()));
        }
        let backend = Backend::open(
            &cfg.redis_url,
            cfg.cluster,
            cfg.pool_size,
            cfg.response_timeout,
        )?;
        let keys = (0..cfg.shards).map(|s| cfg.namespace.shard(s)).collect();
        let wake_keys = (0..cfg.shards)
            .map(|s| cfg.namespace.wake_key(s, cfg.cluster))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                namespace: cfg.namespace,
                shards: cfg.shards,
                keys,
                wake_keys,
                scripts: Scripts::default(),
                enqueue_wait: cfg.enqueue_wait.filter(|(n, _)| *n > 0),
                response_timeout: cfg.response_timeout,
                clock: std::sync::Mutex::new(None),
            }),
        })
    }

    /// Whether Redis is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.backend.is_cluster()
    }

    /// The set that holds `shard`'s wake-up hints: one set for every shard on one node; on a
    /// cluster one of [`crate::keys::WAKE_GROUPS`], in the slot of the group's first shard, so
    /// that the masters share the writes.
    pub fn wake_key(&self, shard: u16) -> &str {
        // A shard beyond the count (a hint of a fleet started with more shards) gets some set;
        // readers drop its hints.
        let keys = &self.inner.wake_keys;
        &keys[usize::from(shard) % keys.len()]
    }

    /// Every distinct wake-up hint set, with the shards whose hints it holds.
    pub fn wake_groups(&self) -> Vec<(&str, Vec<u16>)> {
        let mut groups: Vec<(&str, Vec<u16>)> = Vec::new();
        for shard in 0..self.inner.shards {
            let key = self.wake_key(shard);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, shards)) => shards.push(shard),
                None => groups.push((key, vec![shard])),
            }
        }
        groups
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

    /// The keys of an endpoint's shard.
    pub fn keys_of(&self, endpoint: &EndpointId) -> &ShardKeys {
        self.keys(self.shard_of(endpoint))
    }

    /// A connection for a call: pooled on one node, the shared connection on a cluster.
    pub async fn conn(&self) -> Result<Pooled> {
        self.inner.backend.conn().await
    }

    /// A connection of its own, outside the pool: for blocking commands, or for a task that
    /// keeps one (a pooled connection is checked with `PING` at every checkout). `None` as
    /// the response timeout waits as long as a command blocks: only for a connection used by
    /// [`wait_wake`](Self::wait_wake), which sets its own deadline.
    pub async fn dedicated(&self, response_timeout: Option<Duration>) -> Result<Conn> {
        self.inner.backend.dedicated(response_timeout).await
    }

    /// A connection for the worker's claims, kept by its claim loop: on one node taken out of
    /// the pool, on a cluster one that gives up within about 100 ms on a slot in migration or
    /// failover (the loop comes back to that shard itself, and a claim held up holds delivery
    /// slots that other shards' jobs need).
    pub async fn claims_conn(&self) -> Result<Conn> {
        self.inner.backend.fast().await
    }

    /// [`Store::dedicated`], but to the node that serves `key` (on a cluster, the master of
    /// its slot now, through a connection to that master alone): for a blocking wait on one
    /// key. Once the slot moves, commands on it fail (`MOVED`); open another then.
    pub async fn dedicated_to(
        &self,
        key: &str,
        response_timeout: Option<Duration>,
    ) -> Result<Conn> {
        self.inner.backend.dedicated_to(key, response_timeout).await
    }

    /// Checks that Redis answers, that the namespace holds data of this process's key format,
    /// and that the deployment's shard count matches this process's, recording both on first
    /// use.
    pub async fn check(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        if !self.is_cluster() {
            let info: String = redis::cmd("INFO")
                .arg("cluster")
                .query_async(&mut conn)
                .await?;
            if info.contains("cluster_enabled:1") {
                return Err(StoreError::Config(
                    "Redis is a Redis Cluster node, but cluster mode is off: set \
                     HERALD_REDIS_CLUSTER=true (--redis-cluster)"
                        .into(),
                ));
            }
        }
        self.check_format(&mut conn).await?;
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

    /// Refuses a namespace that holds data of another format; records this format in a new one.
    ///
    /// The format key (`<ns>:format`) is read by processes of every format from 2 on. Format 1
    /// predates it: its data is recognised by its settings hash (`<ns>:v1:meta`), and format-1
    /// processes are kept off a format-2 namespace by a shard count of 0 in that hash, which
    /// they refuse to run with.
    async fn check_format<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<()> {
        let ns = &self.inner.namespace;
        let refuse = |stored: String| StoreError::FormatMismatch {
            namespace: ns.as_str().to_owned(),
            stored,
            ours: FORMAT_NUMBER,
        };
        let stored: Option<String> = redis::cmd("GET")
            .arg(ns.format_key())
            .query_async(conn)
            .await?;
        match stored {
            Some(f) if f == FORMAT_NUMBER.to_string() => return Ok(()),
            Some(f) => return Err(refuse(f)),
            None => {}
        }
        let v1_shards: Option<String> = redis::cmd("HGET")
            .arg(ns.v1_meta_key())
            .arg("shards")
            .query_async(conn)
            .await?;
        if v1_shards.is_some_and(|s| s != "0") {
            return Err(refuse("1".to_owned()));
        }
        // One command at a time: on a cluster the two keys live in different slots.
        let _: Option<String> = redis::cmd("SET")
            .arg(ns.format_key())
            .arg(FORMAT_NUMBER)
            .arg("NX")
            .query_async(conn)
            .await?;
        let _: i64 = redis::cmd("HSET")
            .arg(ns.v1_meta_key())
            .arg("shards")
            .arg(0)
            .query_async(conn)
            .await?;
        let stored: Option<String> = redis::cmd("GET")
            .arg(ns.format_key())
            .query_async(conn)
            .await?;
        match stored {
            Some(f) if f == FORMAT_NUMBER.to_string() => Ok(()),
            other => Err(refuse(other.unwrap_or_default())),
        }
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
        let now = now_from_time(t);
        self.observe_clock(now);
        Ok(now)
    }

    /// Records a reading of the Redis clock that just arrived.
    pub(crate) fn observe_clock(&self, redis_ms: i64) {
        let mut clock = self.inner.clock.lock().unwrap_or_else(|e| e.into_inner());
        *clock = Some((Instant::now(), redis_ms));
    }

    /// The Redis time (ms) after which a call sent now on a pooled connection has been given
    /// up on by its caller, reckoned from the latest reading of the Redis clock (a little early,
    /// by the reading's own trip back); `None` before any reading.
    pub(crate) fn given_up_after(&self) -> Option<i64> {
        let clock = self.inner.clock.lock().unwrap_or_else(|e| e.into_inner());
        clock.map(|(at, redis_ms)| {
            redis_ms + (at.elapsed() + self.inner.response_timeout).as_millis() as i64
        })
    }

    /// Leaves a wake-up hint: `shard` may have work due at `at_ms`.
    pub async fn wake<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        shard: u16,
        at_ms: i64,
    ) -> Result<()> {
        let _: i64 = wake_cmd(self.wake_key(shard), shard, at_ms)
            .query_async(conn)
            .await?;
        Ok(())
    }
}

/// `ZADD <endpoint hint key> 0 <endpoint>...`: endpoints just given jobs due at once.
pub(crate) fn wake_endpoints_cmd<'a>(
    key: &str,
    endpoints: impl IntoIterator<Item = &'a str>,
) -> redis::Cmd {
    let mut cmd = redis::cmd("ZADD");
    cmd.arg(key);
    for e in endpoints {
        cmd.arg(0).arg(e);
    }
    cmd
}

/// `ZADD <wake key> LT <at_ms> <shard>`: a wake-up hint, kept at its earliest time.
pub(crate) fn wake_cmd(key: &str, shard: u16, at_ms: i64) -> redis::Cmd {
    let mut cmd = redis::cmd("ZADD");
    cmd.arg(key).arg("LT").arg(at_ms).arg(shard);
    cmd
}
