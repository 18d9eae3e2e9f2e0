//! Bad input at the command line fails with a non-zero exit and a message on stderr, and never
//! writes anything.

use std::io::ErrorKind;
use std::net::TcpStream;

use serde_json::json;

use crate::support::{redis_and_herald, Herald, SAFETY_NET};

#[test]
fn enqueue_rejects_invalid_json() {
    let (_redis, herald) = redis_and_herald("it-cli-json");
    herald.set_endpoint("dash-1", "http://127.0.0.1:9/hook");
    let out = herald.run_stdin(&["enqueue", "dash-1", "-"], "{\"unterminated\": ");
    let stderr = out.assert_failure();
    assert!(
        stderr.to_lowercase().contains("json"),
        "the message should say the payload is not JSON:\n{out}"
    );
    assert_eq!(herald.stats().queued(), 0, "invalid JSON was enqueued");
}

#[test]
fn enqueue_rejects_an_unknown_endpoint() {
    let (_redis, herald) = redis_and_herald("it-cli-endpoint");
    let out = herald.run_stdin(
        &["enqueue", "no-such-dash", "-"],
        json!({"a": 1}).to_string(),
    );
    let stderr = out.assert_failure();
    assert!(
        stderr.contains("no-such-dash") || stderr.to_lowercase().contains("endpoint"),
        "the message should name the unknown endpoint:\n{out}"
    );
    assert_eq!(
        herald.stats().queued(),
        0,
        "a job for an unknown endpoint was enqueued"
    );
}

#[test]
fn job_get_rejects_an_unknown_job_id() {
    let (_redis, herald) = redis_and_herald("it-cli-job");
    let out = herald.run(&["job", "get", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]);
    let stderr = out.assert_failure();
    assert!(
        stderr.to_lowercase().contains("not found"),
        "the message should say the job is not found:\n{out}"
    );
}

#[test]
fn commands_fail_clearly_when_redis_is_unreachable() {
    // Port 1 is outside the range the OS hands out for port 0, so no other test's server can be
    // there; make sure nothing else is either.
    let refused = TcpStream::connect("127.0.0.1:1").map_err(|e| e.kind());
    assert_eq!(
        refused.err(),
        Some(ErrorKind::ConnectionRefused),
        "something listens on 127.0.0.1:1"
    );
    let herald = Herald::new("redis://127.0.0.1:1", "it-cli-down");
    for args in [
        &["stats"][..],
        &["job", "get", "01ARZ3NDEKTSV4RRFFQ69G5FAV"][..],
    ] {
        let out = herald.run(args);
        let stderr = out.assert_failure().to_lowercase();
        assert!(
            stderr.contains("redis") || stderr.contains("connect"),
            "the message should say Redis is unreachable:\n{out}"
        );
    }
}

#[test]
fn worker_refuses_invalid_config_naming_the_key() {
    let (_redis, herald) = redis_and_herald("it-cli-config");
    let worker = herald.spawn_worker_unchecked(&[
        ("HERALD_METRICS_ADDR", "127.0.0.1:0"),
        ("HERALD_ALLOW_TARGETS", "127.0.0.0/8"),
        ("HERALD_CONCURRENCY", "lots"),
    ]);
    let status = worker.wait(crate::support::SAFETY_NET);
    assert_eq!(status.code(), Some(2), "output:\n{}", worker.output());
    assert!(
        worker.stderr().to_lowercase().contains("concurrency"),
        "the message should name HERALD_CONCURRENCY:\n{}",
        worker.output()
    );
}

#[test]
fn a_namespace_of_another_key_format_is_refused_by_the_cli_and_the_worker() {
    // A namespace that format-1 herald set up: its settings hash, no format key.
    let (redis, herald) = redis_and_herald("it-cli-format");
    redis::cmd("HSET")
        .arg("it-cli-format:v1:meta")
        .arg("shards")
        .arg(16)
        .exec(&mut redis.connection())
        .unwrap();
    for args in [
        &["stats"][..],
        &["endpoint", "set", "dash-1", "--url", "http://127.0.0.1:9/h"],
    ] {
        let out = herald.run(args);
        let stderr = out.assert_failure();
        assert!(
            stderr.contains("format 1") && stderr.contains("format 2"),
            "the message should name both formats:\n{out}"
        );
    }
    let worker = herald.spawn_worker_unchecked(&[]);
    assert!(
        !worker.wait(SAFETY_NET).success(),
        "the worker ran on format-1 data"
    );
    assert!(worker.stderr().contains("format 1"), "{}", worker.stderr());

    // A namespace that a later format marked as its own.
    let (redis, herald) = redis_and_herald("it-cli-format-3");
    redis::cmd("SET")
        .arg("it-cli-format-3:format")
        .arg(3)
        .exec(&mut redis.connection())
        .unwrap();
    let stderr = herald.run(&["stats"]).assert_failure();
    assert!(stderr.contains("format 3"), "{stderr}");
}

#[test]
fn a_new_namespace_is_marked_so_that_format_1_processes_refuse_it() {
    let (redis, herald) = redis_and_herald("it-cli-format-new");
    herald.set_endpoint("dash-1", "http://127.0.0.1:9/hook");
    let mut con = redis.connection();
    let format: String = redis::cmd("GET")
        .arg("it-cli-format-new:format")
        .query(&mut con)
        .unwrap();
    assert_eq!(format, "2");
    // Format-1 processes compare this with their shard count (at least 1) and refuse.
    let v1_shards: u16 = redis::cmd("HGET")
        .arg("it-cli-format-new:v1:meta")
        .arg("shards")
        .query(&mut con)
        .unwrap();
    assert_eq!(v1_shards, 0);
    herald.ok(&["stats"]);
}

#[test]
fn cluster_mode_against_a_single_redis_is_refused_with_the_reason() {
    let (redis, herald) = redis_and_herald("it-cli-cluster-switch");
    let clustered = Herald::new(redis.url().as_str(), "it-cli-cluster-switch")
        .with_env("HERALD_REDIS_CLUSTER", "true");
    let out = clustered.run(&["stats"]);
    let stderr = out.assert_failure();
    assert!(
        stderr.contains("HERALD_REDIS_CLUSTER") && stderr.contains("not a cluster"),
        "the message should say Redis is not a cluster:\n{out}"
    );
    // Several URLs without cluster mode are refused before anything is sent.
    let two = format!("{},{}", redis.url(), redis.url());
    let out = Herald::new(&two, "it-cli-cluster-switch").run(&["stats"]);
    let stderr = out.assert_failure();
    assert!(
        stderr.contains("cluster mode is off"),
        "the message should say several seed nodes need cluster mode:\n{out}"
    );
    herald.ok(&["stats"]);
}
