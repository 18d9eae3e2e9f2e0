//! Connections to the deployment's Redis, which is one node or a Redis Cluster
//! (`HERALD_REDIS_CLUSTER`): the clients of either kind, the connection types the rest of the
//! store passes around ([`Conn`], [`Pooled`]), and [`run_split`], which sends a pipeline whose
//! commands touch several shards as one pipeline per slot on a cluster.
//!
//! On one node a pipeline may mix keys of every shard; on a cluster every command of a pipeline
//! must name keys of one slot (the client refuses others with `CROSSSLOT`). Every key of a
//! shard shares one hash tag, so a shard's commands always make a valid pipeline.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use futures::future::try_join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo,
    Pipeline, RedisFuture, Value,
};
use tokio::sync::OnceCell;

use crate::error::{refused_credentials, Result};
use crate::StoreError;

/// How long a Redis connection may take to be established (TCP, TLS and handshake).
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP keepalive on every Redis connection: after this much silence the kernel probes the peer,
/// [`KEEPALIVE_PROBES`] times [`KEEPALIVE_INTERVAL`] apart, and fails the connection if none is
/// answered, about 30 s in all. A connection waiting in a blocking command is silent too.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 3;

/// How many times the cluster client redoes a command that met a redirection (`MOVED`, `ASK`),
/// a slot in migration (`TRYAGAIN`), a failover under way (`CLUSTERDOWN`, `READONLY`) or a lost
/// connection, before the error reaches the caller (who retries as after any Redis error).
const CLUSTER_RETRIES: u32 = 12;

/// The pauses between those tries: from [`CLUSTER_RETRY_MIN_MS`], doubling, up to
/// [`CLUSTER_RETRY_MAX_MS`] (each drawn at random below its bound), about 3 s in all. A slot's
/// migration holds a script back (`TRYAGAIN`) for milliseconds; the client's own default
/// (1.28 s at least, per try) would hold a whole claim round for seconds.
const CLUSTER_RETRY_MIN_MS: u64 = 20;
const CLUSTER_RETRY_MAX_MS: u64 = 1000;

/// The tries of the worker's claims, which give up after about 100 ms: a claim held up by its
/// slot in migration holds delivery slots that other shards' jobs need, and the claim loop
/// comes back to that shard on its own.
const FAST_RETRIES: u32 = 3;

/// The TCP settings of every Redis connection: keepalive (see [`KEEPALIVE_IDLE`]).
fn tcp_settings() -> TcpSettings {
    let keepalive = TcpKeepalive::new().with_time(KEEPALIVE_IDLE);
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    let keepalive = keepalive
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    TcpSettings::default().set_keepalive(keepalive)
}

/// Where and how to connect: the URL's address and credentials, with [`tcp_settings`].
fn connection_info(redis_url: &str) -> Result<ConnectionInfo> {
    Ok(redis_url
        .into_connection_info()
        .map_err(|e| StoreError::Config(format!("invalid Redis URL: {e}")))?
        .set_tcp_settings(tcp_settings()))
}

/// The clients of one deployment's Redis.
// One per store, behind its `Arc`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    /// One node: a pool of connections for administrative calls, the client that opens
    /// connections of their own, and the connection that enqueues share (see
    /// [`Backend::calls`]).
    Node {
        pool: Pool,
        client: redis::Client,
        calls: std::sync::Mutex<Option<MultiplexedConnection>>,
        response_timeout: Duration,
    },
    /// A Redis Cluster: one multiplexed cluster connection shared by every call (it holds a
    /// connection per node and follows the slot map), opened on first use.
    Cluster {
        client: ClusterClient,
        /// As `client`, but giving up after [`FAST_RETRIES`]: for the worker's claims.
        fast: ClusterClient,
        fast_shared: OnceCell<ClusterConnection>,
        /// The first seed node: its credentials and TLS settings, for connections to one
        /// master of its own ([`Backend::dedicated_to`]).
        seed: ConnectionInfo,
        shared: OnceCell<ClusterConnection>,
    },
}

