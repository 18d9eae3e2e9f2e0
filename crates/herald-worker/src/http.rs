//! One delivery attempt over HTTP: the shared client, the request herald sends, and the
//! classification of what came back into an [`Outcome`].
//!
//! The client never follows redirects (a 3xx is a failed attempt), bounds the connection and
//! the whole attempt (a body trickling in forever is cut off by the total timeout), reads at
//! most [`MAX_RESPONSE_BODY`] bytes of the answer and drops the rest with the connection, speaks
//! HTTP/1.1 and HTTP/2 (negotiated by ALPN over rustls), ignores proxy variables from the
//! environment, and dials only addresses the SSRF guard ([`crate::guard`]) let through.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use herald_core::signing::{self, Secret};
use herald_core::{FailureClass, Outcome};
use herald_store::EndpointSecret;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tracing::warn;

use crate::dns::{Dns, DnsSettings};
use crate::guard::{GuardedResolver, Lookup};
use herald_core::guard::{AllowList, Blocked, Guard, BLOCKED_MARKER};

/// The `User-Agent` of every delivery.
pub const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

/// Most response-body bytes read; the rest is dropped with the connection's stream.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// An egress proxy (`HERALD_EGRESS_PROXY`), such as smokescreen, that every delivery goes
/// through. Its URL may hold credentials, so it shows only scheme, host and port.
#[derive(Clone, PartialEq, Eq)]
pub struct EgressProxy(reqwest::Url);

impl EgressProxy {
    /// Reads an `http://` or `https://` proxy URL, with optional `user:password@`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(text.trim())
            .map_err(|e| format!("not a URL such as http://smokescreen:4750: {e}"))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!(
                "the proxy scheme is {:?}; only http and https are supported",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the proxy URL has no host".into());
        }
        Ok(Self(url))
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }
}

impl fmt::Display for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.0.host_str().unwrap_or_default();
        match self.0.port_or_known_default() {
            Some(port) => write!(f, "{}://{host}:{port}", self.0.scheme()),
            None => write!(f, "{}://{host}", self.0.scheme()),
        }
    }
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EgressProxy({self})")
    }
}

/// Receivers whose TLS sessions a worker keeps, so that a new connection to one of them
/// resumes its session instead of a full handshake (rustls keeps 256 by default; a status
/// aggregator's worker talks to thousands). A receiver's entry takes a few hundred bytes to a
/// few KiB (rustls keeps up to 8 TLS 1.3 tickets per name; servers usually send 2).
pub const TLS_SESSIONS: usize = 16_384;

/// TLS 1.3 tickets rustls' session cache keeps per receiver: its size is counted in tickets,
/// so a cache of `n` remembers `n / 8` receivers.
const TICKETS_PER_RECEIVER: usize = 8;

/// A CA certificate, as DER.
pub type CaCertificate = rustls::pki_types::CertificateDer<'static>;

/// Reads a PEM file of CA certificates (`HERALD_CA_FILE`): at least one certificate.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<CaCertificate>, String> {
    use rustls::pki_types::pem::PemObject;
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certs = CaCertificate::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not a PEM file of certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{shown} holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)"
        ));
    }
    Ok(certs)
}

/// The client's TLS configuration: what reqwest builds by default (TLS 1.2 and 1.3 on the ring
/// provider, the webpki roots, SNI, ALPN `h2` then `http/1.1`), plus the CA certificates of
/// `HERALD_CA_FILE`, and a session cache of [`TLS_SESSIONS`] receivers. Public for the
/// benchmark's bare client, which must set up TLS exactly as a worker does.
pub fn tls_config(extra_roots: &[CaCertificate]) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(ClientError::CaCertificate)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(ClientError::CaCertificate)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tls.resumption =
        rustls::client::Resumption::in_memory_sessions(TLS_SESSIONS * TICKETS_PER_RECEIVER);
    Ok(tls)
}

/// How the shared client is built.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    /// Total time of one attempt: connect, send, answer, and the (capped) body.
    pub request_timeout: Duration,
    /// Idle keep-alive connections kept per host.
    pub pool_per_host: usize,
    /// Ranges the SSRF guard lets through.
    pub allow_targets: AllowList,
    /// When set, every delivery goes through this proxy, which then resolves and vets names.
    pub egress_proxy: Option<EgressProxy>,
    /// Certificates trusted besides the webpki roots (`HERALD_CA_FILE`: a private CA).
    pub extra_roots: Vec<CaCertificate>,
    /// Where names are resolved, and how long a lookup may take.
    pub dns: DnsSettings,
}

