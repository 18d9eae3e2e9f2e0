//! The claim loop: decides which shard to claim from, waits for capacity and for work without
//! hammering Redis, and starts a delivery task per claimed job. It takes only work it can
//! start: without a free delivery slot it pops no hint and leases no job, and hands the shards
//! it knows to be hot back to idle workers.
//!
//! Each claim of a shard names the endpoints the previous one answered as next (their queue
//! keys must be declared to the script); the store serves them endpoint by endpoint within
//! their limits. A claim carries two budgets: free main-lane slots for endpoints in good
//! standing, free slow-lane slots for endpoints judged slow (see `lanes`); it is sent only with
//! a free main-lane slot.
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

use futures::future::{BoxFuture, FutureExt as _};
use futures::stream::{FuturesUnordered, StreamExt as _};
use herald_core::DEFAULT_MAX_IN_FLIGHT;
use herald_store::Conn;
use herald_store::{Claim, Held};
use rand::Rng;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::delivery::{self, Done};
use crate::lanes::Slot;
use crate::telemetry as m;
use crate::wake::Waiters;
use crate::{Backoff, Ctx};

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

/// Most candidates a claim names: the 16 its shard's last claim answered, and endpoints named
/// by wake-up hints since.
const MAX_CANDIDATES: usize = 32;

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

/// `total` spread over `parts` as evenly as can be.
fn spread(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| total / parts + usize::from(i < total % parts))
        .collect()
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.8..=1.2))
}

/// How long a worker without a free delivery slot keeps its hot shards before it hands them
/// back as wake-up hints for an idle worker: long enough that an ordinary busy spell (slots
/// free up within milliseconds) costs nothing, short enough that work for healthy endpoints
/// does not wait behind deliveries that hang.
const HAND_BACK_AFTER: Duration = Duration::from_millis(20);

/// How long a shard whose claim met its slot in migration or failover waits before the next
/// try (the cluster client already retried it for a few seconds).
const SLOT_MOVING_RETRY_MS: i64 = 200;

/// Claims and starts deliveries until `shutdown`; returns the deliveries still running.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    done: mpsc::Sender<Done>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
) -> JoinSet<()> {
    let mut claimer = Claimer::new(ctx, done, shutdown, hard_stop);
    claimer.run().await;
    // Claims still under way have leased their jobs: they are delivered with the rest.
    while let Some(done) = claimer.claims.next().await {
        claimer.claimed(done).await;
    }
    claimer.hand_back_hints().await;
    claimer.tasks
}

/// What ended an idle wait on a cluster.
enum Woken {
    Hints(herald_store::Woken),
    Claimed(Box<ClaimDone>),
    Nothing,
}

/// A claim's answer, with the permits it was sent with (main lane, slow lane) and the
/// connection it went on.
struct ClaimDone {
    shard: u16,
    want: usize,
    claim: Result<Claim, herald_store::StoreError>,
    permit: OwnedSemaphorePermit,
    slow: Option<OwnedSemaphorePermit>,
    conn: Conn,
}

/// The claim loop's state: where work may be, the free delivery slots, the connections, and
/// the deliveries it started.
struct Claimer {
    ctx: Arc<Ctx>,
    done: mpsc::Sender<Done>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    /// One permit per main-lane slot (`HERALD_CONCURRENCY`); a claim asks only for jobs it
    /// holds permits for, and a delivery returns its permit when it ends.
    sem: Arc<Semaphore>,
    tasks: JoinSet<()>,
    queue: ShardQueue,
    /// Per shard, the endpoints its last claim named as next: the next claim serves them.
    candidates: Vec<Vec<String>>,
    targets: delivery::Targets,
    conn: Option<Conn>,
    /// The connection `BZPOPMIN` blocks on, with one hint set (one node).
    blocking: Option<Conn>,
    /// The tasks that wait on the hint sets, with several (a cluster).
    waiters: Option<Waiters>,
    /// Claims sent and not answered yet, and which shards they are of (a shard has one claim
    /// at a time).
    claims: FuturesUnordered<BoxFuture<'static, ClaimDone>>,
    claiming: Vec<bool>,
    /// Per shard, whether its last claim met its slot moving between masters.
    moving: Vec<bool>,
    backoff: Backoff,
    next_scan: Instant,
    /// Redis clock minus local clock, learned from each claim.
    offset_ms: i64,
}

