//! Many receivers down at once, as in a cloud region's outage: dozens of endpoints whose
//! receivers hang or crawl beside healthy ones. The healthy ones get through while the others
//! still hold their backlog (queued, or in flight in the slow lane and its overflow); the slow ones still drain theirs through the slow lane; an
//! endpoint judged slow is judged fast again once its receiver answers quickly.
//!
//! Small lanes (`HERALD_CONCURRENCY` 20, `HERALD_SLOW_CONCURRENCY` 10 per worker) against 50
//! bad endpoints whose in-flight limit (32 each) would let them take every slot of both workers
//! many times over: only the lanes keep slots for the healthy.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::support::herald::{Herald, Worker};
use crate::support::receiver::{Receiver, Reply, Request, Switch};
use crate::support::{redis_and_herald, SAFETY_NET};

const BAD_ENDPOINTS: usize = 50;
const HEALTHY_ENDPOINTS: usize = 10;
const HEALTHY_JOBS_EACH: usize = 3;
const HEALTHY_JOBS: usize = HEALTHY_ENDPOINTS * HEALTHY_JOBS_EACH;

/// Two workers with small lanes and a short `HERALD_SLOW_AFTER`.
fn two_workers(herald: &Herald, request_timeout: &str) -> Vec<Worker> {
    (0..2)
        .map(|_| {
            herald.spawn_worker(&[
                ("HERALD_CONCURRENCY", "20"),
                ("HERALD_SLOW_CONCURRENCY", "10"),
                ("HERALD_SLOW_AFTER", "300ms"),
                ("HERALD_REQUEST_TIMEOUT", request_timeout),
                ("HERALD_LEASE", "60s"),
            ])
        })
        .collect()
}

/// Sets the 50 bad endpoints (`/bad/<i>`) and queues `jobs_each` jobs for each.
fn bad_endpoints(herald: &Herald, rx: &Receiver, jobs_each: usize) {
    for i in 0..BAD_ENDPOINTS {
        let id = format!("bad-{i:02}");
        herald.set_endpoint(&id, &format!("{}/bad/{i}", rx.url()));
        herald.enqueue_many(&id, (0..jobs_each).map(|n| json!({ "bad": i, "n": n })));
    }
}

/// Sets the healthy endpoints (`/ok/<i>`) and queues their jobs, numbered 0 .. HEALTHY_JOBS.
fn healthy_endpoints(herald: &Herald, rx: &Receiver) {
    for e in 0..HEALTHY_ENDPOINTS {
        let id = format!("ok-{e:02}");
        herald.set_endpoint(&id, &format!("{}/ok/{e}", rx.url()));
        herald.enqueue_many(
            &id,
            (0..HEALTHY_JOBS_EACH).map(|n| json!({ "n": e * HEALTHY_JOBS_EACH + n })),
        );
    }
}

fn is_bad(r: &Request) -> bool {
    r.path.starts_with("/bad/")
}

/// The healthy deliveries received: each healthy job exactly once.
fn assert_every_healthy_job_once(requests: &[Request]) {
    let healthy: Vec<&Request> = requests.iter().filter(|r| !is_bad(r)).collect();
    let numbers: HashSet<u64> = healthy
        .iter()
        .map(|r| r.json()["n"].as_u64().expect("an integer n"))
        .collect();
    assert_eq!(healthy.len(), HEALTHY_JOBS, "a healthy job was sent twice");
    assert_eq!(
        numbers,
        (0..HEALTHY_JOBS as u64).collect(),
        "every healthy job once"
    );
}

