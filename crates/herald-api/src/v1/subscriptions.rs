//! Subscriptions: the services an endpoint subscribes to (list, set, remove), and the
//! endpoints subscribed to a service.

use axum::extract::State;
use axum::Json;
use herald_core::{check_slug, Level, Subscription};

use super::{endpoint_id, limit};
use crate::model::{
    PageQuery, ServiceSubscription, Subscriber, SubscriberList, SubscriptionInput, SubscriptionList,
};
use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem};
use crate::problem::{ReadProblems, WriteProblems};
use crate::AppState;

fn slug(text: &str) -> Result<&str, Problem> {
    check_slug(text).map_err(|e| Problem::bad_request(e.to_string()))
}

/// An `HSCAN` cursor as these listings hand it out.
fn scan_cursor(text: Option<&str>) -> Result<Option<u64>, Problem> {
    text.map(|c| {
        c.parse::<u64>()
            .map_err(|_| Problem::bad_request(format!("cursor {c:?} is not one this listing gave")))
    })
    .transpose()
}

/// The services an endpoint subscribes to, a page at a time.
#[utoipa::path(
    operation_id = "listSubscriptions",
    get,
    path = "/api/v1/endpoints/{id}/subscriptions",
    tag = "subscriptions",
    params(("id" = String, Path, description = "The endpoint id"), PageQuery),
    responses((status = 200, description = "A page of subscriptions", body = SubscriptionList), ReadProblems),
    security(("bearer" = ["read"]))
)]
pub async fn of_endpoint(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<SubscriptionList>, Problem> {
    let id = endpoint_id(&id)?;
    let after = scan_cursor(q.cursor.as_deref())?;
    if after.is_none() && s.store.endpoint(&id).await?.is_none() {
        return Err(super::no_endpoint(&id));
    }
    let page = s
        .store
        .subscription_page(&id, after, limit(q.limit))
        .await?;
    Ok(Json(SubscriptionList {
        items: page
            .items
            .into_iter()
            .map(|(service, sub)| ServiceSubscription::new(service, sub))
            .collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

/// Subscribes an endpoint to a service, replacing an earlier subscription to it.
#[utoipa::path(
    operation_id = "subscribe",
    put,
    path = "/api/v1/endpoints/{id}/subscriptions/{service}",
    tag = "subscriptions",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        ("service" = String, Path, description = "The service slug, e.g. `heroku`"),
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
    let id = endpoint_id(&id)?;
    let service = slug(&service)?;
    let level = input.level.map_or(Level::All, Into::into);
    let sub = Subscription::new(level, &input.components);
    s.store.subscribe(&id, service, &sub).await?;
    Ok(Json(ServiceSubscription::new(service.to_owned(), sub)))
}

/// Removes a subscription.
#[utoipa::path(
    operation_id = "unsubscribe",
    delete,
    path = "/api/v1/endpoints/{id}/subscriptions/{service}",
    tag = "subscriptions",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        ("service" = String, Path, description = "The service slug"),
    ),
    responses((status = 204, description = "Removed"), WriteProblems),
    security(("bearer" = ["admin"]))
)]
pub async fn remove(
    State(s): State<AppState>,
    ApiPath((id, service)): ApiPath<(String, String)>,
) -> Result<axum::http::StatusCode, Problem> {
    let id = endpoint_id(&id)?;
    let service = slug(&service)?;
    if !s.store.unsubscribe(&id, service).await? {
        return Err(Problem::not_found(format!(
            "{id} is not subscribed to {service}"
        )));
    }
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// The endpoints subscribed to a service, a page at a time.
#[utoipa::path(
    operation_id = "listSubscribers",
    get,
    path = "/api/v1/services/{service}/subscribers",
    tag = "subscriptions",
    params(("service" = String, Path, description = "The service slug"), PageQuery),
    responses((status = 200, description = "A page of subscribers", body = SubscriberList), ReadProblems),
    security(("bearer" = ["read"]))
)]
pub async fn of_service(
    State(s): State<AppState>,
    ApiPath(service): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<SubscriberList>, Problem> {
    let service = slug(&service)?;
    let after = scan_cursor(q.cursor.as_deref())?;
    let page = s
        .store
        .subscriber_page(service, after, limit(q.limit))
        .await?;
    Ok(Json(SubscriberList {
        items: page
            .items
            .into_iter()
            .map(|(endpoint, sub)| Subscriber {
                endpoint,
                level: sub.level.into(),
                components: sub.components,
            })
            .collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}
