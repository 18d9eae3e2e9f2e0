//! `/api/v1/endpoints`: list (paged, with health), get, create or replace, delete, enable,
//! disable, rotate the secret, send a test event, the attempt log: each an adapter over one
//! of [`herald_ops::Ops`]'s endpoint operations.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::model::{
    AttemptLog, Deleted, DisableInput, DisableResult, EnableResult, Endpoint, EndpointInput,
    EndpointList, EndpointListQuery, EndpointSaved, EnqueuedJob, RotateInput, Rotated,
};
use crate::problem::{ApiJson, ApiPath, ApiQuery, OptionalJson, Problem};
use crate::problem::{ReadProblems, WriteProblems};
use crate::AppState;

/// Lists endpoints with their health, a page at a time.
///
/// Pages follow the store's shards in turn; an endpoint present for the whole listing is
/// listed at least once, in no particular order (each page is sorted by id).
#[utoipa::path(
    operation_id = "listEndpoints",
    get,
    path = "/api/v1/endpoints",
    tag = "endpoints",
    params(EndpointListQuery),
    responses((status = 200, description = "A page of endpoints", body = EndpointList), ReadProblems),
    security(("bearer" = ["read"]))
)]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<EndpointListQuery>,
) -> Result<Json<EndpointList>, Problem> {
    Ok(Json(s.ops.list_endpoints(&q).await?))
}

/// One endpoint: state, strikes, limits, subscriptions, latest attempts.
#[utoipa::path(
    operation_id = "getEndpoint",
    get,
    path = "/api/v1/endpoints/{id}",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    responses((status = 200, description = "The endpoint", body = Endpoint), ReadProblems),
    security(("bearer" = ["read"]))
)]
pub async fn get(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Endpoint>, Problem> {
    Ok(Json(s.ops.endpoint(&id).await?))
}

/// Creates an endpoint, or replaces its URL (re-activating it if it was disabled).
///
/// Secrets and flow limits not given are kept.
#[utoipa::path(
    operation_id = "setEndpoint",
    put,
    path = "/api/v1/endpoints/{id}",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id: 1 to 128 of letters, digits, `.`, `_`, `-`, `:`", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    request_body = EndpointInput,
    responses(
        (status = 200, description = "Replaced", body = EndpointSaved),
        (status = 201, description = "Created", body = EndpointSaved),
        WriteProblems
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn set(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<EndpointInput>,
) -> Result<(StatusCode, Json<EndpointSaved>), Problem> {
    let saved = s.ops.set_endpoint(&id, input).await?;
    let status = if saved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(saved)))
}

/// Deletes an endpoint and its subscriptions; its queued jobs go to the dead-letter store.
#[utoipa::path(
    operation_id = "deleteEndpoint",
    delete,
    path = "/api/v1/endpoints/{id}",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    responses((status = 200, description = "Deleted", body = Deleted), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn delete(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, Problem> {
    Ok(Json(s.ops.delete_endpoint(&id).await?))
}

/// Enables an endpoint: its parked jobs are delivered again (those already due at once).
#[utoipa::path(
    operation_id = "enableEndpoint",
    post,
    path = "/api/v1/endpoints/{id}/enable",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    responses((status = 200, description = "Enabled", body = EnableResult), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn enable(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EnableResult>, Problem> {
    Ok(Json(s.ops.enable_endpoint(&id).await?))
}

/// Disables an endpoint: its jobs wait (parked) until it is enabled.
#[utoipa::path(
    operation_id = "disableEndpoint",
    post,
    path = "/api/v1/endpoints/{id}/disable",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    request_body(content = Option<DisableInput>, description = "Optional: why"),
    responses((status = 200, description = "Disabled", body = DisableResult), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn disable(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    OptionalJson(input): OptionalJson<DisableInput>,
) -> Result<Json<DisableResult>, Problem> {
    Ok(Json(s.ops.disable_endpoint(&id, input).await?))
}

/// Starts signing with a new secret, shown once; the previous ones keep signing for the grace
/// period.
#[utoipa::path(
    operation_id = "rotateSecret",
    post,
    path = "/api/v1/endpoints/{id}/rotate-secret",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    request_body(content = Option<RotateInput>, description = "Optional: the grace period"),
    responses((status = 200, description = "The new secret", body = Rotated), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn rotate_secret(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    OptionalJson(input): OptionalJson<RotateInput>,
) -> Result<Json<Rotated>, Problem> {
    Ok(Json(s.ops.rotate_secret(&id, input).await?))
}

/// Sends the endpoint a test event: the documentation's example event, signed, through the
/// normal queue (parked if the endpoint is disabled).
#[utoipa::path(
    operation_id = "sendTestEvent",
    post,
    path = "/api/v1/endpoints/{id}/test",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    responses((status = 202, description = "The test event's job", body = EnqueuedJob), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn send_test(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<EnqueuedJob>), Problem> {
    Ok((
        StatusCode::ACCEPTED,
        Json(s.ops.send_test_event(&id).await?),
    ))
}

/// The endpoint's latest attempts, newest first.
#[utoipa::path(
    operation_id = "listAttempts",
    get,
    path = "/api/v1/endpoints/{id}/attempts",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id", pattern = r"^[A-Za-z0-9._:-]{1,128}$")),
    responses((status = 200, description = "The attempt log", body = AttemptLog), ReadProblems),
    security(("bearer" = ["read"]))
)]
pub async fn attempts(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AttemptLog>, Problem> {
    Ok(Json(s.ops.attempts(&id).await?))
}
