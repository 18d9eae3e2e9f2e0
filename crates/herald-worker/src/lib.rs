//! herald's worker runtime: claims due jobs from Redis, POSTs them, and settles the outcome.
//!
//! - [`config`]: [`WorkerConfig`], the worker's settings and defaults.
//! - `claimer`: the claim loop (wake-up hints, timers, safety-net scan, capacity).
//! - `lanes`: the delivery slots in two lanes, main and slow, and the verdicts on endpoints'
//!   speed that decide which lane serves an endpoint.
//! - `delivery`: one delivery as a state machine, from claimed job to settlement.
//! - `settler`: batched, outage-proof writing of settlements.
//! - `housekeeping`: dead-letter bounds and parked jobs past the retry window, beside the
//!   claim loop.
//! - [`dns`]: the asynchronous caching resolver the HTTP client asks (through the guard).
//! - [`guard`]: the resolver that vets every answer with the SSRF guard ([`herald_core::guard`]).
//! - [`http`]: the shared HTTP client, the request, and the classification of failures.
//! - [`telemetry`]: metric names, and the `/metrics`, `/healthz`, `/readyz` server.
//! - `wake`: waiting on the wake-up hint sets of a Redis Cluster, one task per set.
//! - `sampler`: queue depth sampled by one worker at a time; start-up check of Redis durability.
//!
//! [`run`] is the whole worker: the `herald worker` command parses its configuration and
//! signals, then calls it; tests call it in-process.

use std::sync::Arc;
use std::time::Duration;

use herald_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

mod claimer;
pub mod config;
mod delivery;
pub mod dns;
pub mod guard;
mod housekeeping;
pub mod http;
mod lanes;
mod sampler;
mod settler;
pub mod telemetry;
mod wake;

pub use config::WorkerConfig;

/// How long the settler may keep trying after the last delivery finished at shutdown.
const SETTLE_DEADLINE: Duration = Duration::from_secs(10);

/// What the deliveries share.
pub(crate) struct Ctx {
    pub store: Store,
    pub cfg: WorkerConfig,
    pub client: http::Client,
    pub health: Arc<telemetry::Health>,
    pub hot: telemetry::Hot,
    /// When each endpoint last had a success written to its attempt log.
    pub successes: std::sync::Mutex<delivery::SuccessLog>,
    /// The delivery slots.
    pub lanes: Arc<lanes::Lanes>,
    /// Where deliveries tell what they saw of their endpoint's speed.
    pub judge: lanes::Judge,
}

impl Ctx {
    fn redis_failed(&self, op: telemetry::RedisOp, e: &StoreError) {
        self.health.set_redis_ok(false);
        telemetry::redis_errors(op).increment(1);
        warn!(op = op.as_str(), error = %e, "redis command failed; retrying with backoff");
    }
}

/// Whether a call failed because its shard's slot is moving between masters or failing over
/// (a Redis Cluster's `TRYAGAIN`, `ASK`, `MOVED`, `CLUSTERDOWN` after the cluster client's own
/// retries), which concerns that shard alone, not the connection.
pub(crate) fn is_slot_moving(e: &StoreError) -> bool {
    matches!(e, StoreError::Redis(e) if e.is_cluster_error())
}

/// The longest pause between two tries of a worker's claim loop and hint waiters while Redis
/// is away: deliveries resume at most this long after Redis is back, at the cost of a few
/// connection attempts per second meanwhile.
pub(crate) const RECONNECT_AT_MOST: Duration = Duration::from_millis(500);

/// Exponential backoff with full jitter.
#[derive(Debug)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            current: base,
        }
    }

    pub fn next(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        d.mul_f64(rand::Rng::random_range(&mut rand::rng(), 0.5..=1.0))
    }

    pub fn reset(&mut self) {
        self.current = self.base;
    }
}

