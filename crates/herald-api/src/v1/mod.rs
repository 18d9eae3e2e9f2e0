//! Version 1 of the JSON API, under `/api/v1`: one module per resource, each handler a thin
//! adapter over one operation of [`herald_ops::Ops`], the same the CLI and the console call.
//!
//! - [`endpoints`]: endpoints, their health, state changes, secret, test event, attempt log.
//! - [`subscriptions`]: subscriptions of an endpoint, subscribers of a service.
//! - [`jobs`]: publishing events, enqueueing raw jobs, looking a job up, stats.
//! - [`dead`]: the dead-letter store: listing with filters, replay and purge, one or in bulk.

pub mod dead;
pub mod endpoints;
pub mod jobs;
pub mod subscriptions;

use crate::AppState;
use axum::routing::{get, post, put};
use axum::Router;

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
        .route("/endpoints/{id}/jobs/batch", post(jobs::enqueue_batch))
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
