//! The receivers of the outage scenario: one axum server whose `/ok/{i}` paths answer `200` at
//! once (the healthy endpoints) and whose `/bad/{j}` paths misbehave as bad endpoint `j`'s
//! [`Kind`] says (hang, answer slowly, answer `503`) until [`Receivers::heal`]; the refused
//! endpoints point to a port nothing listens on, where the same server starts listening at the
//! heal. Every receipt is logged with the local clock, to be cut into windows afterwards.
//!
//! A hanging request costs the server one task and one socket; the workers' concurrency bounds
//! how many are held at once (2 × 200 with the defaults), far below `ulimit -n`.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Kind;
use crate::env::{free_port, now_us};
use crate::receiver::header as payload_header;

/// What the receivers got, in order of arrival (local clock, µs).
#[derive(Debug, Default)]
pub struct Log {
    /// Healthy receipts: (receipt time, job index, due time from the payload).
    pub healthy: Vec<(u64, u64, u64)>,
    /// Bad endpoints' requests answered `2xx`: (time of the answer, job index).
    pub bad_delivered: Vec<(u64, u64)>,
    /// Bad endpoints' requests not answered `2xx` (held until the run ends, or `503`): their
    /// arrival times.
    pub bad_failed: Vec<u64>,
}

/// The receivers' state, shared by every request.
#[derive(Debug)]
struct Shared {
    /// The kind of each bad endpoint (a `mix` resolved to one of the four).
    kinds: Vec<Kind>,
    /// How long a slow receiver takes to answer.
    slow: Duration,
    healed: AtomicBool,
    /// Cancelled at the end of the run: what hanging requests wait for.
    release: CancellationToken,
    log: Mutex<Log>,
}

/// The running receivers of one run.
#[derive(Debug)]
pub struct Receivers {
    /// `http://127.0.0.1:<port>`, where the healthy and the non-refused bad endpoints post.
    pub base_url: String,
    /// A port bound once then closed: nothing listens there until the heal.
    pub refused_port: u16,
    shared: Arc<Shared>,
    /// Stops the servers (the main one, and the one on the refused port after the heal).
    shutdown: CancellationToken,
}

impl Receivers {
    /// Starts the server on a free port; `kinds[j]` is bad endpoint `j`'s behaviour.
    pub async fn start(kinds: Vec<Kind>, slow: Duration) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            kinds,
            slow,
            healed: AtomicBool::new(false),
            release: CancellationToken::new(),
            log: Mutex::new(Log::default()),
        });
        let shutdown = CancellationToken::new();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let refused_port = free_port()?;
        let r = Self {
            base_url,
            refused_port,
            shared,
            shutdown,
        };
        r.serve(listener);
        Ok(r)
    }

    fn serve(&self, listener: TcpListener) {
        let app = axum::Router::new()
            .route("/ok/{i}", post(ok))
            .route("/bad/{j}", post(bad))
            .with_state(self.shared.clone());
        let stop = self.shutdown.clone().cancelled_owned();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        });
    }

    /// The URL of healthy endpoint `i`.
    pub fn ok_url(&self, i: usize) -> String {
        format!("{}/ok/{i}", self.base_url)
    }

    /// The URL of bad endpoint `j`: on the closed port for a refused one.
    pub fn bad_url(&self, j: usize) -> String {
        match self.shared.kinds[j] {
            Kind::Refused => format!("http://127.0.0.1:{}/bad/{j}", self.refused_port),
            _ => format!("{}/bad/{j}", self.base_url),
        }
    }

    /// From now on every bad path answers `200` at once, and the same server listens on the
    /// refused port. Requests already hanging stay so (a hung server's open requests do not
    /// come back with it); slow ones still take their time. Returns whether the refused port
    /// could be listened on again (another process may have taken it meanwhile).
    pub async fn heal(&self) -> bool {
        self.shared.healed.store(true, Relaxed);
        match TcpListener::bind(("127.0.0.1", self.refused_port)).await {
            Ok(listener) => {
                self.serve(listener);
                true
            }
            Err(_) => false,
        }
    }

    /// Takes what has been logged so far.
    pub fn take_log(&self) -> Log {
        std::mem::take(&mut *self.shared.log.lock().expect("lock"))
    }

    /// Answers the hanging requests (`503`, closing the connection), then stops the servers:
    /// the end of a run.
    pub fn stop(&self) {
        self.shared.release.cancel();
        self.shutdown.cancel();
    }
}

async fn ok(State(s): State<Arc<Shared>>, body: Bytes) -> &'static str {
    let now = now_us();
    if let Some((i, due)) = payload_header(&body) {
        s.log.lock().expect("lock").healthy.push((now, i, due));
    }
    "ok"
}

async fn bad(State(s): State<Arc<Shared>>, Path(j): Path<usize>, body: Bytes) -> Response {
    let index = payload_header(&body).map(|(i, _)| i).unwrap_or(u64::MAX);
    let kind = s.kinds.get(j).copied().unwrap_or(Kind::Refused);
    let failed = |s: &Shared| s.log.lock().expect("lock").bad_failed.push(now_us());
    if !s.healed.load(Relaxed) {
        match kind {
            Kind::Hang => {
                failed(&s);
                s.release.cancelled().await;
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONNECTION, "close")],
                    "released",
                )
                    .into_response();
            }
            Kind::Slow => tokio::time::sleep(s.slow).await,
            Kind::Unavailable => {
                failed(&s);
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "30")],
                    "down",
                )
                    .into_response();
            }
            // Nothing listens on a refused endpoint's port before the heal.
            Kind::Refused | Kind::Mix => {}
        }
    }
    s.log
        .lock()
        .expect("lock")
        .bad_delivered
        .push((now_us(), index));
    "ok".into_response()
}
