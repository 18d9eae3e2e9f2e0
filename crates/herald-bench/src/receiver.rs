//! The receiver every scenario posts to: an axum server that answers `200` to any `POST` (after
//! an optional delay), and a [`Tracker`] that counts what arrived without slowing it down.
//! One path, [`Receiver::hanging_url`], never answers until the tracker releases it: an
//! endpoint whose server accepts the connection, reads the request, and goes silent.
//!
//! The benchmark's payloads ([`payload`]) start with the job's index and the producer's clock,
//! `{"i":17,"t":1712345678901234,"pad":"xxx…"}`, so the receiver reads both from the first few
//! bytes without parsing the JSON: the index marks a bit in a bitmap (duplicates and missing
//! jobs are counted exactly), the clock gives the enqueue-to-receipt latency when asked for.
//!
//! `GET /stats` answers the tracker's counts as JSON (the BullMQ peer script reads them).
//!
//! A tracker made [`Tracker::with_arrivals`] also keeps when each `webhook-id` first arrived
//! (wall clock, ms), which the memory scenario sets against the claim time of the job's lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::env::now_us;

/// A benchmark payload of exactly `size` bytes (or the smallest possible, if `size` is less):
/// one JSON object whose first two fields are the job index and the producer's clock (µs).
pub fn payload(index: u64, t_us: u64, size: usize) -> Vec<u8> {
    let mut p = format!(r#"{{"i":{index},"t":{t_us},"pad":""#).into_bytes();
    let pad = size.saturating_sub(p.len() + 2);
    p.resize(p.len() + pad, b'x');
    p.extend_from_slice(b"\"}");
    p
}

/// Reads the `"i"` and `"t"` fields from the start of a [`payload`].
pub(crate) fn header(body: &[u8]) -> Option<(u64, u64)> {
    fn field(body: &[u8], name: &[u8]) -> Option<u64> {
        let head = &body[..body.len().min(64)];
        let at = head.windows(name.len()).position(|w| w == name)? + name.len();
        let digits = head[at..].iter().take_while(|b| b.is_ascii_digit());
        let mut n: u64 = 0;
        let mut any = false;
        for d in digits {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            any = true;
        }
        any.then_some(n)
    }
    Some((field(body, b"\"i\":")?, field(body, b"\"t\":")?))
}

/// The receiver's accept queue (see [`Receiver::start`]).
const ACCEPT_QUEUE: u32 = 16_384;

/// Latency above which a job's receipt is kept in [`Tracker::slow`] (10 ms, issue 6's p99).
pub const SLOW_US: u64 = 10_000;

/// What arrived during one measurement. A new tracker is armed for each measurement.
#[derive(Debug)]
pub struct Tracker {
    /// One bit per job index below `expected`; empty when not counting jobs.
    seen: Vec<AtomicU64>,
    expected: u64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Jobs seen for the first time.
    pub unique: AtomicU64,
    /// Jobs seen before.
    pub duplicates: AtomicU64,
    /// Requests whose body was not a benchmark payload in range.
    pub foreign: AtomicU64,
    /// Local clock (µs) of the first request, 0 before it.
    pub first_us: AtomicU64,
    /// Local clock (µs) when `unique` reached 10 % and 90 % of `expected`.
    pub p10_us: AtomicU64,
    pub p90_us: AtomicU64,
    /// Requests held right now (waiting out `delay`, or hanging), and the most at once.
    pub in_flight: AtomicI64,
    pub max_in_flight: AtomicI64,
    /// Enqueue-to-receipt latency in µs, when asked for.
    pub latency_us: Option<Mutex<Histogram<u64>>>,
    /// (receipt time, latency) in µs of the jobs slower than [`SLOW_US`], when latency is
    /// measured: when the slow ones came shows whether they came together.
    pub slow: Mutex<Vec<(u64, u64)>>,
    /// How long to wait before answering.
    pub delay: Duration,
    /// Requests to the hanging path, each held unanswered until [`Tracker::release_hung`].
    pub hung: AtomicU64,
    /// Cancelled by [`Tracker::release_hung`]: what the hanging requests wait for.
    release: CancellationToken,
    /// `webhook-id` -> wall clock (ms since the epoch) of its first arrival, when asked for.
    pub arrivals: Option<Mutex<HashMap<String, u64>>>,
}

impl Tracker {
    /// Counts jobs `0..expected` (0: count requests only).
    pub fn new(expected: u64, latency: bool, delay: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            seen: (0..expected.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            expected,
            requests: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            first_us: AtomicU64::new(0),
            p10_us: AtomicU64::new(0),
            p90_us: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            max_in_flight: AtomicI64::new(0),
            latency_us: if latency {
                Some(Mutex::new(Histogram::new(3)?))
            } else {
                None
            },
            slow: Mutex::new(Vec::new()),
            delay,
            hung: AtomicU64::new(0),
            release: CancellationToken::new(),
            arrivals: None,
        })
    }

    /// Also keeps when each `webhook-id` first arrived ([`Tracker::arrivals`]).
    pub fn with_arrivals(mut self) -> Self {
        self.arrivals = Some(Mutex::new(HashMap::new()));
        self
    }

    /// Answers every request held on the hanging path, and those that come later, with a `503`
    /// that closes the connection: the end of a run with a hanging endpoint.
    pub fn release_hung(&self) {
        self.release.cancel();
    }

    pub fn unique(&self) -> u64 {
        self.unique.load(Relaxed)
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Relaxed)
    }

    pub(crate) fn record(&self, body: &[u8]) {
        let now = now_us();
        self.requests.fetch_add(1, Relaxed);
        let _ = self.first_us.compare_exchange(0, now, Relaxed, Relaxed);
        let Some((i, t)) = header(body) else {
            self.foreign.fetch_add(1, Relaxed);
            return;
        };
        if let Some(h) = &self.latency_us {
            let latency = now.saturating_sub(t);
            let _ = h.lock().expect("lock").record(latency);
            if latency > SLOW_US {
                self.slow.lock().expect("lock").push((now, latency));
            }
        }
        if self.expected == 0 {
            return;
        }
        if i >= self.expected {
            self.foreign.fetch_add(1, Relaxed);
            return;
        }
        let bit = 1u64 << (i % 64);
        if self.seen[(i / 64) as usize].fetch_or(bit, Relaxed) & bit != 0 {
            self.duplicates.fetch_add(1, Relaxed);
            return;
        }
        let n = self.unique.fetch_add(1, Relaxed) + 1;
        if n == self.expected.div_ceil(10) {
            self.p10_us.store(now, Relaxed);
        }
        if n == (self.expected * 9).div_ceil(10) {
            self.p90_us.store(now, Relaxed);
        }
    }

    pub fn stats(&self) -> serde_json::Value {
        json!({
            "requests": self.requests.load(Relaxed),
            "unique": self.unique(),
            "duplicates": self.duplicates(),
            "foreign": self.foreign.load(Relaxed),
            "max_in_flight": self.max_in_flight.load(Relaxed),
            "first_us": self.first_us.load(Relaxed),
        })
    }
}

