//! One delivery attempt over HTTP: the shared client, the request herald sends, and the
//! classification of what came back into an [`Outcome`].

use std::error::Error as StdError;
use std::time::Duration;

use herald_core::{FailureClass, Outcome};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

/// The `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

/// Most response-body bytes read; the rest is dropped with the connection's stream.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Builds the one HTTP client a worker shares between all deliveries: keep-alive pool, no
/// redirects, connect and total timeouts, no proxy from the environment.
pub fn client(
    connect_timeout: Duration,
    request_timeout: Duration,
    concurrency: usize,
) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .pool_max_idle_per_host(concurrency.max(1))
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .expect("the HTTP client settings are valid")
}

/// What one attempt came to, with what the attempt log wants to keep of the answer.
#[derive(Debug)]
pub struct Attempt {
    pub outcome: Outcome,
    /// The start of the response body (at most [`MAX_RESPONSE_BODY`] bytes).
    pub body: Vec<u8>,
}

/// POSTs `payload` to `url` with the given extra headers and classifies the result.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: HeaderMap,
    payload: Vec<u8>,
) -> Attempt {
    let request = client
        .post(url)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .headers(headers)
        .body(payload);
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            return Attempt {
                outcome: classify_error(&e),
                body: Vec::new(),
            }
        }
    };
    let status = response.status();
    let retry_after = retry_after(status, response.headers());
    let mut body = Vec::new();
    let body_error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_BODY - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= MAX_RESPONSE_BODY {
                    break None;
                }
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let outcome = if status.is_success() {
        // The answer counts, even when its body broke off: the receiver said 2xx.
        Outcome::Delivered {
            status: status.as_u16(),
        }
    } else if let Some(e) =
        body_error.filter(|_| !status.is_client_error() && !status.is_server_error())
    {
        classify_error(&e)
    } else {
        Outcome::Failed {
            class: FailureClass::HttpStatus,
            status: Some(status.as_u16()),
            detail: status
                .canonical_reason()
                .unwrap_or("non-2xx answer")
                .to_owned(),
            retry_after,
        }
    };
    Attempt { outcome, body }
}

/// `Retry-After` in seconds or as an HTTP date, honoured on 429 and 503 only.
fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// Classifies a transport error by walking its source chain down to the I/O error.
pub fn classify_error(e: &reqwest::Error) -> Outcome {
    let detail = chain(e);
    let class = if e.is_connect() {
        connect_class(e, &detail)
    } else if e.is_timeout() {
        FailureClass::Timeout
    } else if detail.contains("invalid certificate") || detail.contains("tls") {
        FailureClass::Tls
    } else if e.is_builder() || e.is_request() && detail.contains("dns error") {
        FailureClass::Dns
    } else {
        FailureClass::Body
    };
    Outcome::Failed {
        class,
        status: None,
        detail,
        retry_after: None,
    }
}

fn connect_class(e: &reqwest::Error, detail: &str) -> FailureClass {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return FailureClass::Refused,
                TimedOut => return FailureClass::ConnectTimeout,
                HostUnreachable | NetworkUnreachable | AddrNotAvailable => {
                    return FailureClass::Unreachable
                }
                _ => {}
            }
            if io.raw_os_error() == Some(113) || io.raw_os_error() == Some(101) {
                return FailureClass::Unreachable;
            }
        }
        source = err.source();
    }
    let lower = detail.to_ascii_lowercase();
    if e.is_timeout() || lower.contains("timed out") {
        FailureClass::ConnectTimeout
    } else if lower.contains("dns error") || lower.contains("failed to lookup") {
        FailureClass::Dns
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        FailureClass::Tls
    } else if lower.contains("blocked by the ssrf guard") {
        FailureClass::Blocked
    } else {
        FailureClass::Connect
    }
}

/// The error and its causes on one line, deduplicated (hyper and reqwest repeat each other).
fn chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = source {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    // reqwest's own message repeats the URL; the job already says where it went.
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_on_429_and_503_only() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &h),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after(StatusCode::INTERNAL_SERVER_ERROR, &h), None);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(Duration::ZERO)
        );
    }

    #[tokio::test]
    async fn refused_connections_are_classified() {
        // Bind then drop a listener: its port now refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = client(Duration::from_secs(2), Duration::from_secs(2), 1);
        let attempt = post(
            &client,
            &format!("http://127.0.0.1:{port}/"),
            HeaderMap::new(),
            b"{}".to_vec(),
        )
        .await;
        match attempt.outcome {
            Outcome::Failed { class, .. } => assert_eq!(class, FailureClass::Refused),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
