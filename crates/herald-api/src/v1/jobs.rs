//! Jobs: publishing a status-change event, enqueueing a raw job for one endpoint, looking a
//! job up, and the counts of jobs by state.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use herald_core::{job_id_key, StatusEvent};
use herald_store::NewJob;

use super::{duration, endpoint_id};
use crate::model::{
    EnqueueQuery, EnqueuedBatch, EnqueuedJob, Job, PublishReport, StatsReport, StatusEventBody,
};
use crate::problem::{ApiPath, ApiQuery, JsonBytes, Problem};
use crate::problem::{ReadProblems, WriteProblems};
use crate::AppState;

/// The header that makes a repeated publish or enqueue a no-op.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The `Idempotency-Key` header, if given: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bad = || {
        Problem::bad_request(format!(
            "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        ))
    };
    let text = value.to_str().map_err(|_| bad())?;
    if text.is_empty()
        || text.len() > MAX_IDEMPOTENCY_KEY
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad());
    }
    Ok(Some(text.to_owned()))
}

/// Publishes a status-change event: one job for every endpoint subscribed to its service whose
/// level and components admit the change.
///
/// With an `Idempotency-Key` header, publishing again with the same key (within 24 hours)
/// writes no second job for a subscriber that got the first.
#[utoipa::path(
    operation_id = "publishEvent",
    post,
    path = "/api/v1/events",
    tag = "jobs",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a repeated publish a no-op per subscriber (1 to 255 visible ASCII characters)")),
    request_body = StatusEventBody,
    responses((status = 202, description = "Fanned out", body = PublishReport), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn publish(
    State(s): State<AppState>,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<(StatusCode, Json<PublishReport>), Problem> {
    let key = idempotency_key(&headers)?;
    let event = StatusEvent::from_json(&body).map_err(|e| Problem::bad_request(e.to_string()))?;
    let report = s.producer.publish_once(&event, key.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, Json(report.into())))
}

/// Enqueues a raw JSON payload for one endpoint.
///
/// Answers 202 for a new job (queued, or parked when the endpoint is disabled) and 200 when
/// the `Idempotency-Key` was used before (nothing written; the first job's id).
#[utoipa::path(
    operation_id = "enqueueJob",
    post,
    path = "/api/v1/endpoints/{id}/jobs",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a repeated enqueue a no-op answering the first job (1 to 255 visible ASCII characters)"),
        EnqueueQuery,
    ),
    request_body(content = serde_json::Value, description = "Any JSON document (an object, an array, a string, a number, true, false or null): the body POSTed to the endpoint"),
    responses(
        (status = 202, description = "Enqueued", body = EnqueuedJob),
        (status = 200, description = "Already enqueued with this idempotency key", body = EnqueuedJob),
        WriteProblems
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn enqueue(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnqueueQuery>,
    headers: HeaderMap,
    JsonBytes(body): JsonBytes,
) -> Result<(StatusCode, Json<EnqueuedJob>), Problem> {
    let endpoint = endpoint_id(&id)?;
    let delay = q
        .delay
        .as_deref()
        .map(|d| duration("delay", d))
        .transpose()?
        .unwrap_or_default();
    let job = NewJob {
        delay,
        idempotency_key: idempotency_key(&headers)?,
        ..NewJob::new(endpoint, body.trim_ascii().to_vec())
    };
    let done = s.producer.enqueue_job(job).await?;
    let status = if done.created() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(done.into())))
}

/// Most jobs in one batch: as `herald enqueue --ndjson` sends them.
pub const MOST_PER_BATCH: usize = 1000;

/// Enqueues many raw JSON payloads for one endpoint in one pipelined round trip (as
/// `herald enqueue --ndjson`): the body is a JSON array of payloads, each checked before any
/// is enqueued.
#[utoipa::path(
    post,
    operation_id = "enqueueJobs",
    path = "/api/v1/endpoints/{id}/jobs/batch",
    tag = "jobs",
    params(("id" = String, Path, description = "The endpoint id"), EnqueueQuery),
    request_body(content = Vec<serde_json::Value>, description = "A JSON array of 1 to 1000 payloads, each any JSON document: the body POSTed to the endpoint"),
    responses((status = 202, description = "Enqueued, in the order given", body = EnqueuedBatch), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn enqueue_batch(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnqueueQuery>,
    JsonBytes(body): JsonBytes,
) -> Result<(StatusCode, Json<EnqueuedBatch>), Problem> {
    let endpoint = endpoint_id(&id)?;
    let delay = q
        .delay
        .as_deref()
        .map(|d| duration("delay", d))
        .transpose()?
        .unwrap_or_default();
    let payloads: Vec<Box<serde_json::value::RawValue>> =
        serde_json::from_slice(&body).map_err(|e| {
            Problem::bad_request(format!("the body must be a JSON array of payloads: {e}"))
        })?;
    if payloads.is_empty() || payloads.len() > MOST_PER_BATCH {
        return Err(Problem::bad_request(format!(
            "a batch holds 1 to {MOST_PER_BATCH} payloads, not {}",
            payloads.len()
        )));
    }
    let jobs: Vec<NewJob> = payloads
        .iter()
        .map(|p| NewJob {
            delay,
            ..NewJob::new(endpoint.clone(), p.get().as_bytes().to_vec())
        })
        .collect();
    let mut done = Vec::with_capacity(jobs.len());
    for result in s.producer.enqueue_batch(&jobs).await? {
        done.push(EnqueuedJob::from(result?));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(EnqueuedBatch {
            enqueued: done.len() as u64,
            jobs: done,
        }),
    ))
}

/// One job: state, attempts, next attempt, last error, payload. Delivered jobs leave the
/// store, and are not found.
#[utoipa::path(
    operation_id = "getJob",
    get,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job id, with or without the `msg_` prefix of the `webhook-id` header")),
    responses((status = 200, description = "The job", body = Job), ReadProblems),
    security(("bearer" = ["read"]))
)]
pub async fn get(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Job>, Problem> {
    let id = job_id_key(&id);
    let job = s.store.job(id).await?.ok_or_else(|| {
        Problem::not_found(format!(
            "job {id} not found (delivered jobs leave the store)"
        ))
    })?;
    Ok(Json(job.into()))
}

/// Jobs by state (due, scheduled, in flight, parked, dead) and disabled endpoints.
#[utoipa::path(
    operation_id = "getStats",
    get,
    path = "/api/v1/stats",
    tag = "jobs",
    responses((status = 200, description = "The counts", body = StatsReport), ReadProblems),
    security(("bearer" = ["read"]))
)]
pub async fn stats(State(s): State<AppState>) -> Result<Json<StatsReport>, Problem> {
    Ok(Json(s.store.stats().await?.into()))
}
