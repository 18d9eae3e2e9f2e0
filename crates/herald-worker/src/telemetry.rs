//! Metric names and the HTTP endpoints `/metrics`, `/healthz` and `/readyz`.
//!
//! Every metric herald emits is named here and listed in [`CATALOG`], so that
//! `docs/metrics.md`, the Grafana dashboard and the alert rules in `deploy/` have one place to
//! match (an integration test checks them against it).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use herald_core::FailureClass;
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
/// Jobs sent to the dead-letter store, by `reason` ([`DiscardReason`]).
pub const DISCARDED: &str = "herald_jobs_discarded_total";
/// Settlements refused because the lease had expired, by `kind` ([`SettleKind`]).
pub const STALE: &str = "herald_stale_settlements_total";
/// Settlements written again after a failed write that found their lease gone: the failed
/// write was applied after all (Redis ran it late), or the job was taken back meanwhile.
pub const UNCONFIRMED: &str = "herald_settlements_unconfirmed_total";
/// Expired leases put back or discarded by this worker's claims.
pub const LEASES_EXPIRED: &str = "herald_leases_expired_total";
/// Leases handed back unattempted at shutdown.
pub const RELEASED: &str = "herald_jobs_released_total";
/// Redis commands that failed, by `op` ([`RedisOp`]).
pub const REDIS_ERRORS: &str = "herald_redis_errors_total";
/// Deliveries in flight in this worker.
pub const IN_FLIGHT: &str = "herald_in_flight_deliveries";
/// Of those, deliveries in the slow lane: to endpoints judged slow, or unanswered after
/// `HERALD_SLOW_AFTER`.
pub const SLOW_LANE: &str = "herald_slow_lane_deliveries";
/// Endpoints this worker judged slow, or fast again (the judgement changed).
pub const SPEED_VERDICTS: &str = "herald_speed_verdicts_total";
/// Jobs claimed.
pub const CLAIMED: &str = "herald_jobs_claimed_total";
/// Endpoints disabled by this worker (consecutive connection-level failures, or `410 Gone`).
pub const ENDPOINTS_DISABLED: &str = "herald_endpoints_disabled_total";
/// Endpoints with due jobs that a claim held back, by `cause` (one of [`HELD_BACK_CAUSES`]).
pub const HELD_BACK: &str = "herald_held_back_total";
/// The values of the `cause` label of [`HELD_BACK`], in the order of `herald_store::Held`'s
/// fields.
pub const HELD_BACK_CAUSES: [&str; 5] = [
    "in_flight_limit",
    "adaptive_limit",
    "rate",
    "pause",
    "slow_lane_full",
];
/// The fixed values of one metric label, as an enum: [`NAMES`](DiscardReason::NAMES) lists
/// them for pre-registration at 0 and [`as_str`](DiscardReason::as_str) names one where the
/// counter is incremented, so a value cannot be counted without being pre-registered.
macro_rules! label_values {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $value:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// Every value of the label, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($value),+];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                Self::NAMES[self as usize]
            }
        }
    };
}

label_values! {
    /// The `reason` label of [`DISCARDED`]: why a job went to the dead-letter store.
    DiscardReason {
        RetriesExhausted => "retries_exhausted",
        Malformed => "malformed",
        EndpointGone => "endpoint_gone",
        LeaseExpired => "lease_expired",
        ParkedTooLong => "parked_too_long",
        Other => "other",
    }
}

label_values! {
    /// The `op` label of [`REDIS_ERRORS`]: the worker's operation whose Redis command failed.
    RedisOp {
        Claim => "claim",
        Expire => "expire",
        Settle => "settle",
        Wait => "wait",
        Wake => "wake",
        Housekeeping => "housekeeping",
        Trim => "trim",
        Sweep => "sweep",
        Sample => "sample",
        Judge => "judge",
    }
}

label_values! {
    /// The `kind` label of [`STALE`]: the settlement Redis refused.
    SettleKind {
        Ack => "ack",
        Retry => "retry",
        Discard => "discard",
        Release => "release",
    }
}

