//! A local Redis Cluster for the benchmark: masters only (a benchmark needs no replicas), the
//! hash slots split evenly between them, formed the way `redis-cli --cluster create` does it
//! (a config epoch per node, `CLUSTER ADDSLOTSRANGE`, `CLUSTER MEET`), which also works for one
//! or two masters, and ready once every node sees every slot served.

use std::net::TcpListener;
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng;

use crate::node::Node;

/// Hash slots of a Redis Cluster.
const SLOTS: u32 = 16384;

/// A node's cluster bus listens on its client port plus this.
const BUS_OFFSET: u16 = 10000;

/// Client ports are drawn from here: with their bus ports (25000..32000) they stay below
/// Linux's ephemeral range (from 32768), from which every outgoing connection and every
/// `127.0.0.1:0` listener takes its port.
const PORTS: Range<u16> = 15_000..22_000;

/// How many ports to try for one node when another process takes the one found free.
const PORT_ATTEMPTS: usize = 10;

/// The longest the nodes may take to agree on the slot map: a safety net, the wait itself
/// ends at the event.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `masters` nodes in cluster mode, gives each an equal share of the slots, joins them,
/// and returns once every node answers `cluster_state:ok` with all slots served and every node
/// known. The nodes are killed when dropped.
pub(crate) async fn start(masters: usize, appendonly: bool) -> anyhow::Result<Vec<Node>> {
    anyhow::ensure!(masters >= 1, "a cluster needs at least one master");
    let mut nodes = Vec::with_capacity(masters);
    for _ in 0..masters {
        nodes.push(start_node(appendonly).await?);
    }
    let n = masters as u32;
    for (i, node) in nodes.iter().enumerate() {
        let i = i as u32;
        let mut c = node.conn().await?;
        // Distinct config epochs, as `redis-cli --cluster create` sets them, so that the nodes
        // need not settle a collision.
        let _: () = redis::cmd("CLUSTER")
            .arg("SET-CONFIG-EPOCH")
            .arg(i + 1)
            .query_async(&mut c)
            .await?;
        let (first, last) = slots_of(i, n);
        let _: () = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(first)
            .arg(last)
            .query_async(&mut c)
            .await
            .with_context(|| format!("CLUSTER ADDSLOTSRANGE {first} {last}"))?;
    }
    let mut first = nodes[0].conn().await?;
    for node in &nodes[1..] {
        let _: () = redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(node.port)
            .query_async(&mut first)
            .await?;
    }
    wait_formed(&nodes).await?;
    Ok(nodes)
}

/// The first and last slot of master `i` of `n`: an equal share each, in order.
fn slots_of(i: u32, n: u32) -> (u32, u32) {
    (SLOTS * i / n, SLOTS * (i + 1) / n - 1)
}

/// The master (its index) that serves `slot` in a cluster of `masters` formed by [`start`].
pub(crate) fn master_of_slot(slot: u32, masters: usize) -> usize {
    let n = masters as u32;
    (0..n)
        .find(|&i| slot <= slots_of(i, n).1)
        .map_or(0, |i| i as usize)
}

/// One cluster node on a port whose bus port is free too; another port when the one found
/// free was taken before the node bound it.
async fn start_node(appendonly: bool) -> anyhow::Result<Node> {
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        let port = free_cluster_port()?;
        let started = Node::start(
            port,
            appendonly,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ],
        )
        .await;
        match started {
            Ok(node) => return Ok(node),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.expect("at least one attempt")).context("no free port for a cluster node")
}

/// A port of [`PORTS`] that, with its bus port, nothing listens on now.
fn free_cluster_port() -> anyhow::Result<u16> {
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(PORTS);
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + BUS_OFFSET) {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port pair in {PORTS:?}")
}

/// Waits until every node says the cluster is ok, with every slot served and every node known.
async fn wait_formed(nodes: &[Node]) -> anyhow::Result<()> {
    let deadline = Instant::now() + FORM_TIMEOUT;
    let mut conns = Vec::new();
    for node in nodes {
        conns.push(node.conn().await?);
    }
    loop {
        let mut pending = None;
        for (node, c) in nodes.iter().zip(&mut conns) {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(c).await?;
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .map(str::trim)
                    .unwrap_or("")
                    .to_owned()
            };
            let formed = field("cluster_state") == "ok"
                && field("cluster_slots_ok") == SLOTS.to_string()
                && field("cluster_known_nodes") == nodes.len().to_string();
            if !formed {
                pending = Some(format!(
                    "node {}: state {}, slots ok {}, known nodes {}",
                    node.port,
                    field("cluster_state"),
                    field("cluster_slots_ok"),
                    field("cluster_known_nodes")
                ));
                break;
            }
        }
        let Some(pending) = pending else {
            return Ok(());
        };
        anyhow::ensure!(
            Instant::now() < deadline,
            "the cluster did not form within {FORM_TIMEOUT:?}: {pending}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_split_evenly_and_every_slot_has_one_master() {
        for n in 1..=5u32 {
            let mut next = 0;
            for i in 0..n {
                let (first, last) = slots_of(i, n);
                assert_eq!(first, next);
                assert!(last - first + 1 >= SLOTS / n);
                next = last + 1;
            }
            assert_eq!(next, SLOTS);
        }
        assert_eq!(master_of_slot(0, 3), 0);
        assert_eq!(master_of_slot(5460, 3), 0);
        assert_eq!(master_of_slot(5461, 3), 1);
        assert_eq!(master_of_slot(16383, 3), 2);
        assert_eq!(master_of_slot(9000, 1), 0);
    }
}
