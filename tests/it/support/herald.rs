//! Drives the real `herald` binary: one-shot CLI commands with captured output, and worker
//! processes that tests start, signal and wait for.

use std::collections::BTreeMap;
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use super::http_get;
use super::process::{poll_until, Proc};

/// The binary under test, built by cargo for this integration test.
pub const HERALD_BIN: &str = env!("CARGO_BIN_EXE_herald");

/// How long one CLI command may run: a safety net against a command that hangs.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a worker may take to print its readiness line (a safety net).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often [`Herald::wait_for_stats`] asks `herald stats`.
const STATS_INTERVAL: Duration = Duration::from_millis(50);

/// Worker settings every test starts from; a test overrides any of them.
const WORKER_DEFAULTS: &[(&str, &str)] = &[
    ("HERALD_METRICS_ADDR", "127.0.0.1:0"),
    ("HERALD_POLL_INTERVAL", "200ms"),
    ("HERALD_REQUEST_TIMEOUT", "5s"),
    ("HERALD_RETRY_SCHEDULE", "100ms,100ms,100ms"),
    ("HERALD_SHUTDOWN_GRACE", "10s"),
    ("HERALD_CONCURRENCY", "8"),
];

/// How to reach one test's Redis and key namespace, plus any extra `HERALD_*` settings.
#[derive(Debug, Clone)]
pub struct Herald {
    env: BTreeMap<String, String>,
}

impl Herald {
    /// Commands against `redis_url` in `namespace`, allowed to deliver to loopback.
    pub fn new(redis_url: &str, namespace: &str) -> Herald {
        let mut env = BTreeMap::new();
        env.insert("HERALD_REDIS_URL".to_owned(), redis_url.to_owned());
        env.insert("HERALD_NAMESPACE".to_owned(), namespace.to_owned());
        env.insert("HERALD_ALLOW_TARGETS".to_owned(), "127.0.0.0/8".to_owned());
        Herald { env }
    }

