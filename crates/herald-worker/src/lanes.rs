//! The worker's delivery slots, in two lanes shared by time: the main lane
//! (`HERALD_CONCURRENCY`) for endpoints in good standing, and the slow lane
//! (`HERALD_SLOW_CONCURRENCY`) for endpoints judged slow. A delivery still unanswered after
//! `HERALD_SLOW_AFTER` judges its endpoint slow, fleet-wide (the `slow` field of its flow
//! record), and leaves the main lane at once: for a slot of the slow lane if one is free, else
//! as overflow (`WorkerConfig::slow_overflow`: a socket each, no slot). Claims then serve that
//! endpoint from slow lanes only while it has deliveries in flight; with none, it gets one job
//! from the main lane (a probe). A delivery to it that comes back within `HERALD_SLOW_AFTER`
//! judges it fast again.
//!
//! So a receiver that hangs or crawls holds a main-lane slot for `HERALD_SLOW_AFTER` at most,
//! however many such receivers there are, and they share the slow lane among themselves; see
//! "Many receivers down at once" in `docs/SCALING.md` for the arithmetic.
//!
//! The verdicts are written by one task ([`run_judge`]), batched per shard and deduplicated,
//! so that an endpoint's thousand slow deliveries cost one write, not a thousand.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use crate::telemetry as m;
use crate::Ctx;

/// A worker writes the same verdict on an endpoint at most once in this time.
const VERDICT_EVERY: Duration = Duration::from_secs(1);

/// Verdicts waiting to be written, at most; more are dropped (the next delivery repeats them).
const VERDICT_QUEUE: usize = 4096;

/// The two lanes of one worker.
#[derive(Debug)]
pub(crate) struct Lanes {
    /// One permit per main-lane slot (`HERALD_CONCURRENCY`).
    pub main: Arc<Semaphore>,
    /// One permit per slow-lane slot (`HERALD_SLOW_CONCURRENCY`).
    pub slow: Arc<Semaphore>,
    /// Deliveries that left the main lane with no slow-lane slot free.
    overflow: AtomicUsize,
    overflow_cap: usize,
    /// Deliveries in the slow lane, overflow included, for the gauge.
    gauge: metrics::Gauge,
}

impl Lanes {
    /// Lanes of `main` and `slow` slots, and room for `overflow` deliveries that leave the main
    /// lane with the slow one full (past it, a slow delivery keeps its main-lane slot).
    pub fn new(main: usize, slow: usize, overflow: usize) -> Arc<Self> {
        Arc::new(Self {
            main: Arc::new(Semaphore::new(main)),
            slow: Arc::new(Semaphore::new(slow)),
            overflow: AtomicUsize::new(0),
            overflow_cap: overflow,
            gauge: metrics::gauge!(m::SLOW_LANE),
        })
    }

    /// The slot of a job the claim leased from the slow lane.
    pub fn slow_slot(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        Slot::Slow {
            _permit: permit,
            _counted: InSlowLane::enter(self),
        }
    }

    /// Takes a slow-lane slot, or an overflow one, for a delivery leaving the main lane.
    fn leave_main(self: &Arc<Self>) -> Option<Slot> {
        if let Ok(permit) = self.slow.clone().try_acquire_owned() {
            return Some(self.slow_slot(permit));
        }
        self.overflow
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.overflow_cap).then_some(n + 1)
            })
            .ok()?;
        Some(Slot::Overflow {
            _counted: Overflow(InSlowLane::enter(self)),
        })
    }
}

/// A delivery counted in the slow lane's gauge while it lives.
#[derive(Debug)]
pub(crate) struct InSlowLane(Arc<Lanes>);

impl InSlowLane {
    fn enter(lanes: &Arc<Lanes>) -> Self {
        lanes.gauge.increment(1.0);
        Self(lanes.clone())
    }
}

impl Drop for InSlowLane {
    fn drop(&mut self) {
        self.0.gauge.decrement(1.0);
    }
}

