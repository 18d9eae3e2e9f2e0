//! Errors as `application/problem+json` (RFC 9457): [`Problem`], what every failed API call
//! answers, the problems a read or a change may answer as the OpenAPI document lists them
//! ([`ReadProblems`], [`WriteProblems`]), and the extractors that turn refused input (a query,
//! a path, a JSON body) into a 4xx problem instead of axum's plain-text rejections.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_ops::OpError;
use herald_store::{ErrorKind, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem detail (RFC 9457): what went wrong, in the same words as the CLI.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: `code` tells problems apart.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: &'static str,
    /// The HTTP status's name.
    #[schema(example = "Bad Request")]
    pub title: String,
    #[schema(example = 400)]
    pub status: u16,
    /// What went wrong, for people.
    #[schema(
        example = "invalid webhook URL: the URL scheme is \"ftp\"; only http and https are accepted"
    )]
    pub detail: String,
    /// What went wrong, for programs: `invalid_argument`, `unknown_endpoint`, `not_found`,
    /// `conflict`, `unauthorized`, `forbidden`, `method_not_allowed`, `unsupported_media_type`,
    /// `payload_too_large`, `unavailable` or `internal`.
    #[schema(example = "invalid_argument")]
    pub code: &'static str,
    /// Set on 401 answers: the `WWW-Authenticate` challenge to send.
    #[serde(skip)]
    challenge: Option<&'static str>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            challenge: None,
        }
    }

    /// 400: the request itself is refused.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", detail)
    }

    /// 404: what the request names does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 401 with a `Bearer` challenge (`error="invalid_token"` when a token was given).
    pub fn unauthorized(detail: impl Into<String>, token_given: bool) -> Self {
        Self {
            challenge: Some(if token_given {
                "Bearer realm=\"herald\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"herald\""
            }),
            ..Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
        }
    }

    /// 403: the token is valid but its scope does not allow the call.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self {
            challenge: Some(
                "Bearer realm=\"herald\", error=\"insufficient_scope\", scope=\"admin\"",
            ),
            ..Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
        }
    }

    /// The status as a [`StatusCode`].
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).expect("a problem serialises");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(challenge) = self.challenge {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e.kind() {
            ErrorKind::BadInput => match e {
                StoreError::InvalidArgument(msg) => Problem::bad_request(msg),
                e => Problem::bad_request(e.to_string()),
            },
            ErrorKind::NotFound => {
                Problem::new(StatusCode::NOT_FOUND, "unknown_endpoint", e.to_string())
            }
            ErrorKind::Conflict => Problem::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            ErrorKind::Unavailable => {
                tracing::warn!(error = %e, "redis failed during an API call");
                // The writes were made: say so, so that a client retries knowingly (with its
                // idempotency key). Any other outage is said without Redis's own words.
                let detail = match e {
                    StoreError::NotReplicated { .. } => e.to_string(),
                    _ => "cannot reach Redis; try again shortly".to_owned(),
                };
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            }
            ErrorKind::Internal => {
                tracing::error!(error = %e, "an API call failed");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl From<OpError> for Problem {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Store(e) => e.into(),
            e @ OpError::UnknownEndpoint(_) => {
                Problem::new(StatusCode::NOT_FOUND, "unknown_endpoint", e.to_string())
            }
            e => match e.kind() {
                ErrorKind::BadInput => Problem::bad_request(e.to_string()),
                ErrorKind::NotFound => Problem::not_found(e.to_string()),
                ErrorKind::Conflict => {
                    Problem::new(StatusCode::CONFLICT, "conflict", e.to_string())
                }
                ErrorKind::Unavailable => Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                ),
                ErrorKind::Internal => {
                    tracing::error!(error = %e, "an API call failed");
                    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                }
            },
        }
    }
}

/// The problems a read may answer.
#[derive(Debug, IntoResponses)]
#[allow(dead_code)] // Only the document uses these variants.
pub enum ReadProblems {
    /// The request was refused: a parameter, the path or the cursor is invalid.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No token, or not a valid one.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// What the request names does not exist.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// Redis cannot be reached; try again.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// The problems a change may answer.
#[derive(Debug, IntoResponses)]
#[allow(dead_code)] // Only the document uses these variants.
pub enum WriteProblems {
    /// The request was refused: the body, a parameter or the path is invalid.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No token, or not a valid one.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The token's scope is `read`; changes need `admin`.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// What the request names does not exist.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The body is larger than the server accepts (1 MiB).
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body is not sent as JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    NotJson(Problem),
    /// Redis cannot be reached; try again.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

fn json_rejection(e: JsonRejection) -> Problem {
    match e {
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON, sent with Content-Type: application/json",
        ),
        e if e.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        e => Problem::bad_request(format!("invalid JSON body: {}", e.body_text())),
    }
}

/// `Json<T>` whose refusals are problems.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| ApiJson(v))
            .map_err(json_rejection)
    }
}

/// `Json<T>` that may be absent: no body (or an empty one) reads as `T::default()`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    Problem::bad_request(format!("cannot read the body: {}", e.body_text()))
                }
            })?;
        if body.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(json_rejection(JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        axum::Json::<T>::from_bytes(&body)
            .map(|axum::Json(v)| OptionalJson(v))
            .map_err(json_rejection)
    }
}

/// `application/json`, or a `+json` type, with or without parameters.
pub(crate) fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.to_ascii_lowercase().ends_with("+json")
}

pub(crate) fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the body is larger than the {} bytes accepted",
            crate::MAX_BODY
        ),
    )
}

/// `Query<T>` whose refusals are problems.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e: QueryRejection| {
                Problem::bad_request(format!("invalid query: {}", e.body_text()))
            })
    }
}

/// `Path<T>` whose refusals are problems.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|e: PathRejection| {
                Problem::bad_request(format!("invalid path: {}", e.body_text()))
            })
    }
}

/// A JSON body as bytes, for handlers that read it with the store's own parser: refused with
/// 415 unless sent as JSON, 413 when too large.
#[derive(Debug)]
pub struct JsonBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        if !json {
            return Err(json_rejection(JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        axum::body::Bytes::from_request(req, state)
            .await
            .map(JsonBytes)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    Problem::bad_request(format!("cannot read the body: {}", e.body_text()))
                }
            })
    }
}
