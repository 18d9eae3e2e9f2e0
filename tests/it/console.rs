//! The operator console over real HTTP against a real Redis: logging in with a token into a
//! strict session cookie, form tokens and scopes on every form, every page with what it shows
//! and every button with what it changes; and a real browser (headless Chromium over
//! WebDriver) going through an operator's round: find an endpoint, disable and enable it, send
//! a test event that reaches a receiver through a worker, replay a dead letter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_api::SecureCookies;
use herald_core::EndpointId;
use herald_store::NewJob;
use serde_json::json;

use crate::support::api::{cookie_value, form_token, set_cookie, ApiServer};
use crate::support::browser::{chromium_or_skip, Browser};
use crate::support::process::poll_until;
use crate::support::receiver::{self, Receiver, Reply, Routes};
use crate::support::{redis_and_herald, RedisServer, SAFETY_NET};

fn id(text: &str) -> EndpointId {
    EndpointId::new(text).unwrap()
}

fn set_endpoint(api: &ApiServer, e: &str) {
    api.block_on(
        api.store()
            .set_endpoint(&id(e), "https://hooks.example.com/", None),
    )
    .unwrap();
}

#[test]
fn the_console_logs_in_with_a_token_into_a_strict_session_cookie() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-console-login", 2);

    let away = api.call("GET", "/", None, None, &[]);
    assert_eq!(
        (away.status, away.headers["location"].to_str().unwrap()),
        (303, "/login")
    );
    for path in ["/endpoints", "/endpoints/dash-1", "/dead", "/jobs?id=x"] {
        let answer = api.call("GET", path, None, None, &[]);
        assert_eq!(answer.status, 303, "{path}");
    }

    let form = api.call("GET", "/login", None, None, &[]);
    assert_eq!(form.status, 200);
    assert_eq!(form.content_type(), "text/html; charset=utf-8");
    assert!(form.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(form.headers["x-frame-options"], "DENY");
    assert!(!form.text().contains("<script"), "{}", form.text());
    let login_cookie = set_cookie(&form, "herald_login").unwrap().to_owned();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
    assert!(
        !login_cookie.contains("Secure"),
        "plain HTTP: {login_cookie}"
    );
    let csrf = form_token(&form.text());
    assert_eq!(cookie_value(&login_cookie), csrf);

    let post = |token: &str, cookie: Option<&str>, csrf: &str, headers: &[(&str, &str)]| {
        let mut req = api
            .request(reqwest::Method::POST, "/login")
            .form(&[("token", token), ("csrf", csrf)]);
        if let Some(c) = cookie {
            req = req.header("cookie", format!("herald_login={c}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        api.send("POST /login".into(), req)
    };
    let wrong = post("herald_wrong", Some(&csrf), &csrf, &[]);
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.text().contains("not one this server knows"),
        "{}",
        wrong.text()
    );
    assert!(set_cookie(&wrong, "herald_session").is_none());
    let unpaired = post(&api.admin, None, &csrf, &[]);
    assert_eq!(unpaired.status, 403);
    assert!(set_cookie(&unpaired, "herald_session").is_none());
    let mismatched = post(&api.admin, Some("another"), &csrf, &[]);
    assert_eq!(mismatched.status, 403);

    let ok = post(&api.admin, Some(&csrf), &csrf, &[]);
    assert_eq!(
        (ok.status, ok.headers["location"].to_str().unwrap()),
        (303, "/")
    );
    let session = set_cookie(&ok, "herald_session").unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "{session}");
    let id = cookie_value(&session);
    assert!(!id.contains(&api.admin[7..]) && id.len() >= 43, "{session}");
    // Behind a TLS-terminating proxy, cookies are Secure.
    let tls = post(
        &api.admin,
        Some(&csrf),
        &csrf,
        &[("x-forwarded-proto", "https")],
    );
    assert!(set_cookie(&tls, "herald_session")
        .unwrap()
        .contains("; Secure"));

    // Redis holds the session under the hash of its id, with the token's hashed form only.
    let mut conn = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert!(keys.iter().all(|k| !k.contains(&id)), "{keys:?}");
    let sessions: Vec<&String> = keys.iter().filter(|k| k.contains(":session:")).collect();
    assert_eq!(sessions.len(), 2, "{keys:?}");
    for key in sessions {
        let fields: Vec<String> = redis::cmd("HVALS").arg(key).query(&mut conn).unwrap();
        assert!(
            fields.iter().all(|f| !f.contains(&api.admin[7..])),
            "{fields:?}"
        );
        assert!(fields.contains(&api.hashed[0]), "{fields:?}");
        let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut conn).unwrap();
        assert!(ttl > 0 && ttl <= 43200, "{ttl}");
    }

    let console = api.login(&api.admin);
    let home = console.get("/");
    assert!(home.text().contains("Overview") && home.text().contains("admin token"));
    // Logging out ends the session on the server, not only in the browser.
    let out = console.post("/logout", &[]);
    assert_eq!(
        (out.status, out.headers["location"].to_str().unwrap()),
        (303, "/login")
    );
    assert!(set_cookie(&out, "herald_session")
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(console.get("/").status, 303);
}

/// Only a login form this server gave out logs in: a pair of cookie and form values chosen by
/// a third party (empty, or any other) is refused even with a valid token; and each wrong
/// token waits a second for its answer.
#[test]
fn a_login_needs_a_form_this_server_gave_out_and_wrong_tokens_wait() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-console-login-pair", 2);
    let post = |token: &str, pair: &str| {
        let req = api
            .request(reqwest::Method::POST, "/login")
            .header("cookie", format!("herald_login={pair}"))
            .form(&[("token", token), ("csrf", pair)]);
        api.send("POST /login".into(), req)
    };
    let form = api.call("GET", "/login", None, None, &[]);
    let issued = form_token(&form.text());
    let (nonce, _) = issued.split_once('.').expect("a signed form token");
    for chosen in ["", "mine", "x.y", nonce, &format!("{nonce}.AAAA")] {
        let refused = post(&api.admin, chosen);
        assert_eq!(refused.status, 403, "{chosen:?}: {}", refused.text());
        assert!(set_cookie(&refused, "herald_session").is_none());
    }
    let started = std::time::Instant::now();
    assert_eq!(post("herald_wrong", &issued).status, 401);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(post(&api.admin, &issued).status, 303);
}

