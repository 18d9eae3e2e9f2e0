//! The management API over real HTTP against a real Redis: every route, tokens and scopes,
//! bad input answered with 4xx problems, cursor pagination, the test event reaching a
//! receiver through a real worker, `herald serve` itself, and the CLI reaching the same store
//! functions.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use herald_core::EndpointId;
use herald_store::NewJob;
use serde_json::{json, Value};

use crate::support::api::{get_with_token, ApiServer};
use crate::support::herald::HERALD_BIN;
use crate::support::process::{poll_until, Proc};
use crate::support::receiver::{always, Receiver};
use crate::support::{redis_and_herald, RedisServer, SAFETY_NET};

/// Every route with a method, as a client calls it (ids that exist in no test).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/openapi.json"),
    ("GET", "/api/v1/endpoints"),
    ("GET", "/api/v1/endpoints/dash-1"),
    ("PUT", "/api/v1/endpoints/dash-1"),
    ("DELETE", "/api/v1/endpoints/dash-1"),
    ("POST", "/api/v1/endpoints/dash-1/enable"),
    ("POST", "/api/v1/endpoints/dash-1/disable"),
    ("POST", "/api/v1/endpoints/dash-1/rotate-secret"),
    ("POST", "/api/v1/endpoints/dash-1/test"),
    ("GET", "/api/v1/endpoints/dash-1/attempts"),
    ("POST", "/api/v1/endpoints/dash-1/jobs"),
    ("POST", "/api/v1/endpoints/dash-1/jobs/batch"),
    ("GET", "/api/v1/endpoints/dash-1/subscriptions"),
    ("PUT", "/api/v1/endpoints/dash-1/subscriptions/heroku"),
    ("DELETE", "/api/v1/endpoints/dash-1/subscriptions/heroku"),
    ("GET", "/api/v1/services/heroku/subscribers"),
    ("POST", "/api/v1/events"),
    ("GET", "/api/v1/jobs/01JH3W0AB8C9D0E1F2G3H4J5K6"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/dead-letters"),
    ("POST", "/api/v1/dead-letters/replay"),
    ("POST", "/api/v1/dead-letters/purge"),
    (
        "POST",
        "/api/v1/dead-letters/01JH3W0AB8C9D0E1F2G3H4J5K6/replay",
    ),
    ("DELETE", "/api/v1/dead-letters/01JH3W0AB8C9D0E1F2G3H4J5K6"),
];

fn example_event() -> Value {
    serde_json::from_str(herald_core::event::EXAMPLE).unwrap()
}

fn id(text: &str) -> EndpointId {
    EndpointId::new(text).unwrap()
}

/// Enqueues `n` jobs for `endpoint` straight into the store; returns their ids.
fn enqueue(api: &ApiServer, endpoint: &str, n: usize) -> Vec<String> {
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob::new(id(endpoint), json!({ "n": i }).to_string()))
        .collect();
    api.block_on(api.store().enqueue_batch(&jobs))
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().job_id)
        .collect()
}

/// Waits until the Redis clock is past `ms`, so that what happens next is stamped later.
fn after_redis_time(api: &ApiServer, ms: i64) {
    poll_until(
        "the Redis clock to move on",
        SAFETY_NET,
        Duration::from_millis(1),
        || {
            let now = api.block_on(async {
                let mut conn = api.store().conn().await.unwrap();
                api.store().now_ms(&mut conn).await.unwrap()
            });
            if now > ms {
                Ok(())
            } else {
                Err(format!("{now}"))
            }
        },
    );
}

#[test]
fn every_route_but_healthz_needs_a_valid_token() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-api-auth", 2);

    let health = api.call("GET", "/healthz", None, None, &[]);
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

    for (method, path) in ROUTES {
        let none = api.call(method, path, None, Some(&json!({})), &[]);
        let p = none.problem(401);
        assert_eq!(p["code"], "unauthorized");
        assert_eq!(
            none.headers["www-authenticate"], "Bearer realm=\"herald\"",
            "{method} {path}"
        );
        let wrong = api.call(
            method,
            path,
            Some("herald_not-a-token"),
            Some(&json!({})),
            &[],
        );
        wrong.problem(401);
        assert!(
            wrong.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token"),
            "{method} {path}"
        );
        // A token's hashed form is not a token.
        let hashed = herald_api::auth::hashed_form(&api.admin, herald_api::auth::Scope::Admin);
        api.call(method, path, Some(&hashed), Some(&json!({})), &[])
            .problem(401);
        // Another scheme is no bearer token.
        let basic = api
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                path,
            )
            .header("authorization", format!("Basic {}", api.admin));
        api.send(format!("{method} {path} (Basic)"), basic)
            .problem(401);
    }
    // The scheme's name is case-insensitive.
    let lower = api
        .request(reqwest::Method::GET, "/api/v1/stats")
        .header("authorization", format!("bearer {}", api.admin));
    api.send("GET /api/v1/stats (bearer)".into(), lower)
        .expect(200);
}

#[test]
fn read_tokens_read_and_only_admin_tokens_change_anything() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-api-scopes", 2);
    api.admin(
        "PUT",
        "/api/v1/endpoints/dash-1",
        Some(json!({"url": "https://hooks.example.com/dash-1"})),
    )
    .expect(201);

    for (method, path) in ROUTES {
        let answer = api.call(
            method,
            path,
            Some(&api.read),
            Some(&json!({"all": true})),
            &[],
        );
        if *method == "GET" {
            assert!(
                answer.status == 200 || answer.status == 404,
                "{method} {path} with a read token: {} {}",
                answer.status,
                answer.text()
            );
        } else {
            let p = answer.problem(403);
            assert_eq!(p["code"], "forbidden");
            assert!(p["detail"].as_str().unwrap().contains("admin"), "{p}");
        }
    }
    // Nothing changed.
    let e = api
        .call(
            "GET",
            "/api/v1/endpoints/dash-1",
            Some(&api.read),
            None,
            &[],
        )
        .expect(200);
    assert_eq!(e["url"], "https://hooks.example.com/dash-1");
    assert_eq!(e["enabled"], true);
    let doc = api.call("GET", "/openapi.json", Some(&api.read), None, &[]);
    assert_eq!(doc.content_type(), "application/json");
    assert_eq!(doc.expect(200)["openapi"], "3.1.0");
}

