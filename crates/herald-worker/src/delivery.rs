//! One delivery, as a small state machine: a claimed job is checked, POSTed, and its outcome
//! turned into a settlement for the settler: acknowledge, retry later, discard or hand back
//! (shutdown), with its effect on the endpoint's strikes, adaptive limit and pause, and the
//! entry for the endpoint's attempt log. A delivery that outlasts `HERALD_SLOW_AFTER` judges
//! its endpoint slow and leaves the main lane; one to an endpoint judged slow that comes back
//! sooner judges it fast again (see `lanes`).
//!
//! Every failed attempt goes into its endpoint's attempt log; successes go in at most once per
//! [`SUCCESS_LOG_EVERY`] per endpoint and worker, so that an endpoint receiving thousands of
//! deliveries a second does not cost a log write (and its JSON) for each.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::{FailureClass, Outcome};
use herald_store::{ClaimedJob, EndpointRecord, EndpointSecret, Settle, Settlement, Strike};
use reqwest::header::HeaderMap;
use serde::de::IgnoredAny;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::StrikeOn;
use crate::http;
use crate::lanes::Slot;
use crate::telemetry::DiscardReason;
use crate::Ctx;

/// Response-body bytes kept in the attempt log.
const LOGGED_BODY: usize = 1024;

/// A finished delivery on its way to the settler.
#[derive(Debug)]
pub(crate) struct Done {
    pub shard: u16,
    pub settlement: Settlement,
    /// Bounded label for the discard metric, when the job is discarded.
    pub discard_reason: Option<DiscardReason>,
}

/// An endpoint as its deliveries need it: read from the JSON that came with the claim, parsed
/// once for all of its jobs (see [`Targets`]).
#[derive(Debug)]
pub(crate) struct Target {
    /// The endpoint URL, or why it does not parse (each attempt then fails to connect, as a
    /// request to an unusable URL would).
    url: Result<reqwest::Url, String>,
    secrets: Vec<EndpointSecret>,
}

impl Target {
    /// Parses an endpoint record; `Err` carries the dead-letter reason for its jobs.
    fn parse(json: &[u8]) -> Result<Self, String> {
        let record: EndpointRecord = serde_json::from_slice(json)
            .map_err(|e| format!("malformed: endpoint record unreadable: {e}"))?;
        Ok(Self {
            url: reqwest::Url::parse(&record.url)
                .map_err(|e| format!("the endpoint URL does not parse: {e}")),
            secrets: record.secrets,
        })
    }
}

/// A parsed endpoint, or the reason its jobs are discarded.
pub(crate) type Prepared = Arc<Result<Target, String>>;

/// Parsed endpoints, kept by the claim loop across claims: a stored record is parsed again
/// only when its JSON changes (URL set again, secret rotated).
#[derive(Debug, Default)]
pub(crate) struct Targets {
    parsed: HashMap<String, (Arc<[u8]>, Prepared)>,
}

impl Targets {
    /// Endpoints kept at most; past that the cache starts over.
    const MAX: usize = 10_000;

    pub fn get(&mut self, job: &ClaimedJob) -> Prepared {
        if let Some((json, target)) = self.parsed.get(&job.endpoint) {
            if Arc::ptr_eq(json, &job.endpoint_json) || **json == *job.endpoint_json {
                return target.clone();
            }
        }
        if self.parsed.len() >= Self::MAX {
            self.parsed.clear();
        }
        let target = Arc::new(Target::parse(&job.endpoint_json));
        self.parsed.insert(
            job.endpoint.clone(),
            (job.endpoint_json.clone(), target.clone()),
        );
        target
    }
}

/// A worker logs at most one success per endpoint in this time.
const SUCCESS_LOG_EVERY: Duration = Duration::from_secs(1);

/// When each endpoint last had a success logged by this worker.
#[derive(Debug, Default)]
pub(crate) struct SuccessLog {
    last: HashMap<String, Instant>,
}

impl SuccessLog {
    /// Endpoints remembered before the stale ones are forgotten.
    const MAX: usize = 10_000;

