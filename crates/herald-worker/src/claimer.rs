//! The claim loop: decides which shard to claim from, waits for capacity and for work without
//! hammering Redis, and starts a delivery task per claimed job.
//!
//! Where work is comes from three sources: wake-up hints (`BZPOPMIN` on the namespace's wake
//! set, written by producers and by retries), what each claim answers about the shard's next
//! due job and lease deadline (kept as local timers), and a jittered safety-net scan of every
//! shard. An idle worker therefore costs one blocking command per wake-up or poll interval plus
//! one scan (one script call per shard) per poll interval. At shutdown a worker writes what only
//! it knew (hints it popped, timers) back as hints.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::delivery::{self, Done};
use crate::metrics as m;
use crate::{Backoff, Ctx};

/// Time between two rounds of housekeeping (dead-letter bounds, parked jobs past the retry
/// window); jittered like the scan.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(300);

fn local_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Which shards to claim from next.
#[derive(Debug)]
struct ShardQueue {
    hot: VecDeque<u16>,
    is_hot: Vec<bool>,
    /// (Redis time in ms, shard): the shard may have work at that time.
    timers: BinaryHeap<Reverse<(i64, u16)>>,
}

impl ShardQueue {
    fn new(shards: u16) -> Self {
        Self {
            hot: VecDeque::new(),
            is_hot: vec![false; usize::from(shards)],
            timers: BinaryHeap::new(),
        }
    }

    fn mark_hot(&mut self, shard: u16) {
        if !self.is_hot[usize::from(shard)] {
            self.is_hot[usize::from(shard)] = true;
            self.hot.push_back(shard);
        }
    }

    /// Every shard, starting at a random one so that workers spread out.
    fn all_hot(&mut self) {
        let n = self.is_hot.len() as u16;
        let start = rand::rng().random_range(0..n);
        for i in 0..n {
            self.mark_hot((start + i) % n);
        }
    }

    fn at(&mut self, shard: u16, at_ms: i64) {
        self.timers.push(Reverse((at_ms, shard)));
    }

    fn promote(&mut self, now_ms: i64) {
        while let Some(Reverse((at, shard))) = self.timers.peek().copied() {
            if at > now_ms {
                break;
            }
            self.timers.pop();
            self.mark_hot(shard);
        }
    }

    fn next(&mut self) -> Option<u16> {
        let shard = self.hot.pop_front()?;
        self.is_hot[usize::from(shard)] = false;
        Some(shard)
    }

    fn next_timer(&self) -> Option<i64> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }
}

/// Most shards claimed from in one round trip.
const MAX_PARALLEL_CLAIMS: usize = 16;

/// Fewest jobs a claim asks for when capacity is shared between shards: below that, the
/// per-call cost of the claim script outweighs serving one more shard at once.
const MIN_SHARE: usize = 50;

/// How many jobs to ask of each of up to `shards` hot shards, given `permits` free delivery
/// slots and at most `batch` jobs per claim: one entry per shard to claim from now (at least
/// one), each at least [`MIN_SHARE`] (or everything when fewer permits are free), together
/// `permits` or less.
fn share(permits: usize, batch: usize, shards: usize) -> Vec<usize> {
    let n = (permits / MIN_SHARE).clamp(1, shards.max(1));
    (0..n)
        .map(|i| (permits / n + usize::from(i < permits % n)).min(batch))
        .collect()
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.8..=1.2))
}

