//! What operators see: exact counts on `/metrics` after known deliveries, `/readyz` following
//! Redis, queue depth sampled by one worker at a time, an endpoint held back at its in-flight
//! limit, the start-up warning about a Redis that would lose jobs, one log line per failed
//! attempt, and the files in `deploy/` (dashboard, alert rules, Kubernetes manifests, compose
//! file) checked against what the worker emits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_worker::telemetry::{labelled_counters, Kind, CATALOG};
use serde_json::{json, Value};
use yaml_rust2::{Yaml, YamlLoader};

use crate::support::herald::{Herald, Worker};
use crate::support::process::poll_until;
use crate::support::receiver::{self, Receiver, Reply};
use crate::support::{http_get, redis_and_herald, SAFETY_NET};

/// How often a test looks again at a worker's HTTP endpoints while waiting for a change.
const PROBE_EVERY: Duration = Duration::from_millis(20);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ----- reading /metrics -----

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_exposition(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("metrics line without a value: {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("metrics line {line:?}: bad value: {e}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("metrics line {line:?}: unclosed labels"));
                    let labels = inner
                        .split(',')
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (k, v) = pair
                                .split_once('=')
                                .unwrap_or_else(|| panic!("metrics line {line:?}: bad label"));
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            };
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// GET /metrics on `worker`, parsed.
fn scrape(worker: &Worker) -> Vec<Sample> {
    let addr = worker
        .metrics_addr()
        .expect("the readiness line names metrics=ADDR");
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "GET http://{addr}/metrics:\n{body}");
    parse_exposition(&body)
}

/// The sum of the samples of `name` whose labels include `labels`; `None` when there is none.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// Scrapes `worker` until `done` holds for its samples, and returns them.
fn wait_for_scrape(worker: &Worker, what: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    poll_until(what, SAFETY_NET, PROBE_EVERY, || {
        let samples = scrape(worker);
        if done(&samples) {
            Ok(samples)
        } else {
            Err(format!("{samples:?}"))
        }
    })
}

/// GET `path` on `worker` until it answers `status`.
fn wait_for_status(worker: &Worker, path: &str, status: u16) {
    let addr = worker
        .metrics_addr()
        .expect("the readiness line names metrics=ADDR");
    poll_until(
        &format!("GET {path} to answer {status}"),
        SAFETY_NET,
        PROBE_EVERY,
        || match http_get(addr, path) {
            (s, _) if s == status => Ok(()),
            (s, body) => Err(format!("{s} {body}")),
        },
    );
}

// ----- a scenario with known outcomes -----

/// Three jobs delivered at once, two failing with 500 on both of their attempts (one retry),
/// so discarded; returns once Redis holds nothing but the two dead jobs and the worker has
/// counted both discards.
struct KnownOutcomes {
    _redis: crate::support::RedisServer,
    _rx: Receiver,
    worker: Worker,
}

fn known_outcomes(namespace: &str) -> KnownOutcomes {
    let (redis, herald) = redis_and_herald(namespace);
    let rx = Receiver::start(|_, r| {
        Reply::Status(if r.path.starts_with("/bad/") {
            500
        } else {
            200
        })
    });
    herald.set_endpoint("good", &format!("{}/good/hook", rx.url()));
    herald.set_endpoint("bad", &format!("{}/bad/hook", rx.url()));
    for n in 0..3 {
        herald.enqueue("good", &json!({"n": n}));
    }
    for n in 0..2 {
        herald.enqueue("bad", &json!({"n": n}));
    }

    let worker = herald.spawn_worker(&[("HERALD_RETRY_SCHEDULE", "50ms")]);
    rx.wait_for(3 + 2 * 2, SAFETY_NET);
    herald.wait_for_stats("two dead jobs and nothing else", SAFETY_NET, |s| {
        s.dead == 2 && s.queued() == 0 && s.in_flight == 0 && s.parked == 0
    });
    // The settler counts a discard just after Redis applied it.
    wait_for_scrape(&worker, "both discards counted", |s| {
        value(s, "herald_jobs_discarded_total", &[]) == Some(2.0)
    });
    KnownOutcomes {
        _redis: redis,
        _rx: rx,
        worker,
    }
}