    /// Whether a success of `endpoint` at `now` goes into its attempt log.
    pub fn admit(&mut self, endpoint: &str, now: Instant) -> bool {
        if let Some(at) = self.last.get_mut(endpoint) {
            if now.duration_since(*at) < SUCCESS_LOG_EVERY {
                return false;
            }
            *at = now;
            return true;
        }
        if self.last.len() >= Self::MAX {
            self.last
                .retain(|_, at| now.duration_since(*at) < SUCCESS_LOG_EVERY);
        }
        self.last.insert(endpoint.to_owned(), now);
        true
    }
}

/// What the settler needs to know of one finished delivery.
struct Decision {
    action: Settle,
    strike: Strike,
    /// The receiver struggled (timeout, 5xx, 429): its adaptive limit is to be cut.
    congested: bool,
    /// The receiver asked for a pause of its whole queue (`Retry-After` on 429 or 503).
    pause: Option<Duration>,
    log_entry: Option<String>,
    discard_reason: Option<DiscardReason>,
    /// The request was made and ended (answered, failed or timed out): its time tells of the
    /// receiver's speed.
    attempted: bool,
}

impl Decision {
    fn plain(action: Settle, discard_reason: Option<DiscardReason>) -> Self {
        Self {
            action,
            strike: Strike::None,
            congested: false,
            pause: None,
            log_entry: None,
            discard_reason,
            attempted: false,
        }
    }
}

/// Runs one delivery in its `slot` and hands its settlement to the settler. `claimed_at_ms` is
/// the Redis time of the claim, for the enqueue-to-first-attempt lag.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    shard: u16,
    claimed_at_ms: i64,
    job: ClaimedJob,
    target: Prepared,
    mut slot: Slot,
    done: mpsc::Sender<Done>,
    hard_stop: CancellationToken,
) {
    ctx.hot.in_flight.increment(1.0);
    let (decision, outlasted) = {
        let attempt = attempt(&ctx, claimed_at_ms, &job, &target, &hard_stop);
        tokio::pin!(attempt);
        tokio::select! {
            biased;
            decision = &mut attempt => (decision, false),
            _ = tokio::time::sleep(ctx.cfg.slow_after) => {
                ctx.judge.tell(shard, &job.endpoint, true);
                slot = slot.went_slow(&ctx.lanes);
                (attempt.await, true)
            }
        }
    };
    if job.judged_slow && decision.attempted && !outlasted {
        ctx.judge.tell(shard, &job.endpoint, false);
    }
    ctx.hot.in_flight.decrement(1.0);
    drop(slot);
    let settlement = Settlement {
        id: job.id,
        token: job.token,
        attempt: job.attempts,
        endpoint: job.endpoint,
        action: decision.action,
        strike: decision.strike,
        claimed_ms: claimed_at_ms,
        congested: decision.congested,
        pause: decision.pause,
        log_entry: decision.log_entry,
    };
    // The settler outlives every delivery; if it is gone the process is exiting and the
    // lease brings the job back.
    let _ = done
        .send(Done {
            shard,
            settlement,
            discard_reason: decision.discard_reason,
        })
        .await;
}

/// The delay before the next attempt: the schedule's, moved later (never earlier) by the
/// receiver's `Retry-After`, which counts for no more than the schedule's longest delay.
fn honour_retry_after(
    scheduled: Duration,
    retry_after: Option<Duration>,
    cap: Duration,
) -> Duration {
    scheduled.max(retry_after.unwrap_or_default().min(cap))
}

/// Whether a failed attempt shows its receiver struggling under load, which cuts the endpoint's
/// adaptive in-flight limit: a timeout, a 5xx or a 429. Refused connections and DNS failures
/// are strikes instead; 4xx answers say nothing about load.
fn congested(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Delivered { .. } => false,
        Outcome::Failed { class, status, .. } => match class {
            FailureClass::Timeout | FailureClass::ConnectTimeout => true,
            FailureClass::HttpStatus => status.is_some_and(|s| s >= 500 || s == 429),
            _ => false,
        },
    }
}

/// Whether a failed attempt strikes its endpoint.
fn strike(outcome: &Outcome, policy: StrikeOn) -> Strike {
    match outcome {
        Outcome::Delivered { .. } => Strike::None,
        Outcome::Failed {
            status: Some(410), ..
        } => Strike::DisableNow,
        Outcome::Failed { class, .. } => {
            if policy == StrikeOn::All || class.is_connection_level() {
                Strike::One
            } else {
                Strike::None
            }
        }
    }
}