impl Claimer {
    fn new(
        ctx: Arc<Ctx>,
        done: mpsc::Sender<Done>,
        shutdown: CancellationToken,
        hard_stop: CancellationToken,
    ) -> Self {
        let shards = ctx.store.shards();
        Self {
            sem: ctx.lanes.main.clone(),
            ctx,
            done,
            shutdown,
            hard_stop,
            tasks: JoinSet::new(),
            queue: ShardQueue::new(shards),
            candidates: vec![Vec::new(); usize::from(shards)],
            targets: delivery::Targets::default(),
            conn: None,
            blocking: None,
            waiters: None,
            claims: FuturesUnordered::new(),
            claiming: vec![false; usize::from(shards)],
            moving: vec![false; usize::from(shards)],
            backoff: Backoff::new(Duration::from_millis(50), crate::RECONNECT_AT_MOST),
            next_scan: Instant::now(),
            offset_ms: 0,
        }
    }

    fn redis_now(&self) -> i64 {
        local_ms() + self.offset_ms
    }

    async fn run(&mut self) {
        if self.ctx.store.wake_groups().len() > 1 {
            self.waiters = Some(Waiters::start(&self.ctx, &self.shutdown));
        }
        loop {
            while self.tasks.try_join_next().is_some() {}
            if self.shutdown.is_cancelled() {
                break;
            }
            self.take_popped();
            self.claimed_meanwhile().await;
            self.due_rounds().await;
            // Only work this worker can start: no hint popped, no job leased, without a free
            // delivery slot.
            if self.sem.available_permits() == 0 && !self.wait_for_slot().await {
                break;
            }
            if self.queue.hot.is_empty() {
                self.idle_wait().await;
            } else if !self.claim_round().await {
                break;
            }
        }
    }

    /// The safety-net scan, and timers that came due.
    async fn due_rounds(&mut self) {
        if Instant::now() >= self.next_scan {
            self.queue.all_hot();
            self.next_scan = Instant::now() + jittered(self.ctx.cfg.poll_interval);
        }
        self.queue.promote(self.redis_now());
    }

    /// Waits for a free delivery slot. Hot shards that wait longer than [`HAND_BACK_AFTER`] are
    /// handed back as wake-up hints, so that an idle worker serves them meanwhile. False on
    /// shutdown.
    async fn wait_for_slot(&mut self) -> bool {
        let sem = self.sem.clone();
        let slot = sem.acquire();
        tokio::pin!(slot);
        let mut handed_back = self.queue.hot.is_empty();
        loop {
            let done = tokio::select! {
                _ = &mut slot => return true,
                _ = self.shutdown.cancelled() => return false,
                Some(done) = self.claims.next(), if !self.claims.is_empty() => done,
                _ = tokio::time::sleep(HAND_BACK_AFTER), if !handed_back => {
                    handed_back = true;
                    self.take_popped();
                    self.hand_back_hot().await;
                    continue;
                }
            };
            self.claimed(done).await;
        }
    }

    /// Idle: waits for a wake-up hint, a timer or the next scan.
    async fn idle_wait(&mut self) {
        let until_scan = self.next_scan.saturating_duration_since(Instant::now());
        let until_timer = self
            .queue
            .next_timer()
            .map(|at| Duration::from_millis((at - self.redis_now()).max(0) as u64))
            .unwrap_or(until_scan);
        let wait = until_scan.min(until_timer);
        if wait < Duration::from_millis(1) {
            return;
        }
        if let Some(waiters) = self.waiters.as_mut() {
            let woken = tokio::select! {
                hints = waiters.wait(wait) => Woken::Hints(hints.unwrap_or_default()),
                Some(done) = self.claims.next(), if !self.claims.is_empty() => Woken::Claimed(Box::new(done)),
                _ = self.shutdown.cancelled() => Woken::Nothing,
            };
            waiters.busy();
            match woken {
                Woken::Hints(hints) => self.take_hints(hints),
                Woken::Claimed(done) => self.claimed(*done).await,
                Woken::Nothing => {}
            }
            return;
        }
        // One node: a claim answers within a round trip; take it in before blocking.
        if !self.claims.is_empty() {
            tokio::select! {
                Some(done) = self.claims.next() => self.claimed(done).await,
                _ = self.shutdown.cancelled() => {}
            }
            return;
        }
        let key = self.ctx.store.wake_key(0);
        let c = match self.blocking.as_mut() {
            Some(c) => c,
            None => match self.ctx.store.dedicated_to(key, None).await {
                Ok(c) => self.blocking.insert(c),
                Err(e) => {
                    self.ctx.redis_failed(m::RedisOp::Wait, &e);
                    pause(&self.shutdown, self.backoff.next()).await;
                    return;
                }
            },
        };
        tokio::select! {
            hints = self.ctx.store.wait_wake(c, key, wait) => match hints {
                Ok(hints) => {
                    self.ctx.health.set_redis_ok(true);
                    self.take_hints(hints);
                }
                Err(e) => {
                    self.ctx.redis_failed(m::RedisOp::Wait, &e);
                    self.blocking = None;
                    pause(&self.shutdown, self.backoff.next()).await;
                }
            },
            _ = self.shutdown.cancelled() => {}
        }
    }

