//! `/api/v1/endpoints`: list (paged, with health), get, create or replace, delete, enable,
//! disable, rotate the secret, send a test event, the attempt log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use herald_core::{check_max_in_flight, parse_rate_setting, Secret};
use herald_store::{EndpointQuery, FlowChange, ScanCursor, StatusFilter};

use super::{duration, endpoint_id, limit, no_endpoint};
use crate::model::{
    AttemptLog, Deleted, DisableInput, DisableResult, EnableResult, Endpoint, EndpointInput,
    EndpointList, EndpointListQuery, EndpointSaved, EnqueuedJob, RotateInput, Rotated,
};
use crate::problem::{ApiJson, ApiPath, ApiQuery, OptionalJson, Problem};
use crate::problem::{ReadProblems, WriteProblems};
use crate::AppState;

/// The reason of a disable that gives none, as the CLI's.
const DEFAULT_DISABLE_REASON: &str = "disabled by an operator";

/// The grace period of a rotation that names none, as the CLI's.
const DEFAULT_GRACE: &str = "24h";

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
    let query = EndpointQuery {
        search: q.search,
        status: q.status.as_deref().unwrap_or("").parse::<StatusFilter>()?,
    };
    let after = q
        .cursor
        .as_deref()
        .map(str::parse::<ScanCursor>)
        .transpose()?;
    let page = s.store.endpoint_page(&query, after, limit(q.limit)).await?;
    Ok(Json(EndpointList {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

/// One endpoint: state, strikes, limits, subscriptions, latest attempts.
#[utoipa::path(
    operation_id = "getEndpoint",
    get,
    path = "/api/v1/endpoints/{id}",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id")),
    responses((status = 200, description = "The endpoint", body = Endpoint), ReadProblems),
    security(("bearer" = ["read"]))
)]
pub async fn get(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Endpoint>, Problem> {
    let id = endpoint_id(&id)?;
    let mut conn = s.store.conn().await?;
    let now = s.store.now_ms(&mut conn).await?;
    drop(conn);
    let state = s
        .store
        .endpoint_state(&id, now)
        .await?
        .ok_or_else(|| no_endpoint(&id))?;
    Ok(Json(state.into()))
}

/// Creates an endpoint, or replaces its URL (re-activating it if it was disabled).
///
/// Secrets and flow limits not given are kept.
#[utoipa::path(
    operation_id = "setEndpoint",
    put,
    path = "/api/v1/endpoints/{id}",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id: 1 to 128 of letters, digits, `.`, `_`, `-`, `:`")),
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
    let id = endpoint_id(&id)?;
    let rate = input
        .rate
        .as_deref()
        .map(|r| {
            parse_rate_setting(r).map_err(|e| Problem::bad_request(format!("invalid rate: {e}")))
        })
        .transpose()?;
    let max_in_flight = input
        .max_in_flight
        .map(|n| check_max_in_flight(n).map_err(|e| Problem::bad_request(e.to_string())))
        .transpose()?;
    let url = s
        .guard
        .check_webhook_url(&input.url)
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let secret = input
        .secret
        .map(|text| {
            Secret::parse(&text)
                .map(|parsed| parsed.expose())
                .map_err(|e| Problem::bad_request(format!("invalid secret: {e}")))
        })
        .transpose()?;
    let flow = FlowChange {
        max_in_flight,
        rate,
    };
    let done = s
        .store
        .set_endpoint_with(&id, url.as_str(), secret, flow)
        .await?;
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(EndpointSaved::new(&id, &done))))
}

/// Deletes an endpoint and its subscriptions; its queued jobs go to the dead-letter store.
#[utoipa::path(
    operation_id = "deleteEndpoint",
    delete,
    path = "/api/v1/endpoints/{id}",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id")),
    responses((status = 200, description = "Deleted", body = Deleted), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn delete(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, Problem> {
    let id = endpoint_id(&id)?;
    let discarded = s.store.delete_endpoint(&id).await?;
    Ok(Json(Deleted::new(&id, discarded)))
}

/// Enables an endpoint: its parked jobs are delivered again (those already due at once).
#[utoipa::path(
    operation_id = "enableEndpoint",
    post,
    path = "/api/v1/endpoints/{id}/enable",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id")),
    responses((status = 200, description = "Enabled", body = EnableResult), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn enable(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EnableResult>, Problem> {
    let id = endpoint_id(&id)?;
    let resumed = s.store.enable_endpoint(&id).await?;
    Ok(Json(EnableResult::new(&id, resumed)))
}

/// Disables an endpoint: its jobs wait (parked) until it is enabled.
#[utoipa::path(
    operation_id = "disableEndpoint",
    post,
    path = "/api/v1/endpoints/{id}/disable",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id")),
    request_body(content = Option<DisableInput>, description = "Optional: why"),
    responses((status = 200, description = "Disabled", body = DisableResult), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn disable(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    OptionalJson(input): OptionalJson<DisableInput>,
) -> Result<Json<DisableResult>, Problem> {
    let id = endpoint_id(&id)?;
    let reason = input
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or(DEFAULT_DISABLE_REASON);
    let changed = s.store.disable_endpoint(&id, reason).await?;
    Ok(Json(DisableResult::new(&id, changed)))
}

/// Starts signing with a new secret, shown once; the previous ones keep signing for the grace
/// period.
#[utoipa::path(
    operation_id = "rotateSecret",
    post,
    path = "/api/v1/endpoints/{id}/rotate-secret",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id")),
    request_body(content = Option<RotateInput>, description = "Optional: the grace period"),
    responses((status = 200, description = "The new secret", body = Rotated), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn rotate_secret(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    OptionalJson(input): OptionalJson<RotateInput>,
) -> Result<Json<Rotated>, Problem> {
    let id = endpoint_id(&id)?;
    let grace = duration("grace", input.grace.as_deref().unwrap_or(DEFAULT_GRACE))?;
    let secret = s.store.rotate_secret(&id, grace).await?;
    Ok(Json(Rotated::new(&id, secret, grace)))
}

/// Sends the endpoint a test event: the documentation's example event, signed, through the
/// normal queue (parked if the endpoint is disabled).
#[utoipa::path(
    operation_id = "sendTestEvent",
    post,
    path = "/api/v1/endpoints/{id}/test",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id")),
    responses((status = 202, description = "The test event's job", body = EnqueuedJob), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn send_test(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<EnqueuedJob>), Problem> {
    let id = endpoint_id(&id)?;
    let done = s.producer.send_test_event(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(done.into())))
}

/// The endpoint's latest attempts, newest first.
#[utoipa::path(
    operation_id = "listAttempts",
    get,
    path = "/api/v1/endpoints/{id}/attempts",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id")),
    responses((status = 200, description = "The attempt log", body = AttemptLog), ReadProblems),
    security(("bearer" = ["read"]))
)]
pub async fn attempts(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AttemptLog>, Problem> {
    let Json(endpoint) = get(State(s), ApiPath(id)).await?;
    Ok(Json(AttemptLog {
        items: endpoint.attempts,
    }))
}