/// One attempt, in phases: [`prepare`] the request, [`send`] it, [`record`] what came back,
/// and [`settle`] on what to do with the job.
async fn attempt(
    ctx: &Ctx,
    claimed_at_ms: i64,
    job: &ClaimedJob,
    target: &Result<Target, String>,
    hard_stop: &CancellationToken,
) -> Decision {
    let (endpoint, headers) = match prepare(ctx, claimed_at_ms, job, target) {
        Ok(prepared) => prepared,
        Err(refused) => return refused,
    };
    let started = Instant::now();
    let Some(attempt) = send(ctx, endpoint, headers, job, hard_stop).await else {
        debug!(job_id = %job.id, "shutdown grace over; lease handed back");
        return Decision::plain(Settle::Release, None);
    };
    let latency = started.elapsed();
    let error = attempt.outcome.error_line();
    let log_entry = record(ctx, claimed_at_ms, job, &attempt, latency, error.as_deref());
    settle(ctx, job, attempt.outcome, latency, error, log_entry)
}

/// Checks what the claim gave (the endpoint readable, the payload JSON) and signs the request
/// with the claim's Redis time: the attempt starts now. A job that cannot be sent is
/// discarded as malformed.
fn prepare<'t>(
    ctx: &Ctx,
    claimed_at_ms: i64,
    job: &ClaimedJob,
    target: &'t Result<Target, String>,
) -> Result<(&'t Target, HeaderMap), Decision> {
    let checked = target.as_ref().map_err(Clone::clone).and_then(|endpoint| {
        serde_json::from_slice::<IgnoredAny>(&job.payload)
            .map(|_| endpoint)
            .map_err(|e| format!("malformed: payload is not valid JSON: {e}"))
    });
    let endpoint = checked.map_err(|reason| {
        warn!(job_id = %job.id, endpoint_id = %job.endpoint, %reason, "job discarded");
        Decision::plain(Settle::Discard { reason }, Some(DiscardReason::Malformed))
    })?;
    if job.attempts == 1 {
        let lag = (claimed_at_ms - job.enqueued_ms).max(0) as f64 / 1000.0;
        ctx.hot.first_attempt_lag.record(lag);
    }
    let headers = http::webhook_headers(
        &format!("msg_{}", job.id),
        &endpoint.secrets,
        claimed_at_ms,
        &job.payload,
    );
    Ok((endpoint, headers))
}

/// POSTs the job; `None` when the shutdown grace ran out first (the lease is handed back).
async fn send(
    ctx: &Ctx,
    endpoint: &Target,
    headers: HeaderMap,
    job: &ClaimedJob,
    hard_stop: &CancellationToken,
) -> Option<http::Attempt> {
    let post = async {
        match &endpoint.url {
            Ok(url) => http::post(&ctx.client, url, headers, job.payload.clone()).await,
            Err(detail) => http::Attempt {
                outcome: Outcome::Failed {
                    class: FailureClass::Connect,
                    status: None,
                    detail: detail.clone(),
                    retry_after: None,
                },
                body: Vec::new(),
            },
        }
    };
    tokio::select! {
        a = post => Some(a),
        _ = hard_stop.cancelled() => None,
    }
}

/// Counts the attempt in the metrics and writes its attempt-log entry: every failure, and a
/// success when the endpoint's success log admits one.
fn record(
    ctx: &Ctx,
    claimed_at_ms: i64,
    job: &ClaimedJob,
    attempt: &http::Attempt,
    latency: Duration,
    error: Option<&str>,
) -> Option<String> {
    ctx.hot.duration.record(latency.as_secs_f64());
    ctx.hot.deliveries(attempt.outcome.label()).increment(1);
    let logged = match attempt.outcome {
        Outcome::Delivered { .. } => ctx
            .successes
            .lock()
            .expect("the success log is never poisoned")
            .admit(&job.endpoint, Instant::now()),
        Outcome::Failed { .. } => true,
    };
    let status = match attempt.outcome {
        Outcome::Delivered { status } => Some(status),
        Outcome::Failed { status, .. } => status,
    };
    let body = &attempt.body[..attempt.body.len().min(LOGGED_BODY)];
    logged.then(|| {
        serde_json::json!({
            "at_ms": claimed_at_ms,
            "job_id": job.id,
            "attempt": job.attempts,
            "outcome": attempt.outcome.label(),
            "status": status,
            "latency_ms": latency.as_millis() as u64,
            "error": error,
            "response_body": String::from_utf8_lossy(body),
        })
        .to_string()
    })
}

