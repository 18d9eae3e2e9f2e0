//! The operator console at `/`: server-rendered HTML over the same operations as the API
//! ([`herald_ops::Ops`]), so it does what the API does and nothing else. Pages are read with a session of any scope; forms need
//! an admin session and carry the session's form token. Every form answers with a redirect
//! (post, redirect, get), and its outcome is shown once on the next page.
//!
//! - [`session`]: logging in, the session cookie, the operator, CSRF checks.
//! - [`throttle`]: failed logins slowed down per client address.
//! - [`views`]: the pages.

pub mod session;
pub mod throttle;
pub mod views;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use herald_ops::dead::Chosen;
use herald_ops::{OpError, OpResult};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use self::session::{cookie, set_cookie, Operator, Refusal, LOGIN_COOKIE, SESSION_COOKIE};
use self::views::{BulkAction, DeadFilters};
use crate::auth::{is_login_form_token, login_form_token, random_value, same_secret, session_key};
use crate::model::{
    DeadListQuery, DeadSelection, DisableInput, EndpointListQuery, EnqueueOutcome, RotateInput,
};
use crate::problem::{ApiPath, Problem};
use crate::AppState;

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
        .route("/endpoints/{id}/enable", post(enable))
        .route("/endpoints/{id}/disable", post(disable))
        .route("/endpoints/{id}/test", post(send_test))
        .route("/endpoints/{id}/rotate-secret", post(rotate_secret))
        .route("/endpoints/{id}/{action}", post(no_action))
        .route("/dead", get(dead))
        .route("/dead/replay", post(dead_replay_matching))
        .route("/dead/purge", post(dead_purge_matching))
        .route("/dead/{id}/replay", post(dead_replay_one))
        .route("/dead/{id}/purge", post(dead_purge_one))
        .route("/dead/{id}/{action}", post(no_dead_action))
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

/// A problem as a page that keeps the operator's navigation.
fn problem_page_of(op: &Operator, p: Problem) -> Response {
    views::error_page_of(p.status(), &p.detail, Some(op))
}

/// The notice left for this session by its last form, shown once.
async fn notice(s: &AppState, op: &Operator) -> Option<String> {
    s.store.take_session_notice(&op.key).await.ok().flatten()
}

/// Leaves `text` for the next page and sends the browser there.
async fn done(s: &AppState, op: &Operator, text: &str, to: &str) -> Response {
    if let Err(e) = s.store.set_session_notice(&op.key, text).await {
        return problem_page_of(op, e.into());
    }
    Redirect::to(to).into_response()
}

