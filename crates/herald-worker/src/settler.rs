//! The settler: writes the outcomes of finished deliveries back to Redis, batched per shard,
//! and keeps trying through Redis outages (a settlement that arrives after its lease expired
//! is refused by the store and counted; the job then goes round again: at-least-once).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt as _};
use herald_store::{Conn, Settle, Settlement, StoreError};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::delivery::Done;
use crate::telemetry as m;
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
///
/// Each shard's outcomes are written in order, one write per shard at a time, the shards side
/// by side and independently: a shard whose slot is moving between masters (or whose master
/// is failing over) holds back its own outcomes only, never the other shards' nor the
/// deliveries that wait to hand theirs over.
pub(crate) async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Done>) {
    let mut buf = Vec::with_capacity(BATCH);
    let mut pending: BTreeMap<u16, Batch> = BTreeMap::new();
    let mut writing: FuturesUnordered<BoxFuture<'static, Write>> = FuturesUnordered::new();
    let mut busy: BTreeSet<u16> = BTreeSet::new();
    let mut conn: Option<Conn> = None;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let mut open = true;
    loop {
        // Start a write for every shard with outcomes, no write under way and no retry pause.
        let now = Instant::now();
        let ready: Vec<u16> = pending
            .iter()
            .filter(|(shard, batch)| !busy.contains(shard) && batch.retry_at <= now)
            .map(|(shard, _)| *shard)
            .collect();
        if !ready.is_empty() {
            match connection(&ctx, &mut conn).await {
                Some(c) => {
                    for shard in ready {
                        let batch = pending.remove(&shard).expect("a pending shard");
                        busy.insert(shard);
                        writing.push(Box::pin(write(ctx.clone(), c.clone(), shard, batch)));
                    }
                }
                None => {
                    let at = Instant::now() + backoff.next();
                    pending.values_mut().for_each(|b| b.retry_at = at);
                }
            }
        }
        if !open && pending.is_empty() && writing.is_empty() {
            return;
        }
        let next_retry = pending
            .iter()
            .filter(|(shard, _)| !busy.contains(shard))
            .map(|(_, b)| b.retry_at)
            .min();
        tokio::select! {
            n = rx.recv_many(&mut buf, BATCH), if open => {
                open = n > 0;
                for done in buf.drain(..) {
                    let batch = pending.entry(done.shard).or_default();
                    batch.settlements.push(done.settlement);
                    batch.discard_reasons.push(done.discard_reason);
                    batch.unconfirmed.push(false);
                }
            }
            Some(w) = writing.next(), if !writing.is_empty() => {
                busy.remove(&w.shard);
                match w.result {
                    Ok(()) => {
                        ctx.health.set_redis_ok(true);
                        backoff.reset();
                    }
                    Err((e, mut batch)) => {
                        ctx.redis_failed(m::RedisOp::Settle, &e);
                        if !crate::is_slot_moving(&e) {
                            conn = None;
                        }
                        // The failed outcomes go before those that came meanwhile. Redis may
                        // have run the failed write all the same (it answered too late).
                        batch.retry_at = Instant::now() + backoff.next();
                        batch.unconfirmed.iter_mut().for_each(|u| *u = true);
                        if let Some(newer) = pending.remove(&w.shard) {
                            batch.settlements.extend(newer.settlements);
                            batch.discard_reasons.extend(newer.discard_reasons);
                            batch.unconfirmed.extend(newer.unconfirmed);
                        }
                        pending.insert(w.shard, batch);
                    }
                }
            }
            _ = sleep_until(next_retry), if next_retry.is_some() => {}
        }
    }
}

/// The connection writes go on, opened when there is none; `None` when Redis is unreachable.
async fn connection(ctx: &Ctx, conn: &mut Option<Conn>) -> Option<Conn> {
    if let Some(c) = conn {
        return Some(c.clone());
    }
    match ctx.store.conn().await {
        Ok(c) => Some(conn.insert(c.take()).clone()),
        Err(e) => {
            ctx.redis_failed(m::RedisOp::Settle, &e);
            None
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// The end of one shard's write: done, or the error and the outcomes still to write.
struct Write {
    shard: u16,
    result: Result<(), (StoreError, Batch)>,
}

/// Writes one shard's outcomes, and what follows from them (metrics, logs, a wake-up hint).
async fn write(ctx: Arc<Ctx>, mut c: Conn, shard: u16, batch: Batch) -> Write {
    let result = ctx
        .store
        .settle(
            &mut c,
            shard,
            &batch.settlements,
            ctx.cfg.disable_after,
            herald_core::DEFAULT_MAX_IN_FLIGHT,
        )
        .await;
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            return Write {
                shard,
                result: Err((e, batch)),
            }
        }
    };
    record(shard, &batch, &report.applied);
    for endpoint in &report.disabled {
        metrics::counter!(m::ENDPOINTS_DISABLED).increment(1);
        warn!(endpoint_id = %endpoint, "endpoint disabled; its jobs are parked until it is enabled");
    }
    // An endpoint that was at its limit has a free slot: any idle worker may claim for it now
    // (0 reads "due now").
    let wake_at = match (report.unblocked > 0, report.next_due_ms) {
        (true, _) => Some(0),
        (false, at) => at,
    };
    if let Some(at) = wake_at {
        if let Err(e) = ctx.store.wake(&mut c, shard, at).await {
            ctx.redis_failed(m::RedisOp::Wake, &e);
        }
    }
    Write {
        shard,
        result: Ok(()),
    }
}

/// The outcomes of one shard waiting to be written.
#[derive(Debug)]
struct Batch {
    /// Not written before this (a pause after a failed write).
    retry_at: Instant,
    settlements: Vec<Settlement>,
    /// Bounded label for the discard metric, per settlement.
    discard_reasons: Vec<Option<m::DiscardReason>>,
    /// Per settlement: an earlier write of it failed, and Redis may have applied it anyway
    /// (a write that timed out on this side still runs when Redis gets to it).
    unconfirmed: Vec<bool>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            retry_at: Instant::now(),
            settlements: Vec::new(),
            discard_reasons: Vec::new(),
            unconfirmed: Vec::new(),
        }
    }
}

fn record(shard: u16, batch: &Batch, applied: &[bool]) {
    let items = batch
        .settlements
        .iter()
        .zip(&batch.discard_reasons)
        .zip(&batch.unconfirmed);
    for (((settlement, discard_reason), unconfirmed), ok) in items.zip(applied) {
        let kind = kind(&settlement.action);
        if !ok && *unconfirmed {
            // Most likely the earlier write, which Redis ran after this worker gave up on it;
            // or the lease ran out meanwhile and the job was taken back. Not told apart.
            metrics::counter!(m::UNCONFIRMED).increment(1);
            debug!(
                job_id = %settlement.id,
                shard,
                kind = kind.as_str(),
                "settlement written again after a failed write found its lease gone: the failed write was applied, or the job was taken back"
            );
            continue;
        }
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