/// What to do with the job after its attempt: ack a success, or retry or discard a failure
/// ([`retry_or_discard`]); with the strike, the cut and the pause the outcome earns its
/// endpoint.
fn settle(
    ctx: &Ctx,
    job: &ClaimedJob,
    outcome: Outcome,
    latency: Duration,
    error: Option<String>,
    log_entry: Option<String>,
) -> Decision {
    let longest = ctx.cfg.retry.longest();
    let pause = match &outcome {
        Outcome::Failed {
            retry_after: Some(after),
            ..
        } if !after.is_zero() => Some((*after).min(longest)),
        _ => None,
    };
    let decide = |action, discard_reason| Decision {
        action,
        strike: strike(&outcome, ctx.cfg.strike_on),
        congested: congested(&outcome),
        pause,
        log_entry,
        discard_reason,
        attempted: true,
    };
    let (class, status, retry_after) = match &outcome {
        Outcome::Delivered { status } => {
            debug!(
                job_id = %job.id,
                endpoint_id = %job.endpoint,
                attempt = job.attempts,
                status,
                latency_ms = latency.as_millis() as u64,
                "delivered"
            );
            return decide(Settle::Ack, None);
        }
        Outcome::Failed {
            class,
            status,
            retry_after,
            ..
        } => (*class, *status, *retry_after),
    };
    let (action, discard_reason) = retry_or_discard(
        ctx,
        job,
        (class, status, retry_after),
        latency,
        error.unwrap_or_default(),
    );
    decide(action, discard_reason)
}

