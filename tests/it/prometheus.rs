//! The monitoring as an operator runs it: a real Prometheus server scrapes two workers every
//! second and evaluates `deploy/prometheus/alerts.yml` (the shipped expressions, with `for:`
//! shortened), and every query of the Grafana dashboard and the alerts are read back through
//! Prometheus's HTTP API. Each test starts at rest (every panel has data, no alert) and brings
//! about the situations of some rules, and the panels that show them:
//!
//! - failing deliveries and a killed worker, then fixed: `HeraldDeliveriesFailing`,
//!   `HeraldWorkersDown`;
//! - a refused endpoint that fills the dead letters and gets disabled, then fixed:
//!   `HeraldDeadLettersGrowing`, `HeraldEndpointsDisabled`;
//! - a Redis outage and its end, then Redis near its memory limit, then given more:
//!   `HeraldRedisErrors`, `HeraldNoReadyWorker`, `HeraldQueueSampleStale`,
//!   `HeraldRedisMemoryHigh`;
//! - an endpoint whose jobs became due long ago and wait behind its rate, then lifted, and a
//!   held-back backlog with its late first attempts: `HeraldOldestDueJobOld`,
//!   `HeraldDueBacklogGrowing`, `HeraldDeliveryLagHigh`.
//!
//! Every rule goes pending or fires in its situation, and is seen inactive again after
//! recovery, except two whose windows are longer than a test on purpose: the dead letters
//! count over an hour (the threshold is a rate, more than ten an hour, which a slow trickle of
//! discards also reaches), and the first-attempt lag is a 99th percentile over 5 minutes (a
//! quantile needs enough attempts). Those tests stop at firing; `alerts.test.yml` shows both
//! rules resolving, with promtool simulating the hour and the minutes.
//!
//! The server is Debian's `prometheus` binary, unpacked by `.ci/run` into `target/ci-tools`
//! (or `HERALD_PROMETHEUS`, or `prometheus` on `PATH`). Without it the test says so and passes,
//! except under `CI`, where it fails.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::herald::Worker;
use crate::support::process::{poll_until, Proc};
use crate::support::receiver::{self, Receiver, Reply, Routes};
use crate::support::redis_server::free_port;
use crate::support::{redis_and_herald, Herald, RedisServer};

/// How long Prometheus may take to reach a state it reaches within seconds (a safety net).
const DEADLINE: Duration = Duration::from_secs(30);

/// How often the test asks Prometheus again while waiting for a state.
const POLL: Duration = Duration::from_millis(250);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Prometheus server binary, if there is one.
fn prometheus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HERALD_PROMETHEUS") {
        return Some(PathBuf::from(path));
    }
    let unpacked = repo_root().join("target/ci-tools/prometheus");
    if unpacked.is_file() {
        return Some(unpacked);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    })
}

