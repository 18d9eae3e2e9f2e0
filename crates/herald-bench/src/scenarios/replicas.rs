//! What waiting for a replica costs (`HERALD_ENQUEUE_WAIT_REPLICAS`): enqueues to one Redis
//! with one replica, with and without `WAIT 1` after each call, one job per call (its latency)
//! and batches (jobs per second).

use std::time::{Duration, Instant};

use clap::Args;
use herald_core::{EndpointId, JobId};
use herald_producer::{NewJob, Producer};
use herald_store::{Namespace, Store, StoreConfig};
use serde_json::{json, Value};

use super::shared::{round, Bench, NAMESPACE};
use crate::env;
use crate::node::Node;

#[derive(Debug, Clone, Args)]
pub struct ReplicasArgs {
    /// Enqueue calls of one job each, timed one by one.
    #[arg(long = "wait-single", default_value_t = 5_000)]
    pub single: usize,
    /// Jobs enqueued in batches of `--wait-batch`.
    #[arg(long = "wait-jobs", default_value_t = 100_000)]
    pub jobs: usize,
    #[arg(long = "wait-batch", default_value_t = 1_000)]
    pub batch: usize,
}

/// Enqueues with and without waiting for the replica, alternated, on one master with one
/// replica (`replicaof`), both on this machine.
pub async fn replicas(b: &Bench, args: &ReplicasArgs) -> anyhow::Result<Value> {
    let c = &b.common;
    let master = Node::start(env::free_port()?, false, &[]).await?;
    let replica_of = format!("127.0.0.1 {}", master.port);
    let replica = Node::start(env::free_port()?, false, &["--replicaof", &replica_of]).await?;
    wait_in_sync(&replica).await?;
    let endpoints: Vec<EndpointId> = (0..c.endpoints)
        .map(|i| EndpointId::new(format!("bench-{i}")))
        .collect::<Result<_, _>>()?;
    let mut runs = Vec::new();
    for wait in [None, Some((1, Duration::from_secs(1)))] {
        let ns = Namespace::new(NAMESPACE).map_err(anyhow::Error::msg)?;
        let mut cfg = StoreConfig::new(master.url(), ns, c.shards);
        cfg.enqueue_wait = wait;
        let producer = Producer::new(Store::open(cfg)?);
        for (i, e) in endpoints.iter().enumerate() {
            producer
                .store()
                .set_endpoint(e, &b.receiver.url(i), None)
                .await?;
        }
        let payload = vec![b'1'; c.payload];
        // One job per call: each call's latency.
        let mut latencies = Vec::with_capacity(args.single);
        for i in 0..args.single {
            let job = NewJob::new(endpoints[i % endpoints.len()].clone(), payload.clone());
            let t = Instant::now();
            producer.enqueue_job(job).await?;
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
        }
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        // Batches: jobs per second.
        let t = Instant::now();
        let mut done = 0;
        while done < args.jobs {
            let n = args.batch.min(args.jobs - done);
            let jobs: Vec<NewJob> = (done..done + n)
                .map(|i| NewJob {
                    id: JobId::generate(),
                    ..NewJob::new(endpoints[i % endpoints.len()].clone(), payload.clone())
                })
                .collect();
            for r in producer.enqueue_batch(&jobs).await? {
                r?;
            }
            done += n;
        }
        let seconds = t.elapsed().as_secs_f64();
        let queued = producer.store().stats().await?.total.due;
        anyhow::ensure!(
            queued == (args.single + args.jobs) as u64,
            "{queued} jobs queued, not {}",
            args.single + args.jobs
        );
        runs.push(json!({
            "wait_replicas": wait.map_or(0, |(n, _)| n),
            "single_job_ms": { "p50": round(at(0.5), 3), "p99": round(at(0.99), 3) },
            "batch": args.batch,
            "batch_jobs_per_s": (args.jobs as f64 / seconds).round(),
        }));
        let mut conn = master.conn().await?;
        let () = redis::cmd("FLUSHALL").query_async(&mut conn).await?;
        wait_in_sync(&replica).await?;
    }
    Ok(json!({ "payload_bytes": c.payload, "runs": runs }))
}

/// Waits until the replica's link to its master is up.
async fn wait_in_sync(replica: &Node) -> anyhow::Result<()> {
    let mut conn = replica.conn().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await?;
        if info.contains("master_link_status:up") {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the replica never synced: {info}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
