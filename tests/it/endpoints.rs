//! Dashboards and their webhooks: URL rules, subscriptions and notification levels, publishing
//! the documented event, strikes that disable an endpoint, parking and resuming its jobs,
//! deletion, and the attempt log.

use std::net::TcpListener;

use serde_json::{json, Value};

use crate::support::herald::Herald;
use crate::support::receiver::{self, Receiver};
use crate::support::{redis_and_herald, SAFETY_NET};

/// The product documentation's example event.
const EXAMPLE: &str = include_str!("../../crates/herald-core/src/example-event.json");

/// A URL on loopback where nothing listens: connections are refused.
fn refusing_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/hook")
}

fn endpoint(herald: &Herald, id: &str) -> Value {
    herald.ok(&["endpoint", "get", id, "--json"]).json()
}

fn publish(herald: &Herald, event: &Value) -> Value {
    herald
        .run_stdin(&["publish", "-", "--json"], event.to_string())
        .assert_success()
        .json()
}

fn event(last: &str, current: &str) -> Value {
    let mut e: Value = serde_json::from_str(EXAMPLE).unwrap();
    e["last_status"] = last.into();
    e["current_status"] = current.into();
    e
}

/// The harness lets 127.0.0.0/8 through (HERALD_ALLOW_TARGETS); other blocked literals are
/// refused at `endpoint set` already.
#[test]
fn invalid_urls_are_refused_with_exit_code_2_naming_the_rule() {
    let (_redis, herald) = redis_and_herald("it-urls");
    let long = format!("https://example.com/{}", "a".repeat(2100));
    let cases: [(&str, &str); 12] = [
        ("http://169.254.169.254/latest/meta-data", "ssrf guard"),
        ("http://[::ffff:10.0.0.1]/hook", "ssrf guard"),
        ("http://[::ffff:0:10.0.0.1]/hook", "ssrf guard"),
        ("ftp://example.com/hook", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("https://user:secret@example.com/hook", "credentials"),
        ("https://example.com/ho ok", "whitespace"),
        (" https://example.com/hook", "whitespace"),
        ("example.com/hook", "parse"),
        ("http://", "parse"),
        (&long, "long"),
        ("", "empty"),
    ];
    for (url, rule) in cases {
        let out = herald.run(&["endpoint", "set", "dash-1", "--url", url]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{url:?} was not refused with exit 2:\n{out}"
        );
        assert!(
            out.stderr.to_lowercase().contains(rule),
            "refusal of {url:?} does not mention {rule:?}: {}",
            out.stderr
        );
    }
    assert!(
        !herald.run(&["endpoint", "get", "dash-1"]).success(),
        "a refused URL was stored"
    );
    herald.ok(&[
        "endpoint",
        "set",
        "dash-1",
        "--url",
        "https://hooks.example.com/x",
    ]);
}

#[test]
fn the_documented_event_reaches_subscribers_byte_for_byte_in_meaning() {
    let (_redis, herald) = redis_and_herald("it-publish");
    let rx = Receiver::start(receiver::always(200));
    herald.set_endpoint("dash-warn", &rx.url());
    herald.set_endpoint("dash-down", &rx.url());
    herald.ok(&["subscribe", "dash-warn", "heroku", "--level", "warn"]);
    herald.ok(&["subscribe", "dash-down", "heroku", "--level", "down"]);
    let report = publish(&herald, &serde_json::from_str(EXAMPLE).unwrap());
    assert_eq!(report["enqueued"], 1, "{report}");
    assert_eq!(report["skipped_by_level"], 1, "{report}");

    // Empty component lists and a null group name are fine too.
    let mut bare = event("warn", "down");
    bare["component_status_changes"] = json!([]);
    bare["component_statuses"] = json!([{"group_name": null, "name": "API", "status": "down"}]);
    let report = publish(&herald, &bare);
    assert_eq!(report["enqueued"], 2, "{report}");

    let worker = herald.spawn_worker(&[]);
    let got = rx.wait_for(3, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);
    let example: Value = serde_json::from_str(EXAMPLE).unwrap();
    assert_eq!(got.iter().filter(|r| r.json() == example).count(), 1);
    assert_eq!(got.iter().filter(|r| r.json() == bare).count(), 2);
}

#[test]
fn levels_and_component_filters_decide_who_is_notified() {
    let (_redis, herald) = redis_and_herald("it-levels");
    for level in ["all", "warn", "down", "none"] {
        let id = format!("dash-{level}");
        herald.set_endpoint(&id, "https://hooks.example.com/x");
        herald.ok(&["subscribe", &id, "heroku", "--level", level]);
    }
    let statuses = ["up", "warn", "down", "maintenance"];
    for last in statuses {
        for current in statuses {
            let touches = |set: &[&str]| set.contains(&last) || set.contains(&current);
            let expected =
                1 + u64::from(touches(&["warn", "down"])) + u64::from(touches(&["down"]));
            let report = publish(&herald, &event(last, current));
            assert_eq!(
                report["enqueued"].as_u64(),
                Some(expected),
                "{last} -> {current}: {report}"
            );
            assert_eq!(report["skipped_by_level"].as_u64(), Some(4 - expected));
        }
    }

    // Component filters: the example changes Apps (up -> warn) only.
    herald.set_endpoint("dash-apps", "https://hooks.example.com/x");
    herald.set_endpoint("dash-data", "https://hooks.example.com/x");
    herald.ok(&[
        "subscribe",
        "dash-apps",
        "heroku-eu",
        "--components",
        "Apps,Tools",
    ]);
    herald.ok(&[
        "subscribe",
        "dash-data",
        "heroku-eu",
        "--components",
        "Data",
    ]);
    let mut e: Value = serde_json::from_str(EXAMPLE).unwrap();
    e["slug"] = "heroku-eu".into();
    let report = publish(&herald, &e);
    assert_eq!(report["enqueued"], 1, "{report}");
    assert_eq!(report["jobs"][0]["endpoint"], "dash-apps", "{report}");

    // Unknown statuses and missing fields are refused, naming them.
    let out = herald.run_stdin(&["publish", "-"], event("up", "sideways").to_string());
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(out.stderr.contains("sideways"), "{out}");
    let mut missing: Value = serde_json::from_str(EXAMPLE).unwrap();
    missing.as_object_mut().unwrap().remove("occurred_at");
    let out = herald.run_stdin(&["publish", "-"], missing.to_string());
    assert!(out.stderr.contains("occurred_at"), "{out}");
}

#[test]
fn refused_connections_strike_until_the_endpoint_is_disabled_while_500s_do_not() {
    let (_redis, herald) = redis_and_herald("it-strikes");
    let failing = Receiver::start(receiver::always(500));
    herald.set_endpoint("dash-refused", &refusing_url());
    herald.set_endpoint("dash-500", &failing.url());
    let parked_job = herald.enqueue("dash-refused", &json!({"n": 1}));
    herald.enqueue("dash-500", &json!({"n": 2}));

    let schedule = ["50ms"; 10].join(",");
    let worker = herald.spawn_worker(&[("HERALD_RETRY_SCHEDULE", &schedule)]);
    // Five refusals disable the endpoint; its job is parked, not retried further.
    herald.wait_for_stats("the refused job parked", SAFETY_NET, |s| s.parked == 1);
    let state = endpoint(&herald, "dash-refused");
    assert_eq!(state["enabled"], false, "{state}");
    assert_eq!(state["strikes"], 5, "{state}");
    let reason = state["disabled"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("5 consecutive") && reason.contains("refused"),
        "{state}"
    );
    let job = herald.job(&parked_job).expect("the parked job is kept");
    assert_eq!(job["state"], "parked", "{job}");
    assert_eq!(job["attempts"], 5, "{job}");
    let attempts = state["attempts"].as_array().expect("attempt log");
    assert_eq!(attempts.len(), 5, "{state}");
    assert!(
        attempts.iter().all(|a| a["outcome"] == "refused"),
        "{state}"
    );

    // The 500 receiver is up: no strikes, still enabled, retried past five attempts.
    failing.wait_for(8, SAFETY_NET);
    let state = endpoint(&herald, "dash-500");
    assert_eq!(state["enabled"], true, "{state}");
    assert_eq!(state["strikes"], 0, "{state}");
    assert_eq!(state["attempts"][0]["status"], 500, "{state}");
    worker.stop(SAFETY_NET);
}

#[test]
fn gone_disables_at_once() {
    let (_redis, herald) = redis_and_herald("it-gone");
    let rx = Receiver::start(receiver::always(410));
    herald.set_endpoint("dash-gone", &rx.url());
    herald.enqueue("dash-gone", &json!({"n": 1}));
    let worker = herald.spawn_worker(&[]);
    herald.wait_for_stats("the job parked after 410", SAFETY_NET, |s| s.parked == 1);
    worker.stop(SAFETY_NET);
    assert_eq!(rx.requests().len(), 1, "410 was retried");
    let state = endpoint(&herald, "dash-gone");
    assert_eq!(state["enabled"], false, "{state}");
    assert!(
        state["disabled"]["reason"]
            .as_str()
            .unwrap()
            .contains("410"),
        "{state}"
    );
}

#[test]
fn parked_jobs_wait_for_a_fixed_url_and_keep_their_attempt_counts() {
    let (_redis, herald) = redis_and_herald("it-park");
    let rx = Receiver::start(receiver::always(200));
    herald.set_endpoint("dash-1", &refusing_url());
    let first = herald.enqueue("dash-1", &json!({"n": 0}));
    let schedule = ["50ms"; 10].join(",");
    let worker = herald.spawn_worker(&[("HERALD_RETRY_SCHEDULE", &schedule)]);
    herald.wait_for_stats("disabled after five strikes", SAFETY_NET, |s| s.parked == 1);

    // While disabled, new jobs are parked at once and nothing is POSTed.
    let out = herald
        .run_stdin(
            &["enqueue", "dash-1", "-", "--json"],
            json!({"n": 1}).to_string(),
        )
        .assert_success();
    assert_eq!(out.json()["status"], "parked", "{out}");
    for n in 2..4 {
        herald.enqueue("dash-1", &json!({"n": n}));
    }
    let stats = herald.stats();
    assert_eq!(
        (stats.parked, stats.queued(), stats.dead),
        (4, 0, 0),
        "{stats:?}"
    );
    worker.stop(SAFETY_NET);

    // Fixing the URL re-activates the endpoint: every parked job is due at once, counts kept.
    let out = herald.ok(&["endpoint", "set", "dash-1", "--url", &rx.url(), "--json"]);
    assert_eq!(out.json()["resumed_jobs"], 4, "{out}");
    let job = herald.job(&first).unwrap();
    assert_eq!(
        (job["state"].as_str(), job["attempts"].as_u64()),
        (Some("due"), Some(5)),
        "{job}"
    );
    let state = endpoint(&herald, "dash-1");
    assert_eq!(
        (state["enabled"].as_bool(), state["strikes"].as_u64()),
        (Some(true), Some(0))
    );

    let worker = herald.spawn_worker(&[]);
    let got = rx.wait_for(4, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);
    let mut ns: Vec<u64> = got
        .iter()
        .map(|r| r.json()["n"].as_u64().unwrap())
        .collect();
    ns.sort();
    assert_eq!(ns, [0, 1, 2, 3], "every parked job delivered exactly once");
}

#[test]
fn operators_disable_enable_and_delete_endpoints_without_losing_jobs() {
    let (_redis, herald) = redis_and_herald("it-operator");
    let rx = Receiver::start(receiver::always(200));
    herald.set_endpoint("dash-1", &rx.url());
    herald.ok(&["subscribe", "dash-1", "github"]);
    herald.ok(&[
        "endpoint",
        "disable",
        "dash-1",
        "--reason",
        "maintenance window",
    ]);
    herald.enqueue("dash-1", &json!({"n": 1}));
    let state = endpoint(&herald, "dash-1");
    assert_eq!(state["disabled"]["reason"], "maintenance window", "{state}");
    assert_eq!(state["parked"], 1, "{state}");

    let out = herald.ok(&["endpoint", "enable", "dash-1", "--json"]);
    assert_eq!(out.json()["resumed_jobs"], 1, "{out}");
    let worker = herald.spawn_worker(&[]);
    rx.wait_for(1, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);

    // Deleting: parked jobs go to the dead-letter store with the reason, subscriptions go.
    herald.ok(&["endpoint", "disable", "dash-1"]);
    let job = herald.enqueue("dash-1", &json!({"n": 2}));
    herald.ok(&["endpoint", "delete", "dash-1"]);
    let dead = herald.job(&job).expect("kept in the dead-letter store");
    assert_eq!(dead["state"], "dead", "{dead}");
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("endpoint deleted"),
        "{dead}"
    );
    let subs = herald
        .ok(&["subscriptions", "service", "github", "--json"])
        .json();
    assert_eq!(
        subs["items"],
        json!([]),
        "subscriptions survived the endpoint"
    );
    let out = herald.run(&["endpoint", "get", "dash-1"]);
    assert_eq!(out.status.code(), Some(2), "{out}");
    worker.stop(SAFETY_NET);
}