/// `text` with every byte but the unreserved ones percent-encoded, for a query string.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server on a free loopback port, killed when dropped.
struct Prometheus {
    proc: Proc,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `binary` scraping `targets` (job `herald`) every second and evaluating a copy of
    /// the shipped rules every second, with every `for:` cut to one second.
    fn start(binary: &Path, targets: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let rules = std::fs::read_to_string(repo_root().join("deploy/prometheus/alerts.yml"))
            .expect("read alerts.yml");
        let rules: String = rules
            .lines()
            .map(|line| {
                let indent = line.len() - line.trim_start().len();
                if line.trim_start().starts_with("for:") {
                    format!("{}for: 1s\n", &line[..indent])
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(dir.path().join("alerts.yml"), rules).expect("write rules");
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{
                "job_name": "herald",
                "static_configs": [{"targets": targets}],
            }],
        });
        // JSON is YAML.
        std::fs::write(dir.path().join("prometheus.yml"), config.to_string())
            .expect("write config");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(binary);
        cmd.arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn");
        let prometheus = Prometheus {
            proc: Proc::spawn("prometheus", cmd, None),
            addr,
            _dir: dir,
        };
        poll_until("Prometheus to be ready", DEADLINE, POLL, || {
            if prometheus.proc.exit_status().is_some() {
                panic!("prometheus exited:\n{}", prometheus.proc.output());
            }
            match prometheus.try_get("/-/ready") {
                Some((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        prometheus
    }

    /// `GET path` over HTTP/1.0 (so the body is never chunked); `None` if nothing answers.
    fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(&self.addr).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    /// The `data` of an API answer; panics on an error answer (a bad query is a bug).
    fn api(&self, path: &str) -> Value {
        let (status, body) = self
            .try_get(path)
            .unwrap_or_else(|| panic!("Prometheus did not answer {path}"));
        let answer: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: {status}, not JSON ({e}): {body}"));
        assert_eq!(answer["status"], "success", "{path}: {body}");
        answer["data"].clone()
    }

    /// The instant vector `expr` evaluates to now.
    fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(expr)));
        assert_eq!(data["resultType"], "vector", "{expr}");
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The pending and firing alerts, as `(name, state)`.
    fn alerts(&self) -> Vec<(String, String)> {
        self.api("/api/v1/alerts")["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                    a["state"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// Waits until alert `name` is in `state`.
    fn wait_for_alert(&self, name: &str, state: &str) {
        self.wait_for_alert_within(name, &[state], DEADLINE);
    }

    /// Waits up to `deadline` until alert `name` is in one of `states`, and returns the state.
    fn wait_for_alert_within(&self, name: &str, states: &[&str], deadline: Duration) -> String {
        poll_until(
            &format!("{name} {}", states.join(" or ")),
            deadline,
            POLL,
            || {
                let alerts = self.alerts();
                match alerts
                    .iter()
                    .find(|(n, s)| n == name && states.contains(&s.as_str()))
                {
                    Some((_, state)) => Ok(state.clone()),
                    None => Err(format!("{alerts:?}")),
                }
            },
        )
    }

    /// Waits until alert `name` is pending or firing; `deadline` is sized from its window.
    fn wait_for_active(&self, name: &str, deadline: Duration) -> String {
        self.wait_for_alert_within(name, &["pending", "firing"], deadline)
    }

    /// Waits up to `deadline` until none of `names` is pending or firing.
    fn wait_for_inactive(&self, names: &[&str], deadline: Duration) {
        poll_until(
            &format!("{} inactive", names.join(", ")),
            deadline,
            POLL,
            || {
                let alerts = self.alerts();
                if alerts.iter().any(|(n, _)| names.contains(&n.as_str())) {
                    Err(format!("{alerts:?}"))
                } else {
                    Ok(())
                }
            },
        );
    }

    /// Whether alert `name` is pending or firing now.
    fn is_active(&self, name: &str) -> bool {
        self.alerts().iter().any(|(n, _)| n == name)
    }

    /// Waits until the values of panel `title`'s query with `part` satisfy `done` (`what`
    /// says how), and returns them.
    fn wait_for_panel(
        &self,
        title: &str,
        part: &str,
        what: &str,
        done: impl Fn(&[f64]) -> bool,
    ) -> Vec<f64> {
        let expr = panel_query(title, part);
        poll_until(
            &format!("panel {title:?} ({expr}) to show {what}"),
            DEADLINE,
            POLL,
            || {
                let values: Vec<f64> = self.query(&expr).iter().map(sample_value).collect();
                if done(&values) {
                    Ok(values)
                } else {
                    Err(format!("{values:?}"))
                }
            },
        )
    }
}

/// Every query of the Grafana dashboard as `(panel title, expression)`, rows' nested panels
/// included, with Grafana's `$__rate_interval` set to one minute.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("deploy/grafana/dashboards/herald.json"))
        .expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut queries = Vec::new();
    collect_queries(&dashboard["panels"], &mut queries);
    queries
}

fn collect_queries(panels: &Value, out: &mut Vec<(String, String)>) {
    for panel in panels.as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.to_owned(), expr.replace("$__rate_interval", "1m")));
            }
        }
        // A collapsed row holds its panels.
        if panel["panels"].is_array() {
            collect_queries(&panel["panels"], out);
        }
    }
}

