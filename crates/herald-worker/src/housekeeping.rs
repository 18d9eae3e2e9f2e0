//! Housekeeping, in a task of its own beside the claim loop: keeps every shard's dead-letter
//! store within its bounds (count and age) and discards parked jobs past the retry window.
//!
//! Each round goes on in steps of [`STEP`] entries per script call until a shard is within its
//! bounds, so a mass discard (an endpoint with a million parked jobs deleted) is trimmed within
//! one round rather than a thousand entries per round; the claim loop never waits for it.
//! Several shards are worked on at once, so that on a cluster every master works at once.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use herald_store::{Conn, StoreError};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::telemetry as m;
use crate::Ctx;

/// Time between two rounds; jittered by ±20 % so that workers spread theirs.
const EVERY: Duration = Duration::from_secs(300);

/// Time before the next round after a round that Redis failed.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Most dead-letter entries one script call removes: about a millisecond of Redis.
const STEP: u64 = 1000;

/// Shards worked on at once.
const PARALLEL_SHARDS: usize = 8;

/// Runs rounds until `shutdown` is cancelled: the first at once, then every [`EVERY`].
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut conn: Option<Conn> = None;
    loop {
        let next = match round(&ctx, &mut conn, &shutdown).await {
            true => EVERY.mul_f64(rand::rng().random_range(0.8..=1.2)),
            false => RETRY_AFTER,
        };
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// One round over every shard. False when Redis failed (the round is taken again soon).
async fn round(ctx: &Ctx, conn: &mut Option<Conn>, shutdown: &CancellationToken) -> bool {
    let c = match conn.as_mut() {
        Some(c) => c,
        None => match ctx.store.conn().await {
            Ok(c) => conn.insert(c.take()),
            Err(e) => {
                ctx.redis_failed(m::RedisOp::Housekeeping, &e);
                return false;
            }
        },
    };
    let shards = u64::from(ctx.store.shards());
    let keep = ctx.cfg.dead_max.div_ceil(shards);
    // Several shards at once: on a cluster their masters work side by side.
    let mut rounds = futures::stream::iter(0..ctx.store.shards())
        .map(|shard| shard_round(ctx, c.clone(), shard, keep, shutdown))
        .buffer_unordered(PARALLEL_SHARDS);
    let mut failed = None;
    while let Some(result) = rounds.next().await {
        if let Err(e) = result {
            failed = Some(e);
            break;
        }
    }
    drop(rounds);
    match failed {
        None => true,
        Some((op, e)) => {
            ctx.redis_failed(op, &e);
            *conn = None;
            false
        }
    }
}

/// One shard's round: its dead letters trimmed to `keep`, its parked jobs past the window
/// discarded. The failing operation and its error when Redis failed.
async fn shard_round(
    ctx: &Ctx,
    mut c: Conn,
    shard: u16,
    keep: u64,
    shutdown: &CancellationToken,
) -> Result<(), (m::RedisOp, StoreError)> {
    let mut trimmed = 0;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let n = ctx
            .store
            .trim_dead(&mut c, shard, keep, ctx.cfg.dead_max_age, STEP)
            .await
            .map_err(|e| (m::RedisOp::Trim, e))?;
        trimmed += n;
        if n < STEP {
            break;
        }
    }
    if trimmed > 0 {
        debug!(shard, removed = trimmed, "dead-letter store trimmed");
    }
    let n = ctx
        .store
        .sweep_parked(&mut c, shard, ctx.cfg.retry.window())
        .await
        .map_err(|e| (m::RedisOp::Sweep, e))?;
    if n > 0 {
        m::discarded(m::DiscardReason::ParkedTooLong).increment(n);
        debug!(
            shard,
            discarded = n,
            "parked jobs past the retry window discarded"
        );
    }
    Ok(())
}
