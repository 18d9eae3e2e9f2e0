//! The test harness: a real Redis, a real HTTP receiver and the real `herald` binary.
//!
//! - [`redis_server`]: one `redis-server` per test on a free port.
//! - [`redis_cluster`]: a Redis Cluster per test (three masters, three replicas) that tests
//!   reshard, fail over and cut a master from.
//! - [`receiver`]: an axum server that records requests and answers by policy.
//! - [`herald`]: CLI commands and worker processes of the binary under test.
//! - [`api`]: the API server of `herald serve`, in-process, and an HTTP client for it.
//! - [`browser`]: chromedriver and a headless Chromium session, for the console.
//! - [`process`]: child-process supervision shared by the above (output capture, exit events).
//! - [`proxy`]: a loopback TCP proxy that can blackhole its connections (a dropped flow).
//! - [`sockets`]: a process's TCP sockets, from `/proc` (whose connection, keepalive timers).

pub mod api;
pub mod browser;
pub mod herald;
pub mod process;
pub mod proxy;
pub mod receiver;
pub mod redis_cluster;
pub mod redis_server;
pub mod sockets;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub use herald::Herald;
pub use redis_cluster::RedisCluster;
pub use redis_server::RedisServer;

/// The safety net for waits on events that should come in well under a second or two: passing
/// it fails the test with a message, it never paces the test.
pub const SAFETY_NET: Duration = Duration::from_secs(60);

/// A test's own Redis, receiver-independent CLI handle and namespace.
///
/// Each test starts its own server; the namespace differs per test too, so that a key left by
/// one test can never be read by another even if servers were shared.
pub fn redis_and_herald(namespace: &str) -> (RedisServer, Herald) {
    let redis = RedisServer::start();
    let herald = Herald::new(&redis.url(), namespace);
    (redis, herald)
}

/// Sends `GET path` over HTTP/1.1 to `addr` (`host:port`) and returns the status and body.
///
/// A few lines instead of an HTTP client dependency, for probing a worker's own endpoints.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line from {addr}: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}