impl Backend {
    /// The clients for `redis_url`: one URL on one node, or comma-separated seed nodes of a
    /// cluster. Connects lazily; fails only on unusable settings.
    pub(crate) fn open(
        redis_url: &str,
        cluster: bool,
        pool_size: usize,
        response_timeout: Duration,
    ) -> Result<Self> {
        let urls: Vec<&str> = redis_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(StoreError::Config("no Redis URL given".into()));
        }
        if !cluster {
            if urls.len() > 1 {
                return Err(StoreError::Config(format!(
                    "{} Redis URLs given, but cluster mode is off: list several seed nodes only \
                     with HERALD_REDIS_CLUSTER=true (--redis-cluster)",
                    urls.len()
                )));
            }
            let info = connection_info(urls[0])?;
            let client = redis::Client::open(info.clone())
                .map_err(|e| StoreError::Config(format!("invalid Redis URL: {e}")))?;
            let conn_cfg = AsyncConnectionConfig::new()
                .set_response_timeout(Some(response_timeout))
                .set_connection_timeout(Some(CONNECTION_TIMEOUT));
            let manager = Manager::new_with_config(info, conn_cfg)
                .map_err(|e| StoreError::Config(format!("invalid Redis URL: {e}")))?;
            let pool = Pool::builder(manager)
                .max_size(pool_size.max(1))
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(response_timeout))
                .create_timeout(Some(CONNECTION_TIMEOUT))
                .build()
                .map_err(|e| StoreError::Config(e.to_string()))?;
            return Ok(Backend::Node {
                pool,
                client,
                calls: std::sync::Mutex::default(),
                response_timeout,
            });
        }
        let seeds = urls
            .iter()
            .map(|u| connection_info(u))
            .collect::<Result<Vec<_>>>()?;
        let client = |retries: u32| {
            ClusterClientBuilder::new(seeds.clone())
                .tcp_settings(tcp_settings())
                .connection_timeout(CONNECTION_TIMEOUT)
                .response_timeout(response_timeout)
                // Each attempt has the response timeout; redirections and retries may add to it.
                .overall_response_timeout(None)
                .retries(retries)
                .min_retry_wait(CLUSTER_RETRY_MIN_MS)
                .max_retry_wait(CLUSTER_RETRY_MAX_MS)
                .build()
                .map_err(|e| StoreError::Config(format!("invalid Redis Cluster settings: {e}")))
        };
        Ok(Backend::Cluster {
            client: client(CLUSTER_RETRIES)?,
            fast: client(FAST_RETRIES)?,
            fast_shared: OnceCell::new(),
            seed: seeds[0].clone(),
            shared: OnceCell::new(),
        })
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Backend::Cluster { .. })
    }

    /// A connection for a call: a pooled one, or the shared cluster connection.
    pub(crate) async fn conn(&self) -> Result<Pooled> {
        match self {
            Backend::Node { pool, .. } => Ok(Pooled::Node(pool.get().await?)),
            Backend::Cluster { .. } => Ok(Pooled::Cluster(self.shared().await?)),
        }
    }

    /// The connection that frequent short calls share (enqueues): on one node a multiplexed
    /// connection kept open, on a cluster the shared cluster connection. Unlike a pooled one
    /// it is not checked with a round trip (`PING`) before each call; a call that finds it
    /// dropped reports so through [`Backend::drop_calls`], and the next call opens another.
    pub(crate) async fn calls(&self) -> Result<Conn> {
        match self {
            Backend::Node {
                client,
                calls,
                response_timeout,
                ..
            } => {
                if let Some(c) = calls.lock().expect("calls connection lock").as_ref() {
                    return Ok(Conn::Node(c.clone()));
                }
                let c = client
                    .get_multiplexed_async_connection_with_config(&node_config(Some(
                        *response_timeout,
                    )))
                    .await?;
                // Two calls may have opened one each: the first kept wins, the other is used
                // once and closed.
                let mut kept = calls.lock().expect("calls connection lock");
                Ok(Conn::Node(kept.get_or_insert(c).clone()))
            }
            Backend::Cluster { .. } => Ok(Conn::Cluster(self.shared().await?)),
        }
    }

    /// Forgets the connection of [`Backend::calls`] after a call on it failed with `e`, when
    /// `e` says the connection is gone (closed, reset, timed out): the next call opens another.
    pub(crate) fn drop_calls(&self, e: &redis::RedisError) {
        if let Backend::Node { calls, .. } = self {
            if is_dropped(e) {
                calls.lock().expect("calls connection lock").take();
            }
        }
    }

    /// A connection for the worker's claims: as [`Backend::conn`], but on a cluster one that
    /// gives up on a slot in migration or failover within about 100 ms.
    pub(crate) async fn fast(&self) -> Result<Conn> {
        match self {
            Backend::Node { .. } => Ok(self.conn().await?.take()),
            Backend::Cluster {
                fast,
                fast_shared,
                seed,
                ..
            } => {
                let conn = fast_shared
                    .get_or_try_init(|| async {
                        match fast.get_async_connection().await {
                            Ok(conn) => Ok(conn),
                            Err(e) => Err(cluster_refused(seed, e).await),
                        }
                    })
                    .await?;
                Ok(Conn::Cluster(conn.clone()))
            }
        }
    }

    /// The shared cluster connection, opened on first use.
    async fn shared(&self) -> Result<ClusterConnection> {
        let Backend::Cluster {
            client,
            shared,
            seed,
            ..
        } = self
        else {
            unreachable!("only a cluster backend shares one connection");
        };
        let conn = shared
            .get_or_try_init(|| async {
                match client.get_async_connection().await {
                    Ok(conn) => Ok(conn),
                    Err(e) => Err(cluster_refused(seed, e).await),
                }
            })
            .await?;
        Ok(conn.clone())
    }

    /// A connection of its own (see [`crate::Store::dedicated`]).
    pub(crate) async fn dedicated(&self, response_timeout: Option<Duration>) -> Result<Conn> {
        match self {
            Backend::Node { client, .. } => Ok(Conn::Node(
                client
                    .get_multiplexed_async_connection_with_config(&node_config(response_timeout))
                    .await?,
            )),
            Backend::Cluster { client, seed, .. } => {
                let mut cfg = ClusterConfig::new().set_connection_timeout(CONNECTION_TIMEOUT);
                if let Some(t) = response_timeout {
                    cfg = cfg.set_response_timeout(t);
                }
                match client.get_async_connection_with_config(cfg).await {
                    Ok(conn) => Ok(Conn::Cluster(conn)),
                    Err(e) => Err(cluster_refused(seed, e).await),
                }
            }
        }
    }

    /// A connection of its own to the node that serves `key`: the one node, or the master of
    /// the key's slot now (a connection to one master, not a cluster connection, which would
    /// connect to every node). Commands on it are not redirected: once the slot moves, they
    /// fail with `MOVED`, and the caller opens another.
    pub(crate) async fn dedicated_to(
        &self,
        key: &str,
        response_timeout: Option<Duration>,
    ) -> Result<Conn> {
        let Backend::Cluster { seed, .. } = self else {
            return self.dedicated(response_timeout).await;
        };
        let slot = Slot::for_key(key.as_bytes());
        let mut shared = self.shared().await?;
        let slots: Vec<Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut shared)
            .await?;
        let (host, port) = slots
            .into_iter()
            .find_map(|range| master_of(range, slot))
            .ok_or_else(|| crate::error::protocol("CLUSTER SLOTS", "no master serves the slot"))?;
        let addr = match seed.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let client = redis::Client::open(seed.clone().set_addr(addr))?;
        Ok(Conn::Node(
            client
                .get_multiplexed_async_connection_with_config(&node_config(response_timeout))
                .await?,
        ))
    }
}

