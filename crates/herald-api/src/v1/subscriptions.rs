//! Subscriptions: the services an endpoint subscribes to (list, set, remove), and the
//! endpoints subscribed to a service.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::model::{
    PageQuery, ServiceSubscription, SubscriberList, SubscriptionInput, SubscriptionList,
};
use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem};
use crate::problem::{ReadProblems, WriteProblems};
use crate::AppState;

/// The services an endpoint subscribes to, a page at a time.
#[utoipa::path(
    operation_id = "listSubscriptions",
    get,
    path = "/api/v1/endpoints/{id}/subscriptions",
    tag = "subscriptions",
    params(("id" = String, Path, description = "The endpoint id", pattern = r"^[A-Za-z0-9._:-]{1,128}$"), PageQuery),
    responses((status = 200, description = "A page of subscriptions", body = SubscriptionList), ReadProblems),
    security(("bearer" = ["read"]))
)]
pub async fn of_endpoint(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<SubscriptionList>, Problem> {
    Ok(Json(s.ops.subscriptions(&id, &q).await?))
}

/// Subscribes an endpoint to a service, replacing an earlier subscription to it.
#[utoipa::path(
    operation_id = "subscribe",
    put,
    path = "/api/v1/endpoints/{id}/subscriptions/{service}",
    tag = "subscriptions",
    params(
        ("id" = String, Path, description = "The endpoint id", pattern = r"^[A-Za-z0-9._:-]{1,128}$"),
        ("service" = String, Path, description = "The service slug, e.g. `heroku`", pattern = r"^[a-z0-9._-]{1,100}$"),
    ),
    request_body = SubscriptionInput,
    responses((status = 200, description = "The subscription", body = ServiceSubscription), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn set(
    State(s): State<AppState>,
    ApiPath((id, service)): ApiPath<(String, String)>,
    ApiJson(input): ApiJson<SubscriptionInput>,
) -> Result<Json<ServiceSubscription>, Problem> {
    Ok(Json(s.ops.subscribe(&id, &service, input).await?))
}

/// Removes a subscription.
#[utoipa::path(
    operation_id = "unsubscribe",
    delete,
    path = "/api/v1/endpoints/{id}/subscriptions/{service}",
    tag = "subscriptions",
    params(
        ("id" = String, Path, description = "The endpoint id", pattern = r"^[A-Za-z0-9._:-]{1,128}$"),
        ("service" = String, Path, description = "The service slug", pattern = r"^[a-z0-9._-]{1,100}$"),
    ),
    responses((status = 204, description = "Removed"), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn remove(
    State(s): State<AppState>,
    ApiPath((id, service)): ApiPath<(String, String)>,
) -> Result<StatusCode, Problem> {
    s.ops.unsubscribe(&id, &service).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoints subscribed to a service, a page at a time.
#[utoipa::path(
    operation_id = "listSubscribers",
    get,
    path = "/api/v1/services/{service}/subscribers",
    tag = "subscriptions",
    params(("service" = String, Path, description = "The service slug", pattern = r"^[a-z0-9._-]{1,100}$"), PageQuery),
    responses((status = 200, description = "A page of subscribers", body = SubscriberList), ReadProblems),
    security(("bearer" = ["read"]))
)]
pub async fn of_service(
    State(s): State<AppState>,
    ApiPath(service): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<SubscriberList>, Problem> {
    Ok(Json(s.ops.subscribers(&service, &q).await?))
}