#[test]
fn endpoints_are_created_read_switched_rotated_and_deleted() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-api-endpoints", 2);

    let created = api
        .admin(
            "PUT",
            "/api/v1/endpoints/dash-1",
            Some(
                json!({"url": "https://hooks.example.com/a", "max_in_flight": 8, "rate": "600/m"}),
            ),
        )
        .expect(201);
    assert_eq!(created["created"], true);
    assert_eq!(created["max_in_flight"], 8);
    assert_eq!(created["rate"], "600/m");
    let replaced = api
        .admin(
            "PUT",
            "/api/v1/endpoints/dash-1",
            Some(json!({"url": "https://hooks.example.com/b", "rate": "none"})),
        )
        .expect(200);
    assert_eq!(replaced["created"], false);
    assert_eq!(replaced["url"], "https://hooks.example.com/b");
    assert_eq!(replaced["max_in_flight"], 8, "kept: {replaced}");
    assert_eq!(replaced["rate"], Value::Null);

    let e = api.get("/api/v1/endpoints/dash-1").expect(200);
    assert_eq!(e["url"], "https://hooks.example.com/b");
    assert_eq!(e["active_secrets"], 0);
    assert_eq!(e["limits"]["max_in_flight"], 8);
    assert_eq!(e["strikes"], 0);

    let d = api
        .admin(
            "POST",
            "/api/v1/endpoints/dash-1/disable",
            Some(json!({"reason": "receiver migration"})),
        )
        .expect(200);
    assert_eq!(
        (d["enabled"].clone(), d["changed"].clone()),
        (json!(false), json!(true))
    );
    // No body: the default reason; already disabled.
    let again = api
        .admin("POST", "/api/v1/endpoints/dash-1/disable", None)
        .expect(200);
    assert_eq!(again["changed"], false);
    let e = api.get("/api/v1/endpoints/dash-1").expect(200);
    assert_eq!(e["enabled"], false);
    assert_eq!(e["disabled"]["reason"], "receiver migration");
    let job = api
        .admin("POST", "/api/v1/endpoints/dash-1/test", None)
        .expect(202);
    assert_eq!(job["status"], "parked", "{job}");
    let parked = api.get(&format!("/api/v1/jobs/{}", job["job_id"].as_str().unwrap()));
    assert_eq!(parked.expect(200)["state"], "parked");

    let en = api
        .admin("POST", "/api/v1/endpoints/dash-1/enable", None)
        .expect(200);
    assert_eq!(en["enabled"], true);
    assert_eq!(en["resumed_jobs"], 1);
    let e = api.get("/api/v1/endpoints/dash-1").expect(200);
    assert_eq!(
        (e["enabled"].clone(), e["disabled"].clone()),
        (json!(true), Value::Null)
    );

    let r = api
        .admin(
            "POST",
            "/api/v1/endpoints/dash-1/rotate-secret",
            Some(json!({"grace": "1h"})),
        )
        .expect(200);
    let secret = r["secret"].as_str().unwrap();
    assert!(herald_core::Secret::parse(secret).is_ok(), "{r}");
    assert_eq!(r["old_secrets_expire_in_s"], 3600);
    let stored = api
        .block_on(api.store().endpoint(&id("dash-1")))
        .unwrap()
        .unwrap();
    assert_eq!(stored.secrets[0].secret, secret);
    assert_eq!(
        api.get("/api/v1/endpoints/dash-1").expect(200)["active_secrets"],
        1
    );
    // The secret is never shown again.
    assert!(!api.get("/api/v1/endpoints/dash-1").text().contains(secret));

    let log = api.get("/api/v1/endpoints/dash-1/attempts").expect(200);
    assert_eq!(log["items"], json!([]));

    let del = api
        .admin("DELETE", "/api/v1/endpoints/dash-1", None)
        .expect(200);
    assert_eq!(del["queued_jobs_discarded"], 1, "the test event: {del}");
    let gone = api.get("/api/v1/endpoints/dash-1").problem(404);
    assert_eq!(gone["detail"], "endpoint dash-1 not found");
    for (method, path) in [
        ("DELETE", "/api/v1/endpoints/dash-1"),
        ("POST", "/api/v1/endpoints/dash-1/enable"),
        ("POST", "/api/v1/endpoints/dash-1/disable"),
        ("POST", "/api/v1/endpoints/dash-1/rotate-secret"),
        ("POST", "/api/v1/endpoints/dash-1/test"),
        ("GET", "/api/v1/endpoints/dash-1/attempts"),
        ("GET", "/api/v1/endpoints/dash-1/subscriptions"),
    ] {
        let p = api.admin(method, path, None).problem(404);
        assert_eq!(p["code"], "unknown_endpoint", "{method} {path}: {p}");
    }
}