/// Outside the API, a path or a method no route takes answers the console's error page, not a
/// JSON problem; the API's own stay JSON.
#[test]
fn unknown_pages_and_methods_answer_an_error_page() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-console-unknown", 2);
    for (method, path, status) in [
        ("GET", "/nowhere", 404),
        ("GET", "/endpoints/dash-1/disable/more", 404),
        ("GET", "/logout", 405),
    ] {
        let page = api.call(method, path, None, None, &[]);
        assert_eq!(page.status, status, "{method} {path}");
        assert_eq!(
            page.content_type(),
            "text/html; charset=utf-8",
            "{method} {path}"
        );
        assert!(
            page.text().contains("Back to the overview"),
            "{}",
            page.text()
        );
    }
    let problem = api.call("GET", "/api/v1/nowhere", None, None, &[]);
    assert_eq!(problem.status, 404);
    assert_eq!(problem.content_type(), "application/problem+json");
}

#[test]
fn secure_cookies_can_be_required_and_sessions_end_with_their_token() {
    let redis = RedisServer::start();
    let first = ApiServer::start(&redis.url(), "it-console-tokens", 2);
    let reader = first.login(&first.read);
    let admin = first.login(&first.admin);
    // The same deployment served with the read token removed, and Secure always.
    let admin_hashed = first.hashed[0].clone();
    let second = ApiServer::start_with(&redis.url(), "it-console-tokens", 2, |cfg| {
        cfg.tokens = herald_api::auth::Tokens::parse(&admin_hashed).unwrap();
        cfg.secure_cookies = SecureCookies::Always;
    });
    let get = |cookie: &str| {
        let req = second
            .request(reqwest::Method::GET, "/")
            .header("cookie", format!("herald_session={cookie}"));
        second.send("GET / on the second server".into(), req)
    };
    assert_eq!(get(&reader.cookie).status, 303, "the read token is gone");
    assert_eq!(get(&admin.cookie).status, 200);
    let form = second.call("GET", "/login", None, None, &[]);
    assert!(set_cookie(&form, "herald_login")
        .unwrap()
        .contains("; Secure"));
}

