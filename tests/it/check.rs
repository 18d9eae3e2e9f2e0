//! `herald check`: a store in every state a job and an endpoint can be in is clean, also while
//! workers deliver; each broken invariant, made by hand the way an interrupted write or a bug
//! would leave it, is reported by kind, and `--repair` fixes what has a safe fix, after which
//! the jobs it put back are delivered.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use herald_core::{shard_of, EndpointId};
use herald_store::{Namespace, ShardKeys};
use redis::Commands;
use serde_json::{json, Value};

use crate::support::receiver::{self, Receiver};
use crate::support::{redis_and_herald, Herald, RedisServer, SAFETY_NET};

/// The keys of `endpoint`'s shard in the tests' 16-shard namespace.
fn keys(herald: &Herald, endpoint: &str) -> ShardKeys {
    let ns = Namespace::new(herald.namespace()).unwrap();
    ns.shard(shard_of(&EndpointId::new(endpoint).unwrap(), 16))
}

fn service_key(herald: &Herald, slug: &str) -> String {
    Namespace::new(herald.namespace())
        .unwrap()
        .service_subscribers(slug)
}

/// The queued job ids of `endpoint`, in due order.
fn queued(redis: &RedisServer, herald: &Herald, endpoint: &str) -> Vec<String> {
    let mut conn = redis.connection();
    conn.zrange(keys(herald, endpoint).queue(endpoint), 0, -1)
        .unwrap()
}

