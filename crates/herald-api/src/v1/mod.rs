//! Version 1 of the JSON API, under `/api/v1`: one module per resource, each handler a thin
//! call into the store or the producer library, the same calls the CLI makes.
//!
//! - [`endpoints`]: endpoints, their health, state changes, secret, test event, attempt log.
//! - [`subscriptions`]: subscriptions of an endpoint, subscribers of a service.
//! - [`jobs`]: publishing events, enqueueing raw jobs, looking a job up, stats.
//! - [`dead`]: the dead-letter store: listing with filters, replay and purge, one or in bulk.

pub mod dead;
pub mod endpoints;
pub mod jobs;
pub mod subscriptions;

use axum::routing::{get, post, put};
use axum::Router;
use herald_core::EndpointId;

use crate::problem::Problem;
use crate::AppState;

/// Items of a page when the request names no limit.
pub const DEFAULT_LIMIT: usize = 50;

/// The routes of version 1 (authentication is layered on by the caller).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/endpoints", get(endpoints::list))
        .route(
            "/endpoints/{id}",
            get(endpoints::get)
                .put(endpoints::set)
                .delete(endpoints::delete),
        )
        .route("/endpoints/{id}/enable", post(endpoints::enable))
        .route("/endpoints/{id}/disable", post(endpoints::disable))
        .route(
            "/endpoints/{id}/rotate-secret",
            post(endpoints::rotate_secret),
        )
        .route("/endpoints/{id}/test", post(endpoints::send_test))
        .route("/endpoints/{id}/attempts", get(endpoints::attempts))
        .route("/endpoints/{id}/jobs", post(jobs::enqueue))
        .route(
            "/endpoints/{id}/subscriptions",
            get(subscriptions::of_endpoint),
        )
        .route(
            "/endpoints/{id}/subscriptions/{service}",
            put(subscriptions::set).delete(subscriptions::remove),
        )
        .route(
            "/services/{service}/subscribers",
            get(subscriptions::of_service),
        )
        .route("/events", post(jobs::publish))
        .route("/jobs/{id}", get(jobs::get))
        .route("/stats", get(jobs::stats))
        .route("/dead-letters", get(dead::list))
        .route("/dead-letters/replay", post(dead::replay_matching))
        .route("/dead-letters/purge", post(dead::purge_matching))
        .route("/dead-letters/{id}", axum::routing::delete(dead::purge_one))
        .route("/dead-letters/{id}/replay", post(dead::replay_one))
}

/// An endpoint id from the path, or a 400 that says what is wrong with it.
pub fn endpoint_id(text: &str) -> Result<EndpointId, Problem> {
    EndpointId::new(text).map_err(|e| Problem::bad_request(e.to_string()))
}

/// The 404 of an endpoint that does not exist, in the CLI's words.
pub fn no_endpoint(id: &EndpointId) -> Problem {
    Problem::new(
        axum::http::StatusCode::NOT_FOUND,
        "unknown_endpoint",
        format!("endpoint {id} not found"),
    )
}

/// A page size from the query: the default when absent.
pub fn limit(given: Option<usize>) -> usize {
    given.unwrap_or(DEFAULT_LIMIT)
}

/// A duration as operators write it (`30s`, `24h`), or a 400 naming the parameter.
pub fn duration(name: &str, text: &str) -> Result<std::time::Duration, Problem> {
    humantime::parse_duration(text.trim())
        .map_err(|e| Problem::bad_request(format!("{name} {text:?} is not a duration: {e}")))
}