#[test]
fn forms_need_the_session_s_form_token_and_an_admin_token() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-console-csrf", 2);
    set_endpoint(&api, "dash-1");
    let enabled = || {
        api.get("/api/v1/endpoints/dash-1").expect(200)["enabled"]
            .as_bool()
            .unwrap()
    };

    let admin = api.login(&api.admin);
    for fields in [vec![], vec![("csrf", "forged")], vec![("csrf", "")]] {
        let answer = admin.post_raw("/endpoints/dash-1/disable", &fields);
        assert_eq!(answer.status, 403, "{fields:?}: {}", answer.text());
        assert!(answer.text().contains("expired"), "{}", answer.text());
    }
    // Another session's form token is no good either.
    let other = api.login(&api.admin);
    assert_ne!(other.csrf, admin.csrf);
    let answer = admin.post_raw("/endpoints/dash-1/disable", &[("csrf", &other.csrf)]);
    assert_eq!(answer.status, 403);
    assert_eq!(admin.post_raw("/logout", &[("csrf", "forged")]).status, 403);
    assert!(enabled(), "a refused form changed something");

    let reader = api.login(&api.read);
    let page = reader.get("/endpoints/dash-1").text();
    assert!(page.contains("read token"), "{page}");
    assert!(page.contains("the buttons need an admin token"), "{page}");
    assert!(
        page.contains("<button type=\"submit\" disabled>Disable</button>"),
        "{page}"
    );
    for (path, fields) in [
        ("/endpoints/dash-1/disable", vec![]),
        ("/endpoints/dash-1/test", vec![]),
        ("/endpoints/dash-1/rotate-secret", vec![("grace", "1h")]),
        ("/dead/replay", vec![]),
        ("/dead/purge", vec![("confirm", "yes")]),
        ("/dead/01JH3W0AB8C9D0E1F2G3H4J5K6/replay", vec![]),
    ] {
        let answer = reader.post(path, &fields);
        assert_eq!(answer.status, 403, "{path}: {}", answer.text());
        assert!(answer.text().contains("read scope"), "{}", answer.text());
    }
    assert!(enabled());
    assert_eq!(api.get("/api/v1/stats").expect(200)["jobs"]["due"], 0);
    // A read session may still log out.
    assert_eq!(reader.post("/logout", &[]).status, 303);
}

