//! Deliveries over TLS: HTTP/2 when the receiver offers it by ALPN, HTTP/1.1 otherwise, and a
//! TLS failure when the certificate is not trusted. The receiver is a real rustls + hyper server
//! whose certificate for `localhost` is issued by a private CA, which the client is told to
//! trust (as `HERALD_CA_FILE` does); the receiver's own certificate is never given to it.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use herald_core::guard::AllowList;
use herald_core::{FailureClass, Outcome};
use herald_testkit::TestCa;
use herald_worker::http::{self, Client, ClientSettings};
use hyper::body::Incoming;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::header::HeaderMap;
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{self, HandshakeKind};
use tokio_rustls::TlsAcceptor;

/// A TLS receiver on 127.0.0.1 that records the HTTP version of each request and answers 200.
struct TlsReceiver {
    port: u16,
    /// The private CA that issued the receiver's certificate.
    ca: CertificateDer<'static>,
    versions: Arc<Mutex<Vec<Version>>>,
    /// How each connection's TLS handshake went (full, or resuming an earlier session).
    handshakes: Arc<Mutex<Vec<HandshakeKind>>>,
}

impl TlsReceiver {
    async fn start(alpn: &[&[u8]]) -> TlsReceiver {
        Self::start_with(alpn, true).await
    }

    /// With `keep_alive` false, every HTTP/1.1 answer closes its connection: each request
    /// needs a new connection, and a new TLS handshake.
    async fn start_with(alpn: &[&[u8]], keep_alive: bool) -> TlsReceiver {
        // `localhost`, and any name under `hosts.test` (many receivers on one address).
        let ca = TestCa::issue(&["localhost", "*.hosts.test"]).unwrap();
        let mut config = ca.server_config(alpn).unwrap();
        // Stateless session tickets, as most HTTPS servers issue them: a busy receiver resumes
        // the sessions of any number of clients' names.
        config.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let versions = Arc::new(Mutex::new(Vec::new()));
        let seen = versions.clone();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let shaken = handshakes.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, seen, shaken) = (acceptor.clone(), seen.clone(), shaken.clone());
                tokio::spawn(async move {
                    // A client that rejects our certificate aborts the handshake: nothing to do.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    if let Some(kind) = tls.get_ref().1.handshake_kind() {
                        shaken.lock().unwrap().push(kind);
                    }
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        seen.lock().unwrap().push(req.version());
                        async { Ok::<_, Infallible>(Response::new(String::from("ok"))) }
                    });
                    let io = TokioIo::new(tls);
                    let _ = if h2 {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await
                    } else {
                        hyper::server::conn::http1::Builder::new()
                            .keep_alive(keep_alive)
                            .serve_connection(io, service)
                            .await
                    };
                });
            }
        });
        TlsReceiver {
            port,
            ca: ca.ca_der(),
            versions,
            handshakes,
        }
    }

    fn url(&self) -> reqwest::Url {
        reqwest::Url::parse(&format!("https://localhost:{}/hook", self.port)).unwrap()
    }

    fn versions(&self) -> Vec<Version> {
        self.versions.lock().unwrap().clone()
    }
}

fn client(trust: Option<&CertificateDer<'static>>) -> Client {
    Client::new(ClientSettings {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        pool_per_host: 1,
        allow_targets: AllowList::parse("127.0.0.0/8").unwrap(),
        egress_proxy: None,
        dns: Default::default(),
        extra_roots: trust.map(|c| vec![c.clone()]).unwrap_or_default(),
    })
    .unwrap()
}