/// The counter of discarded jobs for one reason.
pub(crate) fn discarded(reason: DiscardReason) -> metrics::Counter {
    metrics::counter!(DISCARDED, "reason" => reason.as_str())
}

/// The counter of failed Redis commands for one operation.
pub(crate) fn redis_errors(op: RedisOp) -> metrics::Counter {
    metrics::counter!(REDIS_ERRORS, "op" => op.as_str())
}

/// The counter of refused settlements for one kind.
pub(crate) fn stale(kind: SettleKind) -> metrics::Counter {
    metrics::counter!(STALE, "kind" => kind.as_str())
}

/// The values of the `outcome` label of [`DELIVERIES`]: `delivered`, or a failure class.
fn delivery_outcomes() -> impl Iterator<Item = &'static str> {
    std::iter::once("delivered").chain(FailureClass::ALL.iter().map(|c| c.as_str()))
}

/// Every labelled counter with its label and all that label's values: each series starts at
/// 0 (see `initialise`), so `rate()` and `increase()` see the first event.
pub fn labelled_counters() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        (DELIVERIES, "outcome", delivery_outcomes().collect()),
        (DISCARDED, "reason", DiscardReason::NAMES.to_vec()),
        (STALE, "kind", SettleKind::NAMES.to_vec()),
        (REDIS_ERRORS, "op", RedisOp::NAMES.to_vec()),
        (HELD_BACK, "cause", HELD_BACK_CAUSES.to_vec()),
    ]
}

/// Jobs in the store by `state` (due, scheduled, in_flight, parked, dead), sampled by one
/// worker at a time; see [`StoreGauges`].
pub const QUEUE_JOBS: &str = "herald_queue_jobs";
/// Endpoints disabled right now, sampled with [`QUEUE_JOBS`].
pub const DISABLED_ENDPOINTS: &str = "herald_disabled_endpoints";
/// Endpoints held back right now (at their in-flight or adaptive limit, or paused), sampled
/// with [`QUEUE_JOBS`].
pub const ENDPOINTS_HELD_BACK: &str = "herald_endpoints_held_back";
/// How long the oldest due job has waited for a worker (seconds since it became due; 0 when
/// no job is due), sampled with [`QUEUE_JOBS`].
pub const OLDEST_DUE_AGE: &str = "herald_oldest_due_job_age_seconds";
/// Bytes Redis uses (`used_memory` of `INFO memory`), sampled with [`QUEUE_JOBS`].
pub const REDIS_MEMORY_USED: &str = "herald_redis_memory_used_bytes";
/// Redis's memory limit (`maxmemory` of `INFO memory`; 0 when it has none), sampled with
/// [`QUEUE_JOBS`].
pub const REDIS_MEMORY_MAX: &str = "herald_redis_memory_max_bytes";
/// When the sample shown with [`QUEUE_JOBS`] was taken (Unix time, seconds): queries take its
/// age from the last one seen, even while no worker reports a sample.
pub const QUEUE_SAMPLE_TIMESTAMP: &str = "herald_queue_sample_timestamp_seconds";
/// Always 1, labelled with the worker's `version`: `count(herald_worker_info)` counts workers.
pub const WORKER_INFO: &str = "herald_worker_info";
/// 1 when `/readyz` would answer 200 (Redis answers, not draining), else 0.
pub const WORKER_READY: &str = "herald_worker_ready";