    /// Adds (or replaces) an environment variable for every command and worker.
    pub fn with_env(mut self, key: &str, value: &str) -> Herald {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The namespace the commands use.
    pub fn namespace(&self) -> &str {
        &self.env["HERALD_NAMESPACE"]
    }

    /// The Redis URL the commands use (seed nodes, comma-separated, on a cluster).
    pub fn redis_url(&self) -> &str {
        &self.env["HERALD_REDIS_URL"]
    }

    /// Whether the commands speak the Redis Cluster protocol (`HERALD_REDIS_CLUSTER=true`).
    pub fn is_cluster(&self) -> bool {
        self.env
            .get("HERALD_REDIS_CLUSTER")
            .is_some_and(|v| v == "true")
    }

    fn command(&self, args: &[&str], extra_env: &BTreeMap<String, String>) -> Command {
        let mut cmd = Command::new(HERALD_BIN);
        // Only what the test says: nothing inherited from the developer's shell.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HERALD_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        cmd.envs(&self.env).envs(extra_env).args(args);
        cmd
    }

    /// Runs `herald ARGS` to completion and returns what it did; never asserts success.
    pub fn run(&self, args: &[&str]) -> CliOutput {
        self.run_with_stdin(args, None)
    }

    /// Runs `herald ARGS` with `stdin` as its standard input.
    pub fn run_stdin(&self, args: &[&str], stdin: impl Into<Vec<u8>>) -> CliOutput {
        self.run_with_stdin(args, Some(stdin.into()))
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<Vec<u8>>) -> CliOutput {
        let cmd = self.command(args, &BTreeMap::new());
        let proc = Proc::spawn(format!("herald {}", args.join(" ")), cmd, stdin);
        let status = proc.wait_exit(COMMAND_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "`herald {}` did not finish within {COMMAND_TIMEOUT:?}; output so far:\n{}",
                args.join(" "),
                proc.output()
            )
        });
        CliOutput {
            command: format!("herald {}", args.join(" ")),
            status,
            stdout: proc.stdout(),
            stderr: proc.stderr(),
        }
    }

    /// Runs `herald ARGS`, asserts it succeeded, and returns its output.
    pub fn ok(&self, args: &[&str]) -> CliOutput {
        self.run(args).assert_success()
    }

    /// Runs `herald check --json` and asserts that it found no violation (exit 0, none listed).
    pub fn assert_check_clean(&self) {
        let out = self.run(&["check", "--json"]);
        assert!(out.success(), "`herald check` found violations:\n{out}");
        let report = out.json();
        assert_eq!(
            report["violations"].as_array().map(Vec::len),
            Some(0),
            "`herald check` exited 0 but listed violations:\n{out}"
        );
    }

    /// `herald endpoint set ID --url URL`.
    pub fn set_endpoint(&self, id: &str, url: &str) {
        self.ok(&["endpoint", "set", id, "--url", url]);
    }

    /// Enqueues `payload` for `endpoint` (through stdin) and returns the job id.
    pub fn enqueue(&self, endpoint: &str, payload: &Value) -> String {
        let out = self
            .run_stdin(&["enqueue", endpoint, "-"], payload.to_string())
            .assert_success();
        let id = out.stdout.trim().to_owned();
        assert_eq!(id.len(), 26, "`{}` printed {id:?}, not a ULID", out.command);
        id
    }

    /// Enqueues one job per payload for `endpoint` with one `enqueue --ndjson` command, and
    /// returns how many it enqueued (asserting that is all of them).
    pub fn enqueue_many(&self, endpoint: &str, payloads: impl IntoIterator<Item = Value>) -> u64 {
        let mut lines = String::new();
        let mut count = 0;
        for payload in payloads {
            lines.push_str(&payload.to_string());
            lines.push('\n');
            count += 1;
        }
        let out = self
            .run_stdin(&["enqueue", endpoint, "-", "--ndjson", "--json"], lines)
            .assert_success();
        let enqueued = out.json()["enqueued"].as_u64();
        assert_eq!(enqueued, Some(count), "`{}`:\n{out}", out.command);
        count
    }

    /// `herald endpoint get ID --json`.
    pub fn endpoint(&self, id: &str) -> Value {
        self.ok(&["endpoint", "get", id, "--json"]).json()
    }

    /// The limits and backlog that `herald endpoint get ID --json` shows.
    pub fn limits(&self, id: &str) -> EndpointLimits {
        EndpointLimits::from_json(self.endpoint(id))
    }

    /// Asks `herald endpoint get ID` every few milliseconds until `done` holds for its limits,
    /// and returns them.
    ///
    /// For conditions no event announces; `timeout` is a safety net.
    pub fn wait_for_limits(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&EndpointLimits) -> bool,
    ) -> EndpointLimits {
        poll_until(what, timeout, STATS_INTERVAL, || {
            let limits = self.limits(id);
            if done(&limits) {
                Ok(limits)
            } else {
                Err(format!("{limits:?}"))
            }
        })
    }

    /// `herald stats --json`.
    pub fn stats(&self) -> Stats {
        Stats::from_json(self.ok(&["stats", "--json"]).json())
    }

    /// Asks `herald stats` every few milliseconds until `done` holds, and returns those stats.
    ///
    /// For conditions no event announces; `timeout` is a safety net.
    pub fn wait_for_stats(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Stats) -> bool,
    ) -> Stats {
        poll_until(what, timeout, STATS_INTERVAL, || {
            let stats = self.stats();
            if done(&stats) {
                Ok(stats)
            } else {
                Err(format!("{stats:?}"))
            }
        })
    }

    /// Waits until no job is due, scheduled, in flight or dead.
    pub fn wait_until_drained(&self, timeout: Duration) -> Stats {
        self.wait_for_stats("no job left", timeout, Stats::is_empty)
    }

    /// `herald job get ID --json`; `None` when herald says the job does not exist.
    pub fn job(&self, id: &str) -> Option<Value> {
        let out = self.run(&["job", "get", id, "--json"]);
        if !out.success() {
            assert!(
                out.stderr.to_lowercase().contains("not found"),
                "`{}` failed, but not with \"not found\":\n{out}",
                out.command
            );
            return None;
        }
        let job = out.json();
        match job.get("state") {
            None | Some(Value::Null) => None,
            Some(_) => Some(job),
        }
    }

    /// `herald dead list --json`.
    pub fn dead_list(&self) -> Vec<Value> {
        let out = self.ok(&["dead", "list", "--json"]);
        match out.json()["items"].take() {
            Value::Array(jobs) => jobs,
            other => panic!("`{}` printed no \"items\" array: {other}", out.command),
        }
    }

    /// Starts `herald worker` with the test defaults overridden by `env`, and waits until it
    /// says it is ready.
    pub fn spawn_worker(&self, env: &[(&str, &str)]) -> Worker {
        let mut settings: BTreeMap<String, String> = WORKER_DEFAULTS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        for (key, value) in env {
            settings.insert((*key).to_owned(), (*value).to_owned());
        }
        let cmd = self.command(&["worker"], &settings);
        let proc = Proc::spawn("worker", cmd, None);
        let ready = proc
            .wait_for_line(READY_TIMEOUT, |l| l.contains("herald worker ready"))
            .unwrap_or_else(|| {
                panic!(
                    "herald worker exited ({:?}) before it was ready:\n{}",
                    proc.exit_status(),
                    proc.output()
                )
            });
        let metrics_addr = ready
            .split_whitespace()
            .find_map(|word| word.strip_prefix("metrics="))
            .map(str::to_owned);
        Worker { proc, metrics_addr }
    }

    /// Starts `herald worker` with `env` and does not wait for readiness (for workers expected
    /// to refuse their configuration).
    pub fn spawn_worker_unchecked(&self, env: &[(&str, &str)]) -> Worker {
        let settings = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let cmd = self.command(&["worker"], &settings);
        Worker {
            proc: Proc::spawn("worker", cmd, None),
            metrics_addr: None,
        }
    }
}