#[test]
fn fifty_hanging_endpoints_do_not_hold_back_the_healthy_ones() {
    const BAD_JOBS_EACH: usize = 10;
    // Longer than the test: no hanging delivery gives its slot back by timing out, so only
    // the lanes can free slots for the healthy endpoints.
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
    let (_redis, herald) = redis_and_herald("it-outage-hang");
    let rx = Receiver::start(|_, r: &Request| {
        if is_bad(r) {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    });
    bad_endpoints(&herald, &rx, BAD_JOBS_EACH);
    let workers = two_workers(&herald, "60s");
    // Both workers' main lanes (40 slots) are taken by hanging deliveries before any healthy
    // job exists.
    rx.wait_until(
        "the main lanes full of hanging deliveries",
        SAFETY_NET,
        |r| r.iter().filter(|r| is_bad(r)).count() >= 40,
    );
    healthy_endpoints(&herald, &rx);

    let got = rx.wait_until("every healthy job delivered", REQUEST_TIMEOUT / 2, |r| {
        r.iter().filter(|r| !is_bad(r)).count() >= HEALTHY_JOBS
    });
    assert_every_healthy_job_once(&got);

    // The hanging endpoints still hold their whole backlog, queued or in flight (none of it
    // done, none of it dropped), and were judged slow.
    let limits: Vec<_> = (0..BAD_ENDPOINTS)
        .map(|i| herald.limits(&format!("bad-{i:02}")))
        .collect();
    let held: u64 = limits.iter().map(|l| l.queued + l.in_flight).sum();
    assert_eq!(
        held,
        (BAD_ENDPOINTS * BAD_JOBS_EACH) as u64,
        "the hanging endpoints' backlog, queued or in flight: {limits:?}"
    );
    assert!(
        limits.iter().any(|l| l.slow),
        "no hanging endpoint is judged slow: {limits:?}"
    );
    // `herald stats` names them as the endpoints holding the most slots.
    let stats = herald.ok(&["stats", "--json"]).json();
    let busiest = stats["busiest"].as_array().expect("a busiest list");
    assert!(
        !busiest.is_empty()
            && busiest
                .iter()
                .all(|b| b["id"].as_str().unwrap().starts_with("bad-")),
        "{stats}"
    );
    assert!(busiest.iter().any(|b| b["slow"] == true), "{stats}");
    let text = herald.ok(&["stats"]).stdout;
    assert!(text.contains("holding the most delivery slots"), "{text}");
    let slow_lane: f64 = workers
        .iter()
        .map(|w| w.metric("herald_slow_lane_deliveries"))
        .sum();
    assert!(slow_lane > 0.0, "no delivery in the slow lanes");
    for worker in &workers {
        assert!(worker.is_running(), "a worker exited on its own");
        // Its hung deliveries would hold a graceful drain for the whole grace period.
        worker.sigkill();
        worker.wait(SAFETY_NET);
    }
}

#[test]
fn fifty_slow_endpoints_drain_their_backlog_while_the_healthy_ones_stay_on_time() {
    const BAD_JOBS_EACH: usize = 4;
    const BAD_JOBS: usize = BAD_ENDPOINTS * BAD_JOBS_EACH;
    const SLOW: Duration = Duration::from_secs(2);
    let (_redis, herald) = redis_and_herald("it-outage-slow");
    let rx = Receiver::start(|_, r: &Request| {
        if is_bad(r) {
            Reply::After(SLOW, 200)
        } else {
            Reply::Status(200)
        }
    });
    bad_endpoints(&herald, &rx, BAD_JOBS_EACH);
    let _workers = two_workers(&herald, "10s");
    rx.wait_until("the main lanes full of slow deliveries", SAFETY_NET, |r| {
        r.iter().filter(|r| is_bad(r)).count() >= 40
    });
    healthy_endpoints(&herald, &rx);

    let got = rx.wait_until("every healthy job delivered", SAFETY_NET, |r| {
        r.iter().filter(|r| !is_bad(r)).count() >= HEALTHY_JOBS
    });
    assert_every_healthy_job_once(&got);
    // At most 20 slow-lane slots and a bounded overflow against 200 deliveries of 2 s each:
    // the slow endpoints cannot be done yet.
    let slow_done = got.iter().filter(|r| is_bad(r)).count();
    assert!(
        slow_done < BAD_JOBS,
        "the slow endpoints were done before the healthy ones: {slow_done}"
    );

    // They still make progress: every slow job is delivered, once.
    let got = rx.wait_until("every slow job delivered", SAFETY_NET * 3, |r| {
        r.iter().filter(|r| is_bad(r)).count() >= BAD_JOBS
    });
    let slow: HashSet<String> = got
        .iter()
        .filter(|r| is_bad(r))
        .map(|r| r.webhook_id())
        .collect();
    assert_eq!(slow.len(), BAD_JOBS, "a slow job was sent twice");
    herald.wait_until_drained(SAFETY_NET);
    herald.assert_check_clean();
}

#[test]
fn an_endpoint_judged_slow_is_judged_fast_again_once_its_receiver_answers_quickly() {
    let (_redis, herald) = redis_and_herald("it-outage-heal");
    let healed = Switch::new();
    let rx = Receiver::start(crate::support::receiver::hang_until(&healed));
    herald.set_endpoint("dash-1", &format!("{}/hook", rx.url()));
    herald.enqueue_many("dash-1", (0..20).map(|n| json!({ "n": n })));
    let _worker = herald.spawn_worker(&[
        ("HERALD_SLOW_AFTER", "200ms"),
        ("HERALD_REQUEST_TIMEOUT", "1s"),
    ]);
    let slow = herald.wait_for_limits("dash-1", "judged slow", SAFETY_NET, |l| l.slow);
    assert!(slow.queued > 0, "{slow:?}");
    let shown = herald.ok(&["endpoint", "get", "dash-1"]).stdout;
    assert!(shown.contains("speed:          slow"), "{shown}");

    healed.turn_on();
    herald.wait_for_limits("dash-1", "judged fast again", SAFETY_NET, |l| !l.slow);
    // Nothing left, none dead: every job was delivered.
    herald.wait_until_drained(SAFETY_NET);
}
