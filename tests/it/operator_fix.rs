//! An operator's fix holds (issue 18): the failure of an attempt claimed before an endpoint's
//! last change (its URL set, enabled, deleted and created again) neither strikes, disables,
//! cuts nor pauses it, and an old owner's job never lands in a new owner's queue.
//!
//! The attempts are held by the receiver ([`Reply::Held`]) until the operator has acted, then
//! fail at the moment the test lets them: every step waits for an event (requests held, jobs
//! delivered, endpoints disabled), never for a sleep. `herald check` reports what the issue
//! left behind, made by hand in Redis.
//!
//! The loop version runs a few tries by default and 20 of each with `HERALD_FAULTS=long`
//! (figures in `docs/RELIABILITY.md`):
//!
//! ```sh
//! HERALD_FAULTS=long cargo test --release --test it operator_fix -- --nocapture
//! ```

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herald_core::{shard_of, EndpointId};
use herald_store::{Namespace, ShardKeys};
use redis::Commands;
use serde_json::{json, Value};

use crate::faults::Scale;
use crate::support::herald::{Herald, Worker};
use crate::support::process::poll_until;
use crate::support::receiver::{self, Receiver, Reply, Request, Routes, Switch};
use crate::support::{redis_and_herald, SAFETY_NET};

/// The held attempts' answer: 503 with a `Retry-After` far beyond any test, so that a pause
/// applied by a stale failure would hold the endpoint's queue past the safety net.
const HELD: Reply = Reply::Held(503, 3600);

/// How often a wait asks the CLI.
const POLL: Duration = Duration::from_millis(50);

/// Workers for which every failed attempt is a strike, whose requests outlast any hold, and
/// whose retries come at once.
fn spawn_workers(herald: &Herald, count: usize) -> Vec<Worker> {
    (0..count)
        .map(|_| {
            herald.spawn_worker(&[
                ("HERALD_STRIKE_ON", "all"),
                ("HERALD_REQUEST_TIMEOUT", "120s"),
                ("HERALD_LEASE", "300s"),
                (
                    "HERALD_RETRY_SCHEDULE",
                    "50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms",
                ),
                ("HERALD_CONCURRENCY", "256"),
            ])
        })
        .collect()
}

/// Enqueues one job per `n` in `numbers` for `endpoint`, each with its payload `{"n": n}`.
fn enqueue(herald: &Herald, endpoint: &str, numbers: impl IntoIterator<Item = u64>) {
    herald.enqueue_many(endpoint, numbers.into_iter().map(|n| json!({ "n": n })));
}

/// The distinct `n` of the requests to `path`.
fn delivered_to(requests: &[Request], path: &str) -> HashSet<u64> {
    requests
        .iter()
        .filter(|r| r.path == path)
        .filter_map(|r| r.json()["n"].as_u64())
        .collect()
}

/// Waits until every `n` of `numbers` reached `path`.
fn wait_delivered(rx: &Receiver, path: &str, numbers: &HashSet<u64>) {
    rx.wait_until(
        &format!("{} jobs delivered to {path}", numbers.len()),
        SAFETY_NET,
        |requests| delivered_to(requests, path).is_superset(numbers),
    );
}

/// Asserts that `id` is as its operator left it: enabled, no strike, its adaptive limit at its
/// maximum, not paused, nothing queued or parked; and that it records its last change.
fn assert_sound(herald: &Herald, id: &str) {
    let e = herald.endpoint(id);
    assert_eq!(e["enabled"], json!(true), "{id} re-disabled: {e:#}");
    assert_eq!(e["strikes"], json!(0), "{id} struck: {e:#}");
    assert_eq!(
        e["limits"]["current_limit"], e["limits"]["max_in_flight"],
        "{id}'s adaptive limit cut: {e:#}"
    );
    assert_eq!(
        e["limits"]["paused_until_ms"],
        Value::Null,
        "{id} paused: {e:#}"
    );
    assert_eq!(e["queued"], json!(0), "{id} has jobs left: {e:#}");
    assert_eq!(e["parked"], json!(0), "{id} has jobs parked: {e:#}");
    assert!(
        e["changed_at_ms"].is_i64(),
        "{id} has no change time: {e:#}"
    );
}

