//! Console sessions: logging in with a token, the session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` behind TLS), the operator it names, and the form token every
//! console form carries back (CSRF protection).
//!
//! The session lives in Redis ([`herald_store::Session`]) under the hash of its id, and names
//! the hashed form of the token it was opened with: a token removed from `HERALD_API_TOKENS`
//! ends its sessions at their next request.

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};

use crate::auth::{same_secret, session_key, Scope};
use crate::problem::Problem;
use crate::{AppState, SecureCookies};

/// The session cookie.
pub const SESSION_COOKIE: &str = "herald_session";

/// The cookie that pairs with the login form's hidden field (CSRF protection of the login
/// form itself, before any session exists).
pub const LOGIN_COOKIE: &str = "herald_login";

/// The value of cookie `name` in a request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether cookies set in answer to this request get `Secure`.
fn secure(headers: &HeaderMap, policy: SecureCookies) -> bool {
    policy == SecureCookies::Always
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, `Secure` when `secure`; `max_age` 0
/// removes the cookie.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age_s: u64,
    headers: &HeaderMap,
    policy: SecureCookies,
) -> (axum::http::HeaderName, HeaderValue) {
    let mut text =
        format!("{name}={value}; Path={path}; Max-Age={max_age_s}; HttpOnly; SameSite=Strict");
    if secure(headers, policy) {
        text.push_str("; Secure");
    }
    (
        SET_COOKIE,
        HeaderValue::from_str(&text).expect("cookie values are base64url"),
    )
}

/// The operator behind a console request: a live session opened with a token still
/// configured.
#[derive(Debug, Clone)]
pub struct Operator {
    pub scope: Scope,
    /// The form token every form of this session carries.
    pub csrf: String,
    /// Names the session in Redis.
    pub key: String,
}

impl Operator {
    pub fn is_admin(&self) -> bool {
        self.scope == Scope::Admin
    }

    /// Checks a form's token against the session's, and that the session may change things.
    pub fn may_submit(&self, form_token: &str) -> Result<(), Refusal> {
        if !same_secret(form_token, &self.csrf) {
            return Err(Refusal::Forbidden(
                "this form has expired or did not come from this console; reload the page and try again",
            ));
        }
        if !self.is_admin() {
            return Err(Refusal::Forbidden(
                "this session's token has the read scope; changes need an admin token",
            ));
        }
        Ok(())
    }
}

/// Why a console request was turned away.
#[derive(Debug)]
pub enum Refusal {
    /// No session: to the login page.
    Login,
    /// A form without a valid form token, or a read-only session changing something.
    Forbidden(&'static str),
    /// The store failed.
    Store(Problem),
}

impl From<herald_store::StoreError> for Refusal {
    fn from(e: herald_store::StoreError) -> Self {
        Refusal::Store(e.into())
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Refusal> {
        let id = cookie(&parts.headers, SESSION_COOKIE).ok_or(Refusal::Login)?;
        let key = session_key(id);
        let session = s.store.session(&key).await?.ok_or(Refusal::Login)?;
        let scope = s
            .cfg
            .tokens
            .scope_of(&session.token)
            .ok_or(Refusal::Login)?;
        Ok(Operator {
            scope,
            csrf: session.csrf,
            key,
        })
    }
}