/// The dashboard's own query of panel `title` that contains `part`, so that the test reads
/// what an operator sees. Panels of the same title (a stat and a graph) may share a query.
fn panel_query(title: &str, part: &str) -> String {
    let queries = dashboard_queries();
    let found: BTreeSet<&str> = queries
        .iter()
        .filter(|(t, expr)| t == title && expr.contains(part))
        .map(|(_, expr)| expr.as_str())
        .collect();
    match found.into_iter().collect::<Vec<_>>()[..] {
        [expr] => expr.to_owned(),
        _ => panic!("not one query with {part} in panel {title:?}: {queries:?}"),
    }
}

fn sample_value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Whether a query's values are as they should be at rest: numbers, where a quantile of a
/// histogram with no observation in its window has none to give (NaN).
fn values_at_rest(expr: &str, series: &[Value]) -> Result<(), String> {
    let quantile = expr.starts_with("histogram_quantile(");
    match series
        .iter()
        .find(|s| !quantile && !sample_value(s).is_finite())
    {
        Some(s) => Err(format!("{expr} has no number: {s}")),
        None => Ok(()),
    }
}

/// The Prometheus binary; `None` (after saying so) when there is none outside CI.
fn prometheus_or_skip() -> Option<PathBuf> {
    let binary = prometheus_binary();
    if binary.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("no prometheus binary under CI: .ci/run unpacks it into target/ci-tools");
        }
        eprintln!(
            "SKIPPED: no prometheus binary (target/ci-tools/prometheus, HERALD_PROMETHEUS or \
             PATH); .ci/run unpacks it from Debian's prometheus package"
        );
    }
    binary
}

/// Starts two workers with `env`, and a Prometheus scraping them.
fn fleet(binary: &Path, herald: &Herald, env: &[(&str, &str)]) -> (Vec<Worker>, Prometheus) {
    let workers: Vec<Worker> = (0..2).map(|_| herald.spawn_worker(env)).collect();
    let targets: Vec<&str> = workers
        .iter()
        .map(|w| w.metrics_addr().expect("metrics address"))
        .collect();
    let prometheus = Prometheus::start(binary, &targets);
    (workers, prometheus)
}

/// Waits until every dashboard query returns data (0, not nothing) and no alert is pending
/// or firing.
fn wait_for_rest(prometheus: &Prometheus) {
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    poll_until(
        "every dashboard query to return data, and no alert",
        DEADLINE,
        POLL,
        || {
            for (title, expr) in &queries {
                let series = prometheus.query(expr);
                if series.is_empty() {
                    return Err(format!("panel {title:?}: {expr} returns nothing"));
                }
                values_at_rest(expr, &series).map_err(|e| format!("panel {title:?}: {e}"))?;
            }
            match prometheus.alerts() {
                alerts if alerts.is_empty() => Ok(()),
                alerts => Err(format!("alerts at rest: {alerts:?}")),
            }
        },
    );
}

/// Sets the time at which every job queued for `endpoint` became due `by` back, on the Redis
/// clock: as jobs a producer enqueued that long ago while no worker could serve them. (The
/// wire format takes a delay, never a time in the past, and a test cannot wait minutes.)
fn set_due_back(redis: &RedisServer, namespace: &str, endpoint: &str, by: Duration) {
    let mut con = redis.connection();
    let queues: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:v2:*:q:{endpoint}"))
        .query(&mut con)
        .expect("KEYS");
    let [queue] = queues.as_slice() else {
        panic!("the key layout changed: not one queue of {endpoint}: {queues:?}");
    };
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut con).expect("TIME");
    let due_ms = secs * 1000 + micros / 1000 - by.as_millis() as u64;
    let jobs: Vec<String> = redis::cmd("ZRANGE")
        .arg(queue)
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .expect("ZRANGE");
    assert!(!jobs.is_empty(), "no job queued for {endpoint}");
    for job in jobs {
        redis::cmd("ZADD")
            .arg(queue)
            .arg("XX")
            .arg(due_ms)
            .arg(job)
            .exec(&mut con)
            .expect("ZADD");
    }
}

