//! The dead-letter store: listing with filters (endpoint, reason, time range) and a cursor,
//! replay or purge of one entry, and replay or purge in bulk by filter.

use axum::extract::State;
use axum::Json;
use herald_ops::dead::Chosen;

use crate::model::{DeadLetterList, DeadListQuery, DeadSelection, Purged, Replayed};
use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem};
use crate::problem::{ReadProblems, WriteProblems};
use crate::AppState;

/// Lists the dead-letter store, newest first, filtered, a page at a time.
#[utoipa::path(
    operation_id = "listDeadLetters",
    get,
    path = "/api/v1/dead-letters",
    tag = "dead letters",
    params(DeadListQuery),
    responses((status = 200, description = "A page of dead letters", body = DeadLetterList), ReadProblems),
    security(("bearer" = ["read"]))
)]
pub async fn list(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<DeadListQuery>,
) -> Result<Json<DeadLetterList>, Problem> {
    Ok(Json(s.ops.dead_letters(&q).await?))
}

/// Puts one dead letter back in its endpoint's queue, due at once, with a fresh retry
/// schedule.
#[utoipa::path(
    operation_id = "replayDeadLetter",
    post,
    path = "/api/v1/dead-letters/{id}/replay",
    tag = "dead letters",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, description = "Replayed", body = Replayed), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn replay_one(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Replayed>, Problem> {
    Ok(Json(s.ops.replay_dead_one(&id).await?))
}

/// Deletes one dead letter for good.
#[utoipa::path(
    operation_id = "purgeDeadLetter",
    delete,
    path = "/api/v1/dead-letters/{id}",
    tag = "dead letters",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, description = "Purged", body = Purged), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn purge_one(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Purged>, Problem> {
    Ok(Json(s.ops.purge_dead_one(&id).await?))
}

/// Replays every dead letter the selection takes, for example everything of one endpoint
/// discarded since a time.
#[utoipa::path(
    operation_id = "replayDeadLetters",
    post,
    path = "/api/v1/dead-letters/replay",
    tag = "dead letters",
    request_body = DeadSelection,
    responses((status = 200, description = "Replayed", body = Replayed), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn replay_matching(
    State(s): State<AppState>,
    ApiJson(selection): ApiJson<DeadSelection>,
) -> Result<Json<Replayed>, Problem> {
    let chosen = Chosen::try_from(selection)?;
    Ok(Json(s.ops.replay_dead(&chosen).await?))
}

/// Deletes every dead letter the selection takes, for good.
#[utoipa::path(
    operation_id = "purgeDeadLetters",
    post,
    path = "/api/v1/dead-letters/purge",
    tag = "dead letters",
    request_body = DeadSelection,
    responses((status = 200, description = "Purged", body = Purged), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn purge_matching(
    State(s): State<AppState>,
    ApiJson(selection): ApiJson<DeadSelection>,
) -> Result<Json<Purged>, Problem> {
    let chosen = Chosen::try_from(selection)?;
    Ok(Json(s.ops.purge_dead(&chosen).await?))
}