impl Default for ClientSettings {
    /// A default worker's settings.
    fn default() -> Self {
        Self::from_config(&crate::WorkerConfig::default())
    }
}

impl ClientSettings {
    /// The settings a worker with `cfg` uses.
    pub fn from_config(cfg: &crate::WorkerConfig) -> Self {
        Self {
            connect_timeout: cfg.connect_timeout,
            request_timeout: cfg.request_timeout,
            pool_per_host: cfg.concurrency,
            allow_targets: cfg.allow_targets.clone(),
            egress_proxy: cfg.egress_proxy.clone(),
            extra_roots: cfg.extra_roots.clone(),
            dns: cfg.dns.clone(),
        }
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the HTTP client could not be built: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the system's DNS configuration could not be read (HERALD_DNS_SERVERS names servers instead): {0}")]
    Dns(#[from] hickory_resolver::ResolveError),
    #[error("a CA certificate of HERALD_CA_FILE is unusable: {0}")]
    CaCertificate(rustls::Error),
}

/// The one HTTP client a worker shares between all deliveries, with its SSRF guard. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Client {
    inner: reqwest::Client,
    guard: Arc<Guard>,
}

impl Client {
    /// Builds the client: keep-alive pool, no redirects, connect and total timeouts, no proxy
    /// from the environment, names resolved through the guard (or by the egress proxy).
    pub fn new(settings: ClientSettings) -> Result<Self, ClientError> {
        let guard = Arc::new(Guard::new(settings.allow_targets));
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_max_idle_per_host(settings.pool_per_host.max(1))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .no_proxy();
        builder = match &settings.egress_proxy {
            // The proxy resolves the receivers' names (and must vet them: smokescreen does);
            // herald resolves only the proxy's own name, which may well be private.
            Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy.url().clone())?),
            None => builder.dns_resolver(Arc::new(GuardedResolver::new(
                guard.clone(),
                Dns::new(&settings.dns)?,
            ))),
        };
        builder = builder.use_preconfigured_tls(tls_config(&settings.extra_roots)?);
        Ok(Self {
            inner: builder.build()?,
            guard,
        })
    }

    /// The underlying client.
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.inner
    }
}

/// The Standard Webhooks headers of one attempt: `webhook-id` (the job's, stable across
/// retries), `webhook-timestamp` (this attempt, Unix seconds of `now_ms`) and, when the endpoint
/// has secrets active at `now_ms`, `webhook-signature` with one `v1,` signature per secret.
///
/// `now_ms` is Redis time (the claim's), like the expiry times of rotated-out secrets. A stored
/// secret that does not parse is skipped with a warning that does not show it.
pub fn webhook_headers(
    msg_id: &str,
    secrets: &[EndpointSecret],
    now_ms: i64,
    body: &[u8],
) -> HeaderMap {
    let timestamp = now_ms.div_euclid(1000);
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("webhook-id"),
        HeaderValue::from_str(msg_id).expect("message ids are header-safe"),
    );
    headers.insert(
        HeaderName::from_static("webhook-timestamp"),
        HeaderValue::from(timestamp),
    );
    let active: Vec<Secret> = secrets
        .iter()
        .filter(|s| s.expires_at_ms.is_none_or(|at| at > now_ms))
        .filter_map(|s| match Secret::parse(&s.secret) {
            Ok(secret) => Some(secret),
            Err(e) => {
                warn!(error = %e, "an endpoint signing secret is unreadable; it does not sign");
                None
            }
        })
        .collect();
    if let Some(value) = signing::sign(&active, msg_id, timestamp, body) {
        headers.insert(
            HeaderName::from_static("webhook-signature"),
            HeaderValue::from_str(&value).expect("base64 is header-safe"),
        );
    }
    headers
}

/// What one attempt came to, with what the attempt log wants to keep of the answer.
#[derive(Debug)]
pub struct Attempt {
    pub outcome: Outcome,
    /// The start of the response body (at most [`MAX_RESPONSE_BODY`] bytes).
    pub body: Vec<u8>,
}

/// POSTs `payload` to `url` with the given extra headers and classifies the result.
///
/// A URL whose host is a literal address in a blocked range fails as
/// [`FailureClass::Blocked`] before any connection is attempted.
pub async fn post(
    client: &Client,
    url: &reqwest::Url,
    headers: HeaderMap,
    payload: Vec<u8>,
) -> Attempt {
    if let Err(blocked) = client.guard.check_url(url) {
        return Attempt {
            outcome: blocked_outcome(&blocked),
            body: Vec::new(),
        };
    }
    let request = client
        .inner
        .post(url.clone())
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

fn blocked_outcome(blocked: &Blocked) -> Outcome {
    Outcome::Failed {
        class: FailureClass::Blocked,
        status: None,
        detail: blocked.to_string(),
        retry_after: None,
    }
}

/// The first error of type `T` down the error's source chain.
fn source_of<T: StdError + 'static>(e: &reqwest::Error) -> Option<&T> {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        source = err.source();
    }
    None
}

