//! A real HTTP server that plays the webhook receiver: it records every request (with the
//! sender's address, so that fault tests can tell which worker sent it) and answers according
//! to a programmable policy (one per path if need be), keeps per path the most requests it held
//! open at once and which are open now, counts the distinct `webhook-id`s it got, and tests wait
//! on what it received.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::oneshot;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// 0 for the first request this receiver got, then 1, 2, …
    pub index: usize,
    /// 0 for the first request to this request's path, then 1, 2, …
    pub path_index: usize,
    pub method: String,
    pub path: String,
    /// The sender's address: a worker's local port tells its connections apart.
    pub peer: SocketAddr,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// When the request's head arrived, for checks of the gaps between retries.
    pub received_at: Instant,
}

impl Request {
    /// The value of header `name`, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `webhook-id` header; panics if the request has none.
    pub fn webhook_id(&self) -> String {
        self.header("webhook-id")
            .unwrap_or_else(|| panic!("request {} has no webhook-id header", self.index))
            .to_owned()
    }

    /// The body parsed as JSON; panics if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request {} body is not JSON ({e}): {}",
                self.index,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Answer at once with this status.
    Status(u16),
    /// Wait, then answer with this status (a slow receiver).
    After(Duration, u16),
    /// Never answer (the client gives up, or the test ends).
    Hang,
    /// Answer at once with this status and `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    /// Hold the request until the test releases it ([`Receiver::release`]), then answer with
    /// this status and, unless 0, `Retry-After: <seconds>`: an attempt whose failure the test
    /// lets happen at the moment it chooses.
    Held(u16, u64),
}

/// Decides the reply from the request's index (0-based, over all requests) and the request.
pub type Policy = dyn Fn(usize, &Request) -> Reply + Send + Sync;

/// Always answer with `status`.
pub fn always(status: u16) -> impl Fn(usize, &Request) -> Reply + Send + Sync {
    move |_, _| Reply::Status(status)
}

/// Answer 500 to the first `n` requests, then 200.
pub fn fail_first(n: usize) -> impl Fn(usize, &Request) -> Reply + Send + Sync {
    move |i, _| Reply::Status(if i < n { 500 } else { 200 })
}

/// Never answer the first `n` requests, then answer 200.
pub fn hang_first(n: usize) -> impl Fn(usize, &Request) -> Reply + Send + Sync {
    move |i, _| {
        if i < n {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    }
}

/// Never answer any request.
pub fn hang_forever() -> impl Fn(usize, &Request) -> Reply + Send + Sync {
    |_, _| Reply::Hang
}

/// Answer 200 to every request, each after `delay`.
pub fn slow(delay: Duration) -> impl Fn(usize, &Request) -> Reply + Send + Sync {
    move |_, _| Reply::After(delay, 200)
}

/// Answer `status` with `Retry-After: <seconds>` to the first `n` requests, then 200.
pub fn retry_after_first(
    n: usize,
    status: u16,
    seconds: u64,
) -> impl Fn(usize, &Request) -> Reply + Send + Sync {
    move |i, _| {
        if i < n {
            Reply::RetryAfter(status, seconds)
        } else {
            Reply::Status(200)
        }
    }
}

/// Never answer while `switch` is off; once it is on, answer 200 at once.
///
/// For a receiver that must stay down until the test has seen what it waits for, rather than
/// for a count of requests guessed in advance. Requests already hanging keep hanging.
pub fn hang_until(switch: &Switch) -> impl Fn(usize, &Request) -> Reply + Send + Sync {
    let on = Arc::clone(&switch.0);
    move |_, _| {
        if on.load(Ordering::SeqCst) {
            Reply::Status(200)
        } else {
            Reply::Hang
        }
    }
}

/// Hold every request until the test releases it, then answer `status` (with
/// `Retry-After: <retry_after>` unless 0) while `switch` is off; once it is on, answer 200 at
/// once. Requests already held stay held until released, and then still fail.
pub fn held_until(
    switch: &Switch,
    status: u16,
    retry_after: u64,
) -> impl Fn(usize, &Request) -> Reply + Send + Sync {
    let on = Arc::clone(&switch.0);
    move |_, _| {
        if on.load(Ordering::SeqCst) {
            Reply::Status(200)
        } else {
            Reply::Held(status, retry_after)
        }
    }
}

/// A flag that a test turns on to change what a policy answers from then on.
#[derive(Debug, Clone, Default)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    /// A switch that is off.
    pub fn new() -> Switch {
        Switch::default()
    }

    /// Turns the switch on: requests that arrive from now on see it on.
    pub fn turn_on(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A policy per path: each path's policy gets the index of the request among those to its own
/// path ([`Request::path_index`]), so that "the first `n`" counts that path's requests only.
#[derive(Default)]
pub struct Routes {
    by_path: HashMap<String, Box<Policy>>,
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_path.keys()).finish()
    }
}