/// The Prometheus type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric herald emits: its name, type, labels and meaning.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    /// The label names; every label has a bounded set of values.
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// Every metric herald emits; `docs/metrics.md` documents each one.
pub const CATALOG: &[MetricDef] = &[
    MetricDef {
        name: DELIVERIES,
        kind: Kind::Counter,
        labels: &["outcome"],
        help: "Delivery attempts by outcome: delivered, or the failure class.",
    },
    MetricDef {
        name: DELIVERY_DURATION,
        kind: Kind::Histogram,
        labels: &[],
        help: "Seconds from sending a delivery request to the end of the answer.",
    },
    MetricDef {
        name: FIRST_ATTEMPT_LAG,
        kind: Kind::Histogram,
        labels: &[],
        help: "Seconds from enqueue to the claim of a job's first attempt.",
    },
    MetricDef {
        name: RETRIES,
        kind: Kind::Counter,
        labels: &[],
        help: "Failed attempts rescheduled for a retry.",
    },
    MetricDef {
        name: DISCARDED,
        kind: Kind::Counter,
        labels: &["reason"],
        help: "Jobs moved to the dead-letter store, by reason.",
    },
    MetricDef {
        name: STALE,
        kind: Kind::Counter,
        labels: &["kind"],
        help: "Settlements refused because the lease had expired, by settlement kind.",
    },
    MetricDef {
        name: UNCONFIRMED,
        kind: Kind::Counter,
        labels: &[],
        help: "Settlements written again after a failed write that found their lease gone: applied by the failed write after all, or taken back meanwhile.",
    },
    MetricDef {
        name: LEASES_EXPIRED,
        kind: Kind::Counter,
        labels: &[],
        help: "Expired leases of other workers taken back by this worker's claims.",
    },
    MetricDef {
        name: RELEASED,
        kind: Kind::Counter,
        labels: &[],
        help: "Leases handed back unattempted at shutdown.",
    },
    MetricDef {
        name: REDIS_ERRORS,
        kind: Kind::Counter,
        labels: &["op"],
        help: "Redis commands that failed, by operation.",
    },
    MetricDef {
        name: IN_FLIGHT,
        kind: Kind::Gauge,
        labels: &[],
        help: "Deliveries in flight in this worker.",
    },
    MetricDef {
        name: SLOW_LANE,
        kind: Kind::Gauge,
        labels: &[],
        help: "Deliveries of this worker in its slow lane: to endpoints judged slow, or unanswered after HERALD_SLOW_AFTER.",
    },
    MetricDef {
        name: SPEED_VERDICTS,
        kind: Kind::Counter,
        labels: &[],
        help: "Endpoints this worker judged slow, or fast again.",
    },
    MetricDef {
        name: CLAIMED,
        kind: Kind::Counter,
        labels: &[],
        help: "Jobs claimed by this worker.",
    },
    MetricDef {
        name: ENDPOINTS_DISABLED,
        kind: Kind::Counter,
        labels: &[],
        help: "Endpoints disabled by this worker (strikes, or 410 Gone).",
    },
    MetricDef {
        name: HELD_BACK,
        kind: Kind::Counter,
        labels: &["cause"],
        help: "Endpoints with due jobs that a claim of this worker held back, by cause: in_flight_limit, adaptive_limit, rate, pause, slow_lane_full.",
    },
    MetricDef {
        name: QUEUE_JOBS,
        kind: Kind::Gauge,
        labels: &["state"],
        help: "Jobs in the store by state, sampled by one worker at a time.",
    },
    MetricDef {
        name: DISABLED_ENDPOINTS,
        kind: Kind::Gauge,
        labels: &[],
        help: "Endpoints disabled right now, sampled by one worker at a time.",
    },
    MetricDef {
        name: ENDPOINTS_HELD_BACK,
        kind: Kind::Gauge,
        labels: &[],
        help: "Endpoints held back right now (at their in-flight or adaptive limit, or paused by Retry-After), sampled by one worker at a time.",
    },
    MetricDef {
        name: OLDEST_DUE_AGE,
        kind: Kind::Gauge,
        labels: &[],
        help: "Seconds the oldest due job has waited since it became due (0 when none is due), sampled by one worker at a time.",
    },
    MetricDef {
        name: REDIS_MEMORY_USED,
        kind: Kind::Gauge,
        labels: &[],
        help: "Bytes Redis uses (used_memory), sampled by one worker at a time.",
    },
    MetricDef {
        name: REDIS_MEMORY_MAX,
        kind: Kind::Gauge,
        labels: &[],
        help: "Redis's memory limit in bytes (maxmemory; 0 when it has none), sampled by one worker at a time.",
    },
    MetricDef {
        name: QUEUE_SAMPLE_TIMESTAMP,
        kind: Kind::Gauge,
        labels: &[],
        help: "Unix time (seconds) at which the queue-depth sample shown with it was taken.",
    },
    MetricDef {
        name: WORKER_INFO,
        kind: Kind::Gauge,
        labels: &["version"],
        help: "Always 1; counts running workers, labelled with their version.",
    },
    MetricDef {
        name: WORKER_READY,
        kind: Kind::Gauge,
        labels: &[],
        help: "1 when this worker is ready (Redis answers, not draining), else 0.",
    },
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Handles of the metrics touched by every delivery, registered once so that the hot path
/// does not look them up by name and labels each time.
pub(crate) struct Hot {
    pub in_flight: metrics::Gauge,
    pub duration: metrics::Histogram,
    pub first_attempt_lag: metrics::Histogram,
    pub retries: metrics::Counter,
    /// `herald_deliveries_total` by outcome label.
    deliveries: Vec<(&'static str, metrics::Counter)>,
}

impl Hot {
    /// Registers the handles; call after [`install`].
    pub fn new() -> Self {
        Self {
            in_flight: metrics::gauge!(IN_FLIGHT),
            duration: metrics::histogram!(DELIVERY_DURATION),
            first_attempt_lag: metrics::histogram!(FIRST_ATTEMPT_LAG),
            retries: metrics::counter!(RETRIES),
            deliveries: delivery_outcomes()
                .map(|l| (l, metrics::counter!(DELIVERIES, "outcome" => l)))
                .collect(),
        }
    }

    /// The deliveries counter of one outcome label.
    pub fn deliveries(&self, label: &'static str) -> &metrics::Counter {
        self.deliveries
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, c)| c)
            .expect("every outcome label is registered")
    }
}

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
            for def in CATALOG {
                match def.kind {
                    Kind::Counter => metrics::describe_counter!(def.name, def.help),
                    Kind::Gauge => metrics::describe_gauge!(def.name, def.help),
                    Kind::Histogram => metrics::describe_histogram!(def.name, def.help),
                }
            }
            initialise();
            handle
        })
        .clone()
}

