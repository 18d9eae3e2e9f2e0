//! Metric names and the HTTP endpoints `/metrics`, `/healthz` and `/readyz`.
//!
//! Every metric herald emits is named here, so that `docs/metrics.md` has one place to match.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Attempts by outcome (`outcome` = `delivered` or a failure class).
pub const DELIVERIES: &str = "herald_deliveries_total";
/// Seconds from sending the request to the end of the answer.
pub const DELIVERY_DURATION: &str = "herald_delivery_duration_seconds";
/// Seconds from enqueue to the start of the first attempt.
pub const FIRST_ATTEMPT_LAG: &str = "herald_first_attempt_lag_seconds";
/// Retries scheduled.
pub const RETRIES: &str = "herald_retries_scheduled_total";
/// Jobs sent to the dead-letter store, by `reason`.
pub const DISCARDED: &str = "herald_jobs_discarded_total";
/// Settlements refused because the lease had expired (`kind` = ack, retry, discard, release).
pub const STALE: &str = "herald_stale_settlements_total";
/// Expired leases put back or discarded by this worker's claims.
pub const LEASES_EXPIRED: &str = "herald_leases_expired_total";
/// Leases handed back unattempted at shutdown.
pub const RELEASED: &str = "herald_jobs_released_total";
/// Redis commands that failed, by `op`.
pub const REDIS_ERRORS: &str = "herald_redis_errors_total";
/// Deliveries in flight in this worker.
pub const IN_FLIGHT: &str = "herald_in_flight_deliveries";
/// Jobs claimed.
pub const CLAIMED: &str = "herald_jobs_claimed_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0, 300.0, 3600.0,
                ])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding application); then our
            // handle renders only what was recorded through it, which is nothing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Whether this worker can take work: Redis answered its last command and it is not draining.
#[derive(Debug, Default)]
pub struct Health {
    redis_ok: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    pub fn set_redis_ok(&self, ok: bool) {
        self.redis_ok.store(ok, Ordering::Relaxed);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.redis_ok.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    handle: PrometheusHandle,
    health: Arc<Health>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = AppState {
        handle: install(),
        health,
    };
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move { s.handle.render() }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move {
                if s.health.ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
