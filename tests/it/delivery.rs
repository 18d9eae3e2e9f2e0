//! The life of one job: delivered once with the documented headers, retried after a failure
//! with the same `webhook-id`, and discarded to the dead-letter store after its whole retry
//! schedule, never earlier than the schedule allows.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::support::receiver::{self, Receiver};
use crate::support::{http_get, redis_and_herald, SAFETY_NET};

#[test]
fn a_job_is_delivered_once_with_the_documented_headers() {
    let (_redis, herald) = redis_and_herald("it-deliver-once");
    let rx = Receiver::start(receiver::always(200));
    herald.set_endpoint("dash-1", &format!("{}/hooks/dash-1", rx.url()));
    let payload = json!({"service_name": "GitHub", "current_status": "down", "n": 1});
    let job = herald.enqueue("dash-1", &payload);

    let worker = herald.spawn_worker(&[]);
    let requests = rx.wait_for(1, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    // The readiness line names the bound metrics address (HERALD_METRICS_ADDR had port 0).
    let metrics = worker
        .metrics_addr()
        .expect("readiness line names metrics=ADDR");
    let (status, _) = http_get(metrics, "/metrics");
    assert_eq!(status, 200, "GET http://{metrics}/metrics");
    worker.stop(SAFETY_NET);

    // Nothing can arrive after the worker exited: this is the final count.
    let requests_after = rx.requests();
    assert_eq!(requests_after.len(), 1, "delivered more than once");
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/dash-1");
    let content_type = r.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "content-type is {content_type:?}"
    );
    let user_agent = r.header("user-agent").unwrap_or_default();
    assert!(
        user_agent.starts_with("herald/") && user_agent.len() > "herald/".len(),
        "user-agent is {user_agent:?}"
    );
    assert_eq!(r.webhook_id(), format!("msg_{job}"));
    assert_eq!(r.json(), payload);
    assert_eq!(herald.job(&job), None, "the delivered job is still known");
}

#[test]
fn a_failed_attempt_is_retried_with_the_same_webhook_id() {
    let (_redis, herald) = redis_and_herald("it-retry-once");
    let rx = Receiver::start(receiver::fail_first(1));
    herald.set_endpoint("dash-1", &format!("{}/hooks/dash-1", rx.url()));
    let payload = json!({"attempt": "any"});
    let job = herald.enqueue("dash-1", &payload);

    let worker = herald.spawn_worker(&[("HERALD_RETRY_SCHEDULE", "100ms,100ms,100ms")]);
    rx.wait_for(2, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);

    let requests = rx.requests();
    assert_eq!(requests.len(), 2, "expected one failure and one success");
    for r in &requests {
        assert_eq!(r.webhook_id(), format!("msg_{job}"));
        assert_eq!(r.json(), payload);
    }
    assert_eq!(herald.job(&job), None, "the delivered job is still known");
}

/// Twenty retry delays, deliberately uneven, in milliseconds.
const SCHEDULE_MS: [u64; 20] = [
    50, 100, 150, 200, 250, 300, 50, 120, 80, 300, 60, 90, 110, 130, 170, 210, 250, 290, 75, 55,
];

#[test]
fn a_job_failing_every_attempt_follows_the_schedule_then_dies() {
    let (_redis, herald) = redis_and_herald("it-schedule");
    let rx = Receiver::start(receiver::always(500));
    herald.set_endpoint("dash-1", &format!("{}/hooks/dash-1", rx.url()));
    let job = herald.enqueue("dash-1", &json!({"doomed": true}));

    let schedule: Vec<String> = SCHEDULE_MS.iter().map(|ms| format!("{ms}ms")).collect();
    // Default jitter (±10 %) stays on: the bounds below allow for it.
    let worker = herald.spawn_worker(&[("HERALD_RETRY_SCHEDULE", &schedule.join(","))]);
    let attempts = SCHEDULE_MS.len() + 1;
    rx.wait_for(attempts, SAFETY_NET);
    herald.wait_for_stats("the job in the dead-letter store", SAFETY_NET, |s| {
        s.dead == 1 && s.queued() == 0 && s.in_flight == 0
    });
    worker.stop(SAFETY_NET);

    let requests = rx.requests();
    assert_eq!(
        requests.len(),
        attempts,
        "one first attempt plus one per retry"
    );
    let ids: HashSet<String> = requests.iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids, HashSet::from([format!("msg_{job}")]));

    for (k, pair) in requests.windows(2).enumerate() {
        let gap = pair[1].received_at - pair[0].received_at;
        let delay = Duration::from_millis(SCHEDULE_MS[k]);
        // Jitter may take 10 % off. Redis time and the jittered delay are each whole
        // milliseconds, so each truncation may take up to one more millisecond off.
        let earliest = delay.mul_f64(0.9).saturating_sub(Duration::from_millis(2));
        assert!(
            gap >= earliest,
            "retry {} came {gap:?} after the previous attempt; the schedule says {delay:?} ±10 %",
            k + 1
        );
        // Only a sanity bound: a retry must not wait for a much later slot.
        assert!(
            gap < delay + Duration::from_secs(15),
            "retry {} came {gap:?} after the previous attempt; the schedule says {delay:?}",
            k + 1
        );
    }

    let dead = herald.dead_list();
    assert_eq!(dead.len(), 1, "dead list: {dead:?}");
    let entry = &dead[0];
    assert_eq!(entry["id"], job.as_str(), "dead list: {entry}");
    assert!(entry["dead_at_ms"].as_i64().is_some(), "dead list: {entry}");
    assert_eq!(entry["attempts"], attempts, "dead list: {entry}");
    assert_eq!(entry["endpoint"], "dash-1", "dead list: {entry}");
    let last_error = entry["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("500"),
        "last_error should name the 500 answer: {entry}"
    );

    let got = herald
        .job(&job)
        .expect("a dead job is still listed by job get");
    assert_eq!(got["state"], "dead", "job get: {got}");
}
