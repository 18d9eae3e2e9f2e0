//! Endpoint isolation, end to end: one endpoint's trouble stays its own. A hanging receiver
//! does not stall the others, `--max-in-flight` holds fleet-wide and across a killed worker,
//! `--rate` spaces deliveries, a `Retry-After` pauses the whole endpoint, and the adaptive
//! limit gives way under timeouts and comes back with successes.
//!
//! Limits are read where an operator reads them: `herald endpoint get ID --json`.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::herald::Herald;
use crate::support::receiver::{self, Receiver, Request, Routes, Switch};
use crate::support::{redis_and_herald, SAFETY_NET};

/// `herald endpoint set ID --url URL` followed by limit flags (`--max-in-flight N`, `--rate R`).
fn set_endpoint(herald: &Herald, id: &str, url: &str, limits: &[&str]) {
    let mut args = vec!["endpoint", "set", id, "--url", url];
    args.extend_from_slice(limits);
    herald.ok(&args);
}

/// `{"n": 0}`, `{"n": 1}`, … : one payload per job, so that deliveries can be told apart.
fn numbered(count: usize) -> impl Iterator<Item = serde_json::Value> {
    (0..count).map(|n| json!({ "n": n }))
}

/// The distinct `n` of the payloads received.
fn numbers(requests: &[Request]) -> HashSet<u64> {
    requests
        .iter()
        .map(|r| r.json()["n"].as_u64().expect("an integer n in the payload"))
        .collect()
}

/// Now, in Unix milliseconds (the clock Redis reports on this machine too).
fn unix_ms_now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_millis()).unwrap()
}

#[test]
fn a_hanging_endpoint_does_not_stall_healthy_ones() {
    const HUNG_JOBS: u64 = 200;
    const HEALTHY_ENDPOINTS: usize = 20;
    const JOBS_EACH: usize = 5;
    const HEALTHY_JOBS: usize = HEALTHY_ENDPOINTS * JOBS_EACH;
    // Half the worker's 20 permits: the default (32) would let the hanging endpoint take every
    // permit of a worker this small, which isolation does not promise.
    const HUNG_LIMIT: u64 = 10;
    // Longer than the test should take: no hung request gives its permit back by timing out
    // while the healthy jobs are delivered, so only the limit keeps permits free.
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    let (_redis, herald) = redis_and_herald("it-iso-hang");
    let rx = Receiver::start(
        Routes::new()
            .path("/hang", receiver::hang_forever())
            .otherwise(receiver::always(200)),
    );
    // The hanging endpoint's backlog is queued first: a single FIFO would serve it first.
    set_endpoint(
        &herald,
        "hung",
        &format!("{}/hang", rx.url()),
        &["--max-in-flight", &HUNG_LIMIT.to_string()],
    );
    herald.enqueue_many("hung", numbered(HUNG_JOBS as usize));
    for e in 0..HEALTHY_ENDPOINTS {
        let id = format!("ok-{e:02}");
        herald.set_endpoint(&id, &format!("{}/ok/{id}", rx.url()));
        herald.enqueue_many(
            &id,
            (0..JOBS_EACH).map(|n| json!({ "n": e * JOBS_EACH + n })),
        );
    }

    let worker = herald.spawn_worker(&[
        ("HERALD_CONCURRENCY", "20"),
        ("HERALD_REQUEST_TIMEOUT", "30s"),
        ("HERALD_LEASE", "60s"),
    ]);
    let healthy = |r: &&Request| r.path != "/hang";
    // The bound is the hung requests' timeout: past it, permits would come back anyway.
    let got = rx.wait_until(
        "every healthy job delivered",
        REQUEST_TIMEOUT - Duration::from_secs(5),
        |requests| requests.iter().filter(healthy).count() >= HEALTHY_JOBS,
    );
    let hung = herald.limits("hung");

    let delivered: Vec<Request> = got.iter().filter(healthy).cloned().collect();
    assert_eq!(
        delivered.len(),
        HEALTHY_JOBS,
        "a healthy job was sent twice"
    );
    assert_eq!(
        numbers(&delivered),
        (0..HEALTHY_JOBS as u64).collect(),
        "every healthy job once"
    );
    assert!(
        hung.in_flight <= HUNG_LIMIT,
        "the hanging endpoint holds more than its limit: {hung:?}"
    );
    assert!(
        hung.queued >= HUNG_JOBS - HUNG_LIMIT,
        "most of the hanging endpoint's backlog should still be queued: {hung:?}"
    );
    assert!(
        rx.max_concurrent("/hang") as u64 <= HUNG_LIMIT,
        "the hanging receiver held {} requests at once",
        rx.max_concurrent("/hang")
    );
    assert!(worker.is_running(), "the worker exited on its own");
    // Its hung deliveries would hold a graceful drain for the whole grace period.
    worker.sigkill();
    worker.wait(SAFETY_NET);
}