/// (kind, subject, repaired) of every violation a `check --json` run listed.
fn violations(report: &Value) -> BTreeSet<(String, String, bool)> {
    report["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_owned(),
                v["subject"].as_str().unwrap().to_owned(),
                v["repaired"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_store_in_every_state_is_clean() {
    let (_redis, herald) = redis_and_herald("it-check-clean");
    let fast = Receiver::start(receiver::always(200));
    let hanging = Receiver::start(receiver::hang_forever());
    herald.set_endpoint("fast", &format!("{}/fast", fast.url()));
    herald.set_endpoint("hanging", &format!("{}/hanging", hanging.url()));
    herald.set_endpoint("parked", "http://127.0.0.1:9/parked");
    herald.set_endpoint("gone", "http://127.0.0.1:9/gone");
    herald.ok(&["subscribe", "fast", "heroku", "--level", "warn"]);
    herald.ok(&["subscribe", "gone", "heroku"]);
    herald.ok(&["endpoint", "disable", "parked", "--reason", "maintenance"]);
    herald.enqueue_many("fast", (0..20).map(|i| json!({ "n": i })));
    herald.enqueue_many("hanging", (0..3).map(|i| json!({ "n": i })));
    herald.enqueue_many("parked", (0..4).map(|i| json!({ "n": i })));
    herald.enqueue_many("gone", (0..5).map(|i| json!({ "n": i })));
    herald
        .run_stdin(
            &["enqueue", "fast", "-", "--delay", "1h"],
            r#"{"later":true}"#,
        )
        .assert_success();
    herald.ok(&["endpoint", "delete", "gone"]);

    // A retry window longer than the test: the parked jobs stay parked, not buried as parked
    // for longer than the window however slow the machine.
    let worker = herald.spawn_worker(&[
        ("HERALD_REQUEST_TIMEOUT", "60s"),
        ("HERALD_RETRY_SCHEDULE", "1h"),
    ]);
    fast.wait_for(20, SAFETY_NET);
    hanging.wait_for(3, SAFETY_NET);
    // A request received is not yet a job settled: wait for the fast ones' acknowledgements.
    let stats = herald.wait_for_stats("only the hanging jobs in flight", SAFETY_NET, |s| {
        s.in_flight == 3
    });
    assert_eq!(
        (stats.parked, stats.dead, stats.scheduled),
        (4, 5, 1),
        "{stats:?}"
    );

    let out = herald.ok(&["check"]);
    assert!(out.stdout.contains("no violation"), "text output:\n{out}");
    herald.assert_check_clean();
    worker.stop(SAFETY_NET);
    herald.assert_check_clean();
}

#[test]
fn each_broken_invariant_is_reported_and_repair_fixes_the_safe_ones() {
    let (redis, herald) = redis_and_herald("it-check-broken");
    let sink = Receiver::start(receiver::always(200));
    for e in ["a", "b", "c", "d"] {
        herald.set_endpoint(e, &format!("{}/{e}", sink.url()));
    }
    herald.ok(&["subscribe", "a", "heroku"]);
    herald.enqueue_many("a", (0..6).map(|i| json!({ "a": i })));
    herald.enqueue_many("b", (0..2).map(|i| json!({ "b": i })));
    herald.enqueue_many("c", (0..2).map(|i| json!({ "c": i })));
    herald.set_endpoint("doomed", "http://127.0.0.1:9/doomed");
    herald.enqueue_many("doomed", (0..2).map(|i| json!({ "doomed": i })));
    herald.ok(&["endpoint", "delete", "doomed"]);
    let dead: Vec<String> = herald
        .dead_list()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(dead.len(), 2);
    herald.assert_check_clean();

    let a = keys(&herald, "a");
    let a_jobs = queued(&redis, &herald, "a");
    let (stranded, leased, duplicated, misfiled) = (&a_jobs[0], &a_jobs[1], &a_jobs[2], &a_jobs[3]);
    let mut conn = redis.connection();
    let now: i64 = 1;
    // A job whose queue entry was lost: nothing would deliver it.
    let _: () = conn.zrem(a.queue("a"), stranded).unwrap();
    // A lease for a job that is not in flight.
    let _: () = conn.hset(&a.leases, leased, "99 1").unwrap();
    // A job both queued and dead.
    let _: () = conn.zadd(&a.dead, duplicated, now).unwrap();
    let _: () = conn.hset(&a.errors, duplicated, "test").unwrap();
    // A job in another endpoint's queue.
    let _: () = conn.zrem(a.queue("a"), misfiled).unwrap();
    let _: () = conn.zadd(a.queue("zz"), misfiled, now).unwrap();
    let _: () = conn.zadd(&a.ready, "zz", now).unwrap();
    // Queue entries, and an error line, without a record.
    let _: () = conn.zadd(a.queue("a"), "ghost-job", now).unwrap();
    let _: () = conn.hset(&a.errors, "lost-job", "test").unwrap();
    // A dead job without its reason.
    let d = keys(&herald, "doomed");
    let _: () = conn.hdel(&d.errors, &dead[0]).unwrap();
    // An enabled endpoint with queued jobs that no claim looks at.
    let b = keys(&herald, "b");
    let _: () = conn.zrem(&b.ready, "b").unwrap();
    // An endpoint blocked at its limit with nothing in flight.
    let c = keys(&herald, "c");
    let _: () = conn.zadd(&c.ready, "c", 1e15).unwrap();
    // A counter that counts what is not there.
    let dk = keys(&herald, "d");
    let _: () = conn.hset(&dk.busy, "d", 5).unwrap();
    // State left of endpoints that do not exist.
    let _: () = conn.hset(&d.strikes, "doomed", 3).unwrap();
    let _: () = conn
        .rpush(keys(&herald, "never").attempts("never"), "{}")
        .unwrap();
    // Subscriptions and the service index out of step.
    let heroku = service_key(&herald, "heroku");
    let _: () = conn.hdel(&heroku, "a").unwrap();
    let _: () = conn.hset(&heroku, "nobody", r#"{"level":"all"}"#).unwrap();

    let expected: BTreeSet<(String, String)> = [
        ("stranded", stranded.as_str()),
        ("orphan_lease", leased.as_str()),
        ("duplicated", duplicated.as_str()),
        ("misfiled", misfiled.as_str()),
        ("orphan_member", "ghost-job"),
        ("orphan_error", "lost-job"),
        ("dead_without_reason", dead[0].as_str()),
        ("queue_not_ready", "b"),
        ("blocked_idle", "c"),
        ("busy_count", "d"),
        ("leftover_keys", "doomed"),
        ("leftover_keys", "never"),
        ("subscription_unindexed", "a heroku"),
        ("subscriber_orphan", "nobody heroku"),
    ]
    .into_iter()
    .map(|(k, s)| (k.to_owned(), s.to_owned()))
    .collect();

    let out = herald.run(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out}");
    let found = violations(&out.json());
    let kinds: BTreeSet<(String, String)> = found
        .iter()
        .map(|(k, s, _)| (k.clone(), s.clone()))
        .collect();
    assert_eq!(kinds, expected, "{out}");
    assert!(found.iter().all(|(_, _, repaired)| !repaired), "{out}");
    let text = herald.run(&["check"]);
    assert_eq!(text.status.code(), Some(1), "{text}");
    assert!(
        text.stdout.contains("14 violations") && text.stdout.contains("stranded"),
        "{text}"
    );
    assert!(text.stderr.contains("--repair"), "{text}");

    let out = herald.run(&["check", "--repair", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "what has no safe fix remains:\n{out}"
    );
    for (kind, subject, repaired) in violations(&out.json()) {
        let unfixable = kind == "duplicated" || kind == "misfiled";
        assert_eq!(repaired, !unfixable, "{kind} {subject}:\n{out}");
    }
    let out = herald.run(&["check", "--json"]);
    let left: BTreeSet<(String, String)> = violations(&out.json())
        .into_iter()
        .map(|(k, s, _)| (k, s))
        .collect();
    assert_eq!(
        left,
        [
            ("duplicated".to_owned(), duplicated.clone()),
            ("misfiled".to_owned(), misfiled.clone())
        ]
        .into_iter()
        .collect(),
        "{out}"
    );

    // The operator settles those by hand; the store is then clean, and every job of a, b and
    // c, the stranded one included, is delivered.
    let _: () = conn.zrem(&a.dead, duplicated).unwrap();
    let _: () = conn.hdel(&a.errors, duplicated).unwrap();
    let _: () = conn.zrem(a.queue("zz"), misfiled).unwrap();
    let _: () = conn.zadd(a.queue("a"), misfiled, now).unwrap();
    herald.assert_check_clean();
    let _worker = herald.spawn_worker(&[]);
    let got = sink.wait_for(10, SAFETY_NET);
    let ids: BTreeSet<String> = got.iter().map(|r| r.webhook_id()).collect();
    assert!(ids.contains(&format!("msg_{stranded}")), "{ids:?}");
    herald.wait_for_stats("a, b and c delivered", SAFETY_NET, |s| {
        s.queued() == 0 && s.in_flight == 0
    });
    assert_eq!(sink.count(), 10);
    herald.assert_check_clean();
}

#[test]
fn checks_while_workers_deliver_find_nothing() {
    let (_redis, herald) = redis_and_herald("it-check-live");
    let sink = Receiver::start(receiver::slow(Duration::from_millis(5)));
    // Every third request fails: retries, some dead letters, and adaptive-limit cuts, but never
    // the five strikes in a row that would disable the endpoint.
    let flaky = Receiver::start(|i, _: &receiver::Request| {
        receiver::Reply::Status(if i % 3 == 0 { 500 } else { 200 })
    });
    for i in 0..8 {
        herald.set_endpoint(&format!("e{i}"), &format!("{}/e{i}", sink.url()));
    }
    herald.set_endpoint("flaky", &format!("{}/flaky", flaky.url()));
    let _w1 = herald.spawn_worker(&[("HERALD_CONCURRENCY", "16")]);
    let _w2 = herald.spawn_worker(&[("HERALD_CONCURRENCY", "16")]);
    let mut total = 0;
    for round in 0..5 {
        for i in 0..8 {
            total += herald.enqueue_many(
                &format!("e{i}"),
                (0..100).map(|n| json!({ "round": round, "n": n })),
            );
        }
        herald.enqueue_many("flaky", (0..20).map(|n| json!({ "round": round, "n": n })));
        herald.assert_check_clean();
    }
    let deadline = Instant::now() + SAFETY_NET;
    while sink.count() < total as usize {
        assert!(
            Instant::now() < deadline,
            "{} of {total} delivered",
            sink.count()
        );
        herald.assert_check_clean();
    }
    herald.wait_for_stats("every job settled", SAFETY_NET, |s| {
        s.queued() == 0 && s.in_flight == 0
    });
    herald.assert_check_clean();
}