/// The receiver: listening, and counting into the tracker armed last.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base_url: String,
    current: Arc<RwLock<Arc<Tracker>>>,
}

impl Receiver {
    /// Listens on `127.0.0.1:port` (0: a free port) in the current runtime.
    pub async fn start(port: u16) -> anyhow::Result<Self> {
        let current = Arc::new(RwLock::new(Arc::new(Tracker::new(
            0,
            false,
            Duration::ZERO,
        )?)));
        let app = axum::Router::new()
            .route("/stats", get(stats))
            .route("/hang", post(hang))
            .fallback(receive)
            .with_state(current.clone());
        // A deep accept queue: a worker opening thousands of connections at once (the memory
        // scenario) overflows tokio's default of 1,024, and every SYN dropped is retried by the
        // kernel a second later, which would show as the worker's delay. The kernel caps it at
        // net.core.somaxconn.
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
        let listener = socket.listen(ACCEPT_QUEUE)?;
        let base_url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { base_url, current })
    }

    /// The URL of endpoint `i`: every endpoint has its own path on the one receiver.
    pub fn url(&self, endpoint: usize) -> String {
        format!("{}/hook/{endpoint}", self.base_url)
    }

    /// The URL of the endpoint that never answers (until [`Tracker::release_hung`]).
    pub fn hanging_url(&self) -> String {
        format!("{}/hang", self.base_url)
    }

    /// Counts from now on into a fresh tracker, and returns it.
    pub fn arm(&self, tracker: Tracker) -> Arc<Tracker> {
        let t = Arc::new(tracker);
        *self.current.write().expect("lock") = t.clone();
        t
    }
}

