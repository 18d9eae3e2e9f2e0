//! A real Redis Cluster per test: three masters and three replicas on loopback, created with
//! `redis-cli --cluster create`, that a test reshards (the real `IMPORTING`/`MIGRATING`/`MIGRATE`
//! protocol), fails over and cuts a master from while herald runs against it.
//!
//! Every change waits for its event: each live node answers `cluster_state:ok`, all of them
//! describe the same slot map and the same replicas, and every replica's link to its master is
//! up. Nodes are known by their client port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::ops::Range;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nix::sys::signal::Signal;
use redis::cluster::{ClusterClient, ClusterConnection};
use tempfile::TempDir;

use super::process::{poll_until, Proc};
use super::SAFETY_NET;

/// Masters and replicas: one replica per master.
const NODES: usize = 6;

/// How long a node may stay silent before the others flag it as failing: small, so that a
/// killed master's replica takes over within a few seconds, yet far above any pause a busy
/// 2-core machine imposes on a healthy node.
const NODE_TIMEOUT_MS: u64 = 2000;

/// Hash slots of a Redis Cluster.
const SLOTS: u32 = 16384;

/// A node's cluster bus listens on its client port plus this.
const BUS_OFFSET: u16 = 10000;

/// Client ports are drawn from here: with their bus ports (20000..32000) they stay below
/// Linux's ephemeral range (from 32768), which other tests' `127.0.0.1:0` listeners and every
/// outgoing connection use, so only a listener that picked its port the same way can collide.
const PORTS: Range<u16> = 10_000..22_000;

/// How many fresh ports to try for one node when another process took the one we checked.
const PORT_ATTEMPTS: usize = 10;

/// How long a node may take to say it is ready: a safety net, readiness itself is an event.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the cluster's state is read while waiting for it to settle.
const POLL: Duration = Duration::from_millis(50);

/// How long one `MIGRATE` may take to hand its keys over (milliseconds).
const MIGRATE_TIMEOUT_MS: u64 = 5000;

/// Client ports held by the clusters of this test process, so that two tests starting clusters
/// at once never pick the same port (a port checked free but not yet bound is invisible to
/// the other's check).
static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn reserved() -> MutexGuard<'static, BTreeSet<u16>> {
    RESERVED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Redis Cluster of three masters, each with one replica, persistence off, on 127.0.0.1.
///
/// Dropping it kills every node (SIGKILL) and removes their directories.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
}

/// One `redis-server` of the cluster.
#[derive(Debug)]
struct Node {
    port: u16,
    /// The node's working directory, holding its `nodes.conf`: kept for a restart.
    dir: TempDir,
    /// `None` once killed.
    proc: Option<Proc>,
}