    /// Hints the waiting tasks popped while this loop was busy (a cluster only).
    fn take_popped(&mut self) {
        if let Some(waiters) = self.waiters.as_mut() {
            let popped = waiters.popped();
            self.take_hints(popped);
        }
    }

    /// Where popped wake-up hints say work is: due now (hot) or later (a timer). Endpoints
    /// named by a hint join their shard's candidates, so that the next claim of the shard
    /// leases their jobs at once.
    fn take_hints(&mut self, hints: herald_store::Woken) {
        let now = self.redis_now();
        for (shard, endpoint) in hints.endpoints {
            let Some(candidates) = self.candidates.get_mut(usize::from(shard)) else {
                continue;
            };
            if candidates.len() < MAX_CANDIDATES
                && !candidates.iter().any(|c| c.as_str() == endpoint.as_str())
            {
                candidates.push(endpoint.as_str().to_owned());
            }
            self.queue.mark_hot(shard);
        }
        for (shard, at) in hints.shards {
            if at <= now {
                self.queue.mark_hot(shard);
            } else {
                self.queue.at(shard, at);
            }
        }
    }

    /// Claims from up to [`MAX_PARALLEL_CLAIMS`] hot shards in one round trip, as many jobs as
    /// there are free slots, and starts their deliveries. False on shutdown.
    async fn claim_round(&mut self) -> bool {
        let cfg = &self.ctx.cfg;
        let mut picked: Vec<u16> = Vec::new();
        let mut under_way: Vec<u16> = Vec::new();
        while picked.len() < MAX_PARALLEL_CLAIMS {
            match self.queue.next() {
                Some(shard) if self.claiming[usize::from(shard)] => under_way.push(shard),
                Some(shard) => picked.push(shard),
                None => break,
            }
        }
        // A shard with a claim under way waits for its answer; with nothing else to claim, the
        // loop waits as when idle (for that answer, a wake-up hint or a timer).
        under_way.into_iter().for_each(|s| self.queue.mark_hot(s));
        if picked.is_empty() {
            self.idle_wait().await;
            return !self.shutdown.is_cancelled();
        }
        let mut permit = tokio::select! {
            p = self.sem.clone().acquire_many_owned(1) => p.expect("the semaphore is never closed"),
            _ = self.shutdown.cancelled() => {
                picked.into_iter().for_each(|s| self.queue.mark_hot(s));
                return false;
            }
        };
        let extra = self
            .sem
            .available_permits()
            .min((cfg.claim_batch * picked.len()).saturating_sub(1)) as u32;
        if extra > 0 {
            if let Ok(more) = self.sem.clone().try_acquire_many_owned(extra) {
                permit.merge(more);
            }
        }
        let mut wants = share(permit.num_permits(), cfg.claim_batch, picked.len());
        for shard in picked.drain(wants.len()..) {
            self.queue.mark_hot(shard);
        }
        // A shard whose last claim met its slot moving asks for one job until a claim answers:
        // a claim held up holds its permits, which the other shards' deliveries need.
        for (want, &shard) in wants.iter_mut().zip(&picked) {
            if self.moving[usize::from(shard)] {
                *want = (*want).min(1);
            }
        }

        let c = match self.conn.as_mut() {
            Some(c) => c.clone(),
            None => match self.ctx.store.claims_conn().await {
                Ok(c) => self.conn.insert(c).clone(),
                Err(e) => {
                    self.ctx.redis_failed(m::RedisOp::Claim, &e);
                    picked.into_iter().for_each(|s| self.queue.mark_hot(s));
                    drop(permit);
                    pause(&self.shutdown, self.backoff.next()).await;
                    return true;
                }
            },
        };
        // The claims of every picked shard go out together on the multiplexed connection (on a
        // cluster, to each shard's master), each with its share of the permits; each one's
        // deliveries start as soon as it answers.
        let mut shares = Vec::with_capacity(picked.len());
        for &want in &wants {
            shares.push(permit.split(want).expect("the permits were shared out"));
        }
        drop(permit);
        let mut slow_shares = self.slow_shares(picked.len()).into_iter();
        for ((&shard, &want), share) in picked.iter().zip(&wants).zip(shares) {
            self.claiming[usize::from(shard)] = true;
            let mut c = c.clone();
            let ctx = self.ctx.clone();
            let candidates = self.candidates[usize::from(shard)].clone();
            let slow = slow_shares.next().flatten();
            self.claims.push(Box::pin(async move {
                let claim = ctx
                    .store
                    .claim_lanes(
                        &mut c,
                        shard,
                        want,
                        slow.as_ref().map_or(0, |p| p.num_permits()),
                        ctx.cfg.lease,
                        &candidates,
                        DEFAULT_MAX_IN_FLIGHT,
                    )
                    .await;
                ClaimDone {
                    shard,
                    want,
                    claim,
                    permit: share,
                    slow,
                    conn: c,
                }
            }));
        }
        // The round ends with the first answer and those already in; a claim held up (its
        // shard's slot moving between masters) goes on meanwhile, and is taken in later.
        tokio::select! {
            Some(done) = self.claims.next() => self.claimed(done).await,
            _ = self.shutdown.cancelled() => return false,
        }
        self.claimed_meanwhile().await;
        true
    }