type Current = Arc<RwLock<Arc<Tracker>>>;

/// A request counted in [`Tracker::in_flight`] for as long as this lives: until it is answered,
/// or until the server drops it because the client went away.
struct Held<'a>(&'a Tracker);

impl<'a> Held<'a> {
    fn new(tracker: &'a Tracker) -> Self {
        let n = tracker.in_flight.fetch_add(1, Relaxed) + 1;
        tracker.max_in_flight.fetch_max(n, Relaxed);
        Self(tracker)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

async fn receive(State(current): State<Current>, request: Request) -> Response {
    let tracker = current.read().expect("lock").clone();
    if let Some(arrivals) = &tracker.arrivals {
        let at = now_us() / 1000;
        if let Some(id) = request
            .headers()
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
        {
            let mut arrivals = arrivals.lock().expect("lock");
            arrivals.entry(id.to_owned()).or_insert(at);
        }
    }
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    if !tracker.delay.is_zero() {
        let _held = Held::new(&tracker);
        tokio::time::sleep(tracker.delay).await;
    }
    tracker.record(&body);
    "ok".into_response()
}

/// The hanging endpoint: the body is read (the extractor), then nothing is sent until the run
/// ends and the tracker releases it.
async fn hang(
    State(current): State<Current>,
    _body: Bytes,
) -> (StatusCode, [(HeaderName, &'static str); 1], &'static str) {
    let tracker = current.read().expect("lock").clone();
    tracker.hung.fetch_add(1, Relaxed);
    let _held = Held::new(&tracker);
    tracker.release.cancelled().await;
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONNECTION, "close")],
        "released",
    )
}

async fn stats(State(current): State<Current>) -> ([(HeaderName, &'static str); 1], String) {
    let tracker = current.read().expect("lock").clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        tracker.stats().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_size_asked_and_their_header_reads_back() {
        let p = payload(123, 456, 1024);
        assert_eq!(p.len(), 1024);
        assert!(serde_json::from_slice::<serde_json::Value>(&p).is_ok());
        assert_eq!(header(&p), Some((123, 456)));
        let small = payload(1, 2, 10);
        assert!(serde_json::from_slice::<serde_json::Value>(&small).is_ok());
        assert_eq!(header(b"{\"x\":1}"), None);
    }

    #[test]
    fn the_tracker_counts_each_job_once_and_duplicates_apart() {
        let t = Tracker::new(100, false, Duration::ZERO).expect("tracker");
        for i in 0..100 {
            t.record(&payload(i, 0, 64));
        }
        t.record(&payload(5, 0, 64));
        t.record(&payload(500, 0, 64));
        t.record(b"{}");
        assert_eq!(t.unique(), 100);
        assert_eq!(t.duplicates(), 1);
        assert_eq!(t.foreign.load(Relaxed), 2);
        assert!(t.p90_us.load(Relaxed) >= t.p10_us.load(Relaxed));
    }

    #[tokio::test]
    async fn the_hanging_path_holds_requests_until_released_then_closes() {
        let r = Receiver::start(0).await.expect("receiver");
        let tracker = r.arm(Tracker::new(10, false, Duration::ZERO).expect("tracker"));
        let request = reqwest::Client::new()
            .post(r.hanging_url())
            .body(payload(1, 0, 64))
            .send();
        let request = tokio::spawn(request);
        let arrived = async {
            while tracker.hung.load(Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), arrived)
            .await
            .expect("the request reached the hanging path");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!request.is_finished(), "answered before the release");
        assert_eq!(tracker.in_flight.load(Relaxed), 1);

        tracker.release_hung();
        let answer = request
            .await
            .expect("task")
            .expect("answered after the release");
        assert_eq!(answer.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers()["connection"], "close");
        assert_eq!(tracker.in_flight.load(Relaxed), 0);
        let delivered = tracker.requests.load(Relaxed);
        assert_eq!(delivered, 0, "a hanging request is not a delivery");
    }
}