/// Claims and starts deliveries until `shutdown`; returns the deliveries still running.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    done: mpsc::Sender<Done>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
) -> JoinSet<()> {
    let cfg = &ctx.cfg;
    let shards = ctx.store.shards();
    let sem = Arc::new(Semaphore::new(cfg.concurrency));
    let mut tasks = JoinSet::new();
    let mut queue = ShardQueue::new(shards);
    let mut targets = delivery::Targets::default();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut blocking: Option<MultiplexedConnection> = None;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    let mut next_scan = Instant::now();
    let mut next_housekeeping = Instant::now();
    // Redis clock minus local clock, learned from each claim.
    let mut offset_ms: i64 = 0;

    loop {
        while tasks.try_join_next().is_some() {}
        if shutdown.is_cancelled() {
            break;
        }
        if Instant::now() >= next_scan {
            queue.all_hot();
            next_scan = Instant::now() + jittered(cfg.poll_interval);
        }
        if Instant::now() >= next_housekeeping {
            next_housekeeping = Instant::now() + jittered(HOUSEKEEPING_EVERY);
            housekeeping(&ctx, &mut conn).await;
        }
        queue.promote(local_ms() + offset_ms);

        let Some(first) = queue.next() else {
            // Idle: wait for a hint, a timer or the next scan.
            let until_scan = next_scan.saturating_duration_since(Instant::now());
            let until_timer = queue
                .next_timer()
                .map(|at| Duration::from_millis((at - local_ms() - offset_ms).max(0) as u64))
                .unwrap_or(until_scan);
            let wait = until_scan.min(until_timer);
            if wait < Duration::from_millis(1) {
                continue;
            }
            let c = match blocking.as_mut() {
                Some(c) => c,
                None => match ctx.store.dedicated(None).await {
                    Ok(c) => blocking.insert(c),
                    Err(e) => {
                        ctx.redis_failed("wait", &e);
                        pause(&shutdown, backoff.next()).await;
                        continue;
                    }
                },
            };
            tokio::select! {
                hints = ctx.store.wait_wake(c, wait) => match hints {
                    Ok(hints) => {
                        ctx.health.set_redis_ok(true);
                        let now = local_ms() + offset_ms;
                        for (shard, at) in hints {
                            if at <= now {
                                queue.mark_hot(shard);
                            } else {
                                queue.at(shard, at);
                            }
                        }
                    }
                    Err(e) => {
                        ctx.redis_failed("wait", &e);
                        blocking = None;
                        pause(&shutdown, backoff.next()).await;
                    }
                },
                _ = shutdown.cancelled() => break,
            }
            continue;
        };

        // Capacity: at least one free delivery slot, and up to a batch for each hot shard.
        let mut picked = vec![first];
        while picked.len() < MAX_PARALLEL_CLAIMS {
            match queue.next() {
                Some(shard) => picked.push(shard),
                None => break,
            }
        }
        let mut permit = tokio::select! {
            p = sem.clone().acquire_many_owned(1) => p.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => {
                picked.into_iter().for_each(|s| queue.mark_hot(s));
                break;
            }
        };
        let extra = sem
            .available_permits()
            .min((cfg.claim_batch * picked.len()).saturating_sub(1)) as u32;
        if extra > 0 {
            if let Ok(more) = sem.clone().try_acquire_many_owned(extra) {
                permit.merge(more);
            }
        }
        let wants = share(permit.num_permits(), cfg.claim_batch, picked.len());
        for shard in picked.drain(wants.len()..) {
            queue.mark_hot(shard);
        }

        let c = match conn.as_mut() {
            Some(c) => c,
            None => match ctx.store.conn().await {
                Ok(c) => conn.insert(deadpool_redis::Connection::take(c)),
                Err(e) => {
                    ctx.redis_failed("claim", &e);
                    picked.into_iter().for_each(|s| queue.mark_hot(s));
                    drop(permit);
                    pause(&shutdown, backoff.next()).await;
                    continue;
                }
            },
        };
        // The claims of every picked shard go out together on the multiplexed connection.
        let claims = picked.iter().zip(&wants).map(|(&shard, &want)| {
            let mut c = c.clone();
            let store = &ctx.store;
            async move {
                let claim = store
                    .claim(&mut c, shard, want, cfg.lease, cfg.retry.max_attempts())
                    .await;
                (shard, want, claim)
            }
        });
        let mut failed = false;
        for (shard, want, claim) in futures::future::join_all(claims).await {
            let claim = match claim {
                Ok(claim) => claim,
                Err(e) => {
                    ctx.redis_failed("claim", &e);
                    failed = true;
                    queue.mark_hot(shard);
                    continue;
                }
            };
            offset_ms = claim.now_ms - local_ms();
            if claim.expired > 0 {
                metrics::counter!(m::LEASES_EXPIRED).increment(claim.expired);
                debug!(shard, expired = claim.expired, "expired leases taken back");
            }
            if claim.discarded > 0 {
                metrics::counter!(m::DISCARDED, "reason" => "claim").increment(claim.discarded);
            }
            let got = claim.jobs.len();
            metrics::counter!(m::CLAIMED).increment(got as u64);
            for job in claim.jobs {
                let p = permit.split(1).expect("one permit per claimed job");
                let target = targets.get(&job);
                tasks.spawn(delivery::run(
                    ctx.clone(),
                    shard,
                    claim.now_ms,
                    job,
                    target,
                    p,
                    done.clone(),
                    hard_stop.clone(),
                ));
            }
            match claim.next_due_ms {
                Some(at) if at <= claim.now_ms => {
                    queue.mark_hot(shard);
                    if got == want {
                        // More is due than this worker can take: wake another one.
                        if let Err(e) = ctx.store.wake(c, shard, claim.now_ms).await {
                            ctx.redis_failed("wake", &e);
                        }
                    }
                }
                Some(at) => queue.at(shard, at),
                None => {}
            }
            if let Some(deadline) = claim.next_lease_deadline_ms {
                queue.at(shard, deadline + 1);
            }
        }
        drop(permit);
        if failed {
            conn = None;
            pause(&shutdown, backoff.next()).await;
        } else {
            ctx.health.set_redis_ok(true);
            backoff.reset();
        }
    }
    hand_back_hints(&ctx, &mut conn, &mut queue, local_ms() + offset_ms).await;
    tasks
}