/// A failed attempt's job: retried after the schedule's next delay (moved later by
/// `Retry-After`), or discarded when the schedule is spent; logged either way.
fn retry_or_discard(
    ctx: &Ctx,
    job: &ClaimedJob,
    (class, status, retry_after): (FailureClass, Option<u16>, Option<Duration>),
    latency: Duration,
    error: String,
) -> (Settle, Option<DiscardReason>) {
    let delay = ctx
        .cfg
        .retry
        .next_delay(job.attempts, &mut rand::rng())
        .map(|delay| honour_retry_after(delay, retry_after, ctx.cfg.retry.longest()));
    let message = match delay {
        Some(_) => "attempt failed; retry scheduled",
        None => "attempt failed; retries exhausted, job discarded",
    };
    warn!(
        job_id = %job.id,
        endpoint_id = %job.endpoint,
        attempt = job.attempts,
        outcome = class.as_str(),
        status,
        latency_ms = latency.as_millis() as u64,
        retry_in_ms = delay.map(|d| d.as_millis() as u64),
        error = %error,
        "{message}"
    );
    match delay {
        Some(delay) => {
            ctx.hot.retries.increment(1);
            (Settle::Retry { delay, error }, None)
        }
        None => {
            let reason = format!(
                "retries exhausted after {} attempts; last error: {error}",
                job.attempts
            );
            (
                Settle::Discard { reason },
                Some(DiscardReason::RetriesExhausted),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(endpoint: &str, json: &str) -> ClaimedJob {
        ClaimedJob {
            id: "01JOB".into(),
            token: 1,
            attempts: 1,
            enqueued_ms: 0,
            endpoint: endpoint.into(),
            endpoint_json: json.as_bytes().into(),
            payload: b"{}".to_vec(),
            slow: false,
            judged_slow: false,
        }
    }

    #[test]
    fn targets_are_parsed_once_per_stored_record_and_again_when_it_changes() {
        let mut targets = Targets::default();
        let v1 = r#"{"url":"https://a.example/hook","created_at_ms":1,"updated_at_ms":1}"#;
        let v2 = r#"{"url":"https://b.example/hook","created_at_ms":1,"updated_at_ms":2}"#;
        let first = targets.get(&job("e1", v1));
        let url = |t: &Prepared| t.as_ref().as_ref().unwrap().url.clone().unwrap();
        assert_eq!(url(&first).as_str(), "https://a.example/hook");
        // The same record in a later claim (another buffer): the parsed one is reused.
        assert!(Arc::ptr_eq(&first, &targets.get(&job("e1", v1))));
        // Set again: parsed again.
        let second = targets.get(&job("e1", v2));
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(url(&second).as_str(), "https://b.example/hook");

        let unreadable = targets.get(&job("e2", "{not json"));
        let reason = unreadable.as_ref().as_ref().unwrap_err();
        assert!(reason.starts_with("malformed: endpoint record unreadable"));
        let bad_url = r#"{"url":"not a url","created_at_ms":1,"updated_at_ms":1}"#;
        let target = targets.get(&job("e3", bad_url));
        let err = target.as_ref().as_ref().unwrap().url.as_ref().unwrap_err();
        assert!(err.starts_with("the endpoint URL does not parse"));
    }

    #[test]
    fn the_target_cache_is_bounded() {
        let mut targets = Targets::default();
        let json = r#"{"url":"https://a.example/","created_at_ms":1,"updated_at_ms":1}"#;
        for i in 0..=Targets::MAX {
            targets.get(&job(&format!("e{i}"), json));
        }
        assert!(targets.parsed.len() <= Targets::MAX);
    }

    fn failed(class: FailureClass, status: Option<u16>) -> Outcome {
        Outcome::Failed {
            class,
            status,
            detail: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn timeouts_5xx_and_429_cut_the_adaptive_limit_other_failures_do_not() {
        use FailureClass::*;
        assert!(congested(&failed(Timeout, None)));
        assert!(congested(&failed(ConnectTimeout, None)));
        assert!(congested(&failed(HttpStatus, Some(503))));
        assert!(congested(&failed(HttpStatus, Some(429))));
        assert!(!congested(&failed(HttpStatus, Some(404))));
        assert!(!congested(&failed(Refused, None)));
        assert!(!congested(&Outcome::Delivered { status: 200 }));
    }

    #[test]
    fn retry_after_moves_later_never_earlier_and_is_capped() {
        let s = Duration::from_secs;
        assert_eq!(honour_retry_after(s(3), Some(s(120)), s(600)), s(120));
        assert_eq!(honour_retry_after(s(300), Some(s(120)), s(600)), s(300));
        assert_eq!(honour_retry_after(s(3), Some(s(100_000)), s(600)), s(600));
        assert_eq!(honour_retry_after(s(3), None, s(600)), s(3));
        assert_eq!(honour_retry_after(s(3), Some(Duration::ZERO), s(600)), s(3));
    }

    #[test]
    fn strikes_follow_the_policy() {
        use FailureClass::*;
        let c = StrikeOn::Connection;
        assert_eq!(strike(&failed(Refused, None), c), Strike::One);
        assert_eq!(strike(&failed(Dns, None), c), Strike::One);
        assert_eq!(strike(&failed(Blocked, None), c), Strike::One);
        assert_eq!(strike(&failed(HttpStatus, Some(500)), c), Strike::None);
        assert_eq!(strike(&failed(Timeout, None), c), Strike::None);
        assert_eq!(
            strike(&failed(HttpStatus, Some(410)), c),
            Strike::DisableNow
        );
        assert_eq!(
            strike(&failed(HttpStatus, Some(500)), StrikeOn::All),
            Strike::One
        );
        assert_eq!(
            strike(&Outcome::Delivered { status: 200 }, StrikeOn::All),
            Strike::None
        );
    }

    #[test]
    fn one_success_per_endpoint_and_interval_is_logged() {
        let mut log = SuccessLog::default();
        let t0 = Instant::now();
        assert!(log.admit("a", t0));
        assert!(!log.admit("a", t0 + Duration::from_millis(999)));
        assert!(log.admit("b", t0 + Duration::from_millis(999)));
        assert!(log.admit("a", t0 + SUCCESS_LOG_EVERY));
        assert!(!log.admit("a", t0 + SUCCESS_LOG_EVERY));
    }

    #[test]
    fn the_memory_of_endpoints_is_bounded() {
        let mut log = SuccessLog::default();
        let t0 = Instant::now();
        for i in 0..SuccessLog::MAX {
            log.admit(&i.to_string(), t0);
        }
        assert!(log.admit("late", t0 + SUCCESS_LOG_EVERY));
        assert_eq!(log.last.len(), 1);
    }
}