#[test]
fn bad_input_is_answered_with_a_4xx_problem_never_a_500() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-api-bad-input", 2);
    api.admin(
        "PUT",
        "/api/v1/endpoints/dash-1",
        Some(json!({"url": "https://hooks.example.com/"})),
    )
    .expect(201);
    let url = |u: &str| Some(json!({ "url": u }));
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        (
            "PUT",
            "/api/v1/endpoints/a%20b",
            url("https://x.example/"),
            400,
            "may only contain",
        ),
        (
            "GET",
            "/api/v1/endpoints/a%7Bb%7D",
            None,
            400,
            "may only contain",
        ),
        (
            "PUT",
            "/api/v1/endpoints/e",
            url("ftp://x.example/"),
            400,
            "scheme",
        ),
        (
            "PUT",
            "/api/v1/endpoints/e",
            url("https://u:p@x.example/"),
            400,
            "credentials",
        ),
        (
            "PUT",
            "/api/v1/endpoints/e",
            url("http://127.0.0.1:9/"),
            400,
            "SSRF guard",
        ),
        (
            "PUT",
            "/api/v1/endpoints/e",
            url("http://169.254.169.254/"),
            400,
            "SSRF guard",
        ),
        ("PUT", "/api/v1/endpoints/e", url(""), 400, "empty"),
        (
            "PUT",
            "/api/v1/endpoints/e",
            Some(json!({"url": "https://x.example/", "rate": "fast"})),
            400,
            "rate",
        ),
        (
            "PUT",
            "/api/v1/endpoints/e",
            Some(json!({"url": "https://x.example/", "max_in_flight": 0})),
            400,
            "between 1 and 10000",
        ),
        (
            "PUT",
            "/api/v1/endpoints/e",
            Some(json!({"url": "https://x.example/", "max_in_flight": 99_999_999_999u64})),
            400,
            "between 1 and 10000",
        ),
        (
            "PUT",
            "/api/v1/endpoints/e",
            Some(json!({"url": "https://x.example/", "secret": "hunter2"})),
            400,
            "whsec_",
        ),
        (
            "PUT",
            "/api/v1/endpoints/e",
            Some(json!({"url": "https://x.example/", "colour": "red"})),
            400,
            "unknown field",
        ),
        (
            "PUT",
            "/api/v1/endpoints/e",
            Some(json!({})),
            400,
            "missing field `url`",
        ),
        (
            "PUT",
            "/api/v1/endpoints/e",
            Some(json!([1])),
            400,
            "invalid JSON body",
        ),
        (
            "POST",
            "/api/v1/endpoints/dash-1/rotate-secret",
            Some(json!({"grace": "soon"})),
            400,
            "grace",
        ),
        (
            "POST",
            "/api/v1/endpoints/dash-1/disable",
            Some(json!({"why": "x"})),
            400,
            "unknown field",
        ),
        (
            "GET",
            "/api/v1/endpoints?limit=0",
            None,
            400,
            "between 1 and 1000",
        ),
        (
            "GET",
            "/api/v1/endpoints?limit=many",
            None,
            400,
            "invalid query",
        ),
        (
            "GET",
            "/api/v1/endpoints?status=broken",
            None,
            400,
            "any, enabled, disabled",
        ),
        ("GET", "/api/v1/endpoints?cursor=nope", None, 400, "cursor"),
        ("GET", "/api/v1/endpoints?cursor=99.0", None, 400, "cursor"),
        (
            "GET",
            "/api/v1/endpoints/dash-1/subscriptions?cursor=x",
            None,
            400,
            "cursor",
        ),
        (
            "PUT",
            "/api/v1/endpoints/dash-1/subscriptions/Heroku!",
            Some(json!({})),
            400,
            "service slug",
        ),
        (
            "PUT",
            "/api/v1/endpoints/dash-1/subscriptions/heroku",
            Some(json!({"level": "loud"})),
            400,
            "unknown variant",
        ),
        (
            "GET",
            "/api/v1/services/UPPER/subscribers",
            None,
            400,
            "service slug",
        ),
        (
            "DELETE",
            "/api/v1/endpoints/dash-1/subscriptions/heroku",
            None,
            404,
            "not subscribed",
        ),
        (
            "POST",
            "/api/v1/events",
            Some(json!({"slug": "heroku"})),
            400,
            "invalid status-change event",
        ),
        (
            "POST",
            "/api/v1/events",
            Some({
                let mut e = example_event();
                e["current_status"] = json!("on fire");
                e
            }),
            400,
            "unknown variant",
        ),
        (
            "POST",
            "/api/v1/endpoints/dash-1/jobs?delay=later",
            Some(json!({})),
            400,
            "delay",
        ),
        (
            "POST",
            "/api/v1/endpoints/nobody/jobs",
            Some(json!({})),
            404,
            "unknown endpoint",
        ),
        ("GET", "/api/v1/jobs/nope", None, 404, "not found"),
        (
            "GET",
            "/api/v1/dead-letters?since=yesterday",
            None,
            400,
            "since",
        ),
        (
            "GET",
            "/api/v1/dead-letters?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            None,
            400,
            "ends before it starts",
        ),
        (
            "GET",
            "/api/v1/dead-letters?endpoint=a%20b",
            None,
            400,
            "may only contain",
        ),
        ("GET", "/api/v1/dead-letters?cursor=12", None, 400, "cursor"),
        (
            "GET",
            "/api/v1/dead-letters?limit=5000",
            None,
            400,
            "between 1 and 1000",
        ),
        (
            "POST",
            "/api/v1/dead-letters/replay",
            Some(json!({})),
            400,
            "all",
        ),
        (
            "POST",
            "/api/v1/dead-letters/purge",
            Some(json!({"all": true, "endpoint": "dash-1"})),
            400,
            "not both",
        ),
        (
            "POST",
            "/api/v1/dead-letters/01JH3W0AB8C9D0E1F2G3H4J5K6/replay",
            None,
            404,
            "not in the dead-letter store",
        ),
        (
            "DELETE",
            "/api/v1/dead-letters/01JH3W0AB8C9D0E1F2G3H4J5K6",
            None,
            404,
            "not in the dead-letter store",
        ),
        ("GET", "/api/v1/nowhere", None, 404, "no such route"),
        ("PATCH", "/api/v1/endpoints/dash-1", None, 405, "method"),
    ];
    for (method, path, body, status, words) in cases {
        let p = api.admin(method, path, body).problem(status);
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains(words),
            "{method} {path}: {detail:?} should say {words:?}"
        );
    }

    // Bodies that are not JSON.
    let text = api
        .request(reqwest::Method::PUT, "/api/v1/endpoints/e")
        .bearer_auth(&api.admin)
        .header("content-type", "text/plain")
        .body(r#"{"url":"https://x.example/"}"#);
    assert_eq!(
        api.send("PUT as text".into(), text).problem(415)["code"],
        "unsupported_media_type"
    );
    let event_as_form = api
        .request(reqwest::Method::POST, "/api/v1/events")
        .bearer_auth(&api.admin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b");
    api.send("POST /events as a form".into(), event_as_form)
        .problem(415);
    let broken = api
        .request(reqwest::Method::POST, "/api/v1/endpoints/dash-1/jobs")
        .bearer_auth(&api.admin)
        .header("content-type", "application/json")
        .body("{not json");
    let p = api.send("POST broken JSON".into(), broken).problem(400);
    assert!(
        p["detail"].as_str().unwrap().contains("not valid JSON"),
        "{p}"
    );
    let huge = api
        .request(reqwest::Method::POST, "/api/v1/endpoints/dash-1/jobs")
        .bearer_auth(&api.admin)
        .header("content-type", "application/json")
        .body(format!("\"{}\"", "x".repeat(herald_api::MAX_BODY)));
    assert_eq!(
        api.send("POST 1 MiB".into(), huge).problem(413)["code"],
        "payload_too_large"
    );
    for key in ["", "two words", &"k".repeat(256)] {
        let call = api
            .request(reqwest::Method::POST, "/api/v1/endpoints/dash-1/jobs")
            .bearer_auth(&api.admin)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body("{}");
        let p = api
            .send(format!("POST with key {key:?}"), call)
            .problem(400);
        assert!(
            p["detail"].as_str().unwrap().contains("Idempotency-Key"),
            "{p}"
        );
    }
    // Nothing was written by the refused calls.
    let list = api.get("/api/v1/endpoints").expect(200);
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dash-1"]);
    assert_eq!(api.get("/api/v1/stats").expect(200)["jobs"]["due"], 0);
}

/// Text that every listing shows and durations that outlive any use are bounded, and a
/// refusal names the bound in the caller's terms (no script's name); nothing is written.
#[test]
fn text_and_durations_beyond_their_bounds_are_refused_by_name() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-api-bounds", 2);
    api.admin(
        "PUT",
        "/api/v1/endpoints/dash-1",
        Some(json!({"url": "https://hooks.example.com/"})),
    )
    .expect(201);
    let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let cases: Vec<(&str, Option<Value>, &str)> = vec![
        (
            "/api/v1/endpoints/dash-1/disable",
            Some(json!({"reason": "r".repeat(1001)})),
            "at most 1000 characters, not 1001",
        ),
        (
            "/api/v1/endpoints/dash-1/rotate-secret",
            Some(json!({"grace": "1000000days"})),
            "at most 30days",
        ),
        (
            "/api/v1/endpoints/dash-1/jobs?delay=1000000days",
            Some(json!({})),
            "a delay is at most 10000000000000 ms",
        ),
    ];
    for (path, body, words) in cases {
        let p = api.admin("POST", path, body).problem(400);
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(words), "{path}: {p}");
        assert!(!detail.contains(".lua"), "{path} names a script: {p}");
    }
    for components in [many, vec!["x".repeat(201)]] {
        let p = api
            .admin(
                "PUT",
                "/api/v1/endpoints/dash-1/subscriptions/heroku",
                Some(json!({"level": "down", "components": components})),
            )
            .problem(400);
        assert!(p["detail"].as_str().unwrap().contains("at most"), "{p}");
    }
    // At the bounds, each goes through.
    api.admin(
        "POST",
        "/api/v1/endpoints/dash-1/rotate-secret",
        Some(json!({"grace": "30days"})),
    )
    .expect(200);
    let endpoint = api.get("/api/v1/endpoints/dash-1").expect(200);
    assert_eq!(endpoint["enabled"], true, "{endpoint}");
    assert_eq!(endpoint["subscriptions"], json!([]), "{endpoint}");
    assert_eq!(api.get("/api/v1/stats").expect(200)["jobs"]["scheduled"], 0);
    api.admin(
        "POST",
        "/api/v1/endpoints/dash-1/disable",
        Some(json!({"reason": "r".repeat(1000)})),
    )
    .expect(200);
}