/// Writes what this worker alone knows (hot shards, timers from popped hints and claims) back
/// as wake-up hints, so that other workers pick it up without waiting for their scan.
async fn hand_back_hints(
    ctx: &Ctx,
    conn: &mut Option<MultiplexedConnection>,
    queue: &mut ShardQueue,
    now_ms: i64,
) {
    let Some(c) = conn.as_mut() else { return };
    let mut earliest: std::collections::BTreeMap<u16, i64> = Default::default();
    while let Some(shard) = queue.next() {
        earliest.insert(shard, now_ms);
    }
    while let Some(Reverse((at, shard))) = queue.timers.pop() {
        let slot = earliest.entry(shard).or_insert(at);
        *slot = (*slot).min(at);
    }
    for (shard, at) in earliest {
        if let Err(e) = ctx.store.wake(c, shard, at).await {
            ctx.redis_failed("wake", &e);
            return;
        }
    }
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Bounds the dead-letter store of every shard (by count share and by age), and discards
/// parked jobs older than the retry window.
async fn housekeeping(ctx: &Ctx, conn: &mut Option<MultiplexedConnection>) {
    let c = match conn.as_mut() {
        Some(c) => c,
        None => match ctx.store.conn().await {
            Ok(c) => conn.insert(deadpool_redis::Connection::take(c)),
            Err(e) => {
                ctx.redis_failed("housekeeping", &e);
                return;
            }
        },
    };
    let shards = u64::from(ctx.store.shards());
    let keep = ctx.cfg.dead_max.div_ceil(shards);
    for shard in 0..ctx.store.shards() {
        match ctx
            .store
            .trim_dead(c, shard, keep, ctx.cfg.dead_max_age, 1000)
            .await
        {
            Ok(0) => {}
            Ok(n) => debug!(shard, removed = n, "dead-letter store trimmed"),
            Err(e) => {
                ctx.redis_failed("trim", &e);
                *conn = None;
                return;
            }
        }
        match ctx
            .store
            .sweep_parked(c, shard, ctx.cfg.retry.window())
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!(m::DISCARDED, "reason" => "parked_too_long").increment(n);
                debug!(
                    shard,
                    discarded = n,
                    "parked jobs past the retry window discarded"
                );
            }
            Err(e) => {
                ctx.redis_failed("sweep", &e);
                *conn = None;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_shared_between_hot_shards_in_useful_batches() {
        assert_eq!(share(200, 100, 1), [100]);
        assert_eq!(share(200, 100, 3), [67, 67, 66]);
        assert_eq!(share(200, 100, 16), [50, 50, 50, 50]);
        assert_eq!(share(1, 100, 5), [1]);
        assert_eq!(share(120, 100, 16), [60, 60]);
        assert_eq!(share(49, 100, 16), [49]);
        assert_eq!(share(1000, 100, 4), [100, 100, 100, 100]);
        for (permits, shards) in [(1, 1), (17, 3), (199, 16), (5000, 16)] {
            let wants = share(permits, 100, shards);
            assert!(!wants.is_empty() && wants.len() <= shards);
            assert!(wants.iter().sum::<usize>() <= permits);
            assert!(wants.iter().all(|w| *w >= 1 && *w <= 100));
        }
    }

    #[test]
    fn shard_queue_dedupes_and_promotes_timers_in_order() {
        let mut q = ShardQueue::new(4);
        q.mark_hot(2);
        q.mark_hot(2);
        q.at(1, 100);
        q.at(3, 50);
        assert_eq!(q.next(), Some(2));
        assert_eq!(q.next(), None);
        q.promote(60);
        assert_eq!(q.next(), Some(3));
        assert_eq!(q.next_timer(), Some(100));
        q.promote(100);
        assert_eq!(q.next(), Some(1));
        q.all_hot();
        let mut all: Vec<u16> = std::iter::from_fn(|| q.next()).collect();
        all.sort();
        assert_eq!(all, [0, 1, 2, 3]);
    }
}