#[test]
fn metrics_count_exactly_the_deliveries_that_happened() {
    let run = known_outcomes("it-obs-counts");
    let s = scrape(&run.worker);
    let v = |name: &str, labels: &[(&str, &str)]| value(&s, name, labels);

    assert_eq!(
        v("herald_deliveries_total", &[("outcome", "delivered")]),
        Some(3.0)
    );
    assert_eq!(
        v("herald_deliveries_total", &[("outcome", "http_status")]),
        Some(4.0)
    );
    assert_eq!(
        v("herald_deliveries_total", &[]),
        Some(7.0),
        "no other outcome"
    );
    assert_eq!(v("herald_jobs_claimed_total", &[]), Some(7.0));
    assert_eq!(v("herald_retries_scheduled_total", &[]), Some(2.0));
    assert_eq!(
        v(
            "herald_jobs_discarded_total",
            &[("reason", "retries_exhausted")]
        ),
        Some(2.0)
    );
    assert_eq!(v("herald_delivery_duration_seconds_count", &[]), Some(7.0));
    assert_eq!(
        v("herald_first_attempt_lag_seconds_count", &[]),
        Some(5.0),
        "one lag sample per job, on its first attempt only"
    );
    assert_eq!(v("herald_in_flight_deliveries", &[]), Some(0.0));
    for quiet in [
        "herald_endpoints_disabled_total",
        "herald_leases_expired_total",
        "herald_jobs_released_total",
    ] {
        assert_eq!(v(quiet, &[]), Some(0.0), "{quiet} is shown, at zero");
    }
    // Every value of every labelled counter is shown from the start, at zero unless counted
    // above, so that rate() and increase() see a first event.
    let labelled = labelled_counters();
    for def in CATALOG
        .iter()
        .filter(|d| d.kind == Kind::Counter && !d.labels.is_empty())
    {
        assert!(
            labelled
                .iter()
                .any(|(name, label, _)| *name == def.name && def.labels == [*label]),
            "{} is not pre-registered with every value of its label",
            def.name
        );
    }
    for (name, label, values) in &labelled {
        for value in values {
            assert!(
                v(name, &[(label, value)]).is_some(),
                "{name}{{{label}=\"{value}\"}} is not shown before its first event"
            );
        }
    }
    // No endpoint came near its limits (at most three jobs each, 32 in flight allowed), no
    // lease expired, Redis never failed, and no label value but the documented ones exists.
    for (name, expected) in [
        ("herald_jobs_discarded_total", 2.0),
        ("herald_held_back_total", 0.0),
        ("herald_stale_settlements_total", 0.0),
        ("herald_redis_errors_total", 0.0),
    ] {
        assert_eq!(
            v(name, &[]),
            Some(expected),
            "{name}, summed over its label"
        );
    }
    let shown = |name: &str| s.iter().filter(|x| x.name == name).count();
    for (name, _, values) in &labelled {
        assert_eq!(
            shown(name),
            values.len(),
            "{name}: one series per documented value"
        );
    }
    assert_eq!(
        v(
            "herald_worker_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(v("herald_worker_ready", &[]), Some(1.0));
    run.worker.stop(SAFETY_NET);
}

// ----- readiness -----

#[test]
fn readyz_follows_redis_away_and_back() {
    let (mut redis, herald) = redis_and_herald("it-obs-readyz");
    let worker = herald.spawn_worker(&[]);
    wait_for_status(&worker, "/readyz", 200);

    redis.kill();
    wait_for_status(&worker, "/readyz", 503);
    let addr = worker.metrics_addr().expect("metrics address");
    assert_eq!(
        http_get(addr, "/healthz").0,
        200,
        "a Redis outage is no reason to restart the worker"
    );
    let during = scrape(&worker);
    assert_eq!(value(&during, "herald_worker_ready", &[]), Some(0.0));
    assert!(
        value(&during, "herald_redis_errors_total", &[]).unwrap_or(0.0) >= 1.0,
        "the failed Redis commands are counted"
    );

    redis.restart();
    wait_for_status(&worker, "/readyz", 200);
    assert_eq!(
        value(&scrape(&worker), "herald_worker_ready", &[]),
        Some(1.0)
    );
    worker.stop(SAFETY_NET);
}

// ----- the queue-depth sampler -----

/// Two jobs for endpoint `later`, due in an hour: what the sampler counts as scheduled. The
/// receiver they would go to lives as long as the returned value.
fn two_jobs_an_hour_ahead(herald: &Herald) -> Receiver {
    let rx = Receiver::start(|_, _| Reply::Status(200));
    herald.set_endpoint("later", &format!("{}/hook", rx.url()));
    for n in 0..2 {
        let out = herald.run_stdin(
            &["enqueue", "later", "-", "--delay", "1h"],
            json!({"n": n}).to_string(),
        );
        out.assert_success();
    }
    rx
}

/// A worker that serves no `/metrics` never takes the sampler lock: if it did, the fleet's
/// queue depth would be sampled where nobody can read it, and shown by no worker.
#[test]
fn a_worker_without_a_metrics_server_leaves_sampling_to_one_with_it() {
    let (_redis, herald) = redis_and_herald("it-obs-sampler-blind");
    let _rx = two_jobs_an_hour_ahead(&herald);

    // First, alone: it would take the lock now if it tried.
    let blind = herald.spawn_worker(&[("HERALD_METRICS_ADDR", "")]);
    let role = blind.wait_for_line(SAFETY_NET, |l| l.contains("queue depth"));
    assert!(role.contains("no metrics server"), "{role}");

    let seeing = herald.spawn_worker(&[]);
    let role = seeing.wait_for_line(SAFETY_NET, |l| l.contains("samples queue depth"));
    assert!(role.contains("this worker samples"), "{role}");
    let s = scrape(&seeing);
    assert_eq!(
        value(&s, "herald_queue_jobs", &[("state", "scheduled")]),
        Some(2.0)
    );
    seeing.stop(SAFETY_NET);
    blind.stop(SAFETY_NET);
}

#[test]
fn one_worker_at_a_time_samples_queue_depth() {
    let (_redis, herald) = redis_and_herald("it-obs-sampler");
    let _rx = two_jobs_an_hour_ahead(&herald);

    let workers = [herald.spawn_worker(&[]), herald.spawn_worker(&[])];
    let roles: Vec<String> = workers
        .iter()
        .map(|w| w.wait_for_line(SAFETY_NET, |l| l.contains("samples queue depth")))
        .collect();
    let leaders: Vec<&Worker> = workers
        .iter()
        .zip(&roles)
        .filter(|(_, line)| line.contains("this worker samples"))
        .map(|(w, _)| w)
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one sampler: {roles:?}");
    let leader = leaders[0];
    let follower = workers
        .iter()
        .find(|w| !std::ptr::eq(*w, leader))
        .expect("two workers");

    let s = scrape(leader);
    let jobs = |state: &str| value(&s, "herald_queue_jobs", &[("state", state)]);
    assert_eq!(jobs("scheduled"), Some(2.0));
    assert_eq!(jobs("due"), Some(0.0));
    assert_eq!(jobs("in_flight"), Some(0.0));
    assert_eq!(jobs("parked"), Some(0.0));
    assert_eq!(jobs("dead"), Some(0.0));
    assert_eq!(value(&s, "herald_disabled_endpoints", &[]), Some(0.0));
    assert_eq!(value(&s, "herald_endpoints_held_back", &[]), Some(0.0));
    // Both jobs are an hour away: none is due.
    assert_eq!(
        value(&s, "herald_oldest_due_job_age_seconds", &[]),
        Some(0.0)
    );
    assert!(
        value(&s, "herald_redis_memory_used_bytes", &[]).is_some_and(|b| b > 0.0),
        "Redis's memory use is sampled: {s:?}"
    );
    assert_eq!(
        value(&s, "herald_redis_memory_max_bytes", &[]),
        Some(0.0),
        "the test Redis has no maxmemory"
    );

    let f = scrape(follower);
    assert_eq!(value(&f, "herald_queue_jobs", &[]), None);
    assert_eq!(value(&f, "herald_disabled_endpoints", &[]), None);
    assert_eq!(value(&f, "herald_endpoints_held_back", &[]), None);
    assert_eq!(value(&f, "herald_oldest_due_job_age_seconds", &[]), None);
    assert_eq!(value(&f, "herald_redis_memory_used_bytes", &[]), None);

    // A draining sampler hands the lock over: the other worker takes it at its next try
    // (within about 10 s), not only when the lock runs out.
    leader.stop(SAFETY_NET);
    follower.wait_for_line(SAFETY_NET, |l| l.contains("this worker samples"));
    let f = scrape(follower);
    assert_eq!(
        value(&f, "herald_queue_jobs", &[("state", "scheduled")]),
        Some(2.0)
    );
    follower.stop(SAFETY_NET);
}

// ----- flow control -----

#[test]
fn an_endpoint_at_its_in_flight_limit_is_counted_and_sampled_as_held_back() {
    let (_redis, herald) = redis_and_herald("it-obs-held-back");
    // The receiver never answers, so the endpoint's one slot stays taken for the whole test.
    let rx = Receiver::start(receiver::hang_forever());
    let url = format!("{}/hook", rx.url());
    herald.ok(&[
        "endpoint",
        "set",
        "narrow",
        "--url",
        &url,
        "--max-in-flight",
        "1",
    ]);
    for n in 0..4 {
        herald.enqueue("narrow", &json!({"n": n}));
    }

    let worker =
        herald.spawn_worker(&[("HERALD_REQUEST_TIMEOUT", "60s"), ("HERALD_LEASE", "120s")]);
    rx.wait_for(1, SAFETY_NET);
    // The claim counts the hold before it starts the delivery; the gauge comes with the
    // sampler's next sample (within about 10 s).
    let s = wait_for_scrape(&worker, "the held-back endpoint sampled", |s| {
        value(s, "herald_endpoints_held_back", &[]) == Some(1.0)
    });
    let held = |cause: &str| value(&s, "herald_held_back_total", &[("cause", cause)]);
    assert!(
        held("in_flight_limit").is_some_and(|n| n >= 1.0),
        "the claim that took the one slot held the endpoint back: {:?}",
        held("in_flight_limit")
    );
    for cause in ["adaptive_limit", "rate", "pause"] {
        assert_eq!(held(cause), Some(0.0), "{cause}");
    }
    assert_eq!(value(&s, "herald_in_flight_deliveries", &[]), Some(1.0));
    assert_eq!(
        value(&s, "herald_queue_jobs", &[("state", "due")]),
        Some(3.0),
        "the other jobs wait, due"
    );
    assert!(
        value(&s, "herald_oldest_due_job_age_seconds", &[]).is_some_and(|age| age > 0.0),
        "the waiting jobs have been due since they were enqueued: {s:?}"
    );
    assert_eq!(rx.count(), 1, "one delivery at a time");
    // Dropping the worker kills it; its lease dies with this test's Redis.
}

// ----- start-up warnings -----

const EVICTION_WARNING: &str = "maxmemory-policy is allkeys-lru";
const PERSISTENCE_WARNING: &str = "Redis has no persistence";

#[test]
fn workers_warn_when_redis_would_lose_jobs_but_still_run() {
    // The test Redis runs with --save "" --appendonly no: no persistence.
    let (redis, herald) = redis_and_herald("it-obs-warn");
    let mut conn = redis.connection();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query(&mut conn)
        .expect("CONFIG SET maxmemory-policy");

    let worker = herald.spawn_worker(&[]);
    let eviction = worker.wait_for_line(SAFETY_NET, |l| l.contains(EVICTION_WARNING));
    let persistence = worker.wait_for_line(SAFETY_NET, |l| l.contains(PERSISTENCE_WARNING));
    for line in [&eviction, &persistence] {
        assert!(line.contains("WARN"), "not a warning: {line}");
    }
    assert!(worker.is_running(), "a warning, not a refusal");
    wait_for_status(&worker, "/readyz", 200);
    worker.stop(SAFETY_NET);

    // Fixed: AOF on and noeviction. The sampler logs its role right after the check, so by
    // then any warning would have been printed.
    for (key, value) in [("maxmemory-policy", "noeviction"), ("appendonly", "yes")] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(key)
            .arg(value)
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("CONFIG SET {key} {value}: {e}"));
    }
    let worker = herald.spawn_worker(&[]);
    worker.wait_for_line(SAFETY_NET, |l| l.contains("samples queue depth"));
    let stderr = worker.stderr();
    assert!(
        !stderr.contains(EVICTION_WARNING) && !stderr.contains(PERSISTENCE_WARNING),
        "warned about a safe Redis:\n{stderr}"
    );
    worker.stop(SAFETY_NET);
}

