//! The production scenario's receivers: HTTPS servers on `--addresses` loopback addresses (one
//! port), presenting a certificate for `*.bench.test` issued by the run's private CA. Each
//! request waits out an answer time drawn from the plan's distribution, then is counted by a
//! [`Tracker`] and answered `200`. A receiver that keeps connections alive (by its name, from
//! SNI) serves many requests per connection; the others close each connection after one answer.
//! HTTP/2 is offered by ALPN when asked for.
//!
//! Each TLS handshake is counted, full or resumed, and whether its name had completed a
//! handshake before: how many new connections to a host seen before resume their session.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use bytes::Bytes;
use herald_testkit::TestCa;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::HandshakeKind;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::plan::Plan;
use crate::receiver::Tracker;

/// What the receivers saw of connections and handshakes.
#[derive(Debug, Default)]
pub struct Counts {
    pub connections: AtomicU64,
    pub handshakes_full: AtomicU64,
    pub handshakes_resumed: AtomicU64,
    pub handshake_failures: AtomicU64,
    /// Handshakes of a name that had completed one before, and those of them that resumed.
    pub to_seen_name: AtomicU64,
    pub resumed_to_seen_name: AtomicU64,
    pub http2_connections: AtomicU64,
    seen: Mutex<HashSet<String>>,
}

impl Counts {
    pub fn to_json(&self) -> Value {
        let to_seen = self.to_seen_name.load(Relaxed);
        let resumed = self.resumed_to_seen_name.load(Relaxed);
        json!({
            "connections": self.connections.load(Relaxed),
            "handshakes_full": self.handshakes_full.load(Relaxed),
            "handshakes_resumed": self.handshakes_resumed.load(Relaxed),
            "handshake_failures": self.handshake_failures.load(Relaxed),
            "handshakes_to_seen_name": to_seen,
            "resumed_share_to_seen_name": if to_seen == 0 {
                Value::Null
            } else {
                json!(super::round(resumed as f64 / to_seen as f64, 3))
            },
            "http2_connections": self.http2_connections.load(Relaxed),
            "names_met": self.seen.lock().expect("never poisoned").len(),
        })
    }
}

/// The running receivers; they stop when dropped.
#[derive(Debug)]
pub struct Receivers {
    pub port: u16,
    pub counts: Arc<Counts>,
    stop: CancellationToken,
}

impl Drop for Receivers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Receivers {
    /// Listens on 127.0.1.1 … 127.0.1.<addresses>, one free port on all of them.
    pub async fn start(
        ca: &TestCa,
        plan: Arc<Plan>,
        http2: bool,
        tracker: Arc<Tracker>,
    ) -> anyhow::Result<Self> {
        let alpn: &[&[u8]] = if http2 {
            &[b"h2", b"http/1.1"]
        } else {
            &[b"http/1.1"]
        };
        let mut config = ca.server_config(alpn)?;
        // Stateless resumption tickets, as most HTTPS servers issue them: any number of
        // clients' sessions, no server-side cache to size.
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listeners = bind_all(plan.addresses).await?;
        let port = listeners[0].local_addr()?.port();
        let (counts, stop) = (Arc::new(Counts::default()), CancellationToken::new());
        for listener in listeners {
            let (acceptor, plan, tracker, counts, stop) = (
                acceptor.clone(),
                plan.clone(),
                tracker.clone(),
                counts.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let tcp = tokio::select! {
                        _ = stop.cancelled() => return,
                        accepted = listener.accept() => match accepted {
                            Ok((tcp, _)) => tcp,
                            Err(_) => continue,
                        },
                    };
                    let _ = tcp.set_nodelay(true);
                    counts.connections.fetch_add(1, Relaxed);
                    let conn = serve(
                        acceptor.clone(),
                        tcp,
                        plan.clone(),
                        tracker.clone(),
                        counts.clone(),
                    );
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = conn => {}
                        }
                    });
                }
            });
        }
        Ok(Self { port, counts, stop })
    }
}

/// One listener per address, all on the same port (a free one, tried a few times).
async fn bind_all(addresses: u8) -> anyhow::Result<Vec<TcpListener>> {
    let addr = |k: u8| SocketAddr::from(([127, 0, 1, 1 + k], 0));
    'attempt: for _ in 0..20 {
        let first = TcpListener::bind(addr(0)).await?;
        let port = first.local_addr()?.port();
        let mut all = vec![first];
        for k in 1..addresses.max(1) {
            let mut at = addr(k);
            at.set_port(port);
            match TcpListener::bind(at).await {
                Ok(l) => all.push(l),
                Err(_) => continue 'attempt,
            }
        }
        return Ok(all);
    }
    anyhow::bail!("no port free on all of 127.0.1.1..{addresses}")
}

/// One connection: the handshake (counted), then HTTP/1.1 or HTTP/2 as ALPN chose.
async fn serve(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    plan: Arc<Plan>,
    tracker: Arc<Tracker>,
    counts: Arc<Counts>,
) {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(_) => {
            counts.handshake_failures.fetch_add(1, Relaxed);
            return;
        }
    };
    let (_, session) = tls.get_ref();
    let name = session.server_name().unwrap_or_default().to_owned();
    let resumed = session.handshake_kind() == Some(HandshakeKind::Resumed);
    let h2 = session.alpn_protocol() == Some(b"h2");
    if resumed {
        counts.handshakes_resumed.fetch_add(1, Relaxed);
    } else {
        counts.handshakes_full.fetch_add(1, Relaxed);
    }
    let met_before = !counts
        .seen
        .lock()
        .expect("never poisoned")
        .insert(name.clone());
    if met_before {
        counts.to_seen_name.fetch_add(1, Relaxed);
        if resumed {
            counts.resumed_to_seen_name.fetch_add(1, Relaxed);
        }
    }
    let keep_alive = Plan::index(&name).is_some_and(|i| plan.keeps_alive(i));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (plan, tracker) = (plan.clone(), tracker.clone());
        async move {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            tokio::time::sleep(plan.answer_time()).await;
            tracker.record(&body);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    let io = TokioIo::new(tls);
    let _ = if h2 {
        counts.http2_connections.fetch_add(1, Relaxed);
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
            .context("h2")
    } else {
        hyper::server::conn::http1::Builder::new()
            .keep_alive(keep_alive)
            .serve_connection(io, service)
            .await
            .context("http/1.1")
    };
}