#[test]
fn subscriptions_are_set_listed_removed_and_events_fan_out_once_per_key() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-api-subs", 2);
    for e in ["dash-1", "dash-2"] {
        api.admin(
            "PUT",
            &format!("/api/v1/endpoints/{e}"),
            Some(json!({"url": "https://hooks.example.com/"})),
        )
        .expect(201);
    }
    let sub = api
        .admin(
            "PUT",
            "/api/v1/endpoints/dash-1/subscriptions/heroku",
            Some(json!({"level": "warn", "components": [" Apps ", ""]})),
        )
        .expect(200);
    assert_eq!(
        sub,
        json!({"service": "heroku", "level": "warn", "components": ["Apps"]})
    );
    api.admin(
        "PUT",
        "/api/v1/endpoints/dash-2/subscriptions/heroku",
        Some(json!({"level": "down"})),
    )
    .expect(200);
    api.admin(
        "PUT",
        "/api/v1/endpoints/dash-1/subscriptions/github",
        Some(json!({})),
    )
    .expect(200);
    let p = api
        .admin(
            "PUT",
            "/api/v1/endpoints/nobody/subscriptions/heroku",
            Some(json!({})),
        )
        .problem(404);
    assert_eq!(p["code"], "unknown_endpoint");

    let (mine, _) = api.all_pages("/api/v1/endpoints/dash-1/subscriptions");
    assert_eq!(
        mine,
        [
            json!({"service": "github", "level": "all", "components": []}),
            json!({"service": "heroku", "level": "warn", "components": ["Apps"]}),
        ]
    );
    let (subscribers, _) = api.all_pages("/api/v1/services/heroku/subscribers");
    let names: BTreeSet<&str> = subscribers
        .iter()
        .map(|s| s["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["dash-1", "dash-2"]));

    // The example event is up -> warn on component Apps: dash-1 (warn, Apps) admits it,
    // dash-2 (down) does not.
    let call = |key: &str| {
        api.call(
            "POST",
            "/api/v1/events",
            Some(&api.admin),
            Some(&example_event()),
            &[("idempotency-key", key)],
        )
    };
    let first = call("incident-1").expect(202);
    assert_eq!(
        (
            first["enqueued"].clone(),
            first["skipped_by_level"].clone(),
            first["duplicates"].clone()
        ),
        (json!(1), json!(1), json!(0)),
        "{first}"
    );
    let job = first["jobs"][0]["job_id"].as_str().unwrap().to_owned();
    assert_eq!(first["jobs"][0]["endpoint"], "dash-1");
    let again = call("incident-1").expect(202);
    assert_eq!(
        (again["enqueued"].clone(), again["duplicates"].clone()),
        (json!(0), json!(1)),
        "{again}"
    );
    assert_eq!(again["jobs"][0]["job_id"], job.as_str());
    let other = call("incident-2").expect(202);
    assert_eq!(other["enqueued"], 1);
    let stored = api.get(&format!("/api/v1/jobs/msg_{job}")).expect(200);
    assert_eq!(stored["payload"], example_event());
    assert_eq!(api.get("/api/v1/stats").expect(200)["jobs"]["due"], 2);

    api.admin(
        "DELETE",
        "/api/v1/endpoints/dash-1/subscriptions/heroku",
        None,
    )
    .expect(204);
    api.admin(
        "DELETE",
        "/api/v1/endpoints/dash-1/subscriptions/heroku",
        None,
    )
    .problem(404);
    let (subscribers, _) = api.all_pages("/api/v1/services/heroku/subscribers");
    assert_eq!(subscribers.len(), 1);
    assert_eq!(
        subscribers[0],
        json!({"endpoint": "dash-2", "level": "down", "components": []})
    );
}

/// Enqueues through the API share one Redis connection, checked by no round trip before each
/// call: when Redis restarts under it, the next enqueue goes on a new one (and reloads the
/// scripts), and while Redis is down an enqueue fails with a 503 at once.
#[test]
fn enqueues_go_on_across_a_redis_restart_and_fail_with_503_while_it_is_down() {
    let mut redis = RedisServer::start_with_aof("always");
    let api = ApiServer::start(&redis.url(), "it-api-restart", 4);
    api.admin(
        "PUT",
        "/api/v1/endpoints/dash-1",
        Some(json!({"url": "https://hooks.example.com/a"})),
    )
    .expect(201);
    let enqueue = |n: u32| {
        api.admin(
            "POST",
            "/api/v1/endpoints/dash-1/jobs",
            Some(json!({ "n": n })),
        )
    };
    let first = enqueue(1).expect(202)["job_id"].clone();

    // Restarted between two enqueues: the shared connection is gone, the call is not lost.
    redis.restart();
    let second = enqueue(2).expect(202)["job_id"].clone();

    // Down: a clean 503, then the first enqueue after the restart goes through.
    redis.kill();
    let problem = enqueue(3).problem(503);
    assert_eq!(problem["code"], "unavailable", "{problem}");
    redis.restart();
    let fourth = enqueue(4).expect(202)["job_id"].clone();

    let mut queued = BTreeSet::new();
    for id in [&first, &second, &fourth] {
        let job = api
            .get(&format!("/api/v1/jobs/{}", id.as_str().unwrap()))
            .expect(200);
        queued.insert(job["payload"]["n"].as_u64().unwrap());
    }
    assert_eq!(queued, BTreeSet::from([1, 2, 4]));
    let stats = api.block_on(api.store().stats()).unwrap();
    assert_eq!(stats.total.due + stats.total.scheduled, 3, "{stats:?}");
}

#[test]
fn raw_jobs_are_enqueued_once_per_key_and_looked_up() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-api-jobs", 2);
    api.admin(
        "PUT",
        "/api/v1/endpoints/dash-1",
        Some(json!({"url": "https://hooks.example.com/"})),
    )
    .expect(201);
    let payload = json!({"hello": "world"});
    let send = |key: Option<&str>| {
        let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
        api.call(
            "POST",
            "/api/v1/endpoints/dash-1/jobs?delay=1h",
            Some(&api.admin),
            Some(&payload),
            &headers,
        )
    };
    let job = send(Some("order-7")).expect(202);
    assert_eq!(job["status"], "queued");
    assert!(job["due_at_ms"].as_i64().unwrap() > 0);
    let dup = send(Some("order-7")).expect(200);
    assert_eq!(dup["status"], "duplicate");
    assert_eq!(dup["job_id"], job["job_id"]);
    assert_eq!(
        dup["due_at_ms"], job["due_at_ms"],
        "a repeat answers the first job's due time"
    );
    let other = send(None).expect(202);
    assert_ne!(other["job_id"], job["job_id"]);

    let id = job["job_id"].as_str().unwrap();
    let got = api.get(&format!("/api/v1/jobs/{id}")).expect(200);
    assert_eq!(got["state"], "scheduled");
    assert_eq!(got["endpoint"], "dash-1");
    assert_eq!(got["attempts"], 0);
    assert_eq!(got["payload"], payload);
    let batch = api
        .admin(
            "POST",
            "/api/v1/endpoints/dash-1/jobs/batch?delay=1h",
            Some(json!([{"n": 1}, [2], "three"])),
        )
        .expect(202);
    assert_eq!(batch["enqueued"], 3);
    let third = batch["jobs"][2]["job_id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/api/v1/jobs/{third}")).expect(200)["payload"],
        "three"
    );
    for (body, words) in [
        (json!([]), "1 to 1000"),
        (json!({"n": 1}), "JSON array"),
        (json!((0..1001).collect::<Vec<_>>()), "not 1001"),
    ] {
        let p = api
            .admin("POST", "/api/v1/endpoints/dash-1/jobs/batch", Some(body))
            .problem(400);
        assert!(p["detail"].as_str().unwrap().contains(words), "{p}");
    }
    api.admin(
        "POST",
        "/api/v1/endpoints/nobody/jobs/batch",
        Some(json!([{}])),
    )
    .problem(404);
    let stats = api.get("/api/v1/stats").expect(200);
    assert_eq!(stats["jobs"]["scheduled"], 5, "{stats}");
    assert_eq!(stats["shards"].as_array().unwrap().len(), 2);
}