impl Routes {
    /// No route yet.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Requests to exactly `path` are answered by `policy`.
    pub fn path(
        mut self,
        path: &str,
        policy: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static,
    ) -> Routes {
        self.by_path.insert(path.to_owned(), Box::new(policy));
        self
    }

    /// The finished policy: requests to any other path are answered by `default`.
    pub fn otherwise(
        self,
        default: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static,
    ) -> impl Fn(usize, &Request) -> Reply + Send + Sync + 'static {
        move |_, request| match self.by_path.get(&request.path) {
            Some(policy) => policy(request.path_index, request),
            None => default(request.path_index, request),
        }
    }
}

/// An axum server on 127.0.0.1 (own runtime, own thread), stopped when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("addr", &self.addr)
            .field("received", &self.shared.lock().requests.len())
            .finish_non_exhaustive()
    }
}

/// The recorded requests and the policy, shared by the handler and the test thread.
struct Shared {
    log: Mutex<Log>,
    /// Notified after every recorded request.
    arrived: Condvar,
    policy: Box<Policy>,
}

/// What the receiver saw, under one lock.
#[derive(Default)]
struct Log {
    requests: Vec<Request>,
    /// Path → how many requests to it arrived, are open now, and were open at most at once.
    paths: HashMap<String, PathLoad>,
    /// Indices of the requests being answered now (arrived, answer not yet written).
    open: BTreeSet<usize>,
    /// How many requests carried each `webhook-id`.
    by_webhook_id: HashMap<String, usize>,
    /// Path → the requests held ([`Reply::Held`]) and not released yet: sending lets one go.
    held: HashMap<String, Vec<oneshot::Sender<()>>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PathLoad {
    received: usize,
    open: usize,
    most_open: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One request held open by the handler: counted from its arrival until the handler answers
/// or is cancelled (the client went away, or the receiver stopped).
struct Open {
    shared: Arc<Shared>,
    path: String,
    index: usize,
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut log = self.shared.lock();
        log.open.remove(&self.index);
        if let Some(load) = log.paths.get_mut(&self.path) {
            load.open -= 1;
        }
    }
}

impl Receiver {
    /// Starts a receiver that answers with `policy`.
    pub fn start(policy: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("receiver address");
        let shared = Arc::new(Shared {
            log: Mutex::new(Log::default()),
            arrived: Condvar::new(),
            policy: Box::new(policy),
        });
        let (shutdown, stop) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(record_and_answer)
            .with_state(Arc::clone(&shared));
        let thread = thread::Builder::new()
            .name(format!("receiver-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let app = app.into_make_service_with_connect_info::<SocketAddr>();
                    let serve = async move { axum::serve(listener, app).await };
                    tokio::select! {
                        result = serve => result.expect("receiver server failed"),
                        _ = stop => {}
                    }
                });
                // Cancels the handlers still hanging or sleeping.
                rt.shutdown_background();
            })
            .expect("spawn receiver thread");
        Receiver {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// The requests being answered now: arrived, their answer not yet written (a hanging or
    /// slow reply, or one whose sender went away).
    pub fn open_requests(&self) -> Vec<Request> {
        let log = self.shared.lock();
        log.open.iter().map(|&i| log.requests[i].clone()).collect()
    }

    /// Waits until requests with at least `count` distinct `webhook-id`s arrived.
    ///
    /// `timeout` is a safety net: passing it fails the test with what was received.
    pub fn wait_for_distinct(&self, count: usize, timeout: Duration) {
        let (log, result) = self
            .shared
            .arrived
            .wait_timeout_while(self.shared.lock(), timeout, |log| {
                log.by_webhook_id.len() < count
            })
            .unwrap_or_else(|e| e.into_inner());
        if result.timed_out() {
            let got = log.by_webhook_id.len();
            drop(log);
            panic!(
                "receiver {}: waited {timeout:?} for {count} distinct webhook-ids, got {got}",
                self.addr
            );
        }
    }

    /// Waits until at least `count` requests to `path` are held ([`Reply::Held`]) and not
    /// released.
    ///
    /// `timeout` is a safety net: passing it fails the test with what was received.
    pub fn wait_for_held(&self, path: &str, count: usize, timeout: Duration) {
        let held = |log: &Log| log.held.get(path).map_or(0, Vec::len);
        let (log, result) = self
            .shared
            .arrived
            .wait_timeout_while(self.shared.lock(), timeout, |log| held(log) < count)
            .unwrap_or_else(|e| e.into_inner());
        if result.timed_out() {
            let got = held(&log);
            drop(log);
            panic!(
                "receiver {}: waited {timeout:?} for {count} held requests to {path}, got {got}",
                self.addr
            );
        }
    }

    /// Lets up to `most` of the requests held at `path` go, oldest first: each is answered as
    /// its [`Reply::Held`] says. Returns how many were let go.
    pub fn release(&self, path: &str, most: usize) -> usize {
        let mut log = self.shared.lock();
        let Some(held) = log.held.get_mut(path) else {
            return 0;
        };
        let n = most.min(held.len());
        for tx in held.drain(..n) {
            // A request whose client went away has nobody to answer.
            let _ = tx.send(());
        }
        n
    }

    /// The most requests to `path` that the receiver held open at the same time so far (from
    /// arrival to answer); 0 if none arrived.
    pub fn max_concurrent(&self, path: &str) -> usize {
        self.shared
            .lock()
            .paths
            .get(path)
            .map_or(0, |load| load.most_open)
    }

    /// Waits until at least `count` requests arrived and returns them all.
    ///
    /// `timeout` is a safety net: passing it fails the test with what was received.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Request> {
        self.wait_until(&format!("{count} requests"), timeout, |r| r.len() >= count)
    }