#[test]
fn the_console_shows_an_endpoint_and_its_buttons_do_what_the_api_does() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-console-endpoint", 2);
    for e in ["dash-1", "dash-2", "other"] {
        set_endpoint(&api, e);
    }
    api.block_on(api.store().subscribe(
        &id("dash-1"),
        "heroku",
        &herald_core::Subscription::new(herald_core::Level::Warn, ["Apps"]),
    ))
    .unwrap();
    api.block_on(
        api.store()
            .disable_endpoint(&id("other"), "<script>alert(1)</script>"),
    )
    .unwrap();
    let console = api.login(&api.admin);

    let home = console.get("/").text();
    assert!(
        home.contains("<a href=\"/endpoints/other\">other</a>"),
        "{home}"
    );
    assert!(
        home.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{home}"
    );
    assert!(!home.contains("<script>"), "{home}");

    let list = console.get("/endpoints?search=DASH").text();
    assert!(
        list.contains("/endpoints/dash-1") && list.contains("/endpoints/dash-2"),
        "{list}"
    );
    assert!(!list.contains("/endpoints/other"), "{list}");
    let disabled = console.get("/endpoints?status=disabled").text();
    assert!(disabled.contains("/endpoints/other") && !disabled.contains("/endpoints/dash-1"));

    let page = console.get("/endpoints/dash-1").text();
    assert!(page.contains("https://hooks.example.com/"), "{page}");
    assert!(
        page.contains("<td>heroku</td><td>warn</td><td>Apps</td>"),
        "{page}"
    );
    assert!(page.contains("No attempt yet."), "{page}");

    let after = console
        .submit(
            "/endpoints/dash-1/disable",
            &[("reason", "receiver migration")],
        )
        .text();
    assert!(
        after.contains("Endpoint dash-1 disabled; its jobs wait (parked)"),
        "{after}"
    );
    assert!(
        after.contains("<span class=\"badge bad\">disabled</span>"),
        "{after}"
    );
    assert!(after.contains("receiver migration"), "{after}");
    assert!(after.contains(">Enable</button>"), "{after}");
    // The notice is shown once.
    assert!(!console
        .get("/endpoints/dash-1")
        .text()
        .contains("its jobs wait"));
    let e = api.get("/api/v1/endpoints/dash-1").expect(200);
    assert_eq!(e["disabled"]["reason"], "receiver migration");

    let after = console.submit("/endpoints/dash-1/test", &[]).text();
    assert!(
        after.contains("it is parked until the endpoint is enabled"),
        "{after}"
    );
    let after = console.submit("/endpoints/dash-1/enable", &[]).text();
    assert!(
        after.contains("Endpoint dash-1 enabled; 1 queued jobs are served again."),
        "{after}"
    );
    assert!(
        after.contains("<span class=\"badge ok\">enabled</span>"),
        "{after}"
    );

    let after = console.submit("/endpoints/dash-1/test", &[]).text();
    let job = after
        .split("Test event sent as job ")
        .nth(1)
        .and_then(|rest| rest.get(..26))
        .unwrap_or_else(|| panic!("{after}"))
        .to_owned();
    let found = api.get(&format!("/api/v1/jobs/{job}")).expect(200);
    assert_eq!(
        found["payload"],
        serde_json::from_str::<serde_json::Value>(herald_core::event::EXAMPLE).unwrap()
    );
    let lookup = console.get(&format!("/jobs?id=msg_{job}")).text();
    assert!(
        lookup.contains(&job) && lookup.contains("Payload") && lookup.contains("heroku"),
        "{lookup}"
    );

    let after = console
        .submit("/endpoints/dash-1/rotate-secret", &[("grace", "2h")])
        .text();
    let secret = after
        .split("shown once: ")
        .nth(1)
        .and_then(|rest| rest.split(". ").next())
        .unwrap_or_else(|| panic!("{after}"))
        .to_owned();
    assert!(after.contains("keep signing for 2h"), "{after}");
    let stored = api
        .block_on(api.store().endpoint(&id("dash-1")))
        .unwrap()
        .unwrap();
    assert_eq!(stored.secrets[0].secret, secret);
    assert!(
        !console.get("/endpoints/dash-1").text().contains(&secret),
        "shown twice"
    );

    let after = console
        .submit("/endpoints/dash-1/rotate-secret", &[("grace", "soon")])
        .text();
    assert!(
        after.contains("Not done: grace &quot;soon&quot; is not a duration"),
        "{after}"
    );

    // Refused input is a 4xx page.
    let bad = console.get("/endpoints/a%20b");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("may only contain"), "{}", bad.text());
    let missing = console.get("/endpoints/nobody");
    assert_eq!(missing.status, 404);
    assert!(missing.text().contains("endpoint nobody not found"));
    // An error page keeps the navigation of the session.
    assert!(
        missing.text().contains("href=\"/dead\""),
        "{}",
        missing.text()
    );
    let gone = console.get("/jobs?id=01JH3W0AB8C9D0E1F2G3H4J5K6");
    assert_eq!(gone.status, 404);
    assert!(gone.text().contains("delivered jobs leave the store"));
    let answer = console.post("/endpoints/dash-1/explode", &[]);
    assert_eq!(answer.status, 303);
    assert!(console
        .get("/endpoints/dash-1")
        .text()
        .contains("Not done: no console action"));
}