/// A delivery in the slow lane's overflow while it lives.
#[derive(Debug)]
pub(crate) struct Overflow(InSlowLane);

impl Drop for Overflow {
    fn drop(&mut self) {
        self.0 .0.overflow.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The slot a delivery holds; it comes free when the delivery ends (the value is dropped,
/// and with it what it holds).
#[derive(Debug)]
pub(crate) enum Slot {
    Main(OwnedSemaphorePermit),
    Slow {
        _permit: OwnedSemaphorePermit,
        _counted: InSlowLane,
    },
    Overflow {
        _counted: Overflow,
    },
}

impl Slot {
    /// The delivery outlasted `HERALD_SLOW_AFTER`: a main-lane slot is given up for a
    /// slow-lane or overflow one (when the overflow is full, it is kept).
    pub fn went_slow(self, lanes: &Arc<Lanes>) -> Slot {
        match self {
            Slot::Main(permit) => match lanes.leave_main() {
                Some(slot) => slot,
                None => Slot::Main(permit),
            },
            other => other,
        }
    }
}

/// One worker's verdict on one endpoint's speed.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub shard: u16,
    pub endpoint: String,
    pub slow: bool,
}

/// Where deliveries hand their verdicts.
#[derive(Debug, Clone)]
pub(crate) struct Judge(mpsc::Sender<Verdict>);

impl Judge {
    pub fn channel() -> (Self, mpsc::Receiver<Verdict>) {
        let (tx, rx) = mpsc::channel(VERDICT_QUEUE);
        (Self(tx), rx)
    }

    /// Hands a verdict over without waiting; a full queue drops it (the endpoint's next
    /// delivery gives it again).
    pub fn tell(&self, shard: u16, endpoint: &str, slow: bool) {
        let _ = self.0.try_send(Verdict {
            shard,
            endpoint: endpoint.to_owned(),
            slow,
        });
    }
}

/// Writes verdicts until every [`Judge`] is dropped: those received together go out as one
/// call per shard; a verdict this worker wrote less than [`VERDICT_EVERY`] ago is skipped. A
/// write that fails is not retried: verdicts are hints that the next delivery repeats.
pub(crate) async fn run_judge(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Verdict>) {
    let mut written: HashMap<String, (bool, Instant)> = HashMap::new();
    let mut buf = Vec::with_capacity(256);
    while rx.recv_many(&mut buf, 256).await > 0 {
        let now = Instant::now();
        let mut by_shard: BTreeMap<u16, Vec<(String, bool)>> = BTreeMap::new();
        for v in buf.drain(..) {
            if let Some((slow, at)) = written.get(&v.endpoint) {
                if *slow == v.slow && now.duration_since(*at) < VERDICT_EVERY {
                    continue;
                }
            }
            written.insert(v.endpoint.clone(), (v.slow, now));
            let verdicts = by_shard.entry(v.shard).or_default();
            verdicts.retain(|(e, _)| *e != v.endpoint);
            verdicts.push((v.endpoint, v.slow));
        }
        if written.len() > 10_000 {
            written.retain(|_, (_, at)| now.duration_since(*at) < VERDICT_EVERY);
        }
        if by_shard.is_empty() {
            continue;
        }
        let mut conn = match ctx.store.conn().await {
            Ok(c) => c.take(),
            Err(e) => {
                ctx.redis_failed(m::RedisOp::Judge, &e);
                continue;
            }
        };
        for (shard, verdicts) in by_shard {
            match ctx.store.judge_speed(&mut conn, shard, &verdicts).await {
                Ok(changed) => {
                    if changed > 0 {
                        debug!(shard, changed, "endpoints judged slow or fast again");
                        metrics::counter!(m::SPEED_VERDICTS).increment(changed);
                    }
                }
                Err(e) => {
                    ctx.redis_failed(m::RedisOp::Judge, &e);
                    // Written again on the next slow delivery.
                    for (endpoint, _) in &verdicts {
                        written.remove(endpoint);
                    }
                }
            }
        }
    }
}