/// Creates the series whose labels are known in advance at zero, so that they are on
/// `/metrics` from the start and `rate()`/`increase()` see their first increment.
fn initialise() {
    metrics::gauge!(WORKER_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for (name, label, values) in labelled_counters() {
        for value in values {
            metrics::counter!(name, label => value).increment(0);
        }
    }
    for def in CATALOG.iter().filter(|d| d.labels.is_empty()) {
        match def.kind {
            Kind::Counter => metrics::counter!(def.name).increment(0),
            Kind::Histogram => drop(metrics::histogram!(def.name)),
            // Sampled or computed at scrape time; see `render_metrics`.
            Kind::Gauge
                if matches!(
                    def.name,
                    DISABLED_ENDPOINTS
                        | ENDPOINTS_HELD_BACK
                        | OLDEST_DUE_AGE
                        | REDIS_MEMORY_USED
                        | REDIS_MEMORY_MAX
                        | QUEUE_SAMPLE_TIMESTAMP
                        | WORKER_READY
                ) => {}
            Kind::Gauge => metrics::gauge!(def.name).increment(0.0),
        }
    }
}

/// Drains recorded histogram samples into their buckets every `every`, until `stop`.
///
/// Rendering `/metrics` does this too; without a scraper (or with `/metrics` off) the samples
/// would otherwise pile up in memory.
pub async fn upkeep(every: Duration, stop: CancellationToken) {
    let handle = install();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => handle.run_upkeep(),
            _ = stop.cancelled() => return,
        }
    }
}

