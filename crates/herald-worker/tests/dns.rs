//! The workers' resolver against a real DNS server on loopback: answers are kept for their TTL,
//! negative answers and failed lookups for a bounded time, a server that never answers costs
//! the lookup timeout and no more, and the SSRF guard vets every answer, cached or fresh.
//!
//! The server (`support`) speaks the DNS wire protocol over UDP; each name is given one
//! behaviour, and the server counts the queries it receives per name.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::guard::{AllowList, Guard};
use herald_core::FailureClass;
use herald_worker::dns::{Dns, DnsError, FAILED_LOOKUP_TTL};
use herald_worker::guard::{GuardedResolver, Lookup};
use herald_worker::http::{self, Client, ClientSettings};
use support::{dns_settings, DnsServer, Zone};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn an_answer_is_kept_for_its_ttl_then_asked_again() {
    let server = DnsServer::start([
        ("long.test", Zone::Answer(vec![ip("93.184.216.34")], 3600)),
        ("short.test", Zone::Answer(vec![ip("93.184.216.35")], 1)),
    ])
    .await
    .unwrap();
    let dns = Dns::new(&dns_settings(&server, Duration::from_secs(5))).unwrap();
    for _ in 0..50 {
        assert_eq!(
            dns.lookup("long.test").await.unwrap(),
            vec![ip("93.184.216.34")]
        );
    }
    assert_eq!(server.queries("long.test"), 1, "one query per name per TTL");

    assert_eq!(
        dns.lookup("short.test").await.unwrap(),
        vec![ip("93.184.216.35")]
    );
    let asked = server.queries("short.test");
    assert_eq!(
        dns.lookup("short.test").await.unwrap(),
        vec![ip("93.184.216.35")]
    );
    assert_eq!(server.queries("short.test"), asked, "still within its TTL");
    // The one-second TTL runs out.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        dns.lookup("short.test").await.unwrap(),
        vec![ip("93.184.216.35")]
    );
    assert!(
        server.queries("short.test") > asked,
        "asked again after its TTL"
    );
}

#[tokio::test]
async fn a_missing_name_is_answered_from_the_cache_for_its_negative_ttl() {
    let server = DnsServer::start([("gone.test", Zone::Missing(300))])
        .await
        .unwrap();
    let dns = Dns::new(&dns_settings(&server, Duration::from_secs(5))).unwrap();
    let e = dns.lookup("gone.test").await.unwrap_err();
    assert!(matches!(e, DnsError::NoAddress { .. }), "{e:?}");
    let asked = server.queries("gone.test");
    assert!(asked >= 1);
    for _ in 0..20 {
        let e = dns.lookup("gone.test").await.unwrap_err();
        assert!(matches!(e, DnsError::NoAddress { .. }), "{e:?}");
    }
    assert_eq!(server.queries("gone.test"), asked);
}

#[tokio::test]
async fn a_server_that_never_answers_costs_the_timeout_once_then_nothing() {
    let server = DnsServer::start([("hang.test", Zone::Silent)])
        .await
        .unwrap();
    let timeout = Duration::from_millis(400);
    let dns = Dns::new(&dns_settings(&server, timeout)).unwrap();
    let started = Instant::now();
    let e = dns.lookup("hang.test").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, DnsError::TimedOut { .. }), "{e:?}");
    // Bounded: the lookup gave up at its timeout, not at hickory's default 5 s times 2.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let asked = server.queries("hang.test");
    // Many deliveries to that name meanwhile: each fails at once from memory.
    let lookups = (0..100).map(|_| dns.lookup("hang.test"));
    for result in futures::future::join_all(lookups).await {
        assert!(
            matches!(result, Err(DnsError::TimedOut { .. })),
            "{result:?}"
        );
    }
    assert_eq!(
        server.queries("hang.test"),
        asked,
        "remembered for {FAILED_LOOKUP_TTL:?}"
    );
}

#[tokio::test]
async fn the_guard_vets_every_answer_cached_or_not() {
    let server = DnsServer::start([
        ("inside.test", Zone::Answer(vec![ip("10.1.2.3")], 3600)),
        (
            "mixed.test",
            Zone::Answer(vec![ip("127.0.0.1"), ip("93.184.216.34")], 3600),
        ),
        (
            "metadata.test",
            Zone::Answer(vec![ip("169.254.169.254")], 3600),
        ),
    ])
    .await
    .unwrap();
    let dns = Dns::new(&dns_settings(&server, Duration::from_secs(5))).unwrap();
    let guarded = GuardedResolver::new(Arc::new(Guard::default()), dns.clone());
    for round in 0..3 {
        for host in ["inside.test", "metadata.test"] {
            match guarded.lookup(host).await {
                Err(Lookup::Blocked(b)) => assert_eq!(b.host, host),
                other => panic!("round {round}, {host}: {other:?}"),
            }
        }
        let kept = guarded.lookup("mixed.test").await.unwrap();
        assert_eq!(
            kept,
            vec![SocketAddr::new(ip("93.184.216.34"), 0)],
            "round {round}"
        );
    }
    // The answers came from the cache after the first round, and were refused all the same.
    assert_eq!(server.queries("inside.test"), 1);
    // Allowed by the allow list, the same cached answer goes through.
    let allowing = GuardedResolver::new(
        Arc::new(Guard::new(AllowList::parse("10.0.0.0/8").unwrap())),
        dns,
    );
    assert_eq!(
        allowing.lookup("inside.test").await.unwrap(),
        vec![SocketAddr::new(ip("10.1.2.3"), 0)]
    );
}

/// A receiver on loopback that answers 204 to anything.
async fn receiver() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client(server: &DnsServer, allow: &str) -> Client {
    Client::new(ClientSettings {
        allow_targets: AllowList::parse(allow).unwrap(),
        dns: dns_settings(server, Duration::from_millis(500)),
        ..ClientSettings::default()
    })
    .unwrap()
}

async fn post(client: &Client, url: &str) -> http::Attempt {
    http::post(
        client,
        &reqwest::Url::parse(url).unwrap(),
        Default::default(),
        bytes_body(),
    )
    .await
}

fn bytes_body() -> Vec<u8> {
    br#"{"hello":"world"}"#.to_vec()
}

#[tokio::test]
async fn deliveries_resolve_through_the_server_and_fail_by_kind() {
    let rx = receiver().await;
    let server = DnsServer::start([
        ("receiver.test", Zone::Answer(vec![ip("127.0.0.1")], 3600)),
        ("gone.test", Zone::Missing(60)),
        ("hang.test", Zone::Silent),
    ])
    .await
    .unwrap();

    let allowed = client(&server, "127.0.0.0/8");
    let url = format!("http://receiver.test:{}/hook", rx.port());
    for _ in 0..3 {
        let attempt = post(&allowed, &url).await;
        assert!(
            matches!(attempt.outcome, herald_core::Outcome::Delivered { .. }),
            "{:?}",
            attempt.outcome
        );
    }
    assert_eq!(server.queries("receiver.test"), 1);

    let guarded = client(&server, "");
    for (url, class) in [
        (url.as_str(), FailureClass::Blocked),
        ("http://gone.test/hook", FailureClass::Dns),
        ("http://hang.test/hook", FailureClass::Dns),
    ] {
        let attempt = post(&guarded, url).await;
        match &attempt.outcome {
            herald_core::Outcome::Failed { class: got, .. } => assert_eq!(*got, class, "{url}"),
            other => panic!("{url}: {other:?}"),
        }
    }
}
