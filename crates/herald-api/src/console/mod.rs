//! The operator console at `/`: server-rendered HTML over the API's own handlers, so it does
//! what the API does and nothing else. Pages are read with a session of any scope; forms need
//! an admin session and carry the session's form token. Every form answers with a redirect
//! (post, redirect, get), and its outcome is shown once on the next page.
//!
//! - [`session`]: logging in, the session cookie, the operator, CSRF checks.
//! - [`views`]: the pages.

pub mod session;
pub mod views;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use herald_store::{DeadFilter, EndpointQuery, StatusFilter};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use self::session::{cookie, set_cookie, Operator, Refusal, LOGIN_COOKIE, SESSION_COOKIE};
use self::views::{BulkAction, DeadFilters};
use crate::auth::{is_login_form_token, login_form_token, random_value, same_secret, session_key};
use crate::model::{
    DeadListQuery, DeadSelection, DisableInput, EndpointListQuery, EnqueueOutcome, RotateInput,
};
use crate::problem::{ApiPath, ApiQuery, OptionalJson, Problem};
use crate::{v1, AppState};

/// The stylesheet of every page.
const STYLE: &str = include_str!("console.css");

/// Endpoints or dead letters per console page.
const PAGE: usize = 50;

/// Most API pages one console page follows while they come back empty (a search or filter
/// that matches rarely: each API page examines a bounded part of the store).
const MOST_EMPTY_PAGES: usize = 20;

/// The console's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/console.css", get(stylesheet))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/endpoints", get(endpoints))
        .route("/endpoints/{id}", get(endpoint))
        .route("/endpoints/{id}/{action}", post(endpoint_action))
        .route("/dead", get(dead))
        .route("/dead/replay", post(dead_replay_matching))
        .route("/dead/purge", post(dead_purge_matching))
        .route("/dead/{id}/{action}", post(dead_action))
        .route("/jobs", get(job))
        .layer(from_fn(harden))
}

/// Keeps console pages out of frames and other sites' reach: a strict content security policy
/// (no script at all, styles from this server only, forms posting here only).
async fn harden(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

async fn stylesheet() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// `name=value&…` for a link, leaving out empty values.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if !value.is_empty() {
            q.append_pair(name, value);
        }
    }
    q.finish()
}

/// A form body; a malformed one is a 400 page.
#[derive(Debug)]
pub struct ConsoleForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ConsoleForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, s: &AppState) -> Result<Self, Response> {
        axum::Form::<T>::from_request(req, s)
            .await
            .map(|axum::Form(v)| ConsoleForm(v))
            .map_err(|e: FormRejection| views::error_page(e.status(), &e.body_text()))
    }
}

/// A query; a malformed one is a 400 page.
#[derive(Debug)]
pub struct ConsoleQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for ConsoleQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        axum::extract::Query::<T>::from_request_parts(parts, s)
            .await
            .map(|axum::extract::Query(v)| ConsoleQuery(v))
            .map_err(|e: QueryRejection| views::error_page(StatusCode::BAD_REQUEST, &e.body_text()))
    }
}

fn problem_page(p: Problem) -> Response {
    views::error_page(p.status(), &p.detail)
}

/// The notice left for this session by its last form, shown once.
async fn notice(s: &AppState, op: &Operator) -> Option<String> {
    s.store.take_session_notice(&op.key).await.ok().flatten()
}

/// Leaves `text` for the next page and sends the browser there.
async fn done(s: &AppState, op: &Operator, text: &str, to: &str) -> Response {
    if let Err(e) = s.store.set_session_notice(&op.key, text).await {
        return problem_page(e.into());
    }
    Redirect::to(to).into_response()
}

// ----- logging in and out -----

/// How long a login with a token this server does not know waits for its answer.
const LOGIN_FAILURE_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// The login page, with a fresh form token in a cookie and in the form.
fn login_page(
    headers: &HeaderMap,
    s: &AppState,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let csrf = login_form_token(&s.cfg.tokens.form_key());
    let mut response = views::page(status, views::login(&csrf, error));
    let (name, value) = set_cookie(
        LOGIN_COOKIE,
        &csrf,
        "/login",
        3600,
        headers,
        s.cfg.secure_cookies,
    );
    response.headers_mut().insert(name, value);
    response
}