fn payloads(n: usize) -> impl Iterator<Item = Value> {
    (0..n).map(|i| json!({ "n": i }))
}

#[test]
fn a_real_prometheus_sees_failing_deliveries_and_a_killed_worker_until_they_are_fixed() {
    let Some(binary) = prometheus_or_skip() else {
        return;
    };
    let (_redis, herald) = redis_and_herald("it-prometheus");
    // The failing endpoint answers 500 until the test fixes it.
    let fixed = Arc::new(AtomicBool::new(false));
    let fail_policy = {
        let fixed = Arc::clone(&fixed);
        move |_, _: &receiver::Request| {
            Reply::Status(if fixed.load(Ordering::SeqCst) {
                200
            } else {
                500
            })
        }
    };
    let rx = Receiver::start(
        Routes::new()
            .path("/fail", fail_policy)
            .otherwise(|_, _| Reply::Status(200)),
    );
    herald.set_endpoint("ok", &format!("{}/ok", rx.url()));
    herald.set_endpoint("fail", &format!("{}/fail", rx.url()));
    let (mut workers, prometheus) = fleet(&binary, &herald, &[]);

    // At rest: every panel has data (0, not nothing), and no alert is pending or firing.
    wait_for_rest(&prometheus);
    for expr in [
        "sum by (op) (rate(herald_redis_errors_total[1m]))",
        "sum by (reason) (rate(herald_jobs_discarded_total[1m]))",
        "sum by (kind) (rate(herald_stale_settlements_total[1m]))",
    ] {
        let series = prometheus.query(expr);
        assert!(series.len() > 1, "{expr}: one series per label value");
        for s in &series {
            assert_eq!(sample_value(s), 0.0, "{expr}: {s}");
        }
    }
    prometheus.wait_for_panel("Workers", "herald_worker_info", "two workers", |v| {
        v == [2.0]
    });

    // Healthy traffic beside an endpoint that answers 500 to everything: most attempts fail
    // (four attempts per failing job), and the failing share is seen.
    herald.enqueue_many("ok", payloads(30));
    herald.enqueue_many("fail", payloads(60));
    prometheus.wait_for_alert("HeraldDeliveriesFailing", "firing");
    let throughput = panel_query("Throughput by outcome", "herald_deliveries_total");
    let by_outcome = prometheus.query(&format!("{throughput} > 0"));
    let outcomes: Vec<&str> = by_outcome
        .iter()
        .filter_map(|s| s["metric"]["outcome"].as_str())
        .collect();
    assert!(
        outcomes.contains(&"delivered") && outcomes.contains(&"http_status"),
        "{outcomes:?}"
    );
    // The other delivery panels show the traffic: retries, the failing jobs discarded after
    // their last retry, claims, and latency quantiles.
    for (title, part) in [
        ("Retries and discards", "herald_retries_scheduled_total"),
        ("Retries and discards", "herald_jobs_discarded_total"),
        ("Leases", "herald_jobs_claimed_total"),
    ] {
        prometheus.wait_for_panel(title, part, "the traffic", |v| v.iter().any(|x| *x > 0.0));
    }
    for title in ["Delivery latency", "Enqueue-to-first-attempt lag"] {
        prometheus.wait_for_panel(title, "histogram_quantile(0.99", "a quantile", |v| {
            v.len() == 1 && v[0].is_finite()
        });
    }

    // The receiver fixed, and traffic to both endpoints: once more attempts in the 10-minute
    // window succeed than failed (240 failed), the share drops under one half.
    fixed.store(true, Ordering::SeqCst);
    herald.enqueue_many("fail", payloads(200));
    herald.enqueue_many("ok", payloads(200));
    prometheus.wait_for_inactive(&["HeraldDeliveriesFailing"], DEADLINE);

    // A worker killed: the fleet is partly down, the rest is ready.
    let addr = workers[1]
        .metrics_addr()
        .expect("metrics address")
        .to_owned();
    workers[1].sigkill();
    workers[1].wait(DEADLINE);
    prometheus.wait_for_alert("HeraldWorkersDown", "firing");
    assert!(
        !prometheus.is_active("HeraldNoReadyWorker"),
        "one worker is still ready"
    );
    prometheus.wait_for_panel("Workers", "herald_worker_info", "one worker", |v| {
        v == [1.0]
    });
    prometheus.wait_for_panel("Ready workers", "herald_worker_ready", "one ready", |v| {
        v == [1.0]
    });

    // The worker restarted on the address Prometheus scrapes: the alert resolves at the next
    // evaluation that sees it up.
    workers[1] = herald.spawn_worker(&[("HERALD_METRICS_ADDR", &addr)]);
    prometheus.wait_for_inactive(&["HeraldWorkersDown"], DEADLINE);
    prometheus.wait_for_panel("Workers", "herald_worker_info", "two workers", |v| {
        v == [2.0]
    });
}

