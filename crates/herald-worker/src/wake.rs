//! Waiting for wake-up hints on a Redis Cluster, where the hints of a deployment are spread over
//! several sets ([`herald_store::keys::WAKE_GROUPS`], in different slots and so on different
//! masters) and one `BZPOPMIN` cannot wait on all of them.
//!
//! One task per set blocks in `BZPOPMIN` on a connection of its own to the set's master while
//! the claim loop is idle, and passes what it pops to the claim loop; when the set's slot moves
//! or its master fails, the wait fails and the task connects to the set's master anew. A wait ends at a hint or after
//! [`BLOCK`]; the claim loop's timers and safety-net scan do not need it to end sooner, so an
//! idle worker sends one command per set per [`BLOCK`]. A wait that started while the claim
//! loop was idle may pop a hint after it got busy: the claim loop takes it as a hot shard like
//! any other, and hands it back if it has no free slot (see `claimer`).
//!
//! On one node the single set is waited on by the claim loop itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::telemetry as m;
use crate::{Backoff, Ctx};

/// How long one `BZPOPMIN` blocks at most. Its only other use is to notice a connection that
/// went silent without closing (a half-open flow answers nothing), which the wait's deadline
/// (this plus the response timeout) catches.
const BLOCK: Duration = Duration::from_secs(60);

/// Hints popped by the waiting tasks.
pub(crate) type Hints = herald_store::Woken;

/// The waiting tasks of one worker.
pub(crate) struct Waiters {
    hints: mpsc::Receiver<Hints>,
    idle: watch::Sender<bool>,
    _tasks: JoinSet<()>,
}

impl Waiters {
    /// One waiting task per wake-up hint set of the store; they stop at `shutdown`.
    pub(crate) fn start(ctx: &Arc<Ctx>, shutdown: &CancellationToken) -> Self {
        let (tx, hints) = mpsc::channel(64);
        let (idle, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (key, _) in ctx.store.wake_groups() {
            let waiter = Waiter {
                ctx: ctx.clone(),
                key: key.to_owned(),
                hints: tx.clone(),
                idle: idle.subscribe(),
                shutdown: shutdown.clone(),
            };
            tasks.spawn(waiter.run());
        }
        Waiters {
            hints,
            idle,
            _tasks: tasks,
        }
    }

    /// Waits up to `wait` for hints while the claim loop is idle (the tasks block only then).
    pub(crate) async fn wait(&mut self, wait: Duration) -> Option<Hints> {
        self.idle.send_replace(true);
        let hints = tokio::time::timeout(wait, self.hints.recv())
            .await
            .ok()
            .flatten();
        self.idle.send_replace(false);
        hints
    }

    /// The claim loop is busy: the tasks start no new wait.
    pub(crate) fn busy(&self) {
        self.idle.send_replace(false);
    }

    /// Hints popped while the claim loop was busy.
    pub(crate) fn popped(&mut self) -> Hints {
        let mut all = Hints::default();
        while let Ok(hints) = self.hints.try_recv() {
            all.extend(hints);
        }
        all
    }
}

/// One task blocking on one hint set.
struct Waiter {
    ctx: Arc<Ctx>,
    key: String,
    hints: mpsc::Sender<Hints>,
    idle: watch::Receiver<bool>,
    shutdown: CancellationToken,
}

impl Waiter {
    async fn run(mut self) {
        let mut conn = None;
        let mut backoff = Backoff::new(Duration::from_millis(50), crate::RECONNECT_AT_MOST);
        loop {
            tokio::select! {
                idle = self.idle.wait_for(|idle| *idle) => if idle.is_err() { return },
                _ = self.shutdown.cancelled() => return,
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match self.ctx.store.dedicated_to(&self.key, None).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        self.ctx.redis_failed(m::RedisOp::Wait, &e);
                        self.pause(backoff.next()).await;
                        continue;
                    }
                },
            };
            tokio::select! {
                popped = self.ctx.store.wait_wake(c, &self.key, BLOCK) => match popped {
                    Ok(popped) => {
                        self.ctx.health.set_redis_ok(true);
                        backoff.reset();
                        if !popped.is_empty() && self.hints.send(popped).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        self.ctx.redis_failed(m::RedisOp::Wait, &e);
                        conn = None;
                        self.pause(backoff.next()).await;
                    }
                },
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }
}