    /// Waits until `done` holds for the requests received so far and returns them.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Request]) -> bool,
    ) -> Vec<Request> {
        let (log, result) = self
            .shared
            .arrived
            .wait_timeout_while(self.shared.lock(), timeout, |log| !done(&log.requests))
            .unwrap_or_else(|e| e.into_inner());
        if result.timed_out() {
            let got = log.requests.len();
            drop(log);
            panic!(
                "receiver {}: waited {timeout:?} for {what}, got {got} requests",
                self.addr
            );
        }
        log.requests.clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn record_and_answer(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
) -> Response {
    let received_at = Instant::now();
    let (parts, body): (_, Body) = req.into_parts();
    let body = match to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes.to_vec(),
        // The client went away mid-body: nothing was delivered, nothing to record.
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let path = parts.uri.path().to_owned();
    let request = {
        let mut log = shared.lock();
        let index = log.requests.len();
        let load = log.paths.entry(path.clone()).or_default();
        let path_index = load.received;
        load.received += 1;
        load.open += 1;
        load.most_open = load.most_open.max(load.open);
        let request = Request {
            index,
            path_index,
            method: parts.method.to_string(),
            path: path.clone(),
            peer,
            headers: parts.headers,
            body,
            received_at,
        };
        if let Some(id) = request.header("webhook-id") {
            *log.by_webhook_id.entry(id.to_owned()).or_default() += 1;
        }
        log.open.insert(index);
        log.requests.push(request.clone());
        request
    };
    let _open = Open {
        shared: Arc::clone(&shared),
        path,
        index: request.index,
    };
    shared.arrived.notify_all();
    match (shared.policy)(request.index, &request) {
        Reply::Status(status) => status_response(status),
        Reply::After(delay, status) => {
            tokio::time::sleep(delay).await;
            status_response(status)
        }
        Reply::Hang => std::future::pending().await,
        Reply::RetryAfter(status, seconds) => {
            let mut response = status_response(status);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
            response
        }
        Reply::Held(status, seconds) => {
            let (tx, rx) = oneshot::channel();
            shared
                .lock()
                .held
                .entry(request.path.clone())
                .or_default()
                .push(tx);
            shared.arrived.notify_all();
            // Released, or the receiver is stopping (the sender dropped).
            let _ = rx.await;
            let mut response = status_response(status);
            if seconds > 0 {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
            }
            response
        }
    }
}

fn status_response(status: u16) -> Response {
    StatusCode::from_u16(status)
        .expect("valid status code")
        .into_response()
}