/// Ten dead letters: 6 of `old-a` (deleted first), then 4 of `old-b` (deleted later); `keep`
/// stays, with nothing dead. Returns the ids of each and the discard time of each group.
fn dead_letters(api: &ApiServer) -> (Vec<String>, Vec<String>, i64, i64) {
    for e in ["old-a", "old-b", "keep"] {
        api.admin(
            "PUT",
            &format!("/api/v1/endpoints/{e}"),
            Some(json!({"url": "https://hooks.example.com/"})),
        )
        .expect(201);
    }
    let a = enqueue(api, "old-a", 6);
    let b = enqueue(api, "old-b", 4);
    enqueue(api, "keep", 2);
    api.admin("DELETE", "/api/v1/endpoints/old-a", None)
        .expect(200);
    let (items, _) = api.all_pages("/api/v1/dead-letters?endpoint=old-a");
    let at_a = items[0]["dead_at_ms"].as_i64().unwrap();
    after_redis_time(api, at_a);
    api.admin("DELETE", "/api/v1/endpoints/old-b", None)
        .expect(200);
    let (items, _) = api.all_pages("/api/v1/dead-letters?endpoint=old-b");
    let at_b = items[0]["dead_at_ms"].as_i64().unwrap();
    assert!(at_b > at_a);
    (a, b, at_a, at_b)
}

#[test]
fn dead_letters_are_listed_by_filter_a_page_at_a_time() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-api-dead-list", 3);
    let (a, b, at_a, at_b) = dead_letters(&api);

    let (all, pages) = api.all_pages("/api/v1/dead-letters?limit=3");
    assert_eq!(all.len(), 10, "{all:?}");
    assert!(pages >= 4, "10 entries by 3 took {pages} pages");
    let ids: Vec<&str> = all.iter().map(|d| d["id"].as_str().unwrap()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 10, "listed twice: {ids:?}");
    // Newest first: old-b's before old-a's; within a discard time, ids descending.
    let keys: Vec<(i64, &str)> = all
        .iter()
        .map(|d| (d["dead_at_ms"].as_i64().unwrap(), d["id"].as_str().unwrap()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|x, y| y.cmp(x));
    assert_eq!(keys, sorted);
    let first = &all[0];
    assert_eq!(first["endpoint"], "old-b");
    assert_eq!(first["attempts"], 0);
    assert!(
        first["last_error"]
            .as_str()
            .unwrap()
            .starts_with("endpoint deleted"),
        "{first}"
    );
    assert!(first.get("payload").is_none(), "{first}");

    let (only_a, _) = api.all_pages("/api/v1/dead-letters?endpoint=old-a&limit=1");
    let got: BTreeSet<&str> = only_a.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(got, a.iter().map(String::as_str).collect());
    let (by_reason, _) = api.all_pages("/api/v1/dead-letters?reason=ENDPOINT%20DELETED:%20OLD-B");
    let got: BTreeSet<&str> = by_reason
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, b.iter().map(String::as_str).collect());
    let (since_b, _) = api.all_pages(&format!("/api/v1/dead-letters?since={at_b}"));
    assert_eq!(since_b.len(), 4);
    let until = chrono::DateTime::from_timestamp_millis(at_a)
        .unwrap()
        .to_rfc3339();
    let (until_a, _) = api.all_pages(&format!(
        "/api/v1/dead-letters?until={}",
        until.replace('+', "%2B")
    ));
    assert_eq!(until_a.len(), 6, "until {until}");
    let (none, _) = api.all_pages("/api/v1/dead-letters?endpoint=keep");
    assert!(none.is_empty());
    let (none, _) = api.all_pages("/api/v1/dead-letters?reason=retries%20exhausted");
    assert!(none.is_empty());
}

#[test]
fn dead_letters_are_replayed_and_purged_one_at_a_time_and_by_filter() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-api-dead-act", 2);
    let (a, b, _, at_b) = dead_letters(&api);
    let dead = || {
        api.get("/api/v1/stats").expect(200)["jobs"]["dead"]
            .as_u64()
            .unwrap()
    };

    let replayed = api
        .admin(
            "POST",
            &format!("/api/v1/dead-letters/msg_{}/replay", a[0]),
            None,
        )
        .expect(200);
    assert_eq!(replayed["replayed"], 1);
    assert_eq!(
        api.get(&format!("/api/v1/jobs/{}", a[0])).expect(200)["state"],
        "due"
    );
    api.admin(
        "POST",
        &format!("/api/v1/dead-letters/{}/replay", a[0]),
        None,
    )
    .problem(404);
    let purged = api
        .admin("DELETE", &format!("/api/v1/dead-letters/{}", a[1]), None)
        .expect(200);
    assert_eq!(purged["purged"], 1);
    api.get(&format!("/api/v1/jobs/{}", a[1])).problem(404);
    assert_eq!(dead(), 8);

    // Everything of old-b discarded since its delete: 4.
    let r = api
        .admin(
            "POST",
            "/api/v1/dead-letters/replay",
            Some(json!({"endpoint": "old-b", "since": at_b.to_string()})),
        )
        .expect(200);
    assert_eq!(r["replayed"], 4);
    for id in &b {
        assert_eq!(
            api.get(&format!("/api/v1/jobs/{id}")).expect(200)["state"],
            "due"
        );
    }
    assert_eq!(dead(), 4);
    let r = api
        .admin(
            "POST",
            "/api/v1/dead-letters/purge",
            Some(json!({"reason": "old-a"})),
        )
        .expect(200);
    assert_eq!(r["purged"], 4);
    assert_eq!(dead(), 0);
    let r = api
        .admin(
            "POST",
            "/api/v1/dead-letters/purge",
            Some(json!({"all": true})),
        )
        .expect(200);
    assert_eq!(r["purged"], 0);
}