// ----- logs -----

/// A field of a JSON log line, at the top level or in the span it was logged in.
fn log_field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line.get(name)
        .or_else(|| line.get("span").and_then(|s| s.get(name)))
        .or_else(|| {
            line.get("spans")?
                .as_array()?
                .iter()
                .find_map(|s| s.get(name))
        })
}

#[test]
fn each_failed_attempt_logs_one_json_line_with_its_facts() {
    let (_redis, herald) = redis_and_herald("it-obs-logs");
    let rx = Receiver::start(|_, _| Reply::Status(500));
    herald.set_endpoint("dash-9", &format!("{}/hook", rx.url()));
    let job = herald.enqueue("dash-9", &json!({"n": 1}));

    let worker = herald.spawn_worker(&[
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_RETRY_SCHEDULE", "50ms"),
    ]);
    rx.wait_for(2, SAFETY_NET);
    herald.wait_for_stats("the job dead", SAFETY_NET, |s| s.dead == 1);
    worker.stop(SAFETY_NET);

    let stderr = worker.stderr();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let failures: Vec<&Value> = lines
        .iter()
        .filter(|l| log_field(l, "outcome").is_some())
        .collect();
    assert_eq!(failures.len(), 2, "one line per failed attempt:\n{stderr}");
    for line in failures {
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(log_field(line, "job_id"), Some(&json!(job)), "{line}");
        assert_eq!(
            log_field(line, "endpoint_id"),
            Some(&json!("dash-9")),
            "{line}"
        );
        assert_eq!(
            log_field(line, "outcome"),
            Some(&json!("http_status")),
            "{line}"
        );
        assert_eq!(log_field(line, "status"), Some(&json!(500)), "{line}");
        assert!(
            log_field(line, "latency_ms").is_some_and(Value::is_u64),
            "no latency: {line}"
        );
    }
}