/// The outcome of one CLI command.
#[derive(Debug)]
pub struct CliOutput {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with the full output unless the command exited 0.
    pub fn assert_success(self) -> CliOutput {
        assert!(self.success(), "`{}` failed:\n{self}", self.command);
        self
    }

    /// Panics unless the command failed with something on stderr; returns stderr.
    pub fn assert_failure(&self) -> String {
        assert!(
            !self.success(),
            "`{}` should have failed:\n{self}",
            self.command
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "`{}` failed without saying why on stderr:\n{self}",
            self.command
        );
        self.stderr.clone()
    }

    /// Stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{self}", self.command))
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  status: {}", self.status)?;
        writeln!(f, "  stdout: {}", self.stdout)?;
        write!(f, "  stderr: {}", self.stderr)
    }
}

/// The totals of `herald stats --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub due: u64,
    pub scheduled: u64,
    pub in_flight: u64,
    pub parked: u64,
    pub dead: u64,
}

impl Stats {
    fn from_json(json: Value) -> Stats {
        let field = |name: &str| {
            json["jobs"]
                .get(name)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("herald stats has no integer {name:?}: {json}"))
        };
        Stats {
            due: field("due"),
            scheduled: field("scheduled"),
            in_flight: field("in_flight"),
            parked: field("parked"),
            dead: field("dead"),
        }
    }

    /// Jobs still waiting for an attempt (due now or later).
    pub fn queued(&self) -> u64 {
        self.due + self.scheduled
    }

    /// Nothing queued, nothing in flight, nothing parked, nothing dead.
    pub fn is_empty(&self) -> bool {
        self.queued() == 0 && self.in_flight == 0 && self.parked == 0 && self.dead == 0
    }
}

/// An endpoint's delivery limits and backlog, from `herald endpoint get ID --json`: its
/// `limits` object and its `queued` count.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointLimits {
    /// The configured most deliveries in flight fleet-wide (`--max-in-flight`).
    pub max_in_flight: u64,
    /// The adaptive limit now: at most `max_in_flight`, lowered by timeouts, 5xx and 429.
    pub current_limit: u64,
    /// Deliveries in flight fleet-wide now (leases held, including those of dead workers).
    pub in_flight: u64,
    /// The configured rate (`--rate`), e.g. `"50/s"`; `None` when unlimited.
    pub rate: Option<String>,
    /// Until when (Unix ms) a `Retry-After` paused the endpoint; `None` when not paused.
    pub paused_until_ms: Option<i64>,
    /// Jobs in the endpoint's own queue (due or scheduled).
    pub queued: u64,
    /// Judged slow: served from the workers' slow lanes only.
    pub slow: bool,
}