#[test]
fn listings_of_endpoints_and_subscribers_follow_cursors_to_the_end() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-api-pages", 2);
    // 300 endpoints: their records are past the size of Redis's small-hash encoding, so each
    // shard's pages come from HSCAN cursors, not whole; so do the subscribers', for one of
    // them names components enough.
    let ids: Vec<String> = (0..300).map(|i| format!("dash-{i:03}")).collect();
    api.block_on(async {
        for e in &ids {
            api.store()
                .set_endpoint(&id(e), "https://hooks.example.com/", None)
                .await
                .unwrap();
            api.store()
                .subscribe(&id(e), "heroku", &herald_core::Subscription::default())
                .await
                .unwrap();
        }
        for e in &ids[..7] {
            api.store().disable_endpoint(&id(e), "test").await.unwrap();
        }
        let many = herald_core::Subscription::new(
            herald_core::Level::All,
            [
                "Apps",
                "API",
                "Dashboard",
                "Data/Postgres",
                "Data/Redis",
                "Data/Kafka",
            ],
        );
        api.store()
            .subscribe(&id("dash-299"), "heroku", &many)
            .await
            .unwrap();
    });
    let listed = |path: &str| {
        let (items, pages) = api.all_pages(path);
        let mut got: Vec<String> = items
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        got.sort();
        got.dedup();
        (got, pages)
    };
    let (all, pages) = listed("/api/v1/endpoints?limit=20");
    assert_eq!(all, ids);
    assert!(pages >= 5, "300 endpoints by about 20 took {pages} pages");
    let (disabled, _) = listed("/api/v1/endpoints?status=disabled&limit=3");
    assert_eq!(disabled, ids[..7]);
    let (enabled, _) = listed("/api/v1/endpoints?status=enabled");
    assert_eq!(enabled, ids[7..]);
    let (found, _) = listed("/api/v1/endpoints?search=ASH-12");
    assert_eq!(
        found,
        [
            "dash-120", "dash-121", "dash-122", "dash-123", "dash-124", "dash-125", "dash-126",
            "dash-127", "dash-128", "dash-129"
        ]
    );
    let (nothing, _) = listed("/api/v1/endpoints?search=*");
    assert!(nothing.is_empty());

    let page = api.get("/api/v1/endpoints?search=dash-006").expect(200);
    let items = page["items"].as_array().unwrap();
    let e = &items[0];
    assert_eq!(e["enabled"], false);
    assert_eq!(e["disabled"]["reason"], "test");
    assert_eq!(e["queued"], 0);
    assert_eq!(e["limits"]["max_in_flight"], 32);
    assert_eq!(e["last_attempt"], Value::Null);

    let (subs, pages) = api.all_pages("/api/v1/services/heroku/subscribers?limit=25");
    let mut names: Vec<&str> = subs
        .iter()
        .map(|s| s["endpoint"].as_str().unwrap())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(pages >= 3, "{pages}");
}

#[test]
fn a_test_event_reaches_the_receiver_signed_through_a_worker() {
    let (redis, herald) = redis_and_herald("it-api-test-event");
    let api = ApiServer::start_with(&redis.url(), "it-api-test-event", 16, |cfg| {
        cfg.allow_targets = herald_core::guard::AllowList::parse("127.0.0.0/8").unwrap();
    });
    let rx = Receiver::start(always(200));
    let secret = herald_core::Secret::generate().expose();
    api.admin(
        "PUT",
        "/api/v1/endpoints/dash-1",
        Some(json!({"url": format!("{}/hook", rx.url()), "secret": secret})),
    )
    .expect(201);
    let _worker = herald.spawn_worker(&[]);
    let job = api
        .admin("POST", "/api/v1/endpoints/dash-1/test", None)
        .expect(202);
    assert_eq!(job["status"], "queued");
    let got = rx.wait_for(1, SAFETY_NET);
    assert_eq!(got[0].path, "/hook");
    assert_eq!(
        got[0].webhook_id(),
        format!("msg_{}", job["job_id"].as_str().unwrap())
    );
    assert_eq!(got[0].json(), example_event());
    herald_producer::Verifier::new(&secret)
        .unwrap()
        .verify(|name| got[0].header(name), &got[0].body)
        .expect("signed with the endpoint's secret");
    let log = poll_until(
        "the attempt in the log",
        SAFETY_NET,
        Duration::from_millis(20),
        || {
            let log = api.get("/api/v1/endpoints/dash-1/attempts").expect(200);
            if log["items"].as_array().unwrap().is_empty() {
                Err(log.to_string())
            } else {
                Ok(log)
            }
        },
    );
    assert_eq!(log["items"][0]["outcome"], "delivered");
    assert_eq!(log["items"][0]["status"], 200);
    let list = api.get("/api/v1/endpoints").expect(200);
    assert_eq!(list["items"][0]["last_attempt"]["outcome"], "delivered");
}