async fn login_form(State(s): State<AppState>, headers: HeaderMap) -> Response {
    login_page(&headers, &s, StatusCode::OK, None)
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// Opens a session for a valid token: a new session id in an `HttpOnly`, `SameSite=Strict`
/// cookie (`Secure` behind TLS), and a form token kept with the session.
async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    ConsoleForm(form): ConsoleForm<LoginForm>,
) -> Response {
    // The form's token must be the cookie's, and one this server gave out: a pair that a third
    // party chose (empty or not) is refused.
    let paired = cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same_secret(c, &form.csrf))
        && is_login_form_token(&s.cfg.tokens.form_key(), &form.csrf);
    if !paired {
        return login_page(
            &headers,
            &s,
            StatusCode::FORBIDDEN,
            Some("The login form expired or did not come from this console; try again."),
        );
    }
    let Some(verified) = s.cfg.tokens.verify(form.token.trim()) else {
        // Each wrong token costs its sender this long, so that guessing is slow.
        tokio::time::sleep(LOGIN_FAILURE_DELAY).await;
        return login_page(
            &headers,
            &s,
            StatusCode::UNAUTHORIZED,
            Some("That token is not one this server knows."),
        );
    };
    let id = random_value();
    let session = herald_store::Session {
        token: verified.hashed,
        csrf: random_value(),
    };
    if let Err(e) = s
        .store
        .create_session(&session_key(&id), &session, s.cfg.session_ttl)
        .await
    {
        return problem_page(e.into());
    }
    let policy = s.cfg.secure_cookies;
    let ttl = s.cfg.session_ttl.as_secs();
    let mut response = Redirect::to("/").into_response();
    for (name, value) in [
        set_cookie(SESSION_COOKIE, &id, "/", ttl, &headers, policy),
        set_cookie(LOGIN_COOKIE, "", "/login", 0, &headers, policy),
    ] {
        response.headers_mut().append(name, value);
    }
    response
}

#[derive(Debug, Deserialize)]
struct TokenOnly {
    #[serde(default)]
    csrf: String,
}

/// Ends the session.
async fn logout(
    State(s): State<AppState>,
    op: Operator,
    headers: HeaderMap,
    ConsoleForm(form): ConsoleForm<TokenOnly>,
) -> Response {
    if !same_secret(&form.csrf, &op.csrf) {
        return Refusal::Forbidden("this form has expired; reload the page and try again")
            .into_response();
    }
    if let Err(e) = s.store.delete_session(&op.key).await {
        return problem_page(e.into());
    }
    let mut response = Redirect::to("/login").into_response();
    let (name, value) = set_cookie(SESSION_COOKIE, "", "/", 0, &headers, s.cfg.secure_cookies);
    response.headers_mut().insert(name, value);
    response
}

// ----- pages -----

/// Jobs by state, disabled endpoints, recent failures.
async fn overview(State(s): State<AppState>, op: Operator) -> Response {
    let notice = notice(&s, &op).await;
    let stats = match v1::jobs::stats(State(s.clone())).await {
        Ok(Json(stats)) => stats,
        Err(p) => return problem_page(p),
    };
    let disabled_query = EndpointQuery {
        search: None,
        status: StatusFilter::Disabled,
    };
    let disabled = match s.store.endpoint_page(&disabled_query, None, 20).await {
        Ok(page) => page,
        Err(e) => return problem_page(e.into()),
    };
    let recent = match s.store.dead_page(&DeadFilter::default(), None, 10).await {
        Ok(page) => page,
        Err(e) => return problem_page(e.into()),
    };
    let disabled_items: Vec<_> = disabled.items.into_iter().map(Into::into).collect();
    let recent_items: Vec<_> = recent.items.into_iter().map(Into::into).collect();
    views::page(
        StatusCode::OK,
        views::overview(
            &op,
            notice.as_deref(),
            &stats,
            &disabled_items,
            disabled.next.is_some(),
            &recent_items,
        ),
    )
}

#[derive(Debug, Default, Deserialize)]
struct EndpointsQuery {
    #[serde(default)]
    search: String,
    #[serde(default)]
    status: String,
    cursor: Option<String>,
}