/// Runs a worker until `shutdown` is cancelled, then drains: stops claiming, lets in-flight
/// deliveries finish within the grace period, hands back the leases of those that cannot, writes
/// every outcome, and returns.
///
/// `metrics` is the listener for `/metrics`, `/healthz` and `/readyz`, if any. Fails at once,
/// before anything else, when the HTTP client cannot be built (the system's DNS configuration
/// is unreadable).
pub async fn run(
    cfg: WorkerConfig,
    store: Store,
    metrics_listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), http::ClientError> {
    let client = http::Client::new(http::ClientSettings::from_config(&cfg))?;
    for w in cfg.warnings() {
        warn!("{w}");
    }
    match &cfg.egress_proxy {
        Some(proxy) => info!(
            %proxy,
            "deliveries go through the egress proxy, which resolves and vets receivers' names"
        ),
        None if !cfg.allow_targets.is_empty() => info!(
            allow_targets = %cfg.allow_targets,
            "the SSRF guard lets these ranges through"
        ),
        None => {}
    }
    if !cfg.extra_roots.is_empty() {
        info!(
            certificates = cfg.extra_roots.len(),
            "receivers' certificates may also chain to the CA certificates of HERALD_CA_FILE"
        );
    }
    if !cfg.dns.servers.is_empty() {
        let servers: Vec<String> = cfg.dns.servers.iter().map(|s| s.to_string()).collect();
        info!(servers = %servers.join(","), "receivers' names are resolved by these name servers");
    }
    let health = Arc::new(telemetry::Health::default());
    health.set_redis_ok(true);
    let server_stop = CancellationToken::new();
    let server = metrics_listener.map(|l| {
        let (health, stop) = (health.clone(), server_stop.clone());
        tokio::spawn(async move {
            if let Err(e) = telemetry::serve(l, health, stop).await {
                warn!(error = %e, "metrics server stopped");
            }
        })
    });
    telemetry::install();
    let grace = cfg.shutdown_grace;
    let (judge, verdicts) = lanes::Judge::channel();
    let ctx = Arc::new(Ctx {
        lanes: lanes::Lanes::new(cfg.concurrency, cfg.slow_concurrency, cfg.slow_overflow),
        store,
        cfg,
        client,
        health: health.clone(),
        hot: telemetry::Hot::new(),
        successes: Default::default(),
        judge,
    });
    // Verdicts are hints: the task is stopped with the worker, whatever it still holds.
    let judging = tokio::spawn(lanes::run_judge(ctx.clone(), verdicts));

    let sampler = tokio::spawn(sampler::run(ctx.clone(), shutdown.clone()));
    let housekeeping = tokio::spawn(housekeeping::run(ctx.clone(), shutdown.clone()));
    tokio::spawn(telemetry::upkeep(
        Duration::from_secs(5),
        server_stop.clone(),
    ));

    let (tx, rx) = mpsc::channel(ctx.cfg.max_deliveries() + 16);
    let mut settler = tokio::spawn(settler::run(ctx.clone(), rx));
    let hard_stop = CancellationToken::new();
    let mut tasks = claimer::run(ctx.clone(), tx, shutdown, hard_stop.clone()).await;

    health.set_draining();
    // Deliveries that ended but were not joined yet are not in flight.
    while tasks.try_join_next().is_some() {}
    info!(in_flight = tasks.len(), "draining");
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            in_flight = tasks.len(),
            "shutdown grace over; handing back the leases of unfinished deliveries"
        );
        hard_stop.cancel();
        while tasks.join_next().await.is_some() {}
    }
    drop(tasks);
    if tokio::time::timeout(SETTLE_DEADLINE, &mut settler)
        .await
        .is_err()
    {
        settler.abort();
        warn!(
            "some outcomes could not be written to Redis; those jobs come back after their lease"
        );
    }
    judging.abort();
    // The sampler stopped at the shutdown signal; wait for it to hand its lock over.
    let _ = sampler.await;
    let _ = housekeeping.await;
    server_stop.cancel();
    if let Some(server) = server {
        let _ = server.await;
    }
    info!("worker stopped");
    Ok(())
}