// ----- deploy/: dashboard, alerts, manifests -----

fn yaml_to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(map) => {
            let mut object: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => panic!("unsupported YAML key {other:?}"),
                    };
                    (key, yaml_to_json(v))
                })
                .collect();
            // A merge key (`<<: *anchor`) lends the anchored mapping's entries to this one,
            // under its own, as Docker Compose reads it.
            if let Some(Value::Object(merged)) = object.remove("<<") {
                for (k, v) in merged {
                    object.entry(k).or_insert(v);
                }
            }
            Value::Object(object)
        }
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// Every document of a YAML file, as JSON values.
pub(crate) fn yaml_documents(relative: &str) -> Vec<Value> {
    YamlLoader::load_from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"))
        .iter()
        .map(yaml_to_json)
        .collect()
}

/// Every string in `v`, recursively.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| strings(i, out)),
        _ => {}
    }
}

/// The `herald_…` metric names in a PromQL expression or any text.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("herald_"))
        .map(str::to_owned)
        .collect()
}

/// The catalogue entry a name in a query refers to (histograms by their series suffixes).
fn catalogued(name: &str) -> Option<&'static herald_worker::telemetry::MetricDef> {
    CATALOG.iter().find(|d| {
        d.name == name
            || (d.kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(d.name)))
    })
}