impl RedisCluster {
    /// Starts six nodes, joins them into a cluster of three masters with a replica each
    /// (`redis-cli --cluster create`), and returns once every node agrees on the slot map and
    /// every replica is in sync.
    pub fn start() -> RedisCluster {
        let nodes = (0..NODES).map(|_| Node::start()).collect();
        let cluster = RedisCluster { nodes };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--cluster", "create"]).args(&addresses).args([
            "--cluster-replicas",
            "1",
            "--cluster-yes",
        ]);
        let create = Proc::spawn("redis-cli --cluster create", cmd, None);
        let status = create.wait_exit(SAFETY_NET).unwrap_or_else(|| {
            panic!(
                "redis-cli --cluster create did not finish:\n{}",
                create.output()
            )
        });
        assert!(
            status.success() && create.stdout().contains("All 16384 slots covered"),
            "redis-cli --cluster create failed ({status}):\n{}",
            create.output()
        );
        cluster.topology();
        cluster
    }

    /// The URLs of every node started, comma-separated, as herald's `HERALD_REDIS_URL` takes
    /// its seed nodes: `redis://127.0.0.1:P1,redis://127.0.0.1:P2,...`.
    pub fn seed_urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(|n| url(n.port)).collect();
        urls.join(",")
    }

    /// The masters' ports, in order: the nodes that serve slots now.
    pub fn masters(&self) -> Vec<u16> {
        self.topology().masters()
    }

    /// The port of `master`'s replica.
    pub fn replica_of(&self, master: u16) -> u16 {
        self.topology().replica_of(master)
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`): that of its hash tag `{...}` if it has one.
    pub fn slot_of(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.connection(self.live_ports()[0]))
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key}: {e}"))
    }

    /// The port of the master that serves `slot`.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        self.topology().master_of_slot(slot)
    }

    /// The port of the master that serves `key`.
    pub fn master_of(&self, key: &str) -> u16 {
        self.master_of_slot(self.slot_of(key))
    }

    /// Keys held by each master (`DBSIZE`), by port.
    pub fn key_counts(&self) -> BTreeMap<u16, u64> {
        self.masters()
            .into_iter()
            .map(|port| {
                let count = redis::cmd("DBSIZE")
                    .query(&mut self.connection(port))
                    .unwrap_or_else(|e| panic!("DBSIZE on {port}: {e}"));
                (port, count)
            })
            .collect()
    }

    /// A plain connection to one node: it answers `MOVED` for keys it does not serve.
    pub fn connection(&self, port: u16) -> redis::Connection {
        connect(port).unwrap_or_else(|e| panic!("connect to node {port}: {e}"))
    }

    /// A cluster client connection seeded with every live node: it follows `MOVED` and `ASK`
    /// redirections and retries on `TRYAGAIN`.
    pub fn cluster_connection(&self) -> ClusterConnection {
        let urls: Vec<String> = self.live_ports().into_iter().map(url).collect();
        ClusterClient::new(urls)
            .and_then(|client| client.get_connection())
            .unwrap_or_else(|e| panic!("cluster connection to {:?}: {e}", self.live_ports()))
    }

    /// Starts moving `slot` to master `to` on a thread of its own, so that the test can run
    /// traffic meanwhile, with the resharding protocol: `CLUSTER SETSLOT IMPORTING` on `to`,
    /// `MIGRATING` on the slot's master, then `CLUSTER GETKEYSINSLOT` and `MIGRATE ... KEYS`
    /// of at most `batch` keys at a time until the slot is empty there, then `SETSLOT NODE` on
    /// `to`, on the old master and on every other master. After each batch it calls `between`
    /// with where the move stands: a test blocks there until the traffic it waits for came,
    /// which keeps the slot in migration meanwhile. The move is over when every node names `to`
    /// as the slot's master.
    ///
    /// No node may be killed or restarted while the move runs.
    pub fn move_slot_in_background(
        &self,
        slot: u16,
        to: u16,
        batch: usize,
        between: impl FnMut(&Migration) + Send + 'static,
    ) -> SlotMove {
        let live = self.live_ports();
        let handle = thread::Builder::new()
            .name(format!("move-slot-{slot}"))
            .spawn(move || move_slot(&live, slot, to, batch, between))
            .expect("spawn the slot mover");
        SlotMove { handle }
    }

    /// Fails `master` over to its replica the manual way (`CLUSTER FAILOVER` on the replica,
    /// which waits until it caught up with its master), and returns the new master's port once
    /// every node agrees that it serves the slots and that `master` is its replica.
    pub fn manual_failover(&self, master: u16) -> u16 {
        let replica = self.replica_of(master);
        let reply: String = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut self.connection(replica))
            .unwrap_or_else(|e| panic!("CLUSTER FAILOVER on {replica}: {e}"));
        assert_eq!(reply, "OK", "CLUSTER FAILOVER on {replica}");
        wait_for(
            &self.live_ports(),
            &format!("{replica} to take over from {master} and {master} to follow it"),
            |t| t.replicas.get(&master) == Some(&replica),
        );
        replica
    }

    /// Kills `master` with SIGKILL and returns its replica's port once the replica was promoted
    /// (after about the node timeout, 2 s, and an election) and the live nodes agree on it.
    /// Writes that had not reached the replica are lost.
    pub fn kill_master(&mut self, master: u16) -> u16 {
        let replica = self.replica_of(master);
        let node = self.node_mut(master);
        let proc = node.proc.take().expect("the master is running");
        proc.signal(Signal::SIGKILL);
        proc.wait_exit(READY_TIMEOUT)
            .unwrap_or_else(|| panic!("node {master} survived SIGKILL:\n{}", proc.output()));
        wait_for(
            &self.live_ports(),
            &format!("{replica} to take over from the killed {master}"),
            |t| t.masters().contains(&replica),
        );
        replica
    }

    /// Starts a killed node again, on its port and with its `nodes.conf`: it rejoins the
    /// cluster as the replica of the master that took over its slots. Returns once it is in
    /// sync.
    pub fn restart(&mut self, port: u16) {
        let node = self.node_mut(port);
        assert!(node.proc.is_none(), "node {port} is running");
        let proc = launch(port, &node.dir)
            .unwrap_or_else(|output| panic!("node {port} did not restart:\n{output}"));
        node.proc = Some(proc);
        wait_for(
            &self.live_ports(),
            &format!("{port} to rejoin as a replica"),
            |t| t.replicas.contains_key(&port),
        );
    }

    /// Freezes a node (SIGSTOP): its connections stay open and nothing is answered; a frozen
    /// replica acknowledges no write. Resume it within the node timeout (2 s), or the others
    /// flag it as failing (a master would then be failed over).
    pub fn pause(&self, port: u16) {
        self.proc(port).signal(Signal::SIGSTOP);
    }

    /// Lets a paused node go on (SIGCONT), and returns once the cluster is settled again.
    pub fn resume(&self, port: u16) {
        self.proc(port).signal(Signal::SIGCONT);
        self.topology();
    }

    /// Waits until every replica has received every write its master had taken when this was
    /// called (their replication offsets), so that a failover from then on loses none of them.
    pub fn wait_replicated(&self) {
        let topology = self.topology();
        for (&replica, &master) in &topology.replicas {
            let target: u64 = info_field(&mut self.connection(master), "master_repl_offset")
                .and_then(|v| v.parse().map_err(|e| format!("{v}: {e}")))
                .unwrap_or_else(|e| panic!("master_repl_offset of {master}: {e}"));
            poll_until(
                &format!("{replica} to replicate {master} up to offset {target}"),
                SAFETY_NET,
                POLL,
                || {
                    let mut con = connect(replica).map_err(|e| e.to_string())?;
                    let offset = info_field(&mut con, "slave_repl_offset")?;
                    match offset.parse::<u64>() {
                        Ok(offset) if offset >= target => Ok(()),
                        _ => Err(format!("offset {offset}")),
                    }
                },
            );
        }
    }

    /// Waits until the cluster is settled (see the module docs) and returns what it looks like.
    fn topology(&self) -> Topology {
        wait_for(&self.live_ports(), "the cluster to settle", |_| true)
    }

    /// The ports of the nodes not killed.
    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.proc.is_some())
            .map(|n| n.port)
            .collect()
    }

    fn proc(&self, port: u16) -> &Proc {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .and_then(|n| n.proc.as_ref())
            .unwrap_or_else(|| panic!("no node running on port {port}"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        if thread::panicking() {
            for node in &self.nodes {
                if let Some(proc) = &node.proc {
                    eprintln!(
                        "--- redis cluster node {} ---\n{}",
                        node.port,
                        proc.output()
                    );
                }
            }
        }
        let mut reserved = reserved();
        for node in &mut self.nodes {
            // Killed (and reaped) before its port is offered again.
            drop(node.proc.take());
            reserved.remove(&node.port);
        }
    }
}

/// A slot move running on its own thread ([`RedisCluster::move_slot_in_background`]).
#[derive(Debug)]
pub struct SlotMove {
    handle: JoinHandle<Migration>,
}

impl SlotMove {
    /// Waits until the move is over and returns how it ended; a failure of the move fails the
    /// test here.
    pub fn join(self) -> Migration {
        self.handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Node {
    /// Starts a node on a free pair of ports (client and bus).
    fn start() -> Node {
        let dir = tempfile::tempdir().expect("temporary directory for a cluster node");
        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = reserve_port();
            match launch(port, &dir) {
                Ok(proc) => {
                    return Node {
                        port,
                        dir,
                        proc: Some(proc),
                    }
                }
                // Another process bound one of the two ports since we checked: pick others.
                Err(output) if output.contains("Address already in use") => {
                    reserved().remove(&port);
                    last_failure = output;
                }
                Err(output) => panic!("cluster node did not start on port {port}:\n{output}"),
            }
        }
        panic!("no cluster node started in {PORT_ATTEMPTS} attempts:\n{last_failure}");
    }
}

/// Picks a client port in [`PORTS`] whose bus port is free too, and reserves it.
fn reserve_port() -> u16 {
    let mut reserved = reserved();
    for _ in 0..1000 {
        let port = rand::random_range(PORTS);
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if !reserved.contains(&port) && free(port) && free(port + BUS_OFFSET) {
            reserved.insert(port);
            return port;
        }
    }
    panic!("no free pair of ports in {PORTS:?} (and +{BUS_OFFSET})");
}

/// Starts a cluster-enabled redis on `port` and waits for its readiness line; `Err` carries its
/// output if it exited instead.
fn launch(port: u16, dir: &TempDir) -> Result<Proc, String> {
    assert_ne!(port, 6379, "tests never use the default redis port");
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string()])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-config-file", "nodes.conf"])
        .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--bind", "127.0.0.1"])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path());
    let proc = Proc::spawn(format!("redis-cluster:{port}"), cmd, None);
    match proc.wait_for_line(READY_TIMEOUT, |l| l.contains("Ready to accept connections")) {
        Some(_) => Ok(proc),
        None => Err(proc.output()),
    }
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

fn connect(port: u16) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(url(port))?;
    client.get_connection_with_timeout(Duration::from_secs(5))
}

/// The value of `field` in `INFO replication`.
fn info_field(con: &mut redis::Connection, field: &str) -> Result<String, String> {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(con)
        .map_err(|e| e.to_string())?;
    field_of(&info, field).ok_or_else(|| format!("no {field} in:\n{info}"))
}

/// The value of `field` in `field:value` lines (`INFO`, `CLUSTER INFO`).
fn field_of(text: &str, field: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// What the live nodes agree on: who serves which slots, who replicates whom.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Topology {
    /// `(first slot, last slot, master's port)`, in slot order, covering every slot.
    slots: Vec<(u16, u16, u16)>,
    /// Replica's port → its master's port.
    replicas: BTreeMap<u16, u16>,
}

impl Topology {
    /// One node's view, from its `CLUSTER NODES`, of the nodes in `live`; `Err` if it sees one
    /// of them failing or not yet known.
    fn parse(observer: u16, text: &str, live: &[u16]) -> Result<Topology, String> {
        let mut ports_by_id = BTreeMap::new();
        let mut masters_of = Vec::new();
        let mut slots = Vec::new();
        let mut seen = BTreeSet::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // <id> <ip:port@bus[,hostname]> <flags> <master id|-> <ping> <pong> <epoch> <link>
            // <slot or range>...
            let fields: Vec<&str> = line.split_whitespace().collect();
            let bad = || format!("{observer}: unreadable CLUSTER NODES line {line:?}");
            let port: u16 = fields
                .get(1)
                .and_then(|a| a.split(['@', ',']).next()?.rsplit(':').next()?.parse().ok())
                .ok_or_else(bad)?;
            ports_by_id.insert(fields[0].to_owned(), port);
            if !live.contains(&port) {
                continue;
            }
            let flags: Vec<&str> = fields.get(2).ok_or_else(bad)?.split(',').collect();
            if let Some(flag) = flags
                .iter()
                .find(|f| ["fail", "fail?", "handshake", "noaddr"].contains(f))
            {
                return Err(format!("{observer} sees {port} as {flag}"));
            }
            if fields.get(7) != Some(&"connected") && !flags.contains(&"myself") {
                return Err(format!("{observer} is not connected to {port}"));
            }
            seen.insert(port);
            if flags.contains(&"slave") {
                masters_of.push((port, fields.get(3).ok_or_else(bad)?.to_string()));
            } else {
                for range in fields.iter().skip(8).filter(|r| !r.starts_with('[')) {
                    let (first, last) = range.split_once('-').unwrap_or((range, range));
                    let first: u16 = first.parse().map_err(|_| bad())?;
                    let last: u16 = last.parse().map_err(|_| bad())?;
                    slots.push((first, last, port));
                }
            }
        }
        if let Some(missing) = live.iter().find(|p| !seen.contains(p)) {
            return Err(format!("{observer} does not know {missing} yet"));
        }
        let mut replicas = BTreeMap::new();
        for (replica, master_id) in masters_of {
            let master = ports_by_id
                .get(&master_id)
                .filter(|p| live.contains(p))
                .ok_or_else(|| format!("{observer} sees {replica} replicate a dead node"))?;
            replicas.insert(replica, *master);
        }
        slots.sort_unstable();
        let mut next: u32 = 0;
        for &(first, last, _) in &slots {
            if u32::from(first) != next {
                return Err(format!(
                    "{observer} sees slot {next} unserved or served twice"
                ));
            }
            next = u32::from(last) + 1;
        }
        if next != SLOTS {
            return Err(format!("{observer} sees slots from {next} unserved"));
        }
        Ok(Topology { slots, replicas })
    }

    fn masters(&self) -> Vec<u16> {
        let masters: BTreeSet<u16> = self.slots.iter().map(|&(_, _, port)| port).collect();
        masters.into_iter().collect()
    }

    fn master_of_slot(&self, slot: u16) -> u16 {
        self.slots
            .iter()
            .find(|&&(first, last, _)| (first..=last).contains(&slot))
            .map(|&(_, _, port)| port)
            .unwrap_or_else(|| panic!("slot {slot} is out of range"))
    }

    fn replica_of(&self, master: u16) -> u16 {
        self.replicas
            .iter()
            .find(|(_, &m)| m == master)
            .map(|(&replica, _)| replica)
            .unwrap_or_else(|| panic!("{master} is not a master with a replica: {self:?}"))
    }
}