async fn endpoints(
    State(s): State<AppState>,
    op: Operator,
    ConsoleQuery(q): ConsoleQuery<EndpointsQuery>,
) -> Response {
    let notice = notice(&s, &op).await;
    let mut cursor = q.cursor;
    let mut follows = 0;
    let listed = loop {
        let listed = v1::endpoints::list(
            State(s.clone()),
            ApiQuery(EndpointListQuery {
                search: Some(q.search.clone()),
                status: Some(q.status.clone()),
                limit: Some(PAGE),
                cursor: cursor.take(),
            }),
        )
        .await;
        follows += 1;
        match &listed {
            Ok(Json(list))
                if list.items.is_empty()
                    && list.next_cursor.is_some()
                    && follows < MOST_EMPTY_PAGES =>
            {
                cursor = list.next_cursor.clone();
            }
            _ => break listed,
        }
    };
    match listed {
        Ok(Json(list)) => views::page(
            StatusCode::OK,
            views::endpoints(
                &op,
                notice.as_deref(),
                &q.search,
                &q.status,
                &list.items,
                list.next_cursor.as_deref(),
            ),
        ),
        Err(p) => problem_page(p),
    }
}

async fn endpoint(
    State(s): State<AppState>,
    op: Operator,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let notice = notice(&s, &op).await;
    match v1::endpoints::get(State(s), ApiPath(id)).await {
        Ok(Json(e)) => views::page(StatusCode::OK, views::endpoint(&op, notice.as_deref(), &e)),
        Err(p) => problem_page(p),
    }
}

#[derive(Debug, Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    reason: Option<String>,
    grace: Option<String>,
}

/// Enable, disable, send a test event, rotate the secret; back to the endpoint's page.
async fn endpoint_action(
    State(s): State<AppState>,
    op: Operator,
    ApiPath((id, action)): ApiPath<(String, String)>,
    ConsoleForm(form): ConsoleForm<ActionForm>,
) -> Response {
    if let Err(refusal) = op.may_submit(&form.csrf) {
        return refusal.into_response();
    }
    let endpoint = match v1::endpoint_id(&id) {
        Ok(e) => e,
        Err(p) => return problem_page(p),
    };
    let path = ApiPath(id.clone());
    let outcome: Result<String, Problem> = match action.as_str() {
        "enable" => v1::endpoints::enable(State(s.clone()), path)
            .await
            .map(|Json(r)| {
                format!(
                    "Endpoint {id} enabled; {} queued jobs are served again.",
                    r.resumed_jobs
                )
            }),
        "disable" => v1::endpoints::disable(
            State(s.clone()),
            path,
            OptionalJson(DisableInput {
                reason: form.reason,
            }),
        )
        .await
        .map(|Json(r)| {
            if r.changed {
                format!("Endpoint {id} disabled; its jobs wait (parked) until it is enabled.")
            } else {
                format!("Endpoint {id} was already disabled.")
            }
        }),
        "test" => v1::endpoints::send_test(State(s.clone()), path)
            .await
            .map(|(_, Json(job))| match job.status {
                EnqueueOutcome::Parked => format!(
                    "Test event sent as job {}; it is parked until the endpoint is enabled.",
                    job.job_id
                ),
                _ => format!("Test event sent as job {}.", job.job_id),
            }),
        "rotate-secret" => v1::endpoints::rotate_secret(
            State(s.clone()),
            path,
            OptionalJson(RotateInput { grace: form.grace }),
        )
        .await
        .map(|Json(r)| {
            format!(
                "New signing secret of {id}, shown once: {}. The previous secrets keep signing for {}.",
                r.secret,
                humantime::format_duration(std::time::Duration::from_secs(r.old_secrets_expire_in_s))
            )
        }),
        other => Err(Problem::not_found(format!("no console action {other:?}"))),
    };
    let text = outcome.unwrap_or_else(|p| format!("Not done: {}", p.detail));
    done(&s, &op, &text, &format!("/endpoints/{endpoint}")).await
}

#[derive(Debug, Default, Clone, Deserialize)]
struct DeadQuery {
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    cursor: Option<String>,
}

/// A time from the page's `datetime-local` fields (no offset: UTC), as RFC 3339; anything else
/// goes through as typed (RFC 3339 and ms are accepted, the rest refused by the filter).
fn utc_input(text: &str) -> String {
    let text = text.trim();
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| {
            t.and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_else(|| text.to_owned())
}

fn opt(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.to_owned())
}

impl DeadQuery {
    fn filters(&self) -> DeadFilters {
        DeadFilters {
            endpoint: self.endpoint.clone(),
            reason: self.reason.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
        }
    }

