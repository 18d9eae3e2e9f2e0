//! The settler: writes the outcomes of finished deliveries back to Redis, batched per shard,
//! and keeps trying through Redis outages (a settlement that arrives after its lease expired
//! is refused by the store and counted; the job then goes round again: at-least-once).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use herald_store::Conn;
use herald_store::{Settle, Settlement};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::delivery::Done;
use crate::metrics as m;
use crate::{Backoff, Ctx};

/// Most outcomes written in one round.
const BATCH: usize = 1024;

fn kind(action: &Settle) -> m::SettleKind {
    match action {
        Settle::Ack => m::SettleKind::Ack,
        Settle::Retry { .. } => m::SettleKind::Retry,
        Settle::Discard { .. } => m::SettleKind::Discard,
        Settle::Release => m::SettleKind::Release,
    }
}

/// Runs until every sender is dropped and everything received is written.
pub(crate) async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Done>) {
    let mut buf = Vec::with_capacity(BATCH);
    let mut conn: Option<Conn> = None;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    while rx.recv_many(&mut buf, BATCH).await > 0 {
        let mut pending: BTreeMap<u16, Batch> = BTreeMap::new();
        for done in buf.drain(..) {
            let batch = pending.entry(done.shard).or_default();
            batch.settlements.push(done.settlement);
            batch.discard_reasons.push(done.discard_reason);
        }
        while !pending.is_empty() {
            let c = match &conn {
                Some(c) => c.clone(),
                None => match ctx.store.conn().await {
                    Ok(c) => {
                        let c = c.take();
                        conn = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        ctx.redis_failed(m::RedisOp::Settle, &e);
                        tokio::time::sleep(backoff.next()).await;
                        continue;
                    }
                },
            };
            let disable_after = ctx.cfg.disable_after;
            let default_limit = herald_core::DEFAULT_MAX_IN_FLIGHT;
            let rounds = pending.iter().map(|(shard, batch)| {
                let mut c = c.clone();
                let store = &ctx.store;
                async move {
                    let result = store
                        .settle(
                            &mut c,
                            *shard,
                            &batch.settlements,
                            disable_after,
                            default_limit,
                        )
                        .await;
                    (*shard, result)
                }
            });
            let results = futures::future::join_all(rounds).await;
            let mut failed = false;
            for (shard, result) in results {
                match result {
                    Ok(report) => {
                        let batch = pending.remove(&shard).expect("shard was pending");
                        record(shard, &batch, &report.applied);
                        for endpoint in &report.disabled {
                            metrics::counter!(m::ENDPOINTS_DISABLED).increment(1);
                            warn!(endpoint_id = %endpoint, "endpoint disabled; its jobs are parked until it is enabled");
                        }
                        // An endpoint that was at its limit has a free slot: any idle worker
                        // may claim for it now (0 reads "due now").
                        let wake_at = match (report.unblocked > 0, report.next_due_ms) {
                            (true, _) => Some(0),
                            (false, at) => at,
                        };
                        if let Some(at) = wake_at {
                            let mut c = c.clone();
                            if let Err(e) = ctx.store.wake(&mut c, shard, at).await {
                                ctx.redis_failed(m::RedisOp::Wake, &e);
                            }
                        }
                    }
                    Err(e) => {
                        ctx.redis_failed(m::RedisOp::Settle, &e);
                        failed = true;
                    }
                }
            }
            if failed {
                conn = None;
                tokio::time::sleep(backoff.next()).await;
            } else {
                ctx.health.set_redis_ok(true);
                backoff.reset();
            }
        }
    }
}

/// The outcomes of one shard waiting to be written.
#[derive(Debug, Default)]
struct Batch {
    settlements: Vec<Settlement>,
    /// Bounded label for the discard metric, per settlement.
    discard_reasons: Vec<Option<m::DiscardReason>>,
}

fn record(shard: u16, batch: &Batch, applied: &[bool]) {
    let items = batch.settlements.iter().zip(&batch.discard_reasons);
    for ((settlement, discard_reason), ok) in items.zip(applied) {
        let kind = kind(&settlement.action);
        if !ok {
            m::stale(kind).increment(1);
            warn!(
                job_id = %settlement.id,
                shard,
                kind = kind.as_str(),
                "settlement refused: the lease expired and the job was taken back"
            );
            continue;
        }
        match &settlement.action {
            Settle::Discard { reason } => {
                m::discarded(discard_reason.unwrap_or(m::DiscardReason::Other)).increment(1);
                info!(job_id = %settlement.id, %reason, "job moved to the dead-letter store");
            }
            Settle::Release => metrics::counter!(m::RELEASED).increment(1),
            Settle::Ack | Settle::Retry { .. } => {}
        }
    }
}