/// What this worker's HTTP endpoints report: readiness, and the latest queue-depth sample.
#[derive(Debug, Default)]
pub struct Health {
    redis_ok: AtomicBool,
    draining: AtomicBool,
    /// Set by the sampler while this worker holds the sampler lock.
    pub store: StoreGauges,
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

/// The job states of [`QUEUE_JOBS`], in display order.
pub const QUEUE_STATES: [&str; 5] = ["due", "scheduled", "in_flight", "parked", "dead"];

/// What the sampler counted in the store at one time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSample {
    /// Jobs by state, in the order of [`QUEUE_STATES`].
    pub jobs: Vec<(&'static str, u64)>,
    pub disabled_endpoints: u64,
    /// Endpoints at their in-flight or adaptive limit, or paused.
    pub held_back_endpoints: u64,
    /// How long the oldest due job has waited since it became due (ms; 0 when none is due).
    pub oldest_due_age_ms: u64,
    /// Redis's memory use and limit, when its `INFO memory` answer names them.
    pub redis_memory: Option<RedisMemory>,
}

/// Redis's memory use and limit, from `INFO memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisMemory {
    /// `used_memory`, in bytes.
    pub used_bytes: u64,
    /// `maxmemory`, in bytes; 0 when Redis has no limit.
    pub max_bytes: u64,
}

/// The latest store sample this worker took, rendered on `/metrics` only while fresh.
///
/// Queue depth belongs to the deployment, not to a worker, so only the worker holding the
/// sampler lock reports it. A worker that loses the lock (another took over while this one could
/// not reach Redis) stops reporting once its sample is stale, instead of showing an old number
/// for ever. That is why these gauges are rendered here rather than kept in the metrics
/// recorder, which cannot forget a series.
#[derive(Debug, Default)]
pub struct StoreGauges {
    latest: Mutex<Option<Recorded>>,
}

/// A sample with when it was taken and how long it stays on `/metrics`.
#[derive(Debug)]
struct Recorded {
    taken: Instant,
    taken_at: SystemTime,
    fresh_for: Duration,
    sample: StoreSample,
}

impl StoreGauges {
    /// Records a sample that stays on `/metrics` for `fresh_for`.
    pub fn record(&self, sample: StoreSample, fresh_for: Duration) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(Recorded {
            taken: Instant::now(),
            taken_at: SystemTime::now(),
            fresh_for,
            sample,
        });
    }

    /// Stops reporting at once (another worker samples now).
    pub fn forget(&self) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Appends the sample in the Prometheus text format, if it is fresh.
    fn render(&self, out: &mut String) {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(Recorded {
            taken,
            taken_at,
            fresh_for,
            sample,
        }) = latest.as_ref()
        else {
            return;
        };
        if taken.elapsed() >= *fresh_for {
            return;
        }
        let unix = taken_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        header(out, QUEUE_SAMPLE_TIMESTAMP, "gauge");
        let _ = writeln!(out, "{QUEUE_SAMPLE_TIMESTAMP} {unix:.3}\n");
        header(out, QUEUE_JOBS, "gauge");
        for (state, n) in &sample.jobs {
            let _ = writeln!(out, "{QUEUE_JOBS}{{state=\"{state}\"}} {n}");
        }
        out.push('\n');
        header(out, DISABLED_ENDPOINTS, "gauge");
        let _ = writeln!(out, "{DISABLED_ENDPOINTS} {}\n", sample.disabled_endpoints);
        header(out, ENDPOINTS_HELD_BACK, "gauge");
        let _ = writeln!(
            out,
            "{ENDPOINTS_HELD_BACK} {}\n",
            sample.held_back_endpoints
        );
        header(out, OLDEST_DUE_AGE, "gauge");
        let _ = writeln!(
            out,
            "{OLDEST_DUE_AGE} {:.3}\n",
            sample.oldest_due_age_ms as f64 / 1000.0
        );
        if let Some(memory) = sample.redis_memory {
            header(out, REDIS_MEMORY_USED, "gauge");
            let _ = writeln!(out, "{REDIS_MEMORY_USED} {}\n", memory.used_bytes);
            header(out, REDIS_MEMORY_MAX, "gauge");
            let _ = writeln!(out, "{REDIS_MEMORY_MAX} {}\n", memory.max_bytes);
        }
    }
}