#[test]
fn a_real_prometheus_sees_a_refused_endpoint_fill_the_dead_letters_and_get_disabled_until_fixed() {
    let Some(binary) = prometheus_or_skip() else {
        return;
    };
    let (_redis, herald) = redis_and_herald("it-prometheus-refused");
    let rx = Receiver::start(receiver::always(200));
    // Nothing listens on this loopback port: every attempt is refused, and each refusal is a
    // strike. Two attempts per job, and thirty strikes before the endpoint is disabled.
    let refused = format!("http://127.0.0.1:{}/hook", free_port());
    herald.set_endpoint("refused", &refused);
    let (_workers, prometheus) = fleet(
        &binary,
        &herald,
        &[
            ("HERALD_RETRY_SCHEDULE", "50ms"),
            ("HERALD_DISABLE_AFTER", "30"),
        ],
    );
    wait_for_rest(&prometheus);

    // Twelve jobs exhaust their two attempts (24 strikes, the endpoint stays enabled): more
    // than ten dead letters in the hour.
    herald.enqueue_many("refused", payloads(12));
    herald.wait_for_stats("twelve dead letters", DEADLINE, |s| s.dead == 12);
    assert_eq!(herald.endpoint("refused")["enabled"], true);
    prometheus.wait_for_alert("HeraldDeadLettersGrowing", "firing");
    assert!(
        !prometheus.is_active("HeraldEndpointsDisabled"),
        "the endpoint is still enabled"
    );
    prometheus.wait_for_panel("Dead letters", "herald_queue_jobs", "twelve", |v| {
        v == [12.0]
    });

    // Ten more: the thirtieth strike disables the endpoint, and the rest of its jobs are
    // parked.
    herald.enqueue_many("refused", payloads(10));
    herald.wait_for_stats("the remaining jobs parked", DEADLINE, |s| {
        s.parked > 0 && s.queued() == 0 && s.in_flight == 0
    });
    assert_eq!(herald.endpoint("refused")["enabled"], false);
    prometheus.wait_for_alert("HeraldEndpointsDisabled", "firing");
    prometheus.wait_for_panel(
        "Disabled endpoints",
        "max(herald_disabled_endpoints)",
        "one",
        |v| v == [1.0],
    );

    // Fixed: the URL set again to a receiver re-activates the endpoint and its parked jobs are
    // delivered; the first sample that shows no disabled endpoint resolves the alert.
    herald.set_endpoint("refused", &format!("{}/hook", rx.url()));
    herald.wait_for_stats("the parked jobs delivered", DEADLINE, |s| {
        s.parked == 0 && s.queued() == 0 && s.in_flight == 0
    });
    prometheus.wait_for_panel(
        "Disabled endpoints",
        "max(herald_disabled_endpoints)",
        "none",
        |v| v == [0.0],
    );
    prometheus.wait_for_inactive(&["HeraldEndpointsDisabled"], DEADLINE);
    // The discards count for their hour: the alert resolves an hour after the last one
    // (alerts.test.yml shows it), longer than this test runs.
    assert!(prometheus.is_active("HeraldDeadLettersGrowing"));
}

