//! The monitoring as an operator runs it: a real Prometheus server scrapes two workers every
//! second and evaluates `deploy/prometheus/alerts.yml` (the shipped expressions, with `for:`
//! shortened), and every query of the Grafana dashboard and the alerts are read back through
//! Prometheus's HTTP API: at rest, with most deliveries failing, with a worker killed, and with
//! Redis down.
//!
//! The server is Debian's `prometheus` binary, unpacked by `.ci/run` into `target/ci-tools`
//! (or `HERALD_PROMETHEUS`, or `prometheus` on `PATH`). Without it the test says so and passes,
//! except under `CI`, where it fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::herald::Worker;
use crate::support::process::{poll_until, Proc};
use crate::support::receiver::{self, Receiver, Reply, Routes};
use crate::support::redis_and_herald;
use crate::support::redis_server::free_port;

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
        poll_until(&format!("{name} {state}"), DEADLINE, POLL, || {
            let alerts = self.alerts();
            if alerts.iter().any(|(n, s)| n == name && s == state) {
                Ok(())
            } else {
                Err(format!("{alerts:?}"))
            }
        });
    }
}

/// Every query of the Grafana dashboard, with Grafana's `$__rate_interval` set to one minute.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("deploy/grafana/dashboards/herald.json"))
        .expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("").to_owned();
            panel["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |t| {
                    let expr = t["expr"].as_str()?.replace("$__rate_interval", "1m");
                    Some((title.clone(), expr))
                })
        })
        .collect()
}

fn sample_value(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn a_real_prometheus_sees_every_panel_at_rest_and_fires_alerts_in_their_situation() {
    let Some(binary) = prometheus_binary() else {
        if std::env::var_os("CI").is_some() {
            panic!("no prometheus binary under CI: .ci/run unpacks it into target/ci-tools");
        }
        eprintln!(
            "SKIPPED: no prometheus binary (target/ci-tools/prometheus, HERALD_PROMETHEUS or \
             PATH); .ci/run unpacks it from Debian's prometheus package"
        );
        return;
    };
    let (mut redis, herald) = redis_and_herald("it-prometheus");
    let rx = Receiver::start(
        Routes::new()
            .path("/fail", receiver::always(500))
            .otherwise(|_, _| Reply::Status(200)),
    );
    herald.set_endpoint("ok", &format!("{}/ok", rx.url()));
    herald.set_endpoint("fail", &format!("{}/fail", rx.url()));
    let workers: Vec<Worker> = (0..2).map(|_| herald.spawn_worker(&[])).collect();
    let targets: Vec<&str> = workers
        .iter()
        .map(|w| w.metrics_addr().expect("metrics address"))
        .collect();
    let prometheus = Prometheus::start(&binary, &targets);

    // At rest: every panel has data (0, not nothing), and no alert is pending or firing.
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    poll_until(
        "every dashboard query to return data, and no alert",
        DEADLINE,
        POLL,
        || {
            for (title, expr) in &queries {
                if prometheus.query(expr).is_empty() {
                    return Err(format!("panel {title:?}: {expr} returns nothing"));
                }
            }
            match prometheus.alerts() {
                alerts if alerts.is_empty() => Ok(()),
                alerts => Err(format!("alerts at rest: {alerts:?}")),
            }
        },
    );
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
    let workers_seen = prometheus.query("count(herald_worker_info)");
    assert_eq!(sample_value(&workers_seen[0]), 2.0);

    // Healthy traffic beside an endpoint that answers 500 to everything: most attempts fail
    // (four attempts per failing job), and the failing share is seen.
    let payloads = |n: usize| (0..n).map(|i| json!({ "n": i }));
    herald.enqueue_many("ok", payloads(30));
    herald.enqueue_many("fail", payloads(60));
    prometheus.wait_for_alert("HeraldDeliveriesFailing", "firing");
    let by_outcome = prometheus.query("sum by (outcome) (rate(herald_deliveries_total[1m])) > 0");
    let outcomes: Vec<&str> = by_outcome
        .iter()
        .filter_map(|s| s["metric"]["outcome"].as_str())
        .collect();
    assert!(
        outcomes.contains(&"delivered") && outcomes.contains(&"http_status"),
        "{outcomes:?}"
    );

    // A worker killed: the fleet is partly down, the rest is ready.
    workers[1].sigkill();
    prometheus.wait_for_alert("HeraldWorkersDown", "firing");
    assert!(
        !prometheus
            .alerts()
            .iter()
            .any(|(name, _)| name == "HeraldNoReadyWorker"),
        "one worker is still ready"
    );

    // Redis down: the Redis-errors alert fires, and the sample age still has a value while the
    // queue-depth sample cannot be renewed.
    redis.kill();
    prometheus.wait_for_alert("HeraldRedisErrors", "firing");
    let age =
        prometheus.query("time() - max(max_over_time(herald_queue_sample_timestamp_seconds[1h]))");
    assert_eq!(age.len(), 1, "the sample age is known during the outage");
}