#[test]
fn the_console_filters_replays_and_purges_dead_letters() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-console-dead", 2);
    for e in ["gone-a", "gone-b"] {
        set_endpoint(&api, e);
    }
    let jobs: Vec<NewJob> = (0..3)
        .map(|i| NewJob::new(id("gone-a"), json!({ "n": i }).to_string()))
        .chain((0..2).map(|i| NewJob::new(id("gone-b"), json!({ "n": i }).to_string())))
        .collect();
    let ids: Vec<String> = api
        .block_on(api.store().enqueue_batch(&jobs))
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().job_id)
        .collect();
    for e in ["gone-a", "gone-b"] {
        api.block_on(api.store().delete_endpoint(&id(e))).unwrap();
    }
    let console = api.login(&api.admin);

    let all = console.get("/dead").text();
    for job in &ids {
        assert!(all.contains(job.as_str()), "{job} missing:\n{all}");
    }
    assert!(all.contains("endpoint deleted: gone-a"), "{all}");
    let home = console.get("/").text();
    assert!(home.contains(ids[0].as_str()), "recent failures: {home}");

    let only_b = console.get("/dead?endpoint=gone-b").text();
    assert!(
        only_b.contains(ids[3].as_str()) && !only_b.contains(ids[0].as_str()),
        "{only_b}"
    );
    assert!(only_b.contains("Replay all matching"), "{only_b}");
    let since = console.get("/dead?since=2000-01-01T00:00").text();
    assert!(since.contains(ids[0].as_str()), "{since}");
    let future = console.get("/dead?since=2999-01-01T00:00:00").text();
    assert!(future.contains("No dead letter on this page."), "{future}");
    let bad = console.get("/dead?since=yesterday");
    assert_eq!(bad.status, 400);
    assert!(
        bad.text()
            .contains("<p class=\"error\">since &quot;yesterday&quot;"),
        "{}",
        bad.text()
    );

    let back = "/dead?endpoint=gone-a";
    let after = console
        .submit(&format!("/dead/{}/replay", ids[0]), &[("back", back)])
        .text();
    assert!(
        after.contains(&format!("Job {} replayed", ids[0])),
        "{after}"
    );
    assert!(
        after.contains("value=\"gone-a\""),
        "back on the filtered page: {after}"
    );
    assert_eq!(
        api.get(&format!("/api/v1/jobs/{}", ids[0])).expect(200)["state"],
        "due"
    );
    let after = console
        .submit(
            &format!("/dead/{}/replay", ids[0]),
            &[("back", "https://evil.example/")],
        )
        .text();
    assert!(
        after.contains("Not done: job") && after.contains("not in the dead-letter store"),
        "{after}"
    );

    // A bulk action first asks, naming how many jobs it takes, and does nothing yet.
    let asked = console.post("/dead/purge", &[("endpoint", "gone-a")]);
    assert_eq!(asked.status, 200);
    let after = asked.text();
    assert!(after.contains("Purge 2 dead jobs?"), "{after}");
    assert!(after.contains("name=\"confirm\" value=\"2\""), "{after}");
    let after = console
        .submit("/dead/purge", &[("endpoint", "gone-a"), ("confirm", "yes")])
        .text();
    assert!(after.contains("Purged 2 jobs."), "{after}");
    let after = console
        .submit(&format!("/dead/{}/purge", ids[3]), &[])
        .text();
    assert!(
        after.contains(&format!("Job {} purged.", ids[3])),
        "{after}"
    );
    let asked = console.post("/dead/replay", &[]).text();
    assert!(asked.contains("Replay 1 dead job?"), "{asked}");
    assert!(
        asked.contains("Every job in the dead-letter store"),
        "{asked}"
    );
    let after = console.submit("/dead/replay", &[("confirm", "1")]).text();
    assert!(
        after.contains("Replayed 1 jobs"),
        "everything left: {after}"
    );
    assert_eq!(api.get("/api/v1/stats").expect(200)["jobs"]["dead"], 0);
}

