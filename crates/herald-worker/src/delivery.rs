//! One delivery, as a small state machine: a claimed job is checked, POSTed, and its outcome
//! turned into a settlement (acknowledge, retry later, discard, or hand back) for the settler.

use std::time::{Duration, Instant};

use herald_store::{ClaimedJob, EndpointRecord, Settle, Settlement};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::IgnoredAny;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use crate::http;
use crate::metrics as m;
use crate::Ctx;

/// A finished delivery on its way to the settler.
#[derive(Debug)]
pub(crate) struct Done {
    pub shard: u16,
    pub settlement: Settlement,
    /// Bounded label for the discard metric, when the job is discarded.
    pub discard_reason: Option<&'static str>,
}

/// Where a claimed job goes before it is attempted.
enum Checked {
    Ready { url: String },
    Malformed(String),
}

fn check(job: &ClaimedJob) -> Checked {
    let endpoint: EndpointRecord = match serde_json::from_slice(&job.endpoint_json) {
        Ok(e) => e,
        Err(e) => return Checked::Malformed(format!("malformed: endpoint record unreadable: {e}")),
    };
    if let Err(e) = serde_json::from_slice::<IgnoredAny>(&job.payload) {
        return Checked::Malformed(format!("malformed: payload is not valid JSON: {e}"));
    }
    Checked::Ready { url: endpoint.url }
}

/// Runs one delivery and hands its settlement to the settler. `claimed_at_ms` is the Redis
/// time of the claim, for the enqueue-to-first-attempt lag.
pub(crate) async fn run(
    ctx: std::sync::Arc<Ctx>,
    shard: u16,
    claimed_at_ms: i64,
    job: ClaimedJob,
    permit: OwnedSemaphorePermit,
    done: mpsc::Sender<Done>,
    hard_stop: CancellationToken,
) {
    let span = tracing::info_span!(
        "delivery",
        job_id = %job.id,
        endpoint_id = %job.endpoint,
        attempt = job.attempts
    );
    metrics::gauge!(m::IN_FLIGHT).increment(1.0);
    let (action, discard_reason) = attempt(&ctx, claimed_at_ms, &job, &hard_stop)
        .instrument(span)
        .await;
    metrics::gauge!(m::IN_FLIGHT).decrement(1.0);
    drop(permit);
    let settlement = Settlement {
        id: job.id,
        token: job.token,
        action,
    };
    // The settler outlives every delivery; if it is gone the process is exiting and the
    // lease brings the job back.
    let _ = done
        .send(Done {
            shard,
            settlement,
            discard_reason,
        })
        .await;
}

async fn attempt(
    ctx: &Ctx,
    claimed_at_ms: i64,
    job: &ClaimedJob,
    hard_stop: &CancellationToken,
) -> (Settle, Option<&'static str>) {
    let url = match check(job) {
        Checked::Ready { url } => url,
        Checked::Malformed(reason) => {
            warn!(%reason, "job discarded");
            return (Settle::Discard { reason }, Some("malformed"));
        }
    };
    if job.attempts == 1 {
        let lag = (claimed_at_ms - job.enqueued_ms).max(0) as f64 / 1000.0;
        metrics::histogram!(m::FIRST_ATTEMPT_LAG).record(lag);
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("webhook-id"),
        HeaderValue::from_str(&format!("msg_{}", job.id)).expect("job ids are header-safe"),
    );
    let started = Instant::now();
    let attempt = tokio::select! {
        a = http::post(&ctx.client, &url, headers, job.payload.clone()) => a,
        _ = hard_stop.cancelled() => {
            debug!("shutdown grace over; lease handed back");
            return (Settle::Release, None);
        }
    };
    let latency = started.elapsed();
    metrics::histogram!(m::DELIVERY_DURATION).record(latency.as_secs_f64());
    metrics::counter!(m::DELIVERIES, "outcome" => attempt.outcome.label()).increment(1);
    match attempt.outcome {
        herald_core::Outcome::Delivered { status } => {
            debug!(status, latency_ms = latency.as_millis() as u64, "delivered");
            (Settle::Ack, None)
        }
        ref failed @ herald_core::Outcome::Failed {
            class,
            status,
            retry_after,
            ..
        } => {
            let error = failed.error_line().unwrap_or_default();
            let next = ctx.cfg.retry.next_delay(job.attempts, &mut rand::rng());
            match next {
                Some(delay) => {
                    // Retry-After moves the next attempt later, never earlier, and no further
                    // than the schedule's longest delay.
                    let asked = retry_after
                        .map(|r| r.min(ctx.cfg.retry.longest()))
                        .unwrap_or(Duration::ZERO);
                    let delay = delay.max(asked);
                    warn!(
                        outcome = class.as_str(),
                        status,
                        latency_ms = latency.as_millis() as u64,
                        retry_in_ms = delay.as_millis() as u64,
                        error = %error,
                        "attempt failed; retry scheduled"
                    );
                    metrics::counter!(m::RETRIES).increment(1);
                    (Settle::Retry { delay, error }, None)
                }
                None => {
                    warn!(
                        outcome = class.as_str(),
                        status,
                        latency_ms = latency.as_millis() as u64,
                        error = %error,
                        "attempt failed; retries exhausted, job discarded"
                    );
                    let reason = format!(
                        "retries exhausted after {} attempts; last error: {error}",
                        job.attempts
                    );
                    (Settle::Discard { reason }, Some("retries_exhausted"))
                }
            }
        }
    }
}