/// The cluster's state if it is settled: every node in `live` answers `cluster_state:ok`, all
/// of them describe the same [`Topology`], and each replica's link to its master is up.
fn settled(live: &[u16]) -> Result<Topology, String> {
    let mut agreed: Option<(u16, Topology)> = None;
    for &port in live {
        let mut con = connect(port).map_err(|e| format!("connect to {port}: {e}"))?;
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut con)
            .map_err(|e| format!("CLUSTER INFO on {port}: {e}"))?;
        let state = field_of(&info, "cluster_state");
        if state.as_deref() != Some("ok") {
            return Err(format!("{port} says cluster_state {state:?}"));
        }
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut con)
            .map_err(|e| format!("CLUSTER NODES on {port}: {e}"))?;
        let view = Topology::parse(port, &nodes, live)?;
        match &agreed {
            None => agreed = Some((port, view)),
            Some((_, first)) if *first == view => {}
            Some((other, first)) => {
                return Err(format!("{port} sees {view:?}, {other} sees {first:?}"));
            }
        }
    }
    let (_, topology) = agreed.ok_or("no live node")?;
    for (&replica, &master) in &topology.replicas {
        let mut con = connect(replica).map_err(|e| format!("connect to {replica}: {e}"))?;
        let link = info_field(&mut con, "master_link_status")?;
        let of = info_field(&mut con, "master_port")?;
        if link != "up" || of != master.to_string() {
            return Err(format!(
                "{replica} replicates {of} with its link {link}, not {master}"
            ));
        }
    }
    Ok(topology)
}

