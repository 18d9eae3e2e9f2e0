//! Smoke tests of the harness itself, independent of the binary under test: Redis starts,
//! dies and comes back on its port; the receiver records requests and follows its policy.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::receiver::{self, Receiver, Reply, Routes, Switch};
use crate::support::{RedisServer, SAFETY_NET};

/// Sends one HTTP/1.1 POST without waiting for the answer (no client library needed).
fn send(url: &str, path: &str, body: &str) -> TcpStream {
    let addr = url.strip_prefix("http://").expect("http url");
    let mut stream = TcpStream::connect(addr).expect("connect to receiver");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         webhook-id: msg_test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write request");
    stream
}

/// Sends one HTTP/1.1 POST and returns the status code.
fn post(url: &str, path: &str, body: &str) -> u16 {
    post_raw(url, path, body)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line from {url}{path}"))
}

/// Sends one HTTP/1.1 POST and returns the whole response, head and body.
fn post_raw(url: &str, path: &str, body: &str) -> String {
    let mut stream = send(url, path, body);
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
}

fn ping(redis: &RedisServer) -> String {
    redis::cmd("PING")
        .query(&mut redis.connection())
        .expect("PING")
}

#[test]
fn redis_starts_dies_and_restarts_on_its_port() {
    let mut redis = RedisServer::start();
    assert_ne!(redis.port(), 6379);
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert_eq!(ping(&redis), "PONG");

    let mut con = redis.connection();
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .exec(&mut con)
        .expect("SET");

    redis.kill();
    let refused = redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .err();
    assert!(refused.is_some(), "redis still answers after kill()");

    let port = redis.port();
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(ping(&redis), "PONG");
    // Persistence is off: a restarted server is empty.
    let value: Option<String> = redis::cmd("GET")
        .arg("k")
        .query(&mut redis.connection())
        .expect("GET");
    assert_eq!(value, None);
}

#[test]
fn two_redis_servers_get_different_ports() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    assert_eq!(ping(&a), "PONG");
    assert_eq!(ping(&b), "PONG");
}

#[test]
fn receiver_records_requests_and_follows_its_policy() {
    let rx = Receiver::start(receiver::fail_first(2));
    assert_eq!(post(&rx.url(), "/a", "{\"n\":1}"), 500);
    assert_eq!(post(&rx.url(), "/b", "{\"n\":2}"), 500);
    assert_eq!(post(&rx.url(), "/c", "{\"n\":3}"), 200);

    let requests = rx.wait_for(3, SAFETY_NET);
    assert_eq!(requests.len(), 3);
    assert_eq!(rx.count(), 3);
    let paths: Vec<_> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/a", "/b", "/c"]);
    let third = &requests[2];
    assert_eq!(third.index, 2);
    assert_eq!(third.method, "POST");
    assert_eq!(third.header("content-type"), Some("application/json"));
    assert_eq!(third.webhook_id(), "msg_test");
    assert_eq!(third.json(), serde_json::json!({"n": 3}));
    assert!(requests[0].received_at <= requests[1].received_at);
}

#[test]
fn receiver_policies() {
    let rx = Receiver::start(receiver::always(204));
    assert_eq!(post(&rx.url(), "/", "{}"), 204);

    let rx = Receiver::start(|i, _: &receiver::Request| {
        if i == 0 {
            Reply::After(Duration::from_millis(20), 202)
        } else {
            Reply::Status(409)
        }
    });
    assert_eq!(post(&rx.url(), "/", "{}"), 202);
    assert_eq!(post(&rx.url(), "/", "{}"), 409);

    // A hanging answer is recorded as soon as the request arrives, and dropping the receiver
    // does not wait for it.
    let rx = Receiver::start(receiver::hang_forever());
    let _pending = send(&rx.url(), "/hang", "{}");
    let got = rx.wait_for(1, SAFETY_NET);
    assert_eq!(got[0].path, "/hang");
    drop(rx);
}

#[test]
fn receiver_routes_by_path_and_keeps_the_most_requests_open_at_once() {
    let up = Switch::new();
    let rx = Receiver::start(
        Routes::new()
            .path("/busy", receiver::retry_after_first(1, 429, 2))
            .path("/down", receiver::hang_until(&up))
            .otherwise(receiver::fail_first(1)),
    );
    // Each path counts its own requests: "the first" is the first to that path.
    assert_eq!(post(&rx.url(), "/other", "{}"), 500);
    let busy = post_raw(&rx.url(), "/busy", "{}");
    assert!(busy.starts_with("HTTP/1.1 429"), "{busy:?}");
    assert!(
        busy.to_lowercase().contains("\r\nretry-after: 2\r\n"),
        "{busy:?}"
    );
    assert_eq!(post(&rx.url(), "/busy", "{}"), 200);
    assert_eq!(post(&rx.url(), "/other", "{}"), 200);

    // Two requests held open at once, then the switch lets the next one through.
    let _first = send(&rx.url(), "/down", "{}");
    let _second = send(&rx.url(), "/down", "{}");
    let got = rx.wait_until("both hanging requests", SAFETY_NET, |r| {
        r.iter().filter(|r| r.path == "/down").count() == 2
    });
    assert_eq!(rx.max_concurrent("/down"), 2);
    up.turn_on();
    assert_eq!(post(&rx.url(), "/down", "{}"), 200);

    let indexes: Vec<(&str, usize)> = got
        .iter()
        .map(|r| (r.path.as_str(), r.path_index))
        .collect();
    assert_eq!(
        indexes,
        [
            ("/other", 0),
            ("/busy", 0),
            ("/busy", 1),
            ("/other", 1),
            ("/down", 0),
            ("/down", 1)
        ]
    );
    // The third may arrive before or after the two held ones are let go.
    assert!((2..=3).contains(&rx.max_concurrent("/down")));
    assert_eq!(rx.max_concurrent("/busy"), 1);
    assert_eq!(rx.max_concurrent("/nowhere"), 0);
}