/// Whether `e` says the connection it came on is gone (closed, reset, or silent past its
/// response timeout), so that a call should go on another.
pub(crate) fn is_dropped(e: &redis::RedisError) -> bool {
    e.is_unrecoverable_error() || e.is_connection_dropped() || e.is_timeout()
}

/// The settings of a connection to one node.
fn node_config(response_timeout: Option<Duration>) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_response_timeout(response_timeout)
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
}

/// The master's host and port of one `CLUSTER SLOTS` entry (`[first slot, last slot, [host,
/// port, id, ...], replicas ...]`), if the entry covers `slot`.
pub(crate) fn master_of(range: Value, slot: Slot) -> Option<(String, u16)> {
    let Value::Array(items) = range else {
        return None;
    };
    let mut items = items.into_iter();
    let first = u16::from_redis_value(items.next()?).ok()?;
    let last = u16::from_redis_value(items.next()?).ok()?;
    if !(first..=last).any(|s| Slot::new(s) == Some(slot)) {
        return None;
    }
    // `[host, port, id]`, and from Redis 7 on a map of hostnames after them.
    let Value::Array(node) = items.next()? else {
        return None;
    };
    let mut node = node.into_iter();
    let host = String::from_redis_value(node.next()?).ok()?;
    let port = u16::from_redis_value(node.next()?).ok()?;
    Some((host, port))
}

