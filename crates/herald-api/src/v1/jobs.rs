//! Jobs: publishing a status-change event, enqueueing a raw job for one endpoint, looking a
//! job up, and the counts of jobs by state.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use herald_core::StatusEvent;

use crate::model::{
    EnqueueOutcome, EnqueueQuery, EnqueuedBatch, EnqueuedJob, Job, PayloadBatch, PublishReport,
    StatsReport, StatusEventBody,
};
use crate::problem::{ApiPath, ApiQuery, JsonBytes, Problem};
use crate::problem::{ReadProblems, WriteProblems};
use crate::AppState;

/// The header that makes a repeated publish or enqueue a no-op.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The `Idempotency-Key` header, if given: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    headers
        .get(IDEMPOTENCY_KEY)
        .map(|value| herald_ops::jobs::idempotency_key(value.as_bytes()))
        .transpose()
        .map_err(Problem::from)
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
    let report = s.ops.publish(&event, key.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, Json(report)))
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
        ("id" = String, Path, description = "The endpoint id", pattern = r"^[A-Za-z0-9._:-]{1,128}$"),
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
    let key = idempotency_key(&headers)?;
    let done = s.ops.enqueue(&id, &q, key, &body).await?;
    let status = match done.status {
        EnqueueOutcome::Duplicate => StatusCode::OK,
        _ => StatusCode::ACCEPTED,
    };
    Ok((status, Json(done)))
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
    params(("id" = String, Path, description = "The endpoint id", pattern = r"^[A-Za-z0-9._:-]{1,128}$"), EnqueueQuery),
    request_body(content = PayloadBatch, description = "A JSON array of 1 to 1000 payloads, each any JSON document: the body POSTed to the endpoint"),
    responses((status = 202, description = "Enqueued, in the order given", body = EnqueuedBatch), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn enqueue_batch(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EnqueueQuery>,
    JsonBytes(body): JsonBytes,
) -> Result<(StatusCode, Json<EnqueuedBatch>), Problem> {
    let done = s.ops.enqueue_batch(&id, &q, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
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
    Ok(Json(s.ops.job(&id).await?))
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
    Ok(Json(s.ops.stats().await?))
}