/// Waits until `id` is disabled.
fn wait_disabled(herald: &Herald, id: &str) {
    poll_until(&format!("{id} disabled"), SAFETY_NET, POLL, || {
        let e = herald.endpoint(id);
        if e["enabled"] == json!(false) {
            Ok(())
        } else {
            Err(e.to_string())
        }
    });
}

/// Waits until nothing is queued, in flight or parked, and returns how many jobs are dead.
fn wait_settled(herald: &Herald) -> u64 {
    herald
        .wait_for_stats("nothing queued, in flight or parked", SAFETY_NET, |s| {
            s.queued() == 0 && s.in_flight == 0 && s.parked == 0
        })
        .dead
}

/// The reasons of the dead jobs whose payload endpoint is `id`.
fn dead_reasons(herald: &Herald, id: &str) -> Vec<String> {
    herald
        .dead_list()
        .iter()
        .filter(|d| d["endpoint"] == json!(id))
        .map(|d| d["last_error"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// One try of the fix-then-late-failure race: `jobs` attempts to `id`'s bad URL are held, the
/// operator sets `id` to a healthy URL, then the held attempts fail. Every job must reach the
/// healthy URL, and `id` stay as the operator left it.
fn url_fix_try(herald: &Herald, rx: &Receiver, id: &str, first: u64, jobs: u64) {
    let bad = format!("/bad/{id}");
    let good = format!("/good/{id}");
    herald.set_endpoint(id, &format!("{}{bad}", rx.url()));
    enqueue(herald, id, first..first + jobs);
    rx.wait_for_held(&bad, jobs as usize, SAFETY_NET);
    herald.set_endpoint(id, &format!("{}{good}", rx.url()));
    assert_eq!(rx.release(&bad, usize::MAX), jobs as usize);
    wait_delivered(rx, &good, &(first..first + jobs).collect());
}

/// One try of the re-created id: `jobs` attempts of the old owner of `id` are held, the
/// operator deletes `id` and sets it again for a new owner, whose `jobs` jobs are enqueued,
/// then the old attempts fail. The old jobs must die as "endpoint deleted", the new ones reach
/// the new URL, and the new `id` stay as its operator left it.
fn recreate_try(herald: &Herald, rx: &Receiver, id: &str, first: u64, jobs: u64) {
    let old = format!("/old/{id}");
    let new = format!("/new/{id}");
    herald.set_endpoint(id, &format!("{}{old}", rx.url()));
    enqueue(herald, id, first..first + jobs);
    rx.wait_for_held(&old, jobs as usize, SAFETY_NET);
    herald.ok(&["endpoint", "delete", id]);
    herald.set_endpoint(id, &format!("{}{new}", rx.url()));
    let fresh: HashSet<u64> = (first + jobs..first + 2 * jobs).collect();
    enqueue(herald, id, fresh.iter().copied());
    assert_eq!(rx.release(&old, usize::MAX), jobs as usize);
    wait_delivered(rx, &new, &fresh);
    poll_until(
        &format!("the old owner's {jobs} jobs of {id} dead"),
        SAFETY_NET,
        POLL,
        || {
            let reasons = dead_reasons(herald, id);
            if reasons.len() as u64 >= jobs {
                Ok(reasons)
            } else {
                Err(format!("{reasons:?}"))
            }
        },
    );
}

#[test]
fn a_late_failure_from_before_a_url_fix_neither_strikes_cuts_nor_pauses() {
    let (_redis, herald) = redis_and_herald("it-fix-url");
    let rx = Receiver::start(
        Routes::new()
            .path("/bad/fixed", move |_, _| HELD)
            .otherwise(receiver::always(200)),
    );
    let _workers = spawn_workers(&herald, 2);
    // Ten held failures: twice what disables an endpoint.
    url_fix_try(&herald, &rx, "fixed", 0, 10);
    assert_eq!(wait_settled(&herald), 0, "{:#?}", herald.dead_list());
    assert_sound(&herald, "fixed");
    let at_good = rx
        .requests()
        .iter()
        .filter(|r| r.path == "/good/fixed")
        .count();
    assert_eq!(at_good, 10, "each job delivered once at the healthy URL");
    herald.assert_check_clean();
}

#[test]
fn a_late_failure_from_before_an_enable_does_not_disable_again() {
    let (_redis, herald) = redis_and_herald("it-fix-enable");
    // The receiver holds and then fails what arrives while it is broken; once mended it
    // answers 200.
    let mended = Switch::new();
    let rx = Receiver::start(
        Routes::new()
            .path("/flaky", receiver::held_until(&mended, 503, 3600))
            .otherwise(receiver::always(200)),
    );
    herald.set_endpoint("flaky", &format!("{}/flaky", rx.url()));
    let _workers = spawn_workers(&herald, 2);
    enqueue(&herald, "flaky", 0..10);
    rx.wait_for_held("/flaky", 10, SAFETY_NET);
    herald.ok(&["endpoint", "disable", "flaky"]);
    mended.turn_on();
    herald.ok(&["endpoint", "enable", "flaky"]);
    assert_eq!(rx.release("/flaky", usize::MAX), 10);
    // Each job twice at /flaky: the held attempt, then its retry after the enable.
    rx.wait_until("every job retried at /flaky", SAFETY_NET, |requests| {
        requests.iter().filter(|r| r.path == "/flaky").count() >= 20
    });
    assert_eq!(wait_settled(&herald), 0, "{:#?}", herald.dead_list());
    assert_sound(&herald, "flaky");
    herald.assert_check_clean();
}

#[test]
fn a_recreated_id_is_not_struck_by_its_old_owners_late_failures() {
    let (_redis, herald) = redis_and_herald("it-fix-recreate");
    let rx = Receiver::start(
        Routes::new()
            .path("/old/reborn", move |_, _| HELD)
            .otherwise(receiver::always(200)),
    );
    let _workers = spawn_workers(&herald, 2);
    recreate_try(&herald, &rx, "reborn", 0, 8);
    assert_eq!(wait_settled(&herald), 8);
    assert_sound(&herald, "reborn");
    let reasons = dead_reasons(&herald, "reborn");
    assert_eq!(reasons.len(), 8, "{reasons:?}");
    for reason in &reasons {
        assert_eq!(reason, "endpoint deleted: reborn");
    }
    let old_payloads = delivered_to(&rx.requests(), "/new/reborn");
    assert!(
        old_payloads.iter().all(|n| *n >= 8),
        "the new owner got an old owner's payload: {old_payloads:?}"
    );
    herald.assert_check_clean();
}

#[test]
fn a_rolling_fix_of_twenty_endpoints_leaves_every_one_enabled_and_nothing_parked() {
    const ENDPOINTS: usize = 20;
    const JOBS_EACH: u64 = 10;
    const STRIKES: usize = 5;
    let (_redis, herald) = redis_and_herald("it-fix-rolling");
    let ids: Vec<String> = (0..ENDPOINTS).map(|i| format!("roll-{i:02}")).collect();
    let mut routes = Routes::new();
    for id in &ids {
        routes = routes.path(&format!("/bad/{id}"), move |_, _| HELD);
    }
    let rx = Receiver::start(routes.otherwise(receiver::always(200)));
    let _workers = spawn_workers(&herald, 2);
    for (i, id) in ids.iter().enumerate() {
        herald.set_endpoint(id, &format!("{}/bad/{id}", rx.url()));
        let first = i as u64 * JOBS_EACH;
        enqueue(&herald, id, first..first + JOBS_EACH);
    }
    // The bad receiver fails five attempts of each endpoint (which disables it) and holds the
    // other five.
    for id in &ids {
        let bad = format!("/bad/{id}");
        rx.wait_for_held(&bad, JOBS_EACH as usize, SAFETY_NET);
        assert_eq!(rx.release(&bad, STRIKES), STRIKES);
    }
    for id in &ids {
        wait_disabled(&herald, id);
    }
    // One after another, while the workers deliver the ones fixed before: a healthy URL, then
    // the held attempts of the bad one fail.
    for id in &ids {
        herald.set_endpoint(id, &format!("{}/good/{id}", rx.url()));
        assert_eq!(rx.release(&format!("/bad/{id}"), usize::MAX), STRIKES);
    }
    for (i, id) in ids.iter().enumerate() {
        let first = i as u64 * JOBS_EACH;
        wait_delivered(
            &rx,
            &format!("/good/{id}"),
            &(first..first + JOBS_EACH).collect(),
        );
    }
    assert_eq!(wait_settled(&herald), 0, "{:#?}", herald.dead_list());
    for id in &ids {
        assert_sound(&herald, id);
    }
    herald.assert_check_clean();
}

/// What the loop version counts over its tries.
#[derive(Debug, Default)]
struct Tally {
    tries: usize,
    re_disabled: usize,
    cut: usize,
    paused: usize,
    parked: u64,
    late_failures: u64,
}

impl Tally {
    /// Counts what the last try left of endpoint `id` after `late` late failures.
    fn count(&mut self, herald: &Herald, id: &str, late: u64) {
        let e = herald.endpoint(id);
        self.tries += 1;
        self.late_failures += late;
        self.re_disabled += usize::from(e["enabled"] != json!(true));
        self.cut += usize::from(e["limits"]["current_limit"] != e["limits"]["max_in_flight"]);
        self.paused += usize::from(!e["limits"]["paused_until_ms"].is_null());
        self.parked += e["parked"].as_u64().unwrap_or(0);
    }
}

#[test]
fn operators_fixes_hold_try_after_try() {
    let scale = Scale::from_env();
    let tries = scale.pick(2, 20);
    const JOBS: u64 = 10;
    let (_redis, herald) = redis_and_herald("it-fix-loop");
    let held = |path: &str| path.starts_with("/bad/") || path.starts_with("/old/");
    let rx = Receiver::start(move |_, request: &Request| {
        if held(&request.path) {
            HELD
        } else {
            Reply::Status(200)
        }
    });
    let _workers = spawn_workers(&herald, 2);
    let started = Instant::now();
    let (mut fixes, mut recreated) = (Tally::default(), Tally::default());
    let mut next = 0;
    for t in 0..tries {
        let id = format!("fix-{t:02}");
        url_fix_try(&herald, &rx, &id, next, JOBS);
        next += JOBS;
        wait_settled(&herald);
        fixes.count(&herald, &id, JOBS);

        let id = format!("reborn-{t:02}");
        recreate_try(&herald, &rx, &id, next, JOBS);
        next += 2 * JOBS;
        wait_settled(&herald);
        recreated.count(&herald, &id, JOBS);
        let reasons = dead_reasons(&herald, &id);
        assert!(
            reasons
                .iter()
                .all(|r| r == &format!("endpoint deleted: {id}")),
            "{reasons:?}"
        );
    }
    eprintln!(
        "operator_fix: {} URL fixes against {} late failures: {} re-disabled, {} limits cut, \
         {} paused, {} jobs left parked; {} re-created ids against {} late failures of the old \
         owner: {} re-disabled, {} limits cut, {} paused, {} jobs left parked; {:.1}s",
        fixes.tries,
        fixes.late_failures,
        fixes.re_disabled,
        fixes.cut,
        fixes.paused,
        fixes.parked,
        recreated.tries,
        recreated.late_failures,
        recreated.re_disabled,
        recreated.cut,
        recreated.paused,
        recreated.parked,
        started.elapsed().as_secs_f64()
    );
    for tally in [&fixes, &recreated] {
        assert_eq!(
            (tally.re_disabled, tally.cut, tally.paused, tally.parked),
            (0, 0, 0, 0),
            "{tally:?}"
        );
    }
    herald.assert_check_clean();
}

/// The keys of `endpoint`'s shard in the tests' 16-shard namespace.
fn keys(herald: &Herald, endpoint: &str) -> ShardKeys {
    let ns = Namespace::new(herald.namespace()).unwrap();
    ns.shard(shard_of(&EndpointId::new(endpoint).unwrap(), 16))
}

/// (kind, subject) of the violations `herald check --json` (with `args`) lists.
fn check(herald: &Herald, args: &[&str]) -> Vec<(String, String, bool)> {
    let mut argv = vec!["check", "--json"];
    argv.extend_from_slice(args);
    let out = herald.run(&argv);
    let report = out.json();
    let mut found: Vec<(String, String, bool)> = report["violations"]
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
        .collect();
    found.sort();
    found
}

/// A record of `endpoint`'s disabling by strikes at `at_ms`, by an attempt claimed at
/// `claimed_ms` (`None`: a record written before claims were recorded).
fn struck_out(at_ms: i64, claimed_ms: Option<i64>) -> String {
    let mut d = json!({"reason": "5 consecutive failed attempts; last: http_status", "at_ms": at_ms, "strikes": 5});
    if let Some(c) = claimed_ms {
        d["claimed_ms"] = json!(c);
    }
    d.to_string()
}

#[test]
fn herald_check_reports_stale_disables_and_old_owners_jobs() {
    let (redis, herald) = redis_and_herald("it-fix-check");
    let mut conn = redis.connection();
    let url = "http://127.0.0.1:9/hook";
    for id in ["stale", "stale-old", "legit", "by-hand", "reborn"] {
        herald.set_endpoint(id, url);
    }
    let changed = |id: &str| herald.endpoint(id)["changed_at_ms"].as_i64().unwrap();

    // Disabled by strikes after its last change, by an attempt claimed before it: as the
    // issue left it; once with the claim recorded, once from the attempt log alone.
    let c = changed("stale");
    let k = keys(&herald, "stale");
    let _: () = conn
        .hset(&k.disabled, "stale", struck_out(c + 60, Some(c - 5)))
        .unwrap();
    let c = changed("stale-old");
    let k = keys(&herald, "stale-old");
    let _: () = conn
        .hset(&k.disabled, "stale-old", struck_out(c + 60, None))
        .unwrap();
    let entry = json!({"at_ms": c - 20, "outcome": "failed", "error": "http_status"});
    let _: () = conn
        .lpush(k.attempts("stale-old"), entry.to_string())
        .unwrap();
    // Not stale: struck out by an attempt claimed after the change; disabled by hand.
    let c = changed("legit");
    let k = keys(&herald, "legit");
    let _: () = conn
        .hset(&k.disabled, "legit", struck_out(c + 60, Some(c + 1)))
        .unwrap();
    herald.ok(&["endpoint", "disable", "by-hand"]);

    // A job of the old owner of `reborn` in the new owner's queue: its enqueue time is not
    // after the id's last deletion.
    let job = herald.enqueue("reborn", &json!({"n": 1}));
    let k = keys(&herald, "reborn");
    let record: Vec<u8> = conn.hget(&k.jobs, &job).unwrap();
    let header =
        String::from_utf8_lossy(&record[..record.iter().position(|b| *b == b'\n').unwrap()])
            .into_owned();
    let enqueued: i64 = header.split(' ').nth(2).unwrap().parse().unwrap();
    let _: () = conn.hset(&k.deleted, "reborn", enqueued).unwrap();

    let expected = vec![
        (String::from("old_owner_job"), job.clone(), false),
        (String::from("stale_disable"), String::from("stale"), false),
        (
            String::from("stale_disable"),
            String::from("stale-old"),
            false,
        ),
    ];
    assert_eq!(check(&herald, &[]), expected);
    let repaired = check(&herald, &["--repair"]);
    assert_eq!(
        repaired,
        vec![
            (String::from("old_owner_job"), job.clone(), true),
            (String::from("stale_disable"), String::from("stale"), false),
            (
                String::from("stale_disable"),
                String::from("stale-old"),
                false
            ),
        ]
    );
    let info = herald.job(&job).expect("the old owner's job is kept, dead");
    assert_eq!(info["state"], json!("dead"), "{info:#}");
    assert_eq!(
        info["last_error"],
        json!("endpoint deleted: reborn"),
        "{info:#}"
    );
    // The operator enables what the stale attempts disabled: nothing is left to report.
    herald.ok(&["endpoint", "enable", "stale"]);
    herald.ok(&["endpoint", "enable", "stale-old"]);
    assert_eq!(check(&herald, &[]), vec![]);
}
