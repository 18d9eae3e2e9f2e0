//! Nothing is lost when things go wrong: a worker killed mid-delivery, a worker asked to stop
//! while receivers are slow, job records that cannot be read, Redis going away mid-delivery, and
//! a mass discard that would overflow the dead-letter store.

use std::collections::HashSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::receiver::{self, Receiver};
use crate::support::{redis_and_herald, RedisServer, SAFETY_NET};

#[test]
fn jobs_held_by_a_killed_worker_are_delivered_by_another_after_the_lease() {
    const JOBS: usize = 5;
    let (_redis, herald) = redis_and_herald("it-sigkill");
    // The first JOBS requests never get an answer: they are in flight when the worker dies.
    let rx = Receiver::start(receiver::hang_first(JOBS));
    herald.set_endpoint("dash-1", &format!("{}/hooks/dash-1", rx.url()));
    let jobs: HashSet<String> = (0..JOBS)
        .map(|n| herald.enqueue("dash-1", &json!({"n": n})))
        .collect();

    let lease = [("HERALD_LEASE", "2s"), ("HERALD_CONCURRENCY", "8")];
    let doomed = herald.spawn_worker(&[lease[0], lease[1], ("HERALD_REQUEST_TIMEOUT", "60s")]);
    rx.wait_for(JOBS, SAFETY_NET);
    assert!(doomed.is_running(), "the worker exited on its own");
    doomed.sigkill();
    let status = doomed.wait(SAFETY_NET);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(Signal::SIGKILL as i32)
    );

    let rescuer = herald.spawn_worker(&lease);
    rx.wait_for(2 * JOBS, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    rescuer.stop(SAFETY_NET);

    let requests = rx.requests();
    assert_eq!(
        requests.len(),
        2 * JOBS,
        "each job twice: once hung, once answered"
    );
    let hung: HashSet<String> = requests[..JOBS].iter().map(|r| r.webhook_id()).collect();
    let answered: HashSet<String> = requests[JOBS..].iter().map(|r| r.webhook_id()).collect();
    let expected: HashSet<String> = jobs.iter().map(|id| format!("msg_{id}")).collect();
    assert_eq!(hung, expected);
    assert_eq!(answered, expected, "some job was lost or delivered twice");
}

#[test]
fn sigterm_drains_without_losing_or_stranding_jobs() {
    const JOBS: usize = 20;
    let (_redis, herald) = redis_and_herald("it-sigterm");
    let rx = Receiver::start(receiver::slow(Duration::from_millis(500)));
    herald.set_endpoint("dash-1", &format!("{}/hooks/dash-1", rx.url()));
    let jobs: Vec<String> = (0..JOBS)
        .map(|n| herald.enqueue("dash-1", &json!({"n": n})))
        .collect();

    let settings = [
        ("HERALD_CONCURRENCY", "4"),
        ("HERALD_SHUTDOWN_GRACE", "10s"),
    ];
    let first = herald.spawn_worker(&settings);
    // Stop it while it has deliveries on the wire.
    rx.wait_for(4, SAFETY_NET);
    first.stop(SAFETY_NET);

    let stats = herald.stats();
    assert_eq!(
        stats.in_flight, 0,
        "jobs left in flight by a drained worker: {stats:?}"
    );
    assert_eq!(stats.dead, 0, "{stats:?}");
    let received: HashSet<String> = rx.requests().iter().map(|r| r.webhook_id()).collect();
    let mut queued = 0;
    for id in &jobs {
        match herald.job(id) {
            // Acknowledged: it must have reached the receiver.
            None => assert!(
                received.contains(&format!("msg_{id}")),
                "job {id} is gone but was never delivered"
            ),
            Some(job) => {
                let state = job["state"].as_str().unwrap_or_default();
                assert!(
                    state == "due" || state == "scheduled",
                    "job {id} is {state} after the drain: {job}"
                );
                queued += 1;
            }
        }
    }
    assert_eq!(stats.queued(), queued, "{stats:?}");
    assert!(
        queued > 0,
        "the worker delivered everything before SIGTERM took effect"
    );

    let second = herald.spawn_worker(&settings);
    let expected: HashSet<String> = jobs.iter().map(|id| format!("msg_{id}")).collect();
    rx.wait_until("every job delivered", SAFETY_NET, |requests| {
        let seen: HashSet<String> = requests.iter().map(|r| r.webhook_id()).collect();
        seen == expected
    });
    herald.wait_until_drained(SAFETY_NET);
    second.stop(SAFETY_NET);
}