#[test]
fn the_in_flight_limit_holds_across_three_workers() {
    const JOBS: usize = 60;
    const LIMIT: usize = 3;
    let (_redis, herald) = redis_and_herald("it-iso-in-flight");
    let rx = Receiver::start(receiver::slow(Duration::from_millis(200)));
    let path = "/hooks/dash-1";
    set_endpoint(
        &herald,
        "dash-1",
        &format!("{}{path}", rx.url()),
        &["--max-in-flight", &LIMIT.to_string()],
    );
    assert_eq!(herald.limits("dash-1").max_in_flight, LIMIT as u64);

    // Each worker alone could hold 8 deliveries at once: only the limit can keep it to 3.
    let workers: Vec<_> = (0..3)
        .map(|_| herald.spawn_worker(&[("HERALD_CONCURRENCY", "8")]))
        .collect();
    herald.enqueue_many("dash-1", numbered(JOBS));
    rx.wait_for(JOBS, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    let after = herald.limits("dash-1");
    for worker in &workers {
        assert!(worker.is_running(), "a worker exited on its own");
        worker.stop(SAFETY_NET);
    }

    let requests = rx.requests();
    assert_eq!(requests.len(), JOBS, "a job was sent twice");
    assert_eq!(numbers(&requests).len(), JOBS, "every job once");
    let most = rx.max_concurrent(path);
    assert!(
        most <= LIMIT,
        "the receiver held {most} requests at once, over the limit of {LIMIT}"
    );
    assert!(
        most >= 2,
        "the receiver never held two requests at once ({most}): nothing tested the limit"
    );
    assert_eq!(after.in_flight, 0, "slots left taken: {after:?}");
}

#[test]
fn a_rate_limit_spaces_deliveries_after_a_one_second_burst() {
    const JOBS: usize = 40;
    const PER_SECOND: usize = 10;
    // One second's worth may go at once after a quiet spell.
    const BURST: usize = PER_SECOND;
    let (_redis, herald) = redis_and_herald("it-iso-rate");
    let rx = Receiver::start(receiver::always(200));
    set_endpoint(&herald, "dash-1", &rx.url(), &["--rate", "10/s"]);
    assert_eq!(herald.limits("dash-1").rate.as_deref(), Some("10/s"));

    herald.enqueue_many("dash-1", numbered(JOBS));
    let worker = herald.spawn_worker(&[]);
    rx.wait_for(JOBS, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);

    let requests = rx.requests();
    assert_eq!(requests.len(), JOBS, "a job was sent twice");
    assert_eq!(numbers(&requests).len(), JOBS, "every job once");
    // Any PER_SECOND + BURST + 1 consecutive receipts need more than a second: at most BURST
    // plus PER_SECOND per second fit in a window. 100 ms of slack for the network and clocks.
    let at: Vec<Instant> = requests.iter().map(|r| r.received_at).collect();
    for (i, window) in at.windows(PER_SECOND + BURST + 1).enumerate() {
        let span = window[window.len() - 1] - window[0];
        assert!(
            span >= Duration::from_millis(900),
            "receipts {i}..={} came within {span:?}: over {PER_SECOND}/s plus a burst of {BURST}",
            i + PER_SECOND + BURST
        );
    }
    // A burst of 10, then 30 at 10/s: about 3 s.
    let total = at[JOBS - 1] - at[0];
    assert!(
        total >= Duration::from_millis(2500),
        "{JOBS} deliveries took only {total:?}"
    );
}

#[test]
fn a_429_with_retry_after_pauses_the_whole_endpoint_until_then() {
    const JOBS: usize = 10;
    const PAUSE_MS: i64 = 2000;
    let (_redis, herald) = redis_and_herald("it-iso-pause");
    let rx = Receiver::start(receiver::retry_after_first(1, 429, 2));
    // One delivery at a time: no request can be on the wire already when the 429 lands.
    set_endpoint(&herald, "dash-1", &rx.url(), &["--max-in-flight", "1"]);
    herald.enqueue_many("dash-1", numbered(JOBS));

    let before = unix_ms_now();
    // The schedule's longest delay (3 s) caps Retry-After: the 2 s asked for stand.
    let worker = herald.spawn_worker(&[("HERALD_RETRY_SCHEDULE", "100ms,3s")]);
    rx.wait_for(1, SAFETY_NET);
    let paused = herald.wait_for_limits("dash-1", "the pause to show", SAFETY_NET, |l| {
        l.paused_until_ms.is_some()
    });
    let seen = unix_ms_now();
    let until = paused.paused_until_ms.unwrap();
    // Set while handling the 429, which happened between `before` and `seen`; 100 ms of slack
    // for rounding.
    assert!(
        until >= before + PAUSE_MS - 100 && until <= seen + PAUSE_MS + 100,
        "paused until {until}, expected 2 s after the 429 (between {} and {}): {paused:?}",
        before + PAUSE_MS,
        seen + PAUSE_MS
    );

    rx.wait_for(JOBS + 1, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    let after = herald.limits("dash-1");
    worker.stop(SAFETY_NET);

    let requests = rx.requests();
    assert_eq!(requests.len(), JOBS + 1, "the 429'd job plus each job once");
    assert_eq!(numbers(&requests).len(), JOBS, "every job delivered");
    let refused = requests[0].webhook_id();
    assert!(
        requests[1..].iter().any(|r| r.webhook_id() == refused),
        "the job answered 429 was not delivered again"
    );
    let gap = requests[1].received_at - requests[0].received_at;
    assert!(
        gap >= Duration::from_millis(1800),
        "a request reached the endpoint {gap:?} after its 429 with Retry-After: 2"
    );
    assert_eq!(after.in_flight, 0, "{after:?}");
}

#[test]
fn a_killed_workers_in_flight_slots_come_back_when_its_leases_expire() {
    const JOBS: usize = 6;
    const LIMIT: usize = 2;
    // Lease longer than request + connect timeout, and short enough to wait for.
    const LEASE: Duration = Duration::from_secs(4);
    let settings = [
        ("HERALD_LEASE", "4s"),
        ("HERALD_REQUEST_TIMEOUT", "2s"),
        ("HERALD_CONNECT_TIMEOUT", "1s"),
    ];
    let (_redis, herald) = redis_and_herald("it-iso-sigkill");
    // The first LIMIT requests never get an answer: in flight when the worker dies.
    let rx = Receiver::start(receiver::hang_first(LIMIT));
    set_endpoint(
        &herald,
        "dash-1",
        &rx.url(),
        &["--max-in-flight", &LIMIT.to_string()],
    );
    herald.enqueue_many("dash-1", numbered(JOBS));

    let doomed = herald.spawn_worker(&settings);
    rx.wait_for(LIMIT, SAFETY_NET);
    assert!(doomed.is_running(), "the worker exited on its own");
    doomed.sigkill();
    let status = doomed.wait(SAFETY_NET);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(Signal::SIGKILL as i32)
    );
    // No worker runs: nothing can have given the dead worker's slots back yet.
    let held = herald.limits("dash-1");
    assert_eq!(
        (held.in_flight, held.queued),
        (LIMIT as u64, (JOBS - LIMIT) as u64),
        "{held:?}"
    );

    let rescuer = herald.spawn_worker(&settings);
    rx.wait_for(JOBS + LIMIT, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    herald.wait_for_limits("dash-1", "no slot taken", SAFETY_NET, |l| l.in_flight == 0);
    rescuer.stop(SAFETY_NET);

    let requests = rx.requests();
    assert_eq!(
        requests.len(),
        JOBS + LIMIT,
        "each job once, and the hung ones once more"
    );
    assert_eq!(
        numbers(&requests[LIMIT..]),
        (0..JOBS as u64).collect(),
        "every job answered once"
    );
    // The slots stayed taken until the dead worker's leases ran out: no delivery beyond the
    // limit meanwhile.
    let gap = requests[LIMIT].received_at - requests[0].received_at;
    assert!(
        gap >= LEASE - Duration::from_millis(500),
        "the rescuer delivered {gap:?} after the first hung request, before the lease ran out"
    );
}

#[test]
fn the_adaptive_limit_shrinks_under_timeouts_and_grows_back_with_successes() {
    const JOBS: usize = 100;
    const LIMIT: u64 = 8;
    let (_redis, herald) = redis_and_herald("it-iso-adaptive");
    // Every request times out until the test has seen the limit shrink; then all succeed.
    let up = Switch::new();
    let rx = Receiver::start(receiver::hang_until(&up));
    set_endpoint(
        &herald,
        "dash-1",
        &rx.url(),
        &["--max-in-flight", &LIMIT.to_string()],
    );
    let fresh = herald.limits("dash-1");
    assert_eq!(
        (fresh.max_in_flight, fresh.current_limit, fresh.in_flight),
        (LIMIT, LIMIT, 0),
        "{fresh:?}"
    );
    herald.enqueue_many("dash-1", numbered(JOBS));

    let schedule = ["100ms"; 10].join(",");
    let worker = herald.spawn_worker(&[
        ("HERALD_REQUEST_TIMEOUT", "1s"),
        ("HERALD_CONNECT_TIMEOUT", "1s"),
        ("HERALD_LEASE", "5s"),
        ("HERALD_RETRY_SCHEDULE", &schedule),
    ]);
    let shrunk = herald.wait_for_limits("dash-1", "the limit to shrink", SAFETY_NET, |l| {
        l.current_limit < LIMIT
    });
    assert!(shrunk.current_limit >= 1, "{shrunk:?}");
    assert_eq!(shrunk.max_in_flight, LIMIT, "{shrunk:?}");

    up.turn_on();
    herald.wait_for_limits("dash-1", "the limit back at its maximum", SAFETY_NET, |l| {
        l.current_limit == LIMIT
    });
    herald.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);
    assert_eq!(
        numbers(&rx.requests()).len(),
        JOBS,
        "every job reached the receiver"
    );
}

#[test]
fn a_worker_with_every_slot_busy_leaves_new_work_to_an_idle_one() {
    const JOBS: usize = 6;
    // Far longer than the test: only wake-up hints bring the jobs to a worker, not the scan.
    let slow_scan = ("HERALD_POLL_INTERVAL", "120s");
    let (_redis, herald) = redis_and_herald("it-iso-busy-worker");
    let rx = Receiver::start(
        Routes::new()
            .path("/hang", receiver::hang_forever())
            .otherwise(receiver::always(200)),
    );
    set_endpoint(&herald, "hung", &format!("{}/hang", rx.url()), &[]);
    herald.enqueue_many("hung", numbered(2));
    // Worker A: both of its slots end up held by the hanging receiver.
    let busy = herald.spawn_worker(&[
        ("HERALD_CONCURRENCY", "2"),
        ("HERALD_REQUEST_TIMEOUT", "60s"),
        ("HERALD_LEASE", "90s"),
        slow_scan,
    ]);
    rx.wait_for(2, SAFETY_NET);
    let idle = herald.spawn_worker(&[slow_scan]);

    // One job at a time, each for an endpoint of its own: a worker that took a hint without a
    // free slot would sit on it until a slot came free (a minute here).
    for n in 0..JOBS {
        let id = format!("ok-{n}");
        herald.set_endpoint(&id, &format!("{}/ok/{id}", rx.url()));
        herald.enqueue(&id, &json!({ "n": n }));
        rx.wait_until(
            &format!("job {n} delivered by the idle worker"),
            Duration::from_secs(15),
            |requests| requests.iter().filter(|r| r.path != "/hang").count() > n,
        );
    }
    let hung = herald.limits("hung");
    assert_eq!(
        hung.in_flight, 2,
        "the busy worker still holds its two: {hung:?}"
    );
    busy.sigkill();
    busy.wait(SAFETY_NET);
    idle.stop(SAFETY_NET);
}