/// Whether the guard refused the target somewhere down the error's source chain.
fn is_blocked(e: &reqwest::Error, detail: &str) -> bool {
    source_of::<Blocked>(e).is_some() || detail.contains(BLOCKED_MARKER)
}

/// Classifies a transport error by walking its source chain down to the I/O error.
pub fn classify_error(e: &reqwest::Error) -> Outcome {
    let detail = chain(e);
    // The guard's refusal comes back from the resolver, wrapped as a "dns error": look for it
    // before anything else.
    let class = if is_blocked(e, &detail) {
        FailureClass::Blocked
    } else if source_of::<Lookup>(e).is_some() {
        FailureClass::Dns
    } else if e.is_connect() {
        connect_class(e, &detail)
    } else if e.is_timeout() {
        FailureClass::Timeout
    } else if detail.contains("invalid certificate") || detail.contains("tls") {
        FailureClass::Tls
    } else if e.is_request() && detail.contains("dns error") {
        FailureClass::Dns
    } else if e.is_builder() {
        // The request could not even be built (an unusable URL): the receiver is unreachable.
        FailureClass::Connect
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
    } else {
        FailureClass::Connect
    }
}

/// The error and its causes on one line, deduplicated (hyper and reqwest repeat each other).
///
/// reqwest's own message names the URL, whose query string may carry a receiver's token: it is
/// cut out (the job and endpoint already say where the request went), and so is any cause that
/// repeats it.
fn chain(e: &reqwest::Error) -> String {
    let url = e.url().map(|u| u.as_str().to_owned());
    let scrub = |text: String| match &url {
        Some(url) => text
            .replace(&format!(" for url ({url})"), "")
            .replace(url.as_str(), "<url>"),
        None => text,
    };
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = source {
        let text = scrub(err.to_string());
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`super::post`] with the URL as text, parsed as the claim loop parses endpoint URLs.
    async fn post(client: &Client, url: &str, headers: HeaderMap, payload: Vec<u8>) -> Attempt {
        let url = reqwest::Url::parse(url).expect("test URLs parse");
        super::post(client, &url, headers, payload).await
    }

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

    #[test]
    fn retry_after_as_a_future_http_date() {
        let mut h = HeaderMap::new();
        let at = std::time::SystemTime::now() + Duration::from_secs(3600);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(at)).unwrap(),
        );
        let d = retry_after(StatusCode::SERVICE_UNAVAILABLE, &h).unwrap();
        // HTTP dates have whole seconds: up to one is lost, never more than an hour asked.
        assert!(
            d > Duration::from_secs(3590) && d <= Duration::from_secs(3600),
            "{d:?}"
        );
    }

    #[test]
    fn webhook_headers_sign_with_every_active_secret() {
        let old = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let new = Secret::generate();
        let secrets = [
            EndpointSecret {
                secret: new.expose(),
                expires_at_ms: None,
            },
            EndpointSecret {
                secret: old.expose(),
                expires_at_ms: Some(1_614_265_400_000),
            },
        ];
        let (id, body) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", br#"{"test": 2432232314}"#);
        let header = |h: &HeaderMap, name: &str| h[name].to_str().unwrap().to_owned();

        // During the grace period both secrets sign, newest first.
        let h = webhook_headers(id, &secrets, 1_614_265_330_999, body);
        assert_eq!(header(&h, "webhook-id"), id);
        assert_eq!(header(&h, "webhook-timestamp"), "1614265330");
        let sigs = header(&h, "webhook-signature");
        let sigs: Vec<&str> = sigs.split(' ').collect();
        assert_eq!(sigs.len(), 2, "{sigs:?}");
        assert_eq!(sigs[0], new.signature(id, 1614265330, body));
        assert_eq!(sigs[1], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");

        // After it, only the new one.
        let h = webhook_headers(id, &secrets, 1_614_265_400_000, body);
        assert_eq!(
            header(&h, "webhook-signature"),
            new.signature(id, 1614265400, body)
        );

        // No secret: no signature header, the rest as usual.
        let h = webhook_headers(id, &[], 1_614_265_330_000, body);
        assert!(h.get("webhook-signature").is_none());
        assert_eq!(header(&h, "webhook-timestamp"), "1614265330");

        // An unreadable stored secret is skipped.
        let broken = [EndpointSecret {
            secret: "whsec_???".into(),
            expires_at_ms: None,
        }];
        assert!(webhook_headers(id, &broken, 0, body)
            .get("webhook-signature")
            .is_none());
    }

    #[test]
    fn egress_proxy_urls_hide_their_credentials() {
        let p = EgressProxy::parse("http://user:hunter2@smokescreen.internal:4750").unwrap();
        assert_eq!(p.to_string(), "http://smokescreen.internal:4750");
        assert!(!format!("{p:?}").contains("hunter2"));
        assert!(EgressProxy::parse("socks5://proxy:1080").is_err());
        assert!(EgressProxy::parse("smokescreen:4750").is_err());
    }

    fn settings(allow: &str) -> ClientSettings {
        ClientSettings {
            request_timeout: Duration::from_secs(10),
            pool_per_host: 1,
            allow_targets: AllowList::parse(allow).unwrap(),
            ..ClientSettings::default()
        }
    }

    fn failed_class(attempt: &Attempt) -> FailureClass {
        match &attempt.outcome {
            Outcome::Failed { class, .. } => *class,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    /// A one-connection HTTP/1.1 server on 127.0.0.1 that reads one request, then hands the
    /// socket and the request head to `respond`, whose result `join` returns.
    struct RawServer<R> {
        addr: std::net::SocketAddr,
        thread: std::thread::JoinHandle<R>,
    }

    impl<R: Send + 'static> RawServer<R> {
        fn start(respond: impl FnOnce(std::net::TcpStream) -> R + Send + 'static) -> Self {
            Self::start_with_head(|stream, _| respond(stream))
        }

        fn start_with_head(
            respond: impl FnOnce(std::net::TcpStream, String) -> R + Send + 'static,
        ) -> Self {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let thread = std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                let head = read_request(&mut stream);
                respond(stream, head)
            });
            Self { addr, thread }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        /// Waits for the server thread off the runtime, which must stay free to run the
        /// client's connection tasks (closing a dropped connection is one).
        async fn join(self) -> R {
            tokio::task::spawn_blocking(move || self.thread.join().expect("raw server thread"))
                .await
                .unwrap()
        }
    }

    /// Reads a request head and its `Content-Length` body; returns the head.
    fn read_request(stream: &mut std::net::TcpStream) -> String {
        use std::io::Read;
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "client closed before sending a request");
            data.extend_from_slice(&buf[..n]);
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                while data.len() < end + 4 + len {
                    let n = stream.read(&mut buf).unwrap();
                    assert!(n > 0, "client closed mid-body");
                    data.extend_from_slice(&buf[..n]);
                }
                return String::from_utf8_lossy(&data[..end]).into_owned();
            }
        }
    }

    /// Writes `chunk` until the peer goes away; returns the bytes written.
    fn write_until_closed(stream: &mut std::net::TcpStream, chunk: &[u8], limit: u64) -> u64 {
        use std::io::Write;
        let mut written = 0u64;
        while written < limit {
            match stream.write(chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        written
    }

    #[tokio::test]
    async fn error_lines_never_carry_the_url_and_its_query() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/hook?token=SUPERSECRET"))
            .send()
            .await
            .unwrap_err();
        let Outcome::Failed { detail, .. } = classify_error(&e) else {
            panic!("a refused connection is a failure");
        };
        assert!(!detail.contains("SUPERSECRET"), "{detail}");
        assert!(!detail.is_empty());
    }

    #[tokio::test]
    async fn refused_connections_are_classified() {
        // Bind then drop a listener: its port now refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(settings("127.0.0.0/8")).unwrap();
        let attempt = post(
            &client,
            &format!("http://127.0.0.1:{port}/"),
            HeaderMap::new(),
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(failed_class(&attempt), FailureClass::Refused);
    }

    #[tokio::test]
    async fn blocked_literal_addresses_are_refused_without_connecting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = Client::new(settings("")).unwrap();
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://[::1]:{port}/"),
        ] {
            let attempt = post(&client, &url, HeaderMap::new(), b"{}".to_vec()).await;
            assert_eq!(failed_class(&attempt), FailureClass::Blocked, "{url}");
            let line = attempt.outcome.error_line().unwrap();
            assert!(line.contains(BLOCKED_MARKER), "{line}");
        }
        // Had the client connected, the kernel would have queued the connection by now.
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a connection reached the listener: {other:?}"),
        }
    }

    #[tokio::test]
    async fn names_resolving_to_blocked_addresses_are_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = Client::new(settings("")).unwrap();
        let attempt = post(
            &client,
            &format!("http://localhost:{port}/"),
            HeaderMap::new(),
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(failed_class(&attempt), FailureClass::Blocked);
        assert!(matches!(
            listener.accept(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        ));
    }

    #[tokio::test]
    async fn listed_ranges_get_through_even_as_mapped_ipv6() {
        let client = Client::new(settings("127.0.0.0/8")).unwrap();
        for host in ["localhost", "127.0.0.1", "[::ffff:127.0.0.1]"] {
            let server = RawServer::start(|mut s| {
                use std::io::Write;
                s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .unwrap();
            });
            let url = format!("http://{host}:{}/", server.addr.port());
            let attempt = post(&client, &url, HeaderMap::new(), b"{}".to_vec()).await;
            assert_eq!(attempt.outcome, Outcome::Delivered { status: 204 }, "{url}");
            server.join().await;
        }
    }

    #[tokio::test]
    async fn with_an_egress_proxy_every_delivery_goes_through_it_and_it_resolves_names() {
        let proxy = RawServer::start_with_head(|mut s, head| {
            use std::io::Write;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .unwrap();
            head
        });
        let mut settings = settings("");
        settings.egress_proxy = Some(EgressProxy::parse(&proxy.url("")).unwrap());
        let client = Client::new(settings).unwrap();
        // `.invalid` never resolves: only the proxy could have delivered this.
        let target = "http://receiver.invalid/hook";
        let attempt = post(&client, target, HeaderMap::new(), b"{}".to_vec()).await;
        assert_eq!(attempt.outcome, Outcome::Delivered { status: 200 });
        let head = proxy.join().await;
        assert!(
            head.starts_with(&format!("POST {target} HTTP/1.1")),
            "{head}"
        );

        // Literal addresses are still checked by herald itself, before the proxy is asked.
        let attempt = post(
            &client,
            "http://169.254.169.254/latest/meta-data/",
            HeaderMap::new(),
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(failed_class(&attempt), FailureClass::Blocked);
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        target.set_nonblocking(true).unwrap();
        let location = format!("http://{}/elsewhere", target.local_addr().unwrap());
        let server = RawServer::start(move |mut s| {
            use std::io::Write;
            write!(
                s,
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
            )
            .unwrap();
        });
        let client = Client::new(settings("127.0.0.0/8")).unwrap();
        let attempt = post(
            &client,
            &server.url("/hook"),
            HeaderMap::new(),
            b"{}".to_vec(),
        )
        .await;
        server.join().await;
        match attempt.outcome {
            Outcome::Failed {
                class: FailureClass::HttpStatus,
                status: Some(302),
                ..
            } => {}
            other => panic!("expected a failed 302, got {other:?}"),
        }
        assert!(matches!(
            target.accept(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        ));
    }

    #[tokio::test]
    async fn a_huge_body_is_read_up_to_the_cap_then_dropped() {
        const HUNDRED_MB: u64 = 100 * 1024 * 1024;
        let server = RawServer::start(|mut s| {
            use std::io::Write;
            write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {HUNDRED_MB}\r\n\r\n").unwrap();
            write_until_closed(&mut s, &[b'x'; 16 * 1024], HUNDRED_MB)
        });
        let client = Client::new(settings("127.0.0.0/8")).unwrap();
        let attempt = post(&client, &server.url("/"), HeaderMap::new(), b"{}".to_vec()).await;
        assert_eq!(attempt.outcome, Outcome::Delivered { status: 200 });
        assert_eq!(attempt.body.len(), MAX_RESPONSE_BODY);
        // The client hung up after the cap: the server's writes failed long before 100 MB
        // (what it did write sits at most in the two sockets' kernel buffers).
        let written = server.join().await;
        assert!(written < HUNDRED_MB, "the server wrote all {written} bytes");
    }

    #[tokio::test]
    async fn a_body_trickling_forever_is_cut_off_by_the_total_timeout() {
        let server = RawServer::start(|mut s| {
            use std::io::Write;
            s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000000\r\n\r\n")
                .unwrap();
            // One byte every 20 ms, until the client hangs up.
            loop {
                if s.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut s = settings("127.0.0.0/8");
        s.request_timeout = Duration::from_millis(500);
        let client = Client::new(s).unwrap();
        let attempt = post(&client, &server.url("/"), HeaderMap::new(), b"{}".to_vec()).await;
        // It returned at all: the trickle never ends by itself.
        match attempt.outcome {
            Outcome::Failed {
                status: Some(500), ..
            } => {}
            other => panic!("expected the 500 answer, got {other:?}"),
        }
        assert!(attempt.body.len() < 1_000_000);
        server.join().await;
    }
}