/// How long [`cluster_refused`] gives the seed node to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A cluster client's failure to start, told by asking the seed node as a single node: when
/// the seed refuses the credentials, its own error (whose kind says so; the cluster client's
/// is only an I/O error), when it is not a cluster node (`INFO cluster` answers
/// `cluster_enabled:0`), a configuration error saying so; any other failure as it came.
async fn cluster_refused(seed: &ConnectionInfo, e: redis::RedisError) -> StoreError {
    // A node that cannot be reached cannot be asked either.
    if e.is_connection_refusal() || e.is_timeout() {
        return StoreError::Redis(e);
    }
    let ask = async {
        let client = redis::Client::open(seed.clone())?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&node_config(Some(PROBE_TIMEOUT)))
            .await?;
        redis::cmd("INFO")
            .arg("cluster")
            .query_async::<String>(&mut conn)
            .await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, ask).await {
        Ok(Ok(info)) if info.contains("cluster_enabled:0") => StoreError::Config(format!(
            "HERALD_REDIS_CLUSTER is on, but Redis is not a cluster node ({e}); turn cluster \
             mode off for a single Redis"
        )),
        Ok(Err(seed)) if refused_credentials(&seed) => StoreError::Redis(seed),
        _ => StoreError::Redis(e),
    }
}

/// `ConnectionLike` for an enum of a one-node (`Node`) and a cluster (`Cluster`) connection:
/// every call goes to the connection it holds.
macro_rules! delegate_connection_like {
    ($enum:ident) => {
        impl ConnectionLike for $enum {
            fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
                match self {
                    $enum::Node(c) => c.req_packed_command(cmd),
                    $enum::Cluster(c) => c.req_packed_command(cmd),
                }
            }

            fn req_packed_commands<'a>(
                &'a mut self,
                pipeline: &'a Pipeline,
                offset: usize,
                count: usize,
            ) -> RedisFuture<'a, Vec<Value>> {
                match self {
                    $enum::Node(c) => c.req_packed_commands(pipeline, offset, count),
                    $enum::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
                }
            }

            fn get_db(&self) -> i64 {
                match self {
                    $enum::Node(c) => c.get_db(),
                    $enum::Cluster(c) => c.get_db(),
                }
            }
        }
    };
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Node(_) => "Conn::Node",
            Conn::Cluster(_) => "Conn::Cluster",
        })
    }
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooled::Node(_) => "Pooled::Node",
            Pooled::Cluster(_) => "Pooled::Cluster",
        })
    }
}

/// A connection that can be cloned and shared: to one node, or to a cluster.
#[derive(Clone)]
pub enum Conn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

delegate_connection_like!(Conn);

impl Conn {
    /// Runs `cmd` on every master (the one node, or each master of the cluster) and answers
    /// each master's address (empty on one node) with its reply: for what each master knows of
    /// itself alone (`INFO`, `SCAN`, `CONFIG GET`).
    pub async fn on_each_master(&mut self, cmd: &Cmd) -> Result<Vec<(String, Value)>> {
        match self {
            Conn::Node(c) => Ok(vec![(String::new(), cmd.query_async(c).await?)]),
            Conn::Cluster(c) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let Value::Map(replies) = c.route_command(cmd.clone(), routing).await? else {
                    return Err(crate::error::protocol("every master", "not a map"));
                };
                replies
                    .into_iter()
                    .map(|(addr, reply)| Ok((String::from_redis_value(addr)?, reply)))
                    .collect()
            }
        }
    }

    /// Runs `cmd` on the master at `addr` (as [`Conn::on_each_master`] names it).
    pub async fn on_master(&mut self, addr: &str, cmd: &Cmd) -> Result<Value> {
        match self {
            Conn::Node(c) => Ok(cmd.query_async(c).await?),
            Conn::Cluster(c) => {
                let (host, port) = addr
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?)))
                    .ok_or_else(|| StoreError::Config(format!("not a node address: {addr}")))?;
                let routing =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                Ok(c.route_command(cmd.clone(), routing).await?)
            }
        }
    }
}

/// A connection for one call: taken from the pool on one node (and returned to it when
/// dropped), the shared connection on a cluster.
pub enum Pooled {
    Node(deadpool_redis::Connection),
    Cluster(ClusterConnection),
}