// ----- logging in and out -----

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
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
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
    // The TCP peer; without one (a server not started by `run`), every client counts as one.
    let address = peer.map_or(IpAddr::from([0, 0, 0, 0]), |Extension(ConnectInfo(a))| {
        a.ip()
    });
    let Some(verified) = s.cfg.tokens.verify(form.token.trim()) else {
        // Each wrong token costs its sender's address longer, so that guessing is slow.
        let wait = s.login_failures.failed(address, std::time::Instant::now());
        tokio::time::sleep(wait).await;
        return login_page(
            &headers,
            &s,
            StatusCode::UNAUTHORIZED,
            Some("That token is not one this server knows."),
        );
    };
    s.login_failures.succeeded(address);
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
        return problem_page_of(&op, e.into());
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
    let disabled_query = EndpointListQuery {
        status: Some("disabled".to_owned()),
        limit: Some(20),
        ..EndpointListQuery::default()
    };
    let recent_query = DeadListQuery {
        limit: Some(10),
        ..DeadListQuery::default()
    };
    let read = async {
        Ok::<_, OpError>((
            s.ops.stats().await?,
            s.ops.list_endpoints(&disabled_query).await?,
            s.ops.dead_letters(&recent_query).await?,
        ))
    };
    match read.await {
        Ok((stats, disabled, recent)) => views::page(
            StatusCode::OK,
            views::overview(
                &op,
                notice.as_deref(),
                &stats,
                &disabled.items,
                disabled.next_cursor.is_some(),
                &recent.items,
            ),
        ),
        Err(e) => problem_page_of(&op, e.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
struct EndpointsQuery {
    #[serde(default)]
    search: String,
    #[serde(default)]
    status: String,
    cursor: Option<String>,
}

/// Follows a listing's pages while they come back empty with more to come (a search or filter
/// that matches rarely), at most [`MOST_EMPTY_PAGES`] of them: the first page with items, the
/// last page, or the error.
async fn first_filled<T, F, Fut>(mut cursor: Option<String>, mut read: F) -> OpResult<T>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = OpResult<(T, bool, Option<String>)>>,
{
    let mut follows = 1;
    loop {
        let (listed, empty, next) = read(cursor.take()).await?;
        if !empty || next.is_none() || follows >= MOST_EMPTY_PAGES {
            return Ok(listed);
        }
        follows += 1;
        cursor = next;
    }
}

async fn endpoints(
    State(s): State<AppState>,
    op: Operator,
    ConsoleQuery(q): ConsoleQuery<EndpointsQuery>,
) -> Response {
    let notice = notice(&s, &op).await;
    let listed = first_filled(q.cursor.clone(), |cursor| {
        let query = EndpointListQuery {
            search: Some(q.search.clone()),
            status: Some(q.status.clone()),
            limit: Some(PAGE),
            cursor,
        };
        let ops = s.ops.clone();
        async move {
            let list = ops.list_endpoints(&query).await?;
            let (empty, next) = (list.items.is_empty(), list.next_cursor.clone());
            Ok((list, empty, next))
        }
    })
    .await;
    match listed {
        Ok(list) => views::page(
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
        Err(e) => problem_page_of(&op, e.into()),
    }
}

async fn endpoint(
    State(s): State<AppState>,
    op: Operator,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let notice = notice(&s, &op).await;
    match s.ops.endpoint(&id).await {
        Ok(e) => views::page(StatusCode::OK, views::endpoint(&op, notice.as_deref(), &e)),
        Err(e) => problem_page_of(&op, e.into()),
    }
}

/// Runs a form's operation once the session may submit it, and shows what it did (or why it
/// was not done) once, on the page at `back`.
async fn submit(
    s: &AppState,
    op: &Operator,
    csrf: &str,
    back: &str,
    run: impl Future<Output = OpResult<String>>,
) -> Response {
    if let Err(refusal) = op.may_submit(csrf) {
        return refusal.into_response();
    }
    let text = run
        .await
        .unwrap_or_else(|e| format!("Not done: {}", Problem::from(e).detail));
    done(s, op, &text, back).await
}

#[derive(Debug, Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    reason: Option<String>,
    grace: Option<String>,
}

/// [`submit`] for a form of the endpoint page of `id`, back to that page. The id is checked
/// first, so that a refused one is a 4xx page rather than a redirect.
async fn submit_on_endpoint(
    s: &AppState,
    op: &Operator,
    id: &str,
    csrf: &str,
    run: impl Future<Output = OpResult<String>>,
) -> Response {
    match herald_ops::endpoint_id(id) {
        Ok(e) => submit(s, op, csrf, &format!("/endpoints/{e}"), run).await,
        Err(e) => problem_page_of(op, e.into()),
    }
}

/// Enables an endpoint; back to its page.
async fn enable(
    State(s): State<AppState>,
    op: Operator,
    ApiPath(id): ApiPath<String>,
    ConsoleForm(form): ConsoleForm<ActionForm>,
) -> Response {
    submit_on_endpoint(&s, &op, &id, &form.csrf, async {
        let r = s.ops.enable_endpoint(&id).await?;
        Ok(format!(
            "Endpoint {id} enabled; {} queued jobs are served again.",
            r.resumed_jobs
        ))
    })
    .await
}

/// Disables an endpoint, with the reason given; back to its page.
async fn disable(
    State(s): State<AppState>,
    op: Operator,
    ApiPath(id): ApiPath<String>,
    ConsoleForm(form): ConsoleForm<ActionForm>,
) -> Response {
    let input = DisableInput {
        reason: form.reason,
    };
    submit_on_endpoint(&s, &op, &id, &form.csrf, async {
        let r = s.ops.disable_endpoint(&id, input).await?;
        Ok(if r.changed {
            format!("Endpoint {id} disabled; its jobs wait (parked) until it is enabled.")
        } else {
            format!("Endpoint {id} was already disabled.")
        })
    })
    .await
}

/// Sends an endpoint the test event; back to its page.
async fn send_test(
    State(s): State<AppState>,
    op: Operator,
    ApiPath(id): ApiPath<String>,
    ConsoleForm(form): ConsoleForm<ActionForm>,
) -> Response {
    submit_on_endpoint(&s, &op, &id, &form.csrf, async {
        let job = s.ops.send_test_event(&id).await?;
        Ok(match job.status {
            EnqueueOutcome::Parked => format!(
                "Test event sent as job {}; it is parked until the endpoint is enabled.",
                job.job_id
            ),
            _ => format!("Test event sent as job {}.", job.job_id),
        })
    })
    .await
}

/// Rotates an endpoint's secret, showing the new one once; back to its page.
async fn rotate_secret(
    State(s): State<AppState>,
    op: Operator,
    ApiPath(id): ApiPath<String>,
    ConsoleForm(form): ConsoleForm<ActionForm>,
) -> Response {
    let input = RotateInput { grace: form.grace };
    submit_on_endpoint(&s, &op, &id, &form.csrf, async {
        let r = s.ops.rotate_secret(&id, input).await?;
        let grace = std::time::Duration::from_secs(r.old_secrets_expire_in_s);
        Ok(format!(
            "New signing secret of {id}, shown once: {}. The previous secrets keep signing for {}.",
            r.secret,
            humantime::format_duration(grace)
        ))
    })
    .await
}

/// A form posted to an action the console does not have: said on the page it came from.
async fn no_action(
    State(s): State<AppState>,
    op: Operator,
    ApiPath((id, action)): ApiPath<(String, String)>,
    ConsoleForm(form): ConsoleForm<ActionForm>,
) -> Response {
    submit_on_endpoint(&s, &op, &id, &form.csrf, async {
        Err(OpError::NotFound(format!("no console action {action:?}")))
    })
    .await
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

    /// The listing's query, from `cursor` on.
    fn listing(&self, cursor: Option<String>) -> DeadListQuery {
        let sel = self.selection();
        DeadListQuery {
            endpoint: sel.endpoint,
            reason: sel.reason,
            since: sel.since,
            until: sel.until,
            limit: Some(PAGE),
            cursor,
        }
    }
}

async fn dead(
    State(s): State<AppState>,
    op: Operator,
    ConsoleQuery(q): ConsoleQuery<DeadQuery>,
) -> Response {
    let notice = notice(&s, &op).await;
    let listed = first_filled(q.cursor.clone(), |cursor| {
        let query = q.listing(cursor);
        let ops = s.ops.clone();
        async move {
            let list = ops.dead_letters(&query).await?;
            let (empty, next) = (list.items.is_empty(), list.next_cursor.clone());
            Ok((list, empty, next))
        }
    })
    .await;
    match listed {
        Ok(list) => views::page(
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
        Err(e) => {
            let p = Problem::from(e);
            views::page(
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
            )
        }
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

/// Replays one dead letter; back to the page it was on.
async fn dead_replay_one(
    State(s): State<AppState>,
    op: Operator,
    ApiPath(id): ApiPath<String>,
    ConsoleForm(form): ConsoleForm<DeadActionForm>,
) -> Response {
    submit(&s, &op, &form.csrf, &back_to_dead(&form.back), async {
        s.ops.replay_dead_one(&id).await?;
        Ok(format!(
            "Job {id} replayed: due at once, with a fresh retry schedule."
        ))
    })
    .await
}

/// Purges one dead letter; back to the page it was on.
async fn dead_purge_one(
    State(s): State<AppState>,
    op: Operator,
    ApiPath(id): ApiPath<String>,
    ConsoleForm(form): ConsoleForm<DeadActionForm>,
) -> Response {
    submit(&s, &op, &form.csrf, &back_to_dead(&form.back), async {
        s.ops.purge_dead_one(&id).await?;
        Ok(format!("Job {id} purged."))
    })
    .await
}

/// A form posted to a dead-letter action the console does not have.
async fn no_dead_action(
    State(s): State<AppState>,
    op: Operator,
    ApiPath((_, action)): ApiPath<(String, String)>,
    ConsoleForm(form): ConsoleForm<DeadActionForm>,
) -> Response {
    submit(&s, &op, &form.csrf, &back_to_dead(&form.back), async {
        Err(OpError::NotFound(format!("no console action {action:?}")))
    })
    .await
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

/// Replays or purges the dead letters a filter matches, once confirmed; first it asks, naming
/// how many that is. Back to the filtered page.
async fn dead_bulk(s: AppState, op: Operator, form: BulkForm, action: BulkAction) -> Response {
    let back = DeadQuery {
        cursor: None,
        ..form.filter.clone()
    }
    .here();
    let chosen = Chosen::try_from(form.filter.selection());
    if form.confirm.is_empty() {
        if let Err(refusal) = op.may_submit(&form.csrf) {
            return refusal.into_response();
        }
        return match chosen {
            Ok(chosen) => confirm_bulk(&s, &op, action, &chosen, &form.filter, &back).await,
            Err(e) => submit(&s, &op, &form.csrf, &back, async { Err(e) }).await,
        };
    }
    submit(&s, &op, &form.csrf, &back, async {
        let chosen = chosen?;
        Ok(match action {
            BulkAction::Replay => format!(
                "Replayed {} jobs: due at once, with a fresh retry schedule.",
                s.ops.replay_dead(&chosen).await?.replayed
            ),
            BulkAction::Purge => {
                format!("Purged {} jobs.", s.ops.purge_dead(&chosen).await?.purged)
            }
        })
    })
    .await
}

async fn dead_replay_matching(
    State(s): State<AppState>,
    op: Operator,
    ConsoleForm(form): ConsoleForm<BulkForm>,
) -> Response {
    dead_bulk(s, op, form, BulkAction::Replay).await
}

async fn dead_purge_matching(
    State(s): State<AppState>,
    op: Operator,
    ConsoleForm(form): ConsoleForm<BulkForm>,
) -> Response {
    dead_bulk(s, op, form, BulkAction::Purge).await
}

/// The confirmation of a bulk action, naming how many jobs it takes now; with none, a notice
/// that nothing matches.
async fn confirm_bulk(
    s: &AppState,
    op: &Operator,
    action: BulkAction,
    chosen: &Chosen,
    filter: &DeadQuery,
    back: &str,
) -> Response {
    match s.ops.dead_count(chosen).await {
        Ok(0) => done(s, op, "Not done: no dead job matches.", back).await,
        Ok(n) => views::page(
            StatusCode::OK,
            views::confirm_bulk(op, action, n, &filter.filters(), back),
        ),
        Err(e) => {
            let text = format!("Not done: {}", Problem::from(e).detail);
            done(s, op, &text, back).await
        }
    }
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
    match s.ops.job(id).await {
        Ok(j) => views::page(
            StatusCode::OK,
            views::job(&op, notice.as_deref(), id, Some(&j), None),
        ),
        Err(e) => {
            let p = Problem::from(e);
            views::page(
                p.status(),
                views::job(&op, notice.as_deref(), id, None, Some(&p.detail)),
            )
        }
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