#[test]
fn malformed_job_records_go_to_the_dead_letter_store_and_the_worker_goes_on() {
    // One shard, so every key of the namespace sits in shard 0.
    let (redis, herald) = redis_and_herald("it-malformed");
    let herald = herald.with_env("HERALD_SHARDS", "1");
    let ns = herald.namespace().to_owned();
    let rx = Receiver::start(receiver::always(200));
    herald.set_endpoint("dash-1", &format!("{}/hooks/dash-1", rx.url()));

    let key = |name: &str| format!("{ns}:v2:{{{ns}.0}}:{name}");
    let mut con = redis.connection();
    let exists: bool = redis::cmd("EXISTS")
        .arg(key("endpoints"))
        .query(&mut con)
        .expect("EXISTS");
    assert!(exists, "the key layout changed: no {}", key("endpoints"));

    let garbage = "01J000000000000000000BAD01";
    let unknown_version = "01J000000000000000000BAD02";
    let not_json = "01J000000000000000000BAD04";
    let bad = [
        (garbage, "\u{0}\u{1} not a job record at all"),
        (unknown_version, "9 0 1700000000000 dash-1\n{\"n\":1}"),
        (not_json, "1 0 1700000000000 dash-1\nnot JSON {"),
    ];
    for (id, record) in bad {
        redis::cmd("HSET")
            .arg(key("jobs"))
            .arg(id)
            .arg(record)
            .exec(&mut con)
            .expect("HSET");
        redis::cmd("ZADD")
            .arg(key("q:dash-1"))
            .arg(0)
            .arg(id)
            .exec(&mut con)
            .expect("ZADD");
    }
    redis::cmd("ZADD")
        .arg(key("ready"))
        .arg(0)
        .arg("dash-1")
        .exec(&mut con)
        .expect("ZADD");
    // A job of an endpoint that never existed (written behind the enqueue script's back).
    let orphan = "01J000000000000000000BAD03";
    redis::cmd("HSET")
        .arg(key("jobs"))
        .arg(orphan)
        .arg("1 0 1700000000000 ghost\n{}")
        .exec(&mut con)
        .expect("HSET");
    redis::cmd("ZADD")
        .arg(key("q:ghost"))
        .arg(0)
        .arg(orphan)
        .exec(&mut con)
        .expect("ZADD");
    redis::cmd("ZADD")
        .arg(key("ready"))
        .arg(0)
        .arg("ghost")
        .exec(&mut con)
        .expect("ZADD");

    let worker = herald.spawn_worker(&[]);
    herald.wait_for_stats("the bad records dead", SAFETY_NET, |s| {
        s.dead == 4 && s.queued() == 0 && s.in_flight == 0
    });
    assert_eq!(
        worker.metric("herald_jobs_discarded_total{reason=\"malformed\"}"),
        3.0
    );
    let shown = herald.ok(&["job", "get", not_json, "--json"]).json();
    assert_eq!(shown["raw_payload"], "not JSON {", "{shown}");
    assert_eq!(
        worker.metric("herald_jobs_discarded_total{reason=\"endpoint_gone\"}"),
        1.0
    );
    worker.wait_for_line(SAFETY_NET, |l| l.contains("deleted or unknown endpoint"));
    assert!(worker.is_running(), "the worker died on bad data");

    let good = herald.enqueue("dash-1", &json!({"fine": true}));
    let requests = rx.wait_for(1, SAFETY_NET);
    assert_eq!(requests[0].webhook_id(), format!("msg_{good}"));
    herald.wait_for_stats("the good job delivered", SAFETY_NET, |s| {
        s.dead == 4 && s.queued() == 0 && s.in_flight == 0
    });
    assert!(worker.is_running(), "the worker died on bad data");
    worker.stop(SAFETY_NET);
    assert_eq!(rx.requests().len(), 1, "a bad record was delivered");

    let dead = herald.dead_list();
    let ids: HashSet<&str> = dead.iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(
        ids,
        HashSet::from([garbage, unknown_version, orphan, not_json]),
        "dead list: {dead:?}"
    );
    for job in &dead {
        let reason = job["last_error"].as_str().unwrap_or_default();
        assert!(
            !reason.trim().is_empty(),
            "dead job without a reason: {job}"
        );
    }
}

#[test]
fn a_redis_outage_is_ridden_out_and_outcomes_reach_redis_when_it_returns() {
    // A Redis that keeps its data across the restart, as production Redis does.
    let mut redis = RedisServer::start_with_aof("always");
    let herald = crate::support::Herald::new(&redis.url(), "it-outage");
    let rx = Receiver::start(receiver::slow(Duration::from_millis(300)));
    herald.set_endpoint("dash-1", &rx.url());
    let during = herald.enqueue("dash-1", &json!({"n": "during"}));
    let worker = herald.spawn_worker(&[]);

    // The delivery is on the wire when Redis goes away: its outcome cannot be written yet.
    rx.wait_for(1, SAFETY_NET);
    redis.kill();
    redis.restart();

    // Back again: the held acknowledgement lands, and new work flows.
    let after = herald.enqueue("dash-1", &json!({"n": "after"}));
    let got = rx.wait_for(2, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    assert!(worker.is_running(), "the worker gave up during the outage");
    worker.stop(SAFETY_NET);
    let ids: Vec<String> = rx.requests().iter().map(|r| r.webhook_id()).collect();
    assert_eq!(
        ids,
        [format!("msg_{during}"), format!("msg_{after}")],
        "each job exactly once: {got:?}"
    );
}

#[test]
fn a_mass_discard_is_trimmed_to_the_dead_letter_bound_in_one_round() {
    let (_redis, herald) = redis_and_herald("it-recovery-trim");
    herald.set_endpoint("doomed", "http://127.0.0.1:9/doomed");
    herald.ok(&["endpoint", "disable", "doomed", "--reason", "test"]);
    herald.enqueue_many("doomed", (0..2500).map(|i| json!({ "n": i })));
    herald.ok(&["endpoint", "delete", "doomed"]);
    assert_eq!(herald.stats().dead, 2500);

    // 16 shards share a bound of 100: at most 7 entries in each.
    let _worker = herald.spawn_worker(&[("HERALD_DEAD_MAX", "100")]);
    let stats = herald.wait_for_stats("the dead letters trimmed", SAFETY_NET, |s| s.dead <= 7);
    assert_eq!(stats.dead, 7, "{stats:?}");
    herald.assert_check_clean();
}