/// Every metric named by the dashboard, the alert rules and the autoscaler, by file.
fn metrics_used_in_deploy() -> BTreeMap<String, BTreeSet<String>> {
    let mut used = BTreeMap::new();
    let dashboard_file = "deploy/grafana/dashboards/herald.json";
    let dashboard: Value = serde_json::from_str(&read(dashboard_file))
        .unwrap_or_else(|e| panic!("{dashboard_file} is not JSON: {e}"));
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard has queries: {exprs:?}");
    used.insert(
        dashboard_file.to_owned(),
        exprs.iter().flat_map(|e| metric_names(e)).collect(),
    );
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/k8s/scaledobject.yaml",
    ] {
        let mut texts = Vec::new();
        for doc in yaml_documents(file) {
            strings(&doc, &mut texts);
        }
        used.insert(
            file.to_owned(),
            texts.iter().flat_map(|t| metric_names(t)).collect(),
        );
    }
    used
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

#[test]
fn every_metric_in_the_dashboard_and_alerts_is_documented_and_emitted() {
    let docs = read("docs/metrics.md");
    for def in CATALOG {
        assert!(
            docs.contains(&format!("`{}`", def.name)),
            "docs/metrics.md does not list `{}`",
            def.name
        );
    }

    let run = known_outcomes("it-obs-names");
    // The sampler's gauges come with its first sample, just after start-up.
    let emitted = wait_for_scrape(&run.worker, "the first queue-depth sample", |s| {
        value(s, "herald_queue_jobs", &[]).is_some()
    });
    let emitted: BTreeSet<&str> = emitted.iter().map(|s| s.name.as_str()).collect();

    let used = metrics_used_in_deploy();
    for (file, names) in &used {
        assert!(!names.is_empty(), "{file} names no herald metric");
        for name in names {
            let def = catalogued(name).unwrap_or_else(|| {
                panic!("{file} uses {name}, which is not in herald_worker::telemetry::CATALOG")
            });
            assert!(
                docs.contains(&format!("`{}`", def.name)),
                "{file} uses {name}, which docs/metrics.md does not list"
            );
            assert!(
                emitted.contains(name.as_str()),
                "{file} uses {name}, which the worker under test did not emit; emitted: {emitted:?}"
            );
        }
    }
    // The dashboard shows what the issue asks for.
    let dashboard = &used["deploy/grafana/dashboards/herald.json"];
    for needed in [
        "herald_deliveries_total",
        "herald_delivery_duration_seconds_bucket",
        "herald_first_attempt_lag_seconds_bucket",
        "herald_queue_jobs",
        "herald_disabled_endpoints",
        "herald_endpoints_disabled_total",
        "herald_held_back_total",
        "herald_endpoints_held_back",
        "herald_worker_info",
        "herald_worker_ready",
        "herald_queue_sample_timestamp_seconds",
        "herald_oldest_due_job_age_seconds",
        "herald_redis_memory_used_bytes",
        "herald_redis_memory_max_bytes",
    ] {
        assert!(
            dashboard.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
    run.worker.stop(SAFETY_NET);
}

#[test]
fn alert_rules_cover_the_failure_modes() {
    let docs = yaml_documents("deploy/prometheus/alerts.yml");
    let rules: Vec<&Value> = docs[0]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .collect();
    let by_name: BTreeMap<&str, &str> = rules
        .iter()
        .map(|r| {
            (
                r["alert"].as_str().expect("alert name"),
                r["expr"].as_str().expect("expr"),
            )
        })
        .collect();
    for (alert, metric) in [
        ("HeraldNoReadyWorker", "herald_worker_ready"),
        ("HeraldDueBacklogGrowing", "herald_queue_jobs"),
        (
            "HeraldDeliveryLagHigh",
            "herald_first_attempt_lag_seconds_bucket",
        ),
        ("HeraldDeadLettersGrowing", "herald_jobs_discarded_total"),
        ("HeraldEndpointsDisabled", "herald_disabled_endpoints"),
        ("HeraldWorkersDown", "herald_worker_info"),
        ("HeraldWorkersDown", "herald_worker_ready"),
        ("HeraldDeliveriesFailing", "herald_deliveries_total"),
        ("HeraldRedisErrors", "herald_redis_errors_total"),
        (
            "HeraldQueueSampleStale",
            "herald_queue_sample_timestamp_seconds",
        ),
        ("HeraldOldestDueJobOld", "herald_oldest_due_job_age_seconds"),
        ("HeraldRedisMemoryHigh", "herald_redis_memory_used_bytes"),
        ("HeraldRedisMemoryHigh", "herald_redis_memory_max_bytes"),
    ] {
        let expr = by_name
            .get(alert)
            .unwrap_or_else(|| panic!("no alert {alert} in {by_name:?}"));
        assert!(metric_names(expr).contains(metric), "{alert}: {expr}");
    }
    for r in rules {
        assert!(
            r["labels"]["severity"].is_string(),
            "every alert has a severity: {r}"
        );
        assert!(r["annotations"]["summary"].is_string(), "{r}");
    }
    let prometheus = &yaml_documents("deploy/prometheus/prometheus.yml")[0];
    assert_eq!(prometheus["rule_files"], json!(["alerts.yml"]));
    assert_eq!(
        prometheus["scrape_configs"][0]["dns_sd_configs"][0]["port"],
        json!(9464),
        "Prometheus scrapes the workers' default metrics port"
    );
}

/// Minutes in a promtool duration such as `90s`, `5m` or `1h`.
fn minutes(duration: &str) -> f64 {
    let (number, unit) = duration.split_at(duration.len() - 1);
    let number: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("{duration:?} is not a duration like 5m"));
    match unit {
        "s" => number / 60.0,
        "m" => number,
        "h" => number * 60.0,
        _ => panic!("{duration:?} is not a duration like 5m"),
    }
}

#[test]
fn every_alert_rule_has_a_unit_test_in_which_it_fires_and_then_resolves() {
    let rules = &yaml_documents("deploy/prometheus/alerts.yml")[0];
    let names: BTreeSet<&str> = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .map(|r| r["alert"].as_str().expect("alert name"))
        .collect();
    let tests = &yaml_documents("deploy/prometheus/alerts.test.yml")[0];
    // Per unit test and alert, its evaluations in time order: (minute, firing).
    let mut resolved = BTreeSet::new();
    for test in tests["tests"].as_array().expect("tests") {
        let mut evals: BTreeMap<&str, Vec<(f64, bool)>> = BTreeMap::new();
        for eval in test["alert_rule_test"].as_array().into_iter().flatten() {
            let name = eval["alertname"].as_str().expect("alertname");
            let at = minutes(eval["eval_time"].as_str().expect("eval_time"));
            let firing = eval["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
            evals.entry(name).or_default().push((at, firing));
        }
        for (name, mut evals) in evals {
            evals.sort_by(|a, b| a.0.total_cmp(&b.0));
            let fired = evals.iter().position(|(_, firing)| *firing);
            if fired.is_some_and(|i| evals[i..].iter().any(|(_, firing)| !firing)) {
                resolved.insert(name);
            }
        }
    }
    let missing: Vec<&&str> = names.difference(&resolved).collect();
    assert!(
        missing.is_empty(),
        "alerts.test.yml never shows these firing and then resolving: {missing:?}"
    );
}

/// The Kubernetes object of `kind` in deploy/k8s/`file`.
fn k8s(file: &str, kind: &str) -> Value {
    let docs = yaml_documents(&format!("deploy/k8s/{file}"));
    docs.into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in deploy/k8s/{file}"))
}

fn seconds(text: &str) -> u64 {
    text.strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text:?} is not a number of seconds like 20s"))
}

#[test]
fn kubernetes_manifests_fit_the_worker() {
    let defaults = herald_worker::WorkerConfig::default();
    let deployment = k8s("deployment.yaml", "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let port = defaults.metrics_addr.expect("metrics on by default").port();
    assert_eq!(container["ports"][0]["name"], "metrics");
    assert_eq!(container["ports"][0]["containerPort"], json!(port));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert!(deployment["spec"]["replicas"].as_u64().unwrap_or(0) >= 2);

    // The pod is killed only after the drain: the shutdown grace, then up to 10 s to write
    // the outcomes.
    let config = k8s("configmap.yaml", "ConfigMap");
    let grace = seconds(
        config["data"]["HERALD_SHUTDOWN_GRACE"]
            .as_str()
            .expect("grace"),
    );
    assert_eq!(grace, defaults.shutdown_grace.as_secs());
    let termination = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        termination > grace + 10,
        "terminationGracePeriodSeconds {termination} leaves no room for a {grace}s drain"
    );
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], json!(port.to_string()));

    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(
        &deployment["spec"]["template"]["metadata"]["labels"], selector,
        "the Deployment selects its own pods"
    );
    let pdb = k8s("poddisruptionbudget.yaml", "PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    let service = k8s("service.yaml", "Service");
    assert_eq!(&service["spec"]["selector"], selector);
    let monitor = k8s("servicemonitor.yaml", "ServiceMonitor");
    assert_eq!(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");

    let scaler = k8s("scaledobject.yaml", "ScaledObject");
    assert_eq!(
        scaler["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    let trigger = &scaler["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "prometheus");
    let query = trigger["metadata"]["query"].as_str().expect("query");
    assert!(
        query.contains("herald_queue_jobs{state=\"due\"}"),
        "the autoscaler follows the due backlog: {query}"
    );
    assert!(
        scaler["spec"]["minReplicaCount"].as_u64().unwrap_or(0) >= 2,
        "with maxUnavailable 1, one worker always stays"
    );

    // Every manifest is in the kustomization, and nothing else.
    let kustomization = &yaml_documents("deploy/k8s/kustomization.yaml")[0];
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("file name").to_owned())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(repo_root().join("deploy/k8s"))
        .expect("deploy/k8s")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
}

#[test]
fn the_compose_file_runs_a_durable_observable_fleet() {
    let compose = &yaml_documents("docker-compose.yml")[0];
    let services = &compose["services"];
    for name in [
        "redis",
        "worker",
        "producer",
        "receiver",
        "prometheus",
        "grafana",
    ] {
        assert!(services[name].is_object(), "no service {name}");
    }
    let redis: Vec<String> = services["redis"]["command"]
        .as_array()
        .expect("redis command")
        .iter()
        .map(|a| a.as_str().expect("argument").to_owned())
        .collect();
    let redis = redis.join(" ");
    assert!(redis.contains("--appendonly yes"), "{redis}");
    assert!(redis.contains("--maxmemory-policy noeviction"), "{redis}");

    let worker = &services["worker"];
    assert_eq!(worker["deploy"]["replicas"], json!(3));
    assert_eq!(worker["build"]["dockerfile"], "deploy/Dockerfile");
    let stop = seconds(
        worker["stop_grace_period"]
            .as_str()
            .expect("stop_grace_period"),
    );
    let grace = herald_worker::WorkerConfig::default()
        .shutdown_grace
        .as_secs();
    assert!(
        stop > grace + 10,
        "stop_grace_period {stop}s cuts the drain"
    );

    // Every file the compose file mounts exists.
    for service in services.as_object().expect("services").values() {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let spec = volume.as_str().expect("volume");
            if let Some(local) = spec.strip_prefix("./") {
                let path = local.split(':').next().expect("path");
                assert!(
                    repo_root().join(path).exists(),
                    "docker-compose.yml mounts {path}, which does not exist"
                );
            }
        }
    }
    // The cluster profile: its workers run in cluster mode, and every seed node they name is
    // one of the profile's Redis nodes, which run in cluster mode with AOF and noeviction.
    let cluster_worker = &services["worker-cluster"]["environment"];
    assert_eq!(cluster_worker["HERALD_REDIS_CLUSTER"], "true");
    let node_addresses: Vec<&str> = services
        .as_object()
        .expect("services")
        .iter()
        .filter(|(name, _)| name.starts_with("redis-node-"))
        .map(|(_, node)| {
            let command: Vec<&str> = node["command"]
                .as_array()
                .expect("node command")
                .iter()
                .map(|a| a.as_str().expect("argument"))
                .collect();
            let command = command.join(" ");
            assert!(command.contains("--cluster-enabled yes"), "{command}");
            assert!(command.contains("--appendonly yes"), "{command}");
            assert!(
                command.contains("--maxmemory-policy noeviction"),
                "{command}"
            );
            node["networks"]["herald"]["ipv4_address"]
                .as_str()
                .expect("a fixed address")
        })
        .collect();
    assert_eq!(node_addresses.len(), 6, "3 masters and 3 replicas");
    let seeds = cluster_worker["HERALD_REDIS_URL"].as_str().expect("seeds");
    for seed in seeds.split(',') {
        let host = seed
            .trim_start_matches("redis://")
            .split(':')
            .next()
            .expect("host");
        assert!(node_addresses.contains(&host), "seed {seed} is no node");
    }

    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile.contains("cargo build --release --locked -p herald"),
        "{dockerfile}"
    );
}