    /// The free slow-lane slots, spread over the `shards` about to be claimed from (at most a
    /// claim batch each): one entry per shard, `None` for a shard that gets none.
    fn slow_shares(&self, shards: usize) -> Vec<Option<OwnedSemaphorePermit>> {
        let lane = &self.ctx.lanes.slow;
        let free = lane
            .available_permits()
            .min(self.ctx.cfg.claim_batch * shards);
        let Some(mut all) = (free > 0)
            .then(|| lane.clone().try_acquire_many_owned(free as u32).ok())
            .flatten()
        else {
            return (0..shards).map(|_| None).collect();
        };
        spread(free, shards)
            .into_iter()
            .map(|n| (n > 0).then(|| all.split(n).expect("the permits were spread out")))
            .collect()
    }

    /// Claims that answered since the loop last looked.
    async fn claimed_meanwhile(&mut self) {
        while let Some(Some(done)) = self.claims.next().now_or_never() {
            self.claimed(done).await;
        }
    }

    /// Takes one claim's answer: starts its deliveries, or notes what failed.
    async fn claimed(&mut self, done: ClaimDone) {
        let ClaimDone {
            shard,
            want,
            claim,
            mut permit,
            mut slow,
            conn,
        } = done;
        self.claiming[usize::from(shard)] = false;
        match claim {
            Ok(claim) => {
                self.ctx.health.set_redis_ok(true);
                self.backoff.reset();
                self.moving[usize::from(shard)] = false;
                self.apply(shard, want, claim, &mut permit, slow.as_mut(), &conn)
                    .await;
            }
            Err(e) if crate::is_slot_moving(&e) => {
                self.moving[usize::from(shard)] = true;
                // That shard's slot is being moved or failed over: the others go on, and this
                // one is tried again shortly, on the same connection.
                self.ctx.redis_failed(m::RedisOp::Claim, &e);
                self.queue
                    .at(shard, self.redis_now() + SLOT_MOVING_RETRY_MS);
            }
            Err(e) => {
                self.ctx.redis_failed(m::RedisOp::Claim, &e);
                self.queue.mark_hot(shard);
                self.conn = None;
                drop(permit);
                pause(&self.shutdown, self.backoff.next()).await;
            }
        }
    }