/// `# HELP` (from [`CATALOG`]) and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str) {
    let help = CATALOG
        .iter()
        .find(|d| d.name == name)
        .map(|d| d.help)
        .unwrap_or_default();
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[derive(Clone)]
struct AppState {
    handle: PrometheusHandle,
    health: Arc<Health>,
}

async fn render_metrics(State(s): State<AppState>) -> String {
    metrics::gauge!(WORKER_READY).set(if s.health.ready() { 1.0 } else { 0.0 });
    let mut body = s.handle.render();
    s.health.store.render(&mut body);
    body
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
        .route("/metrics", get(render_metrics))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for def in CATALOG {
            assert!(seen.insert(def.name), "{} listed twice", def.name);
            assert!(def.name.starts_with("herald_"), "{}", def.name);
            assert!(
                def.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                def.name
            );
            assert_eq!(
                def.kind == Kind::Counter,
                def.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                def.name
            );
            if def.kind == Kind::Histogram {
                assert!(def.name.ends_with("_seconds"), "{}: base units", def.name);
            }
        }
    }

    #[test]
    fn store_gauges_are_rendered_only_while_fresh() {
        let sample = StoreSample {
            jobs: vec![("due", 3), ("dead", 1)],
            disabled_endpoints: 2,
            held_back_endpoints: 4,
            oldest_due_age_ms: 90_250,
            redis_memory: Some(RedisMemory {
                used_bytes: 1_048_576,
                max_bytes: 0,
            }),
        };
        let gauges = StoreGauges::default();
        let mut out = String::new();
        gauges.render(&mut out);
        assert_eq!(out, "");

        gauges.record(sample.clone(), Duration::from_secs(3600));
        gauges.render(&mut out);
        assert!(out.contains("# TYPE herald_queue_jobs gauge\n"), "{out}");
        assert!(
            out.contains("herald_queue_jobs{state=\"due\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("herald_queue_jobs{state=\"dead\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("\nherald_disabled_endpoints 2\n"), "{out}");
        assert!(
            out.contains("# TYPE herald_endpoints_held_back gauge\n"),
            "{out}"
        );
        assert!(out.contains("\nherald_endpoints_held_back 4\n"), "{out}");
        assert!(
            out.contains("# TYPE herald_oldest_due_job_age_seconds gauge\n"),
            "{out}"
        );
        assert!(
            out.contains("\nherald_oldest_due_job_age_seconds 90.250\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE herald_redis_memory_used_bytes gauge\n"),
            "{out}"
        );
        assert!(
            out.contains("\nherald_redis_memory_used_bytes 1048576\n"),
            "{out}"
        );
        assert!(
            out.contains("# HELP herald_redis_memory_max_bytes Redis's memory limit"),
            "{out}"
        );
        assert!(out.contains("\nherald_redis_memory_max_bytes 0\n"), "{out}");
        let stamp = out
            .lines()
            .find_map(|l| l.strip_prefix("herald_queue_sample_timestamp_seconds "))
            .expect("the sample's time is shown with it");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let stamp: f64 = stamp.parse().unwrap();
        assert!((now.as_secs_f64() - stamp).abs() < 60.0, "{stamp}");

        let mut no_memory = String::new();
        gauges.record(
            StoreSample {
                redis_memory: None,
                ..sample.clone()
            },
            Duration::from_secs(3600),
        );
        gauges.render(&mut no_memory);
        assert!(
            no_memory.contains("\nherald_oldest_due_job_age_seconds 90.250\n"),
            "{no_memory}"
        );
        assert!(
            !no_memory.contains("herald_redis_memory"),
            "memory gauges are left out when INFO does not name them: {no_memory}"
        );

        gauges.record(sample.clone(), Duration::ZERO);
        let mut stale = String::new();
        gauges.render(&mut stale);
        assert_eq!(stale, "", "a stale sample is not shown");

        gauges.record(sample, Duration::from_secs(3600));
        gauges.forget();
        let mut forgotten = String::new();
        gauges.render(&mut forgotten);
        assert_eq!(forgotten, "");
    }
}
