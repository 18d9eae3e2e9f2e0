//! herald's management API and operator console: the HTTP server of `herald serve`.
//!
//! One small process over the same store the CLI uses, with no logic of its own: every handler
//! and every console action calls the same operation of [`herald_ops::Ops`] as the matching
//! `herald` command.
//!
//! - [`auth`]: API tokens (made by `herald token new`), their hashed form, constant-time checks.
//! - [`problem`]: errors as `application/problem+json`, and extractors that answer bad input
//!   with a 4xx problem.
//! - [`model`]: the JSON bodies of API version 1, the operations' own ([`herald_ops::model`]).
//! - [`v1`]: the routes under `/api/v1`, one module per resource.
//! - [`openapi`]: the OpenAPI 3.1 document generated from the code, served at `/openapi.json`.
//! - [`console`]: the operator console at `/`: server-rendered pages over the same operations.
//!
//! [`run`] is the whole server: `herald serve` reads its settings and signals, then calls it;
//! tests call it in-process on port 0.

pub mod auth;
pub mod console;
pub mod openapi;
pub mod problem;
pub mod v1;

/// The JSON bodies of API version 1: the operations' inputs and answers.
pub use herald_ops::model;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use herald_core::guard::{AllowList, Guard};
use herald_ops::Ops;
use herald_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Scope, Tokens};
use crate::problem::Problem;

/// Largest request body accepted (a raw job's payload, an event): 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;

/// The server's settings (`HERALD_API_*`).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The hashed tokens that may call the API and open console sessions.
    pub tokens: Tokens,
    /// CIDRs the SSRF guard lets through when a webhook URL with a literal address is set
    /// (`HERALD_ALLOW_TARGETS`, as for `herald endpoint set`).
    pub allow_targets: AllowList,
    /// When console cookies are marked `Secure`.
    pub secure_cookies: SecureCookies,
    /// How long a console session lasts.
    pub session_ttl: Duration,
}

impl ApiConfig {
    /// The defaults, with these tokens.
    pub fn new(tokens: Tokens) -> Self {
        Self {
            tokens,
            allow_targets: AllowList::default(),
            secure_cookies: SecureCookies::Auto,
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

/// When the console's cookies carry `Secure` (sent back over HTTPS only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureCookies {
    /// When the request came over HTTPS, as a TLS-terminating proxy says with
    /// `X-Forwarded-Proto: https`.
    Auto,
    /// Always: the server is only ever reached over HTTPS.
    Always,
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The operator tasks: what the API's routes and the console's pages do.
    pub ops: Ops,
    /// The store itself, for the console's sessions.
    pub store: Store,
    pub cfg: Arc<ApiConfig>,
    /// Recent failed console logins, by client address.
    pub login_failures: Arc<console::throttle::LoginFailures>,
}

/// The whole application: API, console, `/healthz`, `/openapi.json`.
pub fn router(cfg: ApiConfig, store: Store) -> Router {
    let state = AppState {
        ops: Ops::new(store.clone(), Guard::new(cfg.allow_targets.clone())),
        store,
        cfg: Arc::new(cfg),
        login_failures: Arc::default(),
    };
    let token = from_fn_with_state(state.clone(), require_token);
    let api = v1::routes().route_layer(token.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/openapi.json",
            get(|| async { ([(CONTENT_TYPE, "application/json")], openapi::document()) })
                .route_layer(token),
        )
        .nest("/api/v1", api)
        .merge(console::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(from_fn(log_and_harden))
        .with_state(state)
}

/// Whether `path` belongs to the API (problems are JSON there) rather than to the console
/// (whose errors are pages).
fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/openapi.json" || path == "/healthz"
}

/// What a path no route serves answers: a problem under the API, an error page elsewhere.
async fn no_route(uri: Uri) -> Response {
    if is_api(uri.path()) {
        Problem::not_found("no such route").into_response()
    } else {
        console::views::error_page(StatusCode::NOT_FOUND, "There is no such page.")
    }
}

/// What a route answers to a method it does not take (`GET /logout`, say).
async fn wrong_method(uri: Uri) -> Response {
    if is_api(uri.path()) {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take this method",
        )
        .into_response()
    } else {
        console::views::error_page(
            StatusCode::METHOD_NOT_ALLOWED,
            "This page is reached by a button, not by a link or the address bar.",
        )
    }
}

/// Serves the API and console on `listener` until `shutdown` is cancelled, then lets the
/// requests under way finish.
pub async fn run(
    cfg: ApiConfig,
    store: Store,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // The peer's address reaches the handlers: the console slows failed logins per address.
    let app = router(cfg, store).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// The bearer token of a request, if it has an `Authorization: Bearer …` header.
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Lets a call through when it carries a configured token whose scope allows it: `read` for
/// `GET` and `HEAD`, `admin` for everything else.
async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if !req.headers().contains_key(AUTHORIZATION) {
        return Problem::unauthorized(
            "this call needs a token: Authorization: Bearer <token> (see `herald token new`)",
            false,
        )
        .into_response();
    }
    let Some(verified) = bearer(&req).and_then(|t| s.cfg.tokens.verify(t)) else {
        return Problem::unauthorized("the bearer token is not one this server knows", true)
            .into_response();
    };
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    if !read_only && verified.scope != Scope::Admin {
        return Problem::forbidden("this token's scope is read; this call needs an admin token")
            .into_response();
    }
    next.run(req).await
}

/// Logs each request (method, path, status, time; never headers, bodies or query strings)
/// and adds `X-Content-Type-Options: nosniff`.
async fn log_and_harden(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}