#[test]
fn a_real_prometheus_sees_a_redis_outage_and_its_end_then_redis_near_its_memory_limit() {
    let Some(binary) = prometheus_or_skip() else {
        return;
    };
    let (mut redis, herald) = redis_and_herald("it-prometheus-redis");
    let (_workers, prometheus) = fleet(&binary, &herald, &[]);
    wait_for_rest(&prometheus);

    // Redis down: the Redis-errors alert fires, no worker is ready (both answer, not ready),
    // and the sample age still has a value while the queue-depth sample cannot be renewed.
    redis.kill();
    prometheus.wait_for_alert("HeraldRedisErrors", "firing");
    prometheus.wait_for_alert("HeraldNoReadyWorker", "firing");
    prometheus.wait_for_panel("Ready workers", "herald_worker_ready", "none ready", |v| {
        v == [0.0]
    });
    prometheus.wait_for_panel("Redis errors", "herald_redis_errors_total", "errors", |v| {
        v.iter().any(|x| *x > 0.0)
    });
    let age = panel_query("Queue sample age", "herald_queue_sample_timestamp_seconds");
    assert_eq!(
        prometheus.query(&age).len(),
        1,
        "the sample age is known during the outage"
    );
    // The sample goes stale after 120 s without a new one (a threshold in the shipped
    // expression): the alert goes pending about two minutes after the last sample.
    prometheus.wait_for_active("HeraldQueueSampleStale", Duration::from_secs(180));
    prometheus.wait_for_panel("Queue sample age", &age, "over two minutes", |v| {
        v.len() == 1 && v[0] > 120.0
    });

    // Redis back: the workers reconnect and sample again at once.
    redis.restart();
    prometheus.wait_for_inactive(
        &[
            "HeraldNoReadyWorker",
            "HeraldWorkersDown",
            "HeraldQueueSampleStale",
        ],
        DEADLINE,
    );

    // While the Redis-errors rate drains from its window: Redis holds other data and is given
    // a memory limit it uses 90 % of. The other data is large (10 MB), so that what the
    // workers add meanwhile is small beside it, and written in small commands, so that no
    // large input buffer counts in the memory used until Redis frees it.
    let mut con = redis.connection();
    for batch in 0..100 {
        let mut mset = redis::cmd("MSET");
        for key in 0..100 {
            mset.arg(format!("other-data:{batch}:{key}"))
                .arg(&[b'x'; 1024]);
        }
        mset.exec(&mut con).expect("MSET");
    }
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut con)
        .expect("INFO");
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no used_memory in {info}"));
    let limit = used * 10 / 9;
    let set_limit = |con: &mut redis::Connection, bytes: u64| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .exec(con)
            .expect("CONFIG SET maxmemory");
    };
    set_limit(&mut con, limit);
    prometheus.wait_for_active("HeraldRedisMemoryHigh", DEADLINE);
    prometheus.wait_for_panel(
        "Redis memory",
        "herald_redis_memory_max_bytes",
        "the limit",
        |v| v == [limit as f64],
    );
    // A higher limit: the first sample that shows it resolves the alert (after a sampler
    // hand-over, the old sampler's last value counts for its 1-minute window).
    set_limit(&mut con, limit * 4);
    prometheus.wait_for_inactive(&["HeraldRedisMemoryHigh"], Duration::from_secs(90));

    // The Redis-errors rate over its 1-minute window falls to 0 within about a minute of
    // Redis answering again; then the fleet is at rest.
    prometheus.wait_for_inactive(&["HeraldRedisErrors"], Duration::from_secs(90));
    wait_for_rest(&prometheus);
}