impl Pooled {
    /// A handle that can be cloned, for calls run side by side; the pooled connection stays
    /// taken while `self` lives.
    pub fn shared(&self) -> Conn {
        match self {
            Pooled::Node(c) => Conn::Node((**c).clone()),
            Pooled::Cluster(c) => Conn::Cluster(c.clone()),
        }
    }

    /// Takes the connection out of the pool for good, for a task that keeps it.
    pub fn take(self) -> Conn {
        match self {
            Pooled::Node(c) => Conn::Node(deadpool_redis::Connection::take(c)),
            Pooled::Cluster(c) => Conn::Cluster(c),
        }
    }
}

delegate_connection_like!(Pooled);

/// Runs `cmds`, each with the key that routes it, and answers their replies in order. On one
/// node they go as one pipeline; on a cluster as one pipeline per slot, all sent together, each
/// slot's commands in the order given. An error of any part fails the whole.
pub(crate) async fn run_split(conn: &Conn, cmds: Vec<(String, Cmd)>) -> Result<Vec<Value>> {
    run_split_waiting(conn, cmds, None).await
}

/// [`run_split`], and with `wait` = `(replicas, timeout)` each pipeline ends with `WAIT`, on
/// the connection that made its writes: it answers once that many replicas acknowledged
/// them, or fails with [`StoreError::NotReplicated`] when fewer did within the timeout.
pub(crate) async fn run_split_waiting(
    conn: &Conn,
    cmds: Vec<(String, Cmd)>,
    wait: Option<(u32, Duration)>,
) -> Result<Vec<Value>> {
    let finish = |pipe: &mut Pipeline| {
        if let Some((replicas, timeout)) = wait {
            pipe.cmd("WAIT")
                .arg(replicas)
                .arg(timeout.as_millis() as u64);
        }
    };
    let check = |replies: &mut Vec<Value>| -> Result<()> {
        if let Some((replicas, _)) = wait {
            let acked = replies
                .pop()
                .map(i64::from_redis_value)
                .transpose()?
                .unwrap_or_default();
            if acked < i64::from(replicas) {
                return Err(StoreError::NotReplicated {
                    acked: acked.max(0) as u32,
                    wanted: replicas,
                });
            }
        }
        Ok(())
    };
    match conn {
        Conn::Node(c) => {
            let mut pipe = redis::pipe();
            for (_, cmd) in cmds {
                pipe.add_command(cmd);
            }
            finish(&mut pipe);
            let mut replies: Vec<Value> = pipe.query_async(&mut c.clone()).await?;
            check(&mut replies)?;
            Ok(replies)
        }
        Conn::Cluster(c) => {
            let n = cmds.len();
            let mut parts: HashMap<Slot, (Vec<usize>, Pipeline)> = HashMap::new();
            for (i, (key, cmd)) in cmds.into_iter().enumerate() {
                let (at, pipe) = parts
                    .entry(Slot::for_key(key.as_bytes()))
                    .or_insert_with(|| (Vec::new(), redis::pipe()));
                at.push(i);
                pipe.add_command(cmd);
            }
            let replies = try_join_all(parts.into_values().map(|(at, mut pipe)| {
                let mut c = c.clone();
                finish(&mut pipe);
                async move {
                    let mut replies: Vec<Value> = pipe.query_async(&mut c).await?;
                    check(&mut replies)?;
                    Ok::<_, StoreError>((at, replies))
                }
            }))
            .await?;
            let mut out = vec![Value::Nil; n];
            for (at, replies) in replies {
                if replies.len() != at.len() {
                    return Err(crate::error::protocol(
                        "pipeline",
                        format!("{} replies to {} commands", replies.len(), at.len()),
                    ));
                }
                for (i, v) in at.into_iter().zip(replies) {
                    out[i] = v;
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_cluster_slots_entry_names_the_master_of_its_slots() {
        // As Redis 7 answers: the master's node carries a map of hostnames after its id.
        let entry = || {
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![
                    bulk("10.0.0.1"),
                    Value::Int(6379),
                    bulk("id-1"),
                    Value::Map(vec![]),
                ]),
                Value::Array(vec![bulk("10.0.0.4"), Value::Int(6379), bulk("id-4")]),
            ])
        };
        let inside = Slot::new(5460).expect("a slot");
        let outside = Slot::new(5461).expect("a slot");
        assert_eq!(
            master_of(entry(), inside),
            Some(("10.0.0.1".to_owned(), 6379))
        );
        assert_eq!(master_of(entry(), outside), None);
    }
}
