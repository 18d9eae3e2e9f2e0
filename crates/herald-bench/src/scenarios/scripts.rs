//! Where Redis's time goes: the hot scripts (enqueue, claim, ack) run one at a time through the
//! store API, without workers or HTTP, and Redis's time per job in each.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use super::shared::{enqueue, round, Bench, NAMESPACE};
use crate::env::Redis;

#[derive(Debug, Clone, Args)]
pub struct ScriptsArgs {
    /// Jobs enqueued, claimed and acknowledged in each round.
    #[arg(long = "script-jobs", id = "script-jobs", default_value_t = 100_000)]
    pub jobs: u64,
    /// Jobs per claim call (the worker's HERALD_CLAIM_BATCH).
    #[arg(long = "claim-batch", default_value_t = 100)]
    pub claim_batch: usize,
}

/// Redis time per job of each hot-path script, measured alone through the store API (no
/// workers, no HTTP): `enqueue-batch-4.lua` (one call per shard of each batch),
/// `claim-12.lua` (batches of `claim_batch` per shard) and `ack-8.lua` (one call per shard per
/// batch, as the settler does), the last with and without the attempt-log entry a worker
/// writes for each delivery.
pub async fn scripts(b: &Bench, args: &ScriptsArgs) -> anyhow::Result<Value> {
    let c = &b.common;
    let d = b.deploy().await?;
    let store = d.producer.store().clone();
    // Every job is claimed before any is acknowledged: no in-flight limit may bind.
    for id in &d.endpoints {
        let url = store.endpoint(id).await?.expect("deployed").url;
        let flow = herald_store::FlowChange {
            max_in_flight: Some(herald_core::MAX_IN_FLIGHT_CEILING),
            rate: None,
        };
        store.set_endpoint_with(id, &url, None, flow).await?;
    }
    let mut conn = d.redis.conn().await?;
    let mut out = serde_json::Map::new();
    for with_log in [true, false] {
        let mut phase = serde_json::Map::new();
        let mut measure = Measure::start(&d.redis).await?;
        enqueue(
            &d.producer,
            &d.endpoints,
            0..args.jobs,
            c.payload,
            Duration::ZERO,
            c.batch,
            1,
        )
        .await?;
        phase.insert("enqueue".into(), measure.stop(&d.redis, args.jobs).await?);

        let mut measure = Measure::start(&d.redis).await?;
        let mut claimed = Vec::new();
        for shard in 0..c.shards {
            let mut candidates = Vec::new();
            loop {
                let claim = store
                    .claim(
                        &mut conn,
                        shard,
                        args.claim_batch,
                        Duration::from_secs(300),
                        &candidates,
                        herald_core::MAX_IN_FLIGHT_CEILING,
                    )
                    .await?;
                if claim.jobs.is_empty() && claim.candidates.is_empty() {
                    break;
                }
                candidates = claim.candidates;
                claimed.extend(claim.jobs.into_iter().map(|j| (shard, j)));
            }
        }
        anyhow::ensure!(
            claimed.len() as u64 == args.jobs,
            "claimed {}",
            claimed.len()
        );
        phase.insert("claim".into(), measure.stop(&d.redis, args.jobs).await?);

        let mut measure = Measure::start(&d.redis).await?;
        for chunk in claimed.chunks(1024) {
            let mut by_shard: std::collections::BTreeMap<u16, Vec<herald_store::Settlement>> =
                Default::default();
            for (shard, job) in chunk {
                // What a worker logs for a delivered attempt (delivery.rs).
                let entry = with_log.then(|| {
                    json!({
                        "at_ms": 1_795_730_620_170i64, "job_id": job.id, "attempt": job.attempts,
                        "outcome": "delivered", "status": 200, "latency_ms": 1, "error": null,
                        "response_body": "ok",
                    })
                    .to_string()
                });
                by_shard
                    .entry(*shard)
                    .or_default()
                    .push(herald_store::Settlement {
                        id: job.id.clone(),
                        token: job.token,
                        attempt: job.attempts,
                        endpoint: job.endpoint.clone(),
                        action: herald_store::Settle::Ack,
                        strike: herald_store::Strike::None,
                        // An ack does not read it.
                        claimed_ms: 0,
                        congested: false,
                        pause: None,
                        log_entry: entry,
                    });
            }
            for (shard, items) in by_shard {
                let report = store
                    .settle(
                        &mut conn,
                        shard,
                        &items,
                        5,
                        herald_core::MAX_IN_FLIGHT_CEILING,
                    )
                    .await?;
                anyhow::ensure!(report.applied.iter().all(|a| *a), "an ack was refused");
            }
        }
        phase.insert("ack".into(), measure.stop(&d.redis, args.jobs).await?);
        let (left, _) = d.redis.jobs_in_store(NAMESPACE, c.shards).await?;
        anyhow::ensure!(left == 0, "{left} jobs left after the acks");
        out.insert(
            if with_log {
                "with_attempt_log"
            } else {
                "without_attempt_log"
            }
            .into(),
            Value::Object(phase),
        );
    }
    out.insert("jobs".into(), json!(args.jobs));
    out.insert("claim_batch".into(), json!(args.claim_batch));
    Ok(Value::Object(out))
}

/// Redis's CPU time and script time between two points.
struct Measure {
    cpu: f64,
    script: (u64, u64),
    started: Instant,
}

impl Measure {
    async fn start(redis: &Redis) -> anyhow::Result<Self> {
        let script = redis
            .commandstats()
            .await?
            .get("evalsha")
            .copied()
            .unwrap_or_default();
        Ok(Self {
            cpu: redis.cpu_seconds(),
            script,
            started: Instant::now(),
        })
    }

    async fn stop(&mut self, redis: &Redis, jobs: u64) -> anyhow::Result<Value> {
        let secs = self.started.elapsed().as_secs_f64();
        let cpu = redis.cpu_seconds() - self.cpu;
        let (calls, usec) = redis
            .commandstats()
            .await?
            .get("evalsha")
            .copied()
            .unwrap_or_default();
        let (calls, usec) = (calls - self.script.0, usec - self.script.1);
        Ok(json!({
            "script_calls": calls,
            "script_usec_per_job": round(usec as f64 / jobs as f64, 2),
            "redis_cpu_us_per_job": round(cpu * 1e6 / jobs as f64, 2),
            "jobs_per_s": (jobs as f64 / secs).round(),
        }))
    }
}