#[test]
fn a_real_prometheus_sees_jobs_wait_long_and_a_held_back_backlog_grow_and_start_late() {
    let Some(binary) = prometheus_or_skip() else {
        return;
    };
    let (redis, herald) = redis_and_herald("it-prometheus-backlog");
    let rx = Receiver::start(receiver::always(200));
    // One delivery a minute: the endpoint's jobs stay due, as behind a slow receiver.
    let slow = format!("{}/slow", rx.url());
    herald.ok(&["endpoint", "set", "slow", "--url", &slow, "--rate", "1/m"]);
    // One delivery an hour, the first at once: the others wait behind the rate.
    let stuck = format!("{}/stuck", rx.url());
    herald.ok(&["endpoint", "set", "stuck", "--url", &stuck, "--rate", "1/h"]);
    let (_workers, prometheus) = fleet(&binary, &herald, &[]);
    wait_for_rest(&prometheus);

    // Two jobs of the hourly endpoint due for ten minutes (as if enqueued while no worker
    // could serve them): past the rule's 5 minutes at once.
    herald.enqueue_many("stuck", payloads(3));
    herald.wait_for_stats("one delivered, two due behind the rate", DEADLINE, |s| {
        s.due == 2 && s.in_flight == 0
    });
    set_due_back(
        &redis,
        herald.namespace(),
        "stuck",
        Duration::from_secs(600),
    );
    prometheus.wait_for_active("HeraldOldestDueJobOld", DEADLINE);
    let oldest = "herald_oldest_due_job_age_seconds";
    prometheus.wait_for_panel("Oldest due job wait", oldest, "ten minutes", |v| {
        v.len() == 1 && v[0] >= 600.0
    });
    // The rate lifted: both are delivered, and the first sample without a due job resolves
    // the alert (after a sampler hand-over, the old sampler's last value counts for its
    // 1-minute window).
    herald.ok(&[
        "endpoint", "set", "stuck", "--url", &stuck, "--rate", "none",
    ]);
    herald.wait_for_stats("the waiting jobs delivered", DEADLINE, |s| {
        s.queued() == 0 && s.in_flight == 0
    });
    prometheus.wait_for_panel("Oldest due job wait", oldest, "none due", |v| v == [0.0]);
    prometheus.wait_for_inactive(&["HeraldOldestDueJobOld"], Duration::from_secs(90));

    // More than 1000 jobs due, and more coming: the alert needs two points of its 1-minute
    // subquery (aligned to whole minutes) that grow, so it may take up to two minutes and a
    // sample.
    let started = Instant::now();
    herald.enqueue_many("slow", payloads(1100));
    poll_until(
        "HeraldDueBacklogGrowing pending or firing",
        Duration::from_secs(180),
        Duration::from_secs(5),
        || {
            if prometheus.is_active("HeraldDueBacklogGrowing") {
                return Ok(());
            }
            herald.enqueue_many("slow", payloads(20));
            Err(format!("{:?}", prometheus.alerts()))
        },
    );
    prometheus.wait_for_panel("Due now", "herald_queue_jobs", "over 1000", |v| {
        v.len() == 1 && v[0] > 1000.0
    });
    prometheus.wait_for_panel(
        "Endpoints held back",
        "herald_held_back_total",
        "the rate binding",
        |v| v.iter().any(|x| *x > 0.0),
    );

    // Jobs waited more than a minute for their first attempt; the rate limit lifted, they are
    // delivered, and the 99th percentile of the first-attempt lag is above one minute.
    poll_until(
        "the first jobs a minute old",
        Duration::from_secs(70),
        POLL,
        || match started.elapsed() {
            e if e > Duration::from_secs(65) => Ok(()),
            e => Err(format!("{e:?}")),
        },
    );
    herald.ok(&["endpoint", "set", "slow", "--url", &slow, "--rate", "none"]);
    prometheus.wait_for_active("HeraldDeliveryLagHigh", DEADLINE);
    prometheus.wait_for_panel(
        "Enqueue-to-first-attempt lag",
        "histogram_quantile(0.99",
        "over a minute",
        |v| v.len() == 1 && v[0] > 60.0,
    );
    // The backlog delivered, the next queue sample shows it gone: the backlog alert resolves.
    herald.wait_for_stats("the backlog delivered", DEADLINE, |s| s.queued() == 0);
    prometheus.wait_for_inactive(&["HeraldDueBacklogGrowing"], DEADLINE);
    // The late first attempts count for the lag's 5-minute window: the alert resolves 5
    // minutes after them (alerts.test.yml shows it), longer than this test runs.
    assert!(prometheus.is_active("HeraldDeliveryLagHigh"));
}