#[tokio::test]
async fn http2_is_negotiated_when_the_receiver_offers_it() {
    let rx = TlsReceiver::start(&[b"h2", b"http/1.1"]).await;
    let attempt = http::post(
        &client(Some(&rx.ca)),
        &rx.url(),
        HeaderMap::new(),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(attempt.outcome, Outcome::Delivered { status: 200 });
    assert_eq!(attempt.body, b"ok");
    assert_eq!(rx.versions(), [Version::HTTP_2]);
}

#[tokio::test]
async fn http1_is_used_when_the_receiver_offers_only_http1() {
    let rx = TlsReceiver::start(&[b"http/1.1"]).await;
    let attempt = http::post(
        &client(Some(&rx.ca)),
        &rx.url(),
        HeaderMap::new(),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(attempt.outcome, Outcome::Delivered { status: 200 });
    assert_eq!(rx.versions(), [Version::HTTP_11]);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_failure() {
    let rx = TlsReceiver::start(&[b"h2", b"http/1.1"]).await;
    let attempt = http::post(&client(None), &rx.url(), HeaderMap::new(), b"{}".to_vec()).await;
    match attempt.outcome {
        Outcome::Failed { class, detail, .. } => {
            assert_eq!(class, FailureClass::Tls, "{detail}");
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    assert!(rx.versions().is_empty());
}

#[tokio::test]
async fn a_new_connection_to_a_host_seen_before_resumes_its_tls_session() {
    // Every answer closes its connection, as a receiver without keep-alive does: each
    // delivery opens a connection, and all but the first resume the session of an earlier one
    // instead of a full handshake (certificate chain, key exchange and signature).
    let rx = TlsReceiver::start_with(&[b"http/1.1"], false).await;
    let client = client(Some(&rx.ca));
    for _ in 0..5 {
        let attempt = http::post(&client, &rx.url(), HeaderMap::new(), b"{}".to_vec()).await;
        assert_eq!(attempt.outcome, Outcome::Delivered { status: 200 });
    }
    let handshakes = rx.handshakes.lock().unwrap().clone();
    assert_eq!(
        handshakes.len(),
        5,
        "one connection per delivery: {handshakes:?}"
    );
    assert_eq!(handshakes[0], HandshakeKind::Full);
    assert!(
        handshakes[1..].iter().all(|k| *k == HandshakeKind::Resumed),
        "{handshakes:?}"
    );
}

#[tokio::test]
async fn sessions_of_more_receivers_than_rustls_keeps_by_default_still_resume() {
    // 2,100 receivers, each a name of its own (resolved by a DNS server on loopback): rustls'
    // default cache keeps the sessions of 32 (256 tickets, 8 per name), and a cache of 16,384
    // tickets those of 2,048, so the first one's would be gone by the time it is delivered to
    // again; the worker keeps 16,384 receivers'.
    const HOSTS: usize = 2_100;
    let rx = TlsReceiver::start_with(&[b"http/1.1"], false).await;
    let names: Vec<String> = (0..HOSTS).map(|i| format!("r{i}.hosts.test")).collect();
    let zones: Vec<(&str, support::Zone)> = names
        .iter()
        .map(|n| {
            let ip = std::net::IpAddr::from([127, 0, 0, 1]);
            (n.as_str(), support::Zone::Answer(vec![ip], 3600))
        })
        .collect();
    let dns = support::DnsServer::start(zones).await.unwrap();
    let client = Client::new(ClientSettings {
        allow_targets: AllowList::parse("127.0.0.0/8").unwrap(),
        extra_roots: vec![rx.ca.clone()],
        dns: support::dns_settings(&dns, Duration::from_secs(5)),
        ..ClientSettings::default()
    })
    .unwrap();
    let url =
        |name: &str| reqwest::Url::parse(&format!("https://{name}:{}/hook", rx.port)).unwrap();
    // Every receiver once (32 at a time), then the first ten again, one after the other.
    let deliver = |name: &str| {
        let (client, url) = (client.clone(), url(name));
        async move { http::post(&client, &url, HeaderMap::new(), b"{}".to_vec()).await }
    };
    let first: Vec<_> = futures::stream::iter(names.iter().map(|n| deliver(n)))
        .buffer_unordered(32)
        .collect()
        .await;
    for attempt in first {
        assert_eq!(attempt.outcome, Outcome::Delivered { status: 200 });
    }
    for name in names.iter().take(10) {
        let attempt = deliver(name).await;
        assert_eq!(
            attempt.outcome,
            Outcome::Delivered { status: 200 },
            "{name}"
        );
    }
    let handshakes = rx.handshakes.lock().unwrap().clone();
    assert_eq!(handshakes.len(), HOSTS + 10);
    assert!(
        handshakes[..HOSTS]
            .iter()
            .all(|k| *k == HandshakeKind::Full),
        "each receiver's first connection is a full handshake"
    );
    assert!(
        handshakes[HOSTS..]
            .iter()
            .all(|k| *k == HandshakeKind::Resumed),
        "the first receivers, met again after 2,099 others, resume: {:?}",
        &handshakes[HOSTS..]
    );
}