    /// Starts the deliveries of one claim and notes when its shard is worth another.
    async fn apply(
        &mut self,
        shard: u16,
        want: usize,
        claim: Claim,
        permit: &mut OwnedSemaphorePermit,
        mut slow: Option<&mut OwnedSemaphorePermit>,
        c: &Conn,
    ) {
        self.offset_ms = claim.now_ms - local_ms();
        if claim.discarded_gone > 0 {
            m::discarded(m::DiscardReason::EndpointGone).increment(claim.discarded_gone);
            info!(
                shard,
                discarded = claim.discarded_gone,
                "jobs of a deleted or unknown endpoint sent to the dead-letter store (herald dead list shows them)"
            );
        }
        if claim.discarded_malformed > 0 {
            m::discarded(m::DiscardReason::Malformed).increment(claim.discarded_malformed);
            warn!(
                shard,
                discarded = claim.discarded_malformed,
                "jobs with an unreadable record sent to the dead-letter store (herald dead list shows them)"
            );
        }
        record_held(&claim.held);
        let got = claim.jobs.iter().filter(|j| !j.slow).count();
        metrics::counter!(m::CLAIMED).increment(claim.jobs.len() as u64);
        for job in claim.jobs {
            let slot = match (job.slow, slow.as_deref_mut()) {
                (true, Some(slow)) => self
                    .ctx
                    .lanes
                    .slow_slot(slow.split(1).expect("one slow-lane permit per slow job")),
                _ => Slot::Main(permit.split(1).expect("one permit per claimed job")),
            };
            let target = self.targets.get(&job);
            self.tasks.spawn(delivery::run(
                self.ctx.clone(),
                shard,
                claim.now_ms,
                job,
                target,
                slot,
                self.done.clone(),
                self.hard_stop.clone(),
            ));
        }
        self.candidates[usize::from(shard)] = claim.candidates;
        match claim.next_ready_ms {
            Some(at) if at <= claim.now_ms => {
                self.queue.mark_hot(shard);
                if got == want {
                    // More is due than this worker can take: wake another one.
                    if let Err(e) = self
                        .ctx
                        .store
                        .wake(&mut c.clone(), shard, claim.now_ms)
                        .await
                    {
                        self.ctx.redis_failed(m::RedisOp::Wake, &e);
                    }
                }
            }
            Some(at) => self.queue.at(shard, at),
            None => {}
        }
        match claim.next_lease_deadline_ms {
            Some(deadline) if deadline <= claim.now_ms => self.expire(shard, claim.now_ms, c).await,
            Some(deadline) => self.queue.at(shard, deadline + 1),
            None => {}
        }
    }

    /// Takes back the shard's expired leases (their workers died or lost Redis).
    async fn expire(&mut self, shard: u16, now_ms: i64, c: &Conn) {
        let max_attempts = self.ctx.cfg.retry.max_attempts();
        match self
            .ctx
            .store
            .expire(&mut c.clone(), shard, now_ms, max_attempts)
            .await
        {
            Ok(expired) => {
                if expired.expired > 0 {
                    metrics::counter!(m::LEASES_EXPIRED).increment(expired.expired);
                    debug!(
                        shard,
                        expired = expired.expired,
                        "expired leases taken back"
                    );
                    self.queue.mark_hot(shard);
                }
                if expired.discarded > 0 {
                    m::discarded(m::DiscardReason::LeaseExpired).increment(expired.discarded);
                }
            }
            Err(e) => {
                self.ctx.redis_failed(m::RedisOp::Expire, &e);
                self.queue.mark_hot(shard);
            }
        }
    }

    /// Hands the hot shards to the wake set (this worker has no free slot for them).
    async fn hand_back_hot(&mut self) {
        let now = self.redis_now();
        let Some(c) = self.conn.as_mut() else { return };
        while let Some(shard) = self.queue.next() {
            if let Err(e) = self.ctx.store.wake(c, shard, now).await {
                self.ctx.redis_failed(m::RedisOp::Wake, &e);
                self.queue.mark_hot(shard);
                return;
            }
        }
    }

    /// Writes what this worker alone knows (hot shards, timers from popped hints and claims)
    /// back as wake-up hints, so that other workers pick it up without waiting for their scan.
    async fn hand_back_hints(&mut self) {
        self.take_popped();
        let now_ms = self.redis_now();
        let Some(c) = self.conn.as_mut() else { return };
        let queue = &mut self.queue;
        let mut earliest: std::collections::BTreeMap<u16, i64> = Default::default();
        while let Some(shard) = queue.next() {
            earliest.insert(shard, now_ms);
        }
        while let Some(Reverse((at, shard))) = queue.timers.pop() {
            let slot = earliest.entry(shard).or_insert(at);
            *slot = (*slot).min(at);
        }
        for (shard, at) in earliest {
            if let Err(e) = self.ctx.store.wake(c, shard, at).await {
                self.ctx.redis_failed(m::RedisOp::Wake, &e);
                return;
            }
        }
    }
}

/// Counts the endpoints a claim held back, by cause.
fn record_held(held: &Held) {
    let counts = [
        held.in_flight,
        held.adaptive,
        held.rate,
        held.pause,
        held.slow,
    ];
    for (cause, n) in m::HELD_BACK_CAUSES.into_iter().zip(counts) {
        if n > 0 {
            metrics::counter!(m::HELD_BACK, "cause" => cause).increment(n);
        }
    }
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.cancelled() => {}
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
    fn free_slow_lane_slots_are_spread_evenly() {
        assert_eq!(spread(10, 3), [4, 3, 3]);
        assert_eq!(spread(2, 4), [1, 1, 0, 0]);
        assert_eq!(spread(0, 2), [0, 0]);
        assert_eq!(spread(5, 0), [5]);
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