#[test]
fn the_overview_counts_jobs_by_state() {
    let redis = RedisServer::start();
    let api = ApiServer::start(&redis.url(), "it-console-overview", 2);
    set_endpoint(&api, "dash-1");
    let jobs: Vec<NewJob> = (0..3)
        .map(|i| NewJob::new(id("dash-1"), json!({ "n": i }).to_string()))
        .collect();
    api.block_on(api.store().enqueue_batch(&jobs)).unwrap();
    let console = api.login(&api.read);
    let home = console.get("/").text();
    assert!(
        home.contains("<div class=\"value\">3</div><div class=\"label\">due</div>"),
        "{home}"
    );
    assert!(home.contains("None: every endpoint is enabled."), "{home}");
    assert!(home.contains("read token"), "{home}");
}

/// Loads `url` again and again until the page's main text holds `expected`; returns it.
async fn until_page_shows(browser: &Browser, url: &str, expected: &str) -> String {
    let deadline = std::time::Instant::now() + SAFETY_NET;
    loop {
        browser.goto(url).await;
        let text = browser.text("main").await;
        if text.contains(expected) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} never showed {expected:?}; last:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn an_operator_s_round_in_a_real_browser() {
    let Some((driver, chromium)) = chromium_or_skip() else {
        return;
    };
    let (redis, herald) = redis_and_herald("it-console-browser");
    let api = ApiServer::start_with(&redis.url(), "it-console-browser", 16, |cfg| {
        cfg.allow_targets = herald_core::guard::AllowList::parse("127.0.0.0/8").unwrap();
    });
    // /flaky answers 500 until the test fixes it; everything else 200.
    let fixed = Arc::new(AtomicBool::new(false));
    let rx = Receiver::start({
        let fixed = Arc::clone(&fixed);
        Routes::new()
            .path("/flaky", move |_, _: &receiver::Request| {
                Reply::Status(if fixed.load(Ordering::SeqCst) {
                    200
                } else {
                    500
                })
            })
            .otherwise(|_, _| Reply::Status(200))
    });
    api.block_on(async {
        let store = api.store();
        for (e, path) in [
            ("dash-1", "/ok"),
            ("dash-2", "/ok"),
            ("flaky", "/flaky"),
            ("shop-7", "/ok"),
        ] {
            store
                .set_endpoint(&id(e), &format!("{}{path}", rx.url()), None)
                .await
                .unwrap();
        }
        store
            .disable_endpoint(&id("shop-7"), "receiver migration")
            .await
            .unwrap();
        store
            .enqueue(&NewJob::new(id("flaky"), r#"{"order":7}"#))
            .await
            .unwrap()
    });
    let _worker = herald.spawn_worker(&[]);
    // Four attempts (the test schedule has 3 retries), all refused: a dead letter.
    poll_until(
        "the flaky job to die",
        SAFETY_NET,
        Duration::from_millis(20),
        || {
            let dead = api.get("/api/v1/dead-letters?endpoint=flaky").expect(200);
            match dead["items"].as_array().unwrap().first() {
                Some(d) => Ok(d["id"].as_str().unwrap().to_owned()),
                None => Err(dead.to_string()),
            }
        },
    );
    let dead_job = api.get("/api/v1/dead-letters?endpoint=flaky").expect(200)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let flaky_requests = rx.requests().iter().filter(|r| r.path == "/flaky").count();
    assert_eq!(flaky_requests, 4);

    let base = api.url();
    api.block_on(async {
        let browser = Browser::start(&driver, &chromium).await;

        // Log in.
        browser.goto(&format!("{base}/")).await;
        assert!(browser.url().await.ends_with("/login"));
        browser.fill("input#token", &api.admin).await;
        browser.click("section.login button[type=submit]").await;
        assert_eq!(browser.url().await, format!("{base}/"));
        let home = browser.text("main").await;
        assert!(
            home.contains("Overview") && home.contains("shop-7"),
            "{home}"
        );
        assert!(home.contains(&dead_job), "recent failures: {home}");
        browser.screenshot("overview").await;

        // Find the endpoint.
        browser.click_link("Endpoints").await;
        browser
            .fill("form.filters input[name=search]", "dash-1")
            .await;
        browser.click("form.filters button[type=submit]").await;
        let list = browser.text("main table").await;
        assert!(
            list.contains("dash-1") && !list.contains("dash-2"),
            "{list}"
        );
        browser.click_link("dash-1").await;
        assert_eq!(browser.url().await, format!("{base}/endpoints/dash-1"));
        assert_eq!(browser.text("h1 .badge").await, "enabled");

        // Disable it, then enable it again.
        browser
            .fill("input[name=reason]", "maintenance window")
            .await;
        browser
            .click("form[action='/endpoints/dash-1/disable'] button")
            .await;
        let notice = browser.text("p.notice").await;
        assert!(notice.contains("Endpoint dash-1 disabled"), "{notice}");
        assert_eq!(browser.text("h1 .badge").await, "disabled");
        assert!(browser.text("p.error").await.contains("maintenance window"));
        browser
            .click("form[action='/endpoints/dash-1/enable'] button")
            .await;
        assert!(browser
            .text("p.notice")
            .await
            .contains("Endpoint dash-1 enabled"));
        assert_eq!(browser.text("h1 .badge").await, "enabled");

        // Send a test event: it reaches the receiver through the worker.
        browser
            .click("form[action='/endpoints/dash-1/test'] button")
            .await;
        let notice = browser.text("p.notice").await;
        let job = notice
            .strip_prefix("Test event sent as job ")
            .and_then(|rest| rest.strip_suffix('.'))
            .unwrap_or_else(|| panic!("{notice}"))
            .to_owned();
        let webhook_id = format!("msg_{job}");
        let got = rx.wait_until("the test event", SAFETY_NET, |r| {
            r.iter()
                .any(|r| r.header("webhook-id") == Some(webhook_id.as_str()))
        });
        let delivery = got
            .iter()
            .find(|r| r.header("webhook-id") == Some(webhook_id.as_str()))
            .unwrap();
        assert_eq!(delivery.path, "/ok");
        assert_eq!(delivery.json()["slug"], "heroku");
        let page =
            until_page_shows(&browser, &format!("{base}/endpoints/dash-1"), "delivered").await;
        assert!(page.contains(&job), "{page}");
        browser.screenshot("endpoint").await;

        // Replay the dead letter once its receiver is fixed.
        browser.click_link("Dead letters").await;
        browser
            .fill("form.filters input[name=endpoint]", "flaky")
            .await;
        browser.click("form.filters button[type=submit]").await;
        let table = browser.text("main table").await;
        assert!(
            table.contains(&dead_job) && table.contains("retries exhausted"),
            "{table}"
        );
        browser.screenshot("dead-letters").await;
        fixed.store(true, Ordering::SeqCst);
        browser
            .click(&format!("form[action='/dead/{dead_job}/replay'] button"))
            .await;
        let notice = browser.text("p.notice").await;
        assert!(
            notice.contains(&format!("Job {dead_job} replayed")),
            "{notice}"
        );
        let replayed = rx.wait_until("the replayed delivery", SAFETY_NET, |r| {
            r.iter().filter(|r| r.path == "/flaky").count() > flaky_requests
        });
        let last = replayed.iter().rfind(|r| r.path == "/flaky").unwrap();
        assert_eq!(last.webhook_id(), format!("msg_{dead_job}"));
        assert_eq!(last.json(), serde_json::json!({"order": 7}));
        let table = browser.text("main table").await;
        assert!(table.contains("No dead letter on this page."), "{table}");

        browser.close().await;
    });
}

#[test]
fn herald_dev_serves_the_console_with_a_token_it_prints() {
    let (redis, herald) = redis_and_herald("it-console-dev");
    let mut cmd = std::process::Command::new(crate::support::herald::HERALD_BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HERALD_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("HERALD_REDIS_URL", redis.url())
        .env("HERALD_NAMESPACE", herald.namespace())
        .args([
            "dev",
            "--api-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ]);
    let dev = crate::support::process::Proc::spawn("herald dev", cmd, None);
    let line = dev
        .wait_for_line(SAFETY_NET, |l| l.contains("console at http://"))
        .unwrap_or_else(|| panic!("no console line:\n{}", dev.output()));
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let token = line
        .rsplit(' ')
        .next()
        .filter(|t| t.starts_with("herald_"))
        .unwrap_or_else(|| panic!("no token in {line:?}"))
        .to_owned();
    let (status, body) = crate::support::api::get_with_token(&addr, "/api/v1/stats", &token);
    assert_eq!(status, 200, "{body}");
    let (status, _) = crate::support::api::get_with_token(&addr, "/api/v1/stats", "herald_other");
    assert_eq!(status, 401);
    let (status, page) = crate::support::http_get(&addr, "/login");
    assert_eq!(status, 200);
    assert!(page.contains("Log in"), "{page}");
    // The demo's dashboard shows up in the console's API.
    poll_until(
        "the demo dashboard",
        SAFETY_NET,
        Duration::from_millis(50),
        || {
            let (status, body) = crate::support::api::get_with_token(
                &addr,
                "/api/v1/endpoints/demo-dashboard",
                &token,
            );
            if status == 200 {
                Ok(())
            } else {
                Err(body)
            }
        },
    );
    dev.signal(nix::sys::signal::Signal::SIGINT);
    let status = dev
        .wait_exit(SAFETY_NET)
        .expect("herald dev stops on Ctrl-C");
    assert!(status.success(), "{}", dev.output());
}

#[test]
fn herald_serve_runs_in_the_compose_fleet_and_on_kubernetes() {
    use crate::observability::yaml_documents;
    let default_port: u16 = herald_api_default_port();

    let compose = &yaml_documents("docker-compose.yml")[0];
    let serve = &compose["services"]["serve"];
    assert_eq!(serve["command"], json!(["serve"]));
    assert_eq!(serve["image"], compose["services"]["worker"]["image"]);
    assert_eq!(
        serve["environment"]["HERALD_API_ADDR"],
        format!("0.0.0.0:{default_port}")
    );
    assert!(serve["environment"]["HERALD_API_TOKENS"].is_string());
    assert_eq!(
        serve["ports"],
        json!([format!("127.0.0.1:{default_port}:{default_port}")])
    );

    let docs = yaml_documents("deploy/k8s/serve.yaml");
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .expect("Service");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], json!(["serve"]));
    let env = container["env"].as_array().expect("env");
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(
        var("HERALD_API_ADDR")["value"],
        format!("0.0.0.0:{default_port}")
    );
    assert_eq!(
        var("HERALD_API_TOKENS")["valueFrom"]["secretKeyRef"]["name"],
        "herald-api"
    );
    assert_eq!(
        var("HERALD_REDIS_URL")["valueFrom"]["secretKeyRef"]["name"],
        "herald-redis"
    );
    // The same namespace and shard count as the workers.
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"],
        "herald-worker"
    );
    assert_eq!(container["ports"][0]["containerPort"], json!(default_port));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(
            container[probe]["httpGet"]["port"],
            container["ports"][0]["name"]
        );
    }
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(
        &deployment["spec"]["template"]["metadata"]["labels"],
        selector
    );
    assert_eq!(&service["spec"]["selector"], selector);
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"],
        container["ports"][0]["name"]
    );
}

/// The port `herald serve` listens on by default (`HERALD_API_ADDR`), as its `--help` says.
fn herald_api_default_port() -> u16 {
    let herald = crate::support::Herald::new("redis://127.0.0.1:1", "it-console-port");
    let help = herald.ok(&["serve", "--help"]).stdout;
    help.split("[default: 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no default address in `herald serve --help`:\n{help}"))
}