impl EndpointLimits {
    fn from_json(json: Value) -> EndpointLimits {
        let limits = json
            .get("limits")
            .filter(|l| l.is_object())
            .unwrap_or_else(|| panic!("herald endpoint get has no \"limits\" object: {json}"));
        let integer = |v: &Value, name: &str| {
            v.get(name)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("herald endpoint get has no integer {name:?}: {json}"))
        };
        let nullable = |name: &str| match limits.get(name) {
            Some(Value::Null) => None,
            Some(v) => Some(v),
            None => panic!("herald endpoint get has no limits.{name} (null or a value): {json}"),
        };
        EndpointLimits {
            max_in_flight: integer(limits, "max_in_flight"),
            current_limit: integer(limits, "current_limit"),
            in_flight: integer(limits, "in_flight"),
            rate: nullable("rate").map(|v| {
                v.as_str()
                    .unwrap_or_else(|| panic!("limits.rate is not text: {json}"))
                    .to_owned()
            }),
            paused_until_ms: nullable("paused_until_ms").map(|v| {
                v.as_i64()
                    .unwrap_or_else(|| panic!("limits.paused_until_ms is not an integer: {json}"))
            }),
            queued: integer(&json, "queued"),
            slow: limits
                .get("slow")
                .and_then(Value::as_bool)
                .unwrap_or_else(|| {
                    panic!("herald endpoint get has no boolean limits.slow: {json}")
                }),
        }
    }
}

/// A running `herald worker` process.
///
/// Dropping it kills the process; if the test is failing, its output is printed first.
#[derive(Debug)]
pub struct Worker {
    proc: Proc,
    metrics_addr: Option<String>,
}

impl Worker {
    /// The address from the readiness line (`metrics=ADDR`), if it printed one.
    pub fn metrics_addr(&self) -> Option<&str> {
        self.metrics_addr.as_deref()
    }

    /// The sum of every sample of metric `name` on the worker's `/metrics` page (all label
    /// sets together); 0 when the worker has not emitted it yet.
    pub fn metric(&self, name: &str) -> f64 {
        let addr = self
            .metrics_addr()
            .expect("the readiness line names metrics=ADDR");
        let (status, body) = http_get(addr, "/metrics");
        assert_eq!(status, 200, "GET http://{addr}/metrics:\n{body}");
        body.lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(name)?;
                if !(rest.starts_with('{') || rest.starts_with(' ')) {
                    return None; // another metric whose name starts with `name`
                }
                rest.rsplit(' ').next()?.parse::<f64>().ok()
            })
            .sum()
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&self) -> bool {
        self.proc.exit_status().is_none()
    }

    /// Asks for a graceful drain.
    pub fn sigterm(&self) {
        self.proc.signal(Signal::SIGTERM);
    }

    /// Sends `sig` to the process (SIGSTOP freezes it, SIGCONT lets it go on).
    pub fn signal(&self, sig: Signal) {
        self.proc.signal(sig);
    }

    /// Kills the process at once: no drain, no release of its leases.
    pub fn sigkill(&self) {
        self.proc.signal(Signal::SIGKILL);
    }

    /// Waits for the process to exit; `timeout` is a safety net.
    pub fn wait(&self, timeout: Duration) -> ExitStatus {
        self.proc.wait_exit(timeout).unwrap_or_else(|| {
            panic!(
                "herald worker did not exit within {timeout:?}; output:\n{}",
                self.proc.output()
            )
        })
    }

    /// SIGTERM, then waits for the exit and asserts it was 0.
    pub fn stop(&self, timeout: Duration) {
        self.sigterm();
        let status = self.wait(timeout);
        assert!(
            status.success(),
            "herald worker exited with {status} after SIGTERM; output:\n{}",
            self.proc.output()
        );
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }

    /// Waits for the first output line that matches `pred` and returns it; panics if the
    /// process exits without printing one. `timeout` is a safety net.
    pub fn wait_for_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        self.proc.wait_for_line(timeout, pred).unwrap_or_else(|| {
            panic!(
                "herald worker exited ({:?}) without the expected line:\n{}",
                self.proc.exit_status(),
                self.proc.output()
            )
        })
    }

    /// Everything the worker printed so far, for failure messages.
    pub fn output(&self) -> String {
        self.proc.output()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- herald worker (pid {}) output ---\n{}",
                self.proc.pid(),
                self.proc.output()
            );
        }
    }
}