#[test]
fn herald_serve_runs_from_its_settings_and_never_logs_tokens() {
    let (redis, herald) = redis_and_herald("it-api-serve");
    let made = herald
        .ok(&["token", "new", "--scope", "admin", "--json"])
        .json();
    let token = made["token"].as_str().unwrap().to_owned();
    let hashed = made["hashed"].as_str().unwrap().to_owned();
    assert_eq!(made["scope"], "admin");
    assert!(hashed.starts_with("admin:sha256:"));
    let text = herald.ok(&["token", "new", "--scope", "read"]);
    assert!(
        text.stdout.contains("token:  herald_") && text.stdout.contains("hashed: read:sha256:"),
        "{text}"
    );
    let bad = herald.run(&["token", "new", "--scope", "root"]);
    assert!(bad.assert_failure().contains("root"), "{bad}");

    // No token configured: refused at once.
    let refused = herald.run(&["serve", "--api-addr", "127.0.0.1:0"]);
    assert_eq!(refused.status.code(), Some(2), "{refused}");
    assert!(refused.stderr.contains("HERALD_API_TOKENS"), "{refused}");

    let mut cmd = std::process::Command::new(HERALD_BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HERALD_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("HERALD_REDIS_URL", redis.url())
        .env("HERALD_NAMESPACE", herald.namespace())
        .env("HERALD_API_TOKENS", &hashed)
        .env("HERALD_API_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "debug")
        .arg("serve");
    let serve = Proc::spawn("herald serve", cmd, None);
    let ready = serve
        .wait_for_line(SAFETY_NET, |l| l.contains("herald serve ready"))
        .unwrap_or_else(|| panic!("herald serve was not ready:\n{}", serve.output()));
    let addr = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("addr= in the ready line")
        .to_owned();
    let (status, body) = crate::support::http_get(&addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = get_with_token(&addr, "/api/v1/stats", &token);
    assert_eq!(status, 200, "{body}");
    let (status, body) = get_with_token(&addr, "/api/v1/stats", "herald_wrong");
    assert_eq!(status, 401, "{body}");
    serve.signal(nix::sys::signal::Signal::SIGTERM);
    let status = serve
        .wait_exit(SAFETY_NET)
        .expect("herald serve stops on SIGTERM");
    assert!(status.success(), "{}", serve.output());
    let output = serve.output();
    assert!(output.contains("herald serve stopped"), "{output}");
    assert!(!output.contains(&token), "the token was logged:\n{output}");
    assert!(
        !output.contains(&token[7..]),
        "the token was logged:\n{output}"
    );
}

/// An endpoint change answers the same document from `--json` as from the API: the same
/// change made to twin endpoints, one through each, gives equal answers but for the id (and
/// the generated secret).
#[test]
fn the_cli_answers_endpoint_changes_with_the_api_s_documents() {
    let (redis, herald) = redis_and_herald("it-api-cli-docs");
    let api = ApiServer::start(&redis.url(), "it-api-cli-docs", 16);
    let same = |mut from_cli: Value, mut from_api: Value, what: &str| {
        for doc in [&mut from_cli, &mut from_api] {
            assert!(doc["id"].is_string(), "{what}: {doc}");
            doc["id"] = "twin".into();
            if doc.get("secret").is_some() {
                assert!(
                    doc["secret"].as_str().unwrap().starts_with("whsec_"),
                    "{doc}"
                );
                doc["secret"] = "whsec_…".into();
            }
        }
        assert_eq!(from_cli, from_api, "{what}: the CLI and the API disagree");
    };
    let url = "https://hooks.example.com/twin";
    let cli = herald
        .ok(&[
            "endpoint",
            "set",
            "by-cli",
            "--url",
            url,
            "--max-in-flight",
            "7",
            "--rate",
            "50/s",
            "--json",
        ])
        .json();
    let by_api = api
        .admin(
            "PUT",
            "/api/v1/endpoints/by-api",
            Some(json!({"url": url, "max_in_flight": 7, "rate": "50/s"})),
        )
        .expect(201);
    same(cli, by_api, "set");
    let cli = herald
        .ok(&[
            "endpoint", "disable", "by-cli", "--reason", "moving", "--json",
        ])
        .json();
    let by_api = api
        .admin(
            "POST",
            "/api/v1/endpoints/by-api/disable",
            Some(json!({"reason": "moving"})),
        )
        .expect(200);
    same(cli, by_api, "disable");
    let cli = herald
        .ok(&["endpoint", "enable", "by-cli", "--json"])
        .json();
    let by_api = api
        .admin("POST", "/api/v1/endpoints/by-api/enable", None)
        .expect(200);
    same(cli, by_api, "enable");
    let cli = herald
        .ok(&[
            "endpoint",
            "rotate-secret",
            "by-cli",
            "--grace",
            "2h",
            "--json",
        ])
        .json();
    let by_api = api
        .admin(
            "POST",
            "/api/v1/endpoints/by-api/rotate-secret",
            Some(json!({"grace": "2h"})),
        )
        .expect(200);
    same(cli, by_api, "rotate-secret");
    let cli = herald
        .ok(&["endpoint", "delete", "by-cli", "--json"])
        .json();
    let by_api = api
        .admin("DELETE", "/api/v1/endpoints/by-api", None)
        .expect(200);
    same(cli, by_api, "delete");
}

/// The CLI's `--json` of a read or a change prints the document the API answers for it, for
/// every operation both offer: endpoints, subscriptions, jobs, stats, dead letters, publish.
#[test]
fn the_cli_prints_the_api_s_documents_for_every_operation_both_offer() {
    let (redis, herald) = redis_and_herald("it-api-cli-reads");
    let api = ApiServer::start(&redis.url(), "it-api-cli-reads", 16);
    let same = |from_cli: Value, from_api: Value, what: &str| {
        assert_eq!(from_cli, from_api, "{what}: the CLI and the API disagree");
    };
    let cli = |args: &[&str]| {
        let mut argv = args.to_vec();
        argv.push("--json");
        herald.ok(&argv).json()
    };
    // Every page of an API listing, as one list.
    let all_pages = |path: &str| {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page = match &cursor {
                None => api.get(path).expect(200),
                Some(c) => api.get(&format!("{path}{sep}cursor={c}")).expect(200),
            };
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return json!({"items": items, "next_cursor": null}),
            }
        }
    };
    for id in ["dash-1", "dash-2", "dash-3", "gone"] {
        herald.set_endpoint(id, &format!("https://hooks.example.com/{id}"));
    }
    herald.ok(&["subscribe", "dash-1", "heroku", "--components", "Apps,Data"]);
    same(
        cli(&["subscribe", "dash-2", "heroku", "--level", "down"]),
        api.admin(
            "PUT",
            "/api/v1/endpoints/dash-3/subscriptions/heroku",
            Some(json!({"level": "down"})),
        )
        .expect(200),
        "subscribe",
    );
    herald.ok(&["endpoint", "disable", "dash-2", "--reason", "moving"]);
    let job = herald.enqueue("dash-1", &json!({"n": 1}));
    herald.enqueue_many("gone", (0..3).map(|n| json!({ "gone": n })));
    herald.ok(&["endpoint", "delete", "gone"]);

    same(
        cli(&["endpoint", "get", "dash-1"]),
        api.get("/api/v1/endpoints/dash-1").expect(200),
        "endpoint get",
    );
    let mut listed = all_pages("/api/v1/endpoints");
    let items = listed["items"].as_array_mut().unwrap();
    items.sort_by_key(|e| e["id"].as_str().unwrap().to_owned());
    assert_eq!(items.len(), 3, "{listed}");
    same(cli(&["endpoint", "list"]), listed, "endpoint list");
    same(
        cli(&["subscriptions", "endpoint", "dash-1"]),
        all_pages("/api/v1/endpoints/dash-1/subscriptions"),
        "subscriptions of an endpoint",
    );
    let mut subscribers = all_pages("/api/v1/services/heroku/subscribers");
    let items = subscribers["items"].as_array_mut().unwrap();
    items.sort_by_key(|s| s["endpoint"].as_str().unwrap().to_owned());
    same(
        cli(&["subscriptions", "service", "heroku"]),
        subscribers,
        "subscribers of a service",
    );
    same(
        cli(&["job", "get", &job]),
        api.get(&format!("/api/v1/jobs/{job}")).expect(200),
        "job get",
    );
    let dead = all_pages("/api/v1/dead-letters");
    assert_eq!(dead["items"].as_array().unwrap().len(), 3, "{dead}");
    same(cli(&["dead", "list"]), dead, "dead list");
    // Counted at two Redis instants: all but the instant agree.
    let mut stats = [cli(&["stats"]), api.get("/api/v1/stats").expect(200)];
    for s in &mut stats {
        assert!(s["now_ms"].as_i64().unwrap() > 0, "{s}");
        s["now_ms"] = 0.into();
    }
    let [by_cli, by_api] = stats;
    same(by_cli, by_api, "stats");

    // Changes that write new jobs: the same document, but for the new jobs' ids and times.
    let masked = |mut doc: Value| {
        for job in doc["jobs"].as_array_mut().into_iter().flatten() {
            job["job_id"] = "…".into();
        }
        for field in ["job_id", "due_at_ms", "shard"] {
            if doc.get(field).is_some() {
                doc[field] = "…".into();
            }
        }
        doc
    };
    let by_cli = herald
        .run_stdin(&["publish", "-", "--json"], herald_core::event::EXAMPLE)
        .assert_success()
        .json();
    let by_api = api
        .admin(
            "POST",
            "/api/v1/events",
            Some(serde_json::from_str(herald_core::event::EXAMPLE).unwrap()),
        )
        .expect(202);
    assert!(!by_cli["jobs"].as_array().unwrap().is_empty(), "{by_cli}");
    same(masked(by_cli), masked(by_api), "publish");
    same(
        masked(cli(&["endpoint", "test", "dash-2"])),
        masked(
            api.admin("POST", "/api/v1/endpoints/dash-2/test", None)
                .expect(202),
        ),
        "endpoint test",
    );
    let (by_cli, by_api) = (
        cli(&["dead", "purge", "--endpoint", "gone"]),
        api.admin(
            "POST",
            "/api/v1/dead-letters/purge",
            Some(json!({"endpoint": "gone"})),
        )
        .expect(200),
    );
    // The second found nothing left to purge: the same document, with 0.
    assert_eq!(by_cli, json!({"purged": 3}));
    assert_eq!(by_api, json!({"purged": 0}));
}

#[test]
fn the_cli_filters_replays_and_sends_test_events_like_the_api() {
    let (redis, herald) = redis_and_herald("it-api-cli-twins");
    let api = ApiServer::start(&redis.url(), "it-api-cli-twins", 16);
    let (a, b, _, at_b) = dead_letters(&api);

    let listed = herald
        .ok(&["dead", "list", "--endpoint", "old-a", "--json"])
        .json();
    let got: BTreeSet<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, a.iter().map(String::as_str).collect());
    assert_eq!(listed["next_cursor"], Value::Null, "{listed}");
    let limited = herald
        .ok(&["dead", "list", "--limit", "3", "--json"])
        .json();
    assert_eq!(limited["items"].as_array().unwrap().len(), 3);
    assert!(limited["next_cursor"].is_string(), "{limited}");
    let text = herald.ok(&["dead", "list", "--reason", "old-b"]).stdout;
    assert_eq!(text.matches("endpoint:      old-b").count(), 4, "{text}");
    let bad = herald.run(&["dead", "list", "--since", "last week"]);
    assert_eq!(bad.status.code(), Some(2), "{bad}");
    assert!(bad.stderr.contains("since"), "{bad}");
    let none = herald.run(&["dead", "replay"]);
    assert_eq!(none.status.code(), Some(2), "{none}");
    assert!(none.stderr.contains("--all"), "{none}");
    let both = herald.run(&["dead", "purge", "--all", "--endpoint", "old-a"]);
    assert_eq!(both.status.code(), Some(2), "{both}");

    let since = at_b.to_string();
    let replayed = herald
        .ok(&[
            "dead",
            "replay",
            "--endpoint",
            "old-b",
            "--since",
            &since,
            "--json",
        ])
        .json();
    assert_eq!(replayed["replayed"], 4);
    for id in &b {
        assert_eq!(
            api.get(&format!("/api/v1/jobs/{id}")).expect(200)["state"],
            "due"
        );
    }
    let purged = herald
        .ok(&["dead", "purge", "--reason", "OLD-A", "--json"])
        .json();
    assert_eq!(purged["purged"], 6);

    let job = herald.ok(&["endpoint", "test", "keep", "--json"]).json();
    assert_eq!(job["status"], "queued");
    let stored = api
        .get(&format!("/api/v1/jobs/{}", job["job_id"].as_str().unwrap()))
        .expect(200);
    assert_eq!(stored["payload"], example_event());
    let unknown = herald.run(&["endpoint", "test", "nobody"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown}");

    herald.ok(&["subscribe", "keep", "heroku"]);
    let first = herald
        .run_stdin(
            &["publish", "-", "--idempotency-key", "incident-9", "--json"],
            herald_core::event::EXAMPLE,
        )
        .assert_success()
        .json();
    assert_eq!(first["enqueued"], 1);
    let again = herald
        .run_stdin(
            &["publish", "-", "--idempotency-key", "incident-9"],
            herald_core::event::EXAMPLE,
        )
        .assert_success();
    assert!(
        again.stdout.contains("0 jobs enqueued") && again.stdout.contains("1 already published"),
        "{again}"
    );
}

#[test]
fn a_rare_filter_gives_short_pages_with_a_cursor_until_its_matches() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-api-rare", 1);
    for e in ["rare", "many"] {
        api.admin(
            "PUT",
            &format!("/api/v1/endpoints/{e}"),
            Some(json!({"url": "https://hooks.example.com/"})),
        )
        .expect(201);
    }
    let rare = enqueue(&api, "rare", 1);
    api.admin("DELETE", "/api/v1/endpoints/rare", None)
        .expect(200);
    let (items, _) = api.all_pages("/api/v1/dead-letters?endpoint=rare");
    after_redis_time(&api, items[0]["dead_at_ms"].as_i64().unwrap());
    // Newer than the rare one: more than one page examines.
    enqueue(&api, "many", 3000);
    api.admin("DELETE", "/api/v1/endpoints/many", None)
        .expect(200);

    let first = api.get("/api/v1/dead-letters?endpoint=rare").expect(200);
    assert_eq!(first["items"], json!([]), "{first}");
    assert!(first["next_cursor"].is_string(), "{first}");
    let (found, pages) = api.all_pages("/api/v1/dead-letters?endpoint=rare");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], rare[0].as_str());
    assert!(pages >= 2, "{pages}");
    // The console follows the empty pages to the match.
    let console = api.login(&api.read);
    let page = console.get("/dead?endpoint=rare").text();
    assert!(page.contains(rare[0].as_str()), "{page}");
}