    /// This page's address, to come back to after a form.
    fn here(&self) -> String {
        format!(
            "/dead?{}",
            query(&[
                ("endpoint", &self.endpoint),
                ("reason", &self.reason),
                ("since", &self.since),
                ("until", &self.until),
                ("cursor", self.cursor.as_deref().unwrap_or("")),
            ])
        )
    }

    fn selection(&self) -> DeadSelection {
        let since = opt(&self.since).map(|t| utc_input(&t));
        let until = opt(&self.until).map(|t| utc_input(&t));
        let any = [&self.endpoint, &self.reason, &self.since, &self.until]
            .iter()
            .any(|t| !t.trim().is_empty());
        DeadSelection {
            endpoint: opt(&self.endpoint),
            reason: opt(&self.reason),
            since,
            until,
            all: !any,
        }
    }
}

async fn dead(
    State(s): State<AppState>,
    op: Operator,
    ConsoleQuery(q): ConsoleQuery<DeadQuery>,
) -> Response {
    let notice = notice(&s, &op).await;
    let sel = q.selection();
    let mut cursor = q.cursor.clone();
    let mut follows = 0;
    let listed = loop {
        let listed = v1::dead::list(
            State(s.clone()),
            ApiQuery(DeadListQuery {
                endpoint: sel.endpoint.clone(),
                reason: sel.reason.clone(),
                since: sel.since.clone(),
                until: sel.until.clone(),
                limit: Some(PAGE),
                cursor: cursor.take(),
            }),
        )
        .await;
        follows += 1;
        match &listed {
            Ok(Json(list))
                if list.items.is_empty()
                    && list.next_cursor.is_some()
                    && follows < MOST_EMPTY_PAGES =>
            {
                cursor = list.next_cursor.clone();
            }
            _ => break listed,
        }
    };
    match listed {
        Ok(Json(list)) => views::page(
            StatusCode::OK,
            views::dead(
                &op,
                notice.as_deref(),
                None,
                &q.filters(),
                &list.items,
                list.next_cursor.as_deref(),
                &q.here(),
            ),
        ),
        Err(p) => views::page(
            p.status(),
            views::dead(
                &op,
                notice.as_deref(),
                Some(p.detail.as_str()),
                &q.filters(),
                &[],
                None,
                "/dead",
            ),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct DeadActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    back: String,
}

/// Where to go back to after a form on the dead-letter page: that page, or its start.
fn back_to_dead(back: &str) -> String {
    let safe = (back == "/dead" || back.starts_with("/dead?"))
        && !back.contains(['\r', '\n', '\\'])
        && !back.contains("//");
    if safe {
        back.to_owned()
    } else {
        "/dead".to_owned()
    }
}

/// Replays or purges one dead letter; back to the page it was on.
async fn dead_action(
    State(s): State<AppState>,
    op: Operator,
    ApiPath((id, action)): ApiPath<(String, String)>,
    ConsoleForm(form): ConsoleForm<DeadActionForm>,
) -> Response {
    if let Err(refusal) = op.may_submit(&form.csrf) {
        return refusal.into_response();
    }
    let path = ApiPath(id.clone());
    let outcome: Result<String, Problem> = match action.as_str() {
        "replay" => v1::dead::replay_one(State(s.clone()), path)
            .await
            .map(|_| format!("Job {id} replayed: due at once, with a fresh retry schedule.")),
        "purge" => v1::dead::purge_one(State(s.clone()), path)
            .await
            .map(|_| format!("Job {id} purged.")),
        other => Err(Problem::not_found(format!("no console action {other:?}"))),
    };
    let text = outcome.unwrap_or_else(|p| format!("Not done: {}", p.detail));
    done(&s, &op, &text, &back_to_dead(&form.back)).await
}

#[derive(Debug, Deserialize)]
struct BulkForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    filter: DeadQuery,
    #[serde(default)]
    confirm: String,
}

async fn dead_replay_matching(
    State(s): State<AppState>,
    op: Operator,
    ConsoleForm(form): ConsoleForm<BulkForm>,
) -> Response {
    if let Err(refusal) = op.may_submit(&form.csrf) {
        return refusal.into_response();
    }
    let back = DeadQuery {
        cursor: None,
        ..form.filter.clone()
    }
    .here();
    if form.confirm.is_empty() {
        return confirm_bulk(&s, &op, BulkAction::Replay, &form.filter, &back).await;
    }
    let text = match v1::dead::replay_matching(
        State(s.clone()),
        crate::problem::ApiJson(form.filter.selection()),
    )
    .await
    {
        Ok(Json(r)) => format!(
            "Replayed {} jobs: due at once, with a fresh retry schedule.",
            r.replayed
        ),
        Err(p) => format!("Not done: {}", p.detail),
    };
    done(&s, &op, &text, &back).await
}

/// The confirmation of a bulk action, naming how many jobs it takes now; with none, a notice
/// that nothing matches.
async fn confirm_bulk(
    s: &AppState,
    op: &Operator,
    action: BulkAction,
    filter: &DeadQuery,
    back: &str,
) -> Response {
    let counted = match v1::dead::Selection::try_from(filter.selection()) {
        Ok(v1::dead::Selection::All) => s.store.dead_count_matching(&DeadFilter::default()).await,
        Ok(v1::dead::Selection::Matching(f)) => s.store.dead_count_matching(&f).await,
        Err(p) => return done(s, op, &format!("Not done: {}", p.detail), back).await,
    };
    match counted {
        Ok(0) => done(s, op, "Not done: no dead job matches.", back).await,
        Ok(n) => views::page(
            StatusCode::OK,
            views::confirm_bulk(op, action, n, &filter.filters(), back),
        ),
        Err(e) => {
            done(
                s,
                op,
                &format!("Not done: {}", Problem::from(e).detail),
                back,
            )
            .await
        }
    }
}

async fn dead_purge_matching(
    State(s): State<AppState>,
    op: Operator,
    ConsoleForm(form): ConsoleForm<BulkForm>,
) -> Response {
    if let Err(refusal) = op.may_submit(&form.csrf) {
        return refusal.into_response();
    }
    let back = DeadQuery {
        cursor: None,
        ..form.filter.clone()
    }
    .here();
    if form.confirm.is_empty() {
        return confirm_bulk(&s, &op, BulkAction::Purge, &form.filter, &back).await;
    }
    let text = match v1::dead::purge_matching(
        State(s.clone()),
        crate::problem::ApiJson(form.filter.selection()),
    )
    .await
    {
        Ok(Json(r)) => format!("Purged {} jobs.", r.purged),
        Err(p) => format!("Not done: {}", p.detail),
    };
    done(&s, &op, &text, &back).await
}

#[derive(Debug, Default, Deserialize)]
struct JobQuery {
    #[serde(default)]
    id: String,
}

async fn job(
    State(s): State<AppState>,
    op: Operator,
    ConsoleQuery(q): ConsoleQuery<JobQuery>,
) -> Response {
    let notice = notice(&s, &op).await;
    let id = q.id.trim();
    if id.is_empty() {
        return views::page(
            StatusCode::OK,
            views::job(&op, notice.as_deref(), "", None, None),
        );
    }
    match v1::jobs::get(State(s), ApiPath(id.to_owned())).await {
        Ok(Json(j)) => views::page(
            StatusCode::OK,
            views::job(&op, notice.as_deref(), id, Some(&j), None),
        ),
        Err(p) => views::page(
            p.status(),
            views::job(&op, notice.as_deref(), id, None, Some(&p.detail)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_times_are_utc_and_typed_times_go_through() {
        assert_eq!(utc_input("2026-03-01T12:30"), "2026-03-01T12:30:00Z");
        assert_eq!(utc_input("2026-03-01T12:30:05"), "2026-03-01T12:30:05Z");
        assert_eq!(utc_input(" 1772366400000 "), "1772366400000");
        assert_eq!(
            utc_input("2026-03-01T12:30:00+02:00"),
            "2026-03-01T12:30:00+02:00"
        );
    }

    #[test]
    fn forms_go_back_to_the_dead_letter_page_only() {
        assert_eq!(back_to_dead("/dead?endpoint=a"), "/dead?endpoint=a");
        assert_eq!(back_to_dead("/dead"), "/dead");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/dead?x=\r\nSet-Cookie: a",
            "/deadly",
            "/endpoints",
        ] {
            assert_eq!(back_to_dead(bad), "/dead", "{bad}");
        }
    }

    #[test]
    fn links_leave_empty_values_out_and_escape_the_rest() {
        assert_eq!(query(&[("a", ""), ("b", "x y&z")]), "b=x+y%26z");
    }
}
