//! The dead-letter store: listing with filters (endpoint, reason, time range) and a cursor,
//! replay or purge of one entry, and replay or purge in bulk by filter.

use axum::extract::State;
use axum::Json;
use herald_core::job_id_key;
use herald_store::{DeadCursor, DeadFilter};

use super::limit;
use crate::model::{DeadLetterList, DeadListQuery, DeadSelection, Purged, Replayed};
use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem};
use crate::problem::{ReadProblems, WriteProblems};
use crate::AppState;

/// What a bulk call takes: a filter, or everything with `all`.
#[derive(Debug)]
pub enum Selection {
    All,
    Matching(DeadFilter),
}

impl TryFrom<DeadSelection> for Selection {
    type Error = Problem;

    fn try_from(s: DeadSelection) -> Result<Self, Problem> {
        let filter = DeadFilter::from_text(
            s.endpoint.as_deref(),
            s.reason.as_deref(),
            s.since.as_deref(),
            s.until.as_deref(),
        )?;
        match (s.all, filter.is_empty()) {
            (true, true) => Ok(Selection::All),
            (false, false) => Ok(Selection::Matching(filter)),
            (true, false) => Err(Problem::bad_request(
                "give either \"all\": true or conditions (endpoint, reason, since, until), not both",
            )),
            (false, true) => Err(Problem::bad_request(
                "give conditions (endpoint, reason, since, until), or \"all\": true for every dead letter",
            )),
        }
    }
}

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
    let filter = DeadFilter::from_text(
        q.endpoint.as_deref(),
        q.reason.as_deref(),
        q.since.as_deref(),
        q.until.as_deref(),
    )?;
    let after = q
        .cursor
        .as_deref()
        .map(str::parse::<DeadCursor>)
        .transpose()?;
    let page = s
        .store
        .dead_page(&filter, after.as_ref(), limit(q.limit))
        .await?;
    Ok(Json(DeadLetterList {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

fn not_dead(id: &str) -> Problem {
    Problem::not_found(format!("job {id} is not in the dead-letter store"))
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
    let id = job_id_key(&id);
    match s.store.dead_replay(&[id.to_owned()]).await? {
        0 => Err(not_dead(id)),
        replayed => Ok(Json(Replayed { replayed })),
    }
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
    let id = job_id_key(&id);
    match s.store.dead_purge(&[id.to_owned()]).await? {
        0 => Err(not_dead(id)),
        purged => Ok(Json(Purged { purged })),
    }
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
    let replayed = match Selection::try_from(selection)? {
        Selection::All => s.store.dead_replay_all().await?,
        Selection::Matching(filter) => s.store.dead_replay_matching(&filter).await?,
    };
    Ok(Json(Replayed { replayed }))
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
    let purged = match Selection::try_from(selection)? {
        Selection::All => s.store.dead_purge_all().await?,
        Selection::Matching(filter) => s.store.dead_purge_matching(&filter).await?,
    };
    Ok(Json(Purged { purged }))
}