/// Waits until the nodes in `live` are settled and `done` holds for their topology.
fn wait_for(live: &[u16], what: &str, done: impl Fn(&Topology) -> bool) -> Topology {
    poll_until(what, SAFETY_NET, POLL, || {
        let topology = settled(live)?;
        if done(&topology) {
            Ok(topology)
        } else {
            Err(format!("{topology:?}"))
        }
    })
}

/// Where a slot move stands: handed to its hook after each batch, and returned at its end.
#[derive(Debug, Clone)]
pub struct Migration {
    pub slot: u16,
    /// The master that served the slot before.
    pub from: u16,
    pub to: u16,
    /// Keys migrated so far.
    pub moved: usize,
}

impl Migration {
    /// How many commands the two masters refused since they started because a slot of theirs
    /// was being moved: `ASK` redirections and `TRYAGAIN` answers, from `INFO errorstats`.
    ///
    /// Clients meet the move there: a command whose keys are all gone from the old master is
    /// sent on to the new one (`ASK`); one that needs keys on both sides, or keys of which some
    /// do not exist (most scripts), must wait for the end of the move (`TRYAGAIN`).
    pub fn refusals(&self) -> u64 {
        [self.from, self.to]
            .iter()
            .map(|&port| {
                let mut con =
                    connect(port).unwrap_or_else(|e| panic!("connect to node {port}: {e}"));
                let stats: String = redis::cmd("INFO")
                    .arg("errorstats")
                    .query(&mut con)
                    .unwrap_or_else(|e| panic!("INFO errorstats on {port}: {e}"));
                ["errorstat_ASK", "errorstat_TRYAGAIN"]
                    .iter()
                    .filter_map(|field| field_of(&stats, field))
                    .filter_map(|v| v.strip_prefix("count=")?.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum()
    }
}

/// The resharding protocol (see [`RedisCluster::move_slot_in_background`]).
fn move_slot(
    live: &[u16],
    slot: u16,
    to: u16,
    batch: usize,
    mut between: impl FnMut(&Migration),
) -> Migration {
    assert!(batch > 0, "a batch of no keys moves nothing");
    let topology = wait_for(live, "the cluster to settle before a slot move", |_| true);
    let from = topology.master_of_slot(slot);
    assert_ne!(from, to, "slot {slot} is already served by {to}");
    let masters = topology.masters();
    assert!(masters.contains(&to), "{to} is not a master: {topology:?}");
    let con = |port: u16| connect(port).unwrap_or_else(|e| panic!("connect to node {port}: {e}"));
    let id = |port: u16| -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut con(port))
            .unwrap_or_else(|e| panic!("CLUSTER MYID on {port}: {e}"))
    };
    let (from_id, to_id) = (id(from), id(to));
    let setslot = |port: u16, state: &str, node: &str| {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(state)
            .arg(node)
            .exec(&mut con(port))
            .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} {state} on {port}: {e}"));
    };
    setslot(to, "IMPORTING", &from_id);
    setslot(from, "MIGRATING", &to_id);

    let mut source = con(from);
    let mut migration = Migration {
        slot,
        from,
        to,
        moved: 0,
    };
    loop {
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(batch)
            .query(&mut source)
            .unwrap_or_else(|e| panic!("CLUSTER GETKEYSINSLOT {slot} on {from}: {e}"));
        if keys.is_empty() {
            break;
        }
        // `OK`, or `NOKEY` when every key of the batch was deleted since it was listed.
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to)
            .arg("")
            .arg(0)
            .arg(MIGRATE_TIMEOUT_MS)
            .arg("KEYS")
            .arg(&keys)
            .query::<redis::Value>(&mut source)
            .unwrap_or_else(|e| panic!("MIGRATE of slot {slot} from {from} to {to}: {e}"));
        migration.moved += keys.len();
        between(&migration);
    }

    // The new owner first, so that it serves the slot before the old one redirects there.
    setslot(to, "NODE", &to_id);
    setslot(from, "NODE", &to_id);
    for &other in masters.iter().filter(|&&m| m != from && m != to) {
        setslot(other, "NODE", &to_id);
    }
    wait_for(
        live,
        &format!("every node to see {to} serve slot {slot}"),
        |t| t.master_of_slot(slot) == to,
    );
    migration
}
