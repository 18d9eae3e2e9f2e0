//! Production-shaped deliveries: HTTPS to many distinct names, resolved by a real DNS server,
//! receivers that take 50 ms to seconds to answer, some names that fail to resolve.
//!
//! The bench starts a private CA ([`herald_testkit::TestCa`]), a DNS server on loopback
//! ([`herald_testkit::DnsServer`]) serving `--names` names `r<i>.bench.test` spread over
//! `--addresses` loopback addresses (a few missing, silent or late: [`plan`]), and HTTPS
//! receivers on those addresses ([`receiver`]). Jobs come in `--rounds` rounds, one job per name
//! each; a round is enqueued once the previous one has reached every name that resolves, so a
//! name is met again after all the others, as in a status aggregator's fan-out.
//!
//! The same rounds go first through a bare client in a process of its own ([`bare`], the
//! ceiling), then through one `herald worker` (`HERALD_CA_FILE` trusting the CA,
//! `HERALD_DNS_SERVERS` the DNS server). Each run reports deliveries/s, CPU per delivery,
//! connections, TLS handshakes (full, resumed, and the share of new connections to a name met
//! before that resumed), DNS queries per name, and peak RSS. Not part of `all`.

mod bare;
mod plan;
mod receiver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use herald_core::EndpointId;
use herald_testkit::{DnsServer, TestCa};
use serde_json::{json, Value};

use super::shared::{enqueue, loadavg, producer, round, wait_for, Bench};
use crate::env::{self, Fleet};
use crate::receiver::Tracker;
pub use bare::{https_loop, HttpsLoopArgs};
use plan::{Plan, PlanArgs, DOMAIN};
use receiver::Receivers;

#[derive(Debug, Clone, Args)]
pub struct ProductionArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Deliveries per name: one job per name in each round.
    #[arg(long, default_value_t = 3)]
    pub rounds: u64,
    /// Deliveries in flight: the worker's HERALD_CONCURRENCY, and the bare client's.
    #[arg(
        long = "in-flight",
        id = "production-in-flight",
        default_value_t = 1000
    )]
    pub in_flight: usize,
    /// Receivers offer HTTP/2 by ALPN (they keep every connection alive then).
    #[arg(long)]
    pub http2: bool,
    /// Lookup timeout of the worker (HERALD_DNS_TIMEOUT) and of the bare client.
    #[arg(long, default_value = "5s", value_parser = super::shared::parse_duration)]
    pub dns_timeout: Duration,
    /// Skip the bare client's run.
    #[arg(long)]
    pub no_ceiling: bool,
}

/// The bare client's run, then herald's, on the same plan.
pub async fn production(b: &Bench, args: &ProductionArgs) -> anyhow::Result<Value> {
    let plan = Arc::new(Plan::from(&args.plan));
    let ca = TestCa::issue(&[&format!("*.{DOMAIN}")])?;
    let ca_file = std::env::temp_dir().join(format!("herald-bench-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, ca.ca_pem())?;
    let setup = Setup {
        b,
        args,
        plan: plan.clone(),
        ca: &ca,
        ca_file: &ca_file,
    };
    let bare = if args.no_ceiling {
        Value::Null
    } else {
        setup.run(Runner::Bare).await?
    };
    let herald = setup.run(Runner::Herald).await;
    let _ = std::fs::remove_file(&ca_file);
    let herald = herald?;
    let ratio = |k: &str| {
        let (h, c) = (herald[k].as_f64(), bare[k].as_f64());
        match (h, c) {
            (Some(h), Some(c)) if c > 0.0 => json!(round(h / c, 2)),
            _ => Value::Null,
        }
    };
    Ok(json!({
        "names": plan.names,
        "resolving_names": plan.resolving(),
        "rounds": args.rounds,
        "in_flight": args.in_flight,
        "http2": args.http2,
        "answer_p50_ms": args.plan.answer_p50.as_millis() as u64,
        "answer_p99_ms": args.plan.answer_p99.as_millis() as u64,
        "keep_alive_share": plan.keep_alive_share,
        "dns": {
            "missing": plan.missing, "silent": plan.silent, "slow": plan.slow,
            "slow_delay_ms": plan.slow_delay.as_millis() as u64, "ttl_s": plan.ttl,
            "timeout_ms": args.dns_timeout.as_millis() as u64,
        },
        "ceiling": bare,
        "herald": herald,
        "herald_to_ceiling": {
            "cpu_us_per_delivery": ratio("cpu_us_per_delivery"),
            "deliveries_per_s": ratio("deliveries_per_s"),
        },
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runner {
    Bare,
    Herald,
}

struct Setup<'a> {
    b: &'a Bench,
    args: &'a ProductionArgs,
    plan: Arc<Plan>,
    ca: &'a TestCa,
    ca_file: &'a std::path::Path,
}

impl Setup<'_> {
    /// One run: a fresh DNS server and receivers, the rounds through `runner`, the counts.
    async fn run(&self, runner: Runner) -> anyhow::Result<Value> {
        let (plan, args) = (&self.plan, self.args);
        let jobs = plan.names as u64 * args.rounds;
        let dns = DnsServer::start(plan.zones()).await?;
        let tracker = Arc::new(Tracker::new(jobs, false, Duration::ZERO)?);
        let receivers =
            Receivers::start(self.ca, plan.clone(), args.http2, tracker.clone()).await?;
        let expected = plan.resolving() as u64 * args.rounds;
        let load = loadavg();
        let ticks = env::machine_ticks();
        let mut v = match runner {
            Runner::Bare => self.bare(&dns, &receivers).await?,
            Runner::Herald => self.herald(&dns, &receivers, &tracker, expected).await?,
        };
        let delivered = tracker.unique();
        let (queries, names_asked) = dns.totals();
        let seconds = v["seconds"].as_f64().unwrap_or(f64::NAN);
        let cpu = v["cpu_s"].as_f64().unwrap_or(f64::NAN);
        let per = |x: f64| round(x / delivered.max(1) as f64, 3);
        let c = receivers.counts.to_json();
        v["delivered"] = json!(delivered);
        v["expected"] = json!(expected);
        v["duplicates"] = json!(tracker.duplicates());
        v["deliveries_per_s"] = json!(round(delivered as f64 / seconds, 0));
        v["cpu_us_per_delivery"] = json!(round(cpu * 1e6 / delivered.max(1) as f64, 1));
        v["connections_per_delivery"] = json!(per(f(&c["connections"])));
        v["full_handshakes_per_delivery"] = json!(per(f(&c["handshakes_full"])));
        v["resumed_handshakes_per_delivery"] = json!(per(f(&c["handshakes_resumed"])));
        v["resumed_share_to_seen_name"] = c["resumed_share_to_seen_name"].clone();
        v["dns_queries"] = json!(queries);
        v["dns_names_asked"] = json!(names_asked);
        v["dns_queries_per_delivery"] = json!(per(queries as f64));
        v["dns_queries_per_name"] = json!(round(queries as f64 / plan.names.max(1) as f64, 3));
        // A name that resolves should be asked once per TTL; one that fails is asked again
        // after the failure is no longer remembered.
        let counts = dns.counts();
        let asked = |i: usize| counts.get(&plan.name(i)).copied().unwrap_or(0);
        let (resolving, failing): (Vec<usize>, Vec<usize>) =
            (0..plan.names).partition(|&i| plan.resolves(i));
        let mean = |v: &[usize]| {
            round(
                v.iter().map(|&i| asked(i)).sum::<usize>() as f64 / v.len().max(1) as f64,
                3,
            )
        };
        v["dns_queries_per_resolving_name"] = json!({
            "mean": mean(&resolving),
            "max": resolving.iter().map(|&i| asked(i)).max().unwrap_or(0),
        });
        v["dns_queries_per_failing_name"] = json!({
            "mean": mean(&failing),
            "max": failing.iter().map(|&i| asked(i)).max().unwrap_or(0),
        });
        v["receivers"] = c;
        v["loadavg_before"] = json!(load);
        let ours = v["cpu_s"].as_f64().unwrap_or(0.0);
        v["noise"] = env::noise_since(ticks, ours);
        // herald retries until every job is delivered; the bare client tries each once and
        // reports what failed.
        anyhow::ensure!(
            delivered == expected || runner == Runner::Bare,
            "{runner:?}: {delivered} of {expected} deliveries arrived"
        );
        Ok(v)
    }

    /// The bare client in its own process (`herald-bench https-loop`).
    async fn bare(&self, dns: &DnsServer, receivers: &Receivers) -> anyhow::Result<Value> {
        let args = self.args;
        let exe = std::env::current_exe()?;
        let child = tokio::process::Command::new(exe)
            .arg("https-loop")
            .args(args.plan.to_flags())
            .args(["--rounds", &args.rounds.to_string()])
            .args(["--port", &receivers.port.to_string()])
            .args(["--dns", &dns.addr().to_string()])
            .arg("--ca-file")
            .arg(self.ca_file)
            .args(["--in-flight", &args.in_flight.to_string()])
            .args(["--payload", &self.b.common.payload.to_string()])
            .args([
                "--dns-timeout",
                &format!("{}ms", args.dns_timeout.as_millis()),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()?;
        let peak = PeakThreads::sample(child.id());
        let out = child.wait_with_output().await?;
        anyhow::ensure!(out.status.success(), "https-loop failed: {}", out.status);
        let mut v: Value = serde_json::from_slice(&out.stdout).context("https-loop output")?;
        let threads = peak.finish().await;
        v["cpu_s"] = v["client_cpu_s"].clone();
        v["peak_threads"] = json!(threads);
        Ok(v)
    }

    /// One `herald worker` on a fresh Redis, an endpoint per name.
    async fn herald(
        &self,
        dns: &DnsServer,
        receivers: &Receivers,
        tracker: &Tracker,
        expected: u64,
    ) -> anyhow::Result<Value> {
        let (b, args, plan) = (self.b, self.args, &self.plan);
        let c = &b.common;
        let redis = b.start_redis().await?;
        let producer = producer(&redis, c.shards)?;
        producer.store().check().await?;
        // Names that cannot resolve are `bad-<i>`: the fleet keeps their failures quiet.
        let endpoints: Vec<EndpointId> = (0..plan.names)
            .map(|i| {
                let prefix = if plan.resolves(i) { "prod" } else { "bad" };
                EndpointId::new(format!("{prefix}-{i}"))
            })
            .collect::<Result<_, _>>()?;
        let urls: Vec<(&EndpointId, String)> = endpoints
            .iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    id,
                    format!("https://{}:{}/hook", plan.name(i), receivers.port),
                )
            })
            .collect();
        futures::future::try_join_all(urls.chunks(plan.names.div_ceil(8).max(1)).map(|chunk| {
            let producer = producer.clone();
            async move {
                for (id, url) in chunk {
                    producer.store().set_endpoint(id, url, None).await?;
                }
                anyhow::Ok(())
            }
        }))
        .await?;
        let mut env = b.worker_env(args.in_flight);
        env.push(("HERALD_CA_FILE", self.ca_file.display().to_string()));
        env.push(("HERALD_DNS_SERVERS", dns.addr().to_string()));
        env.push((
            "HERALD_DNS_TIMEOUT",
            format!("{}ms", args.dns_timeout.as_millis()),
        ));
        let fleet = Fleet::start(&b.herald, &redis, 1, &env).await?;
        let pid = fleet.pids()[0];
        let peak = PeakThreads::sample(Some(pid));
        let (cpu_worker, cpu_redis) = (env::cpu_seconds(Some(pid)), redis.cpu_seconds());
        let stats_before = redis.commandstats().await?;
        let started = Instant::now();
        let resolving = plan.resolving() as u64;
        for r in 0..args.rounds {
            enqueue(
                &producer,
                &endpoints,
                r * plan.names as u64..(r + 1) * plan.names as u64,
                c.payload,
                Duration::ZERO,
                c.batch,
                1,
            )
            .await?;
            let target = (r + 1) * resolving;
            wait_for(
                "production round",
                c.stall,
                Duration::from_millis(10),
                || tracker.unique(),
                || tracker.unique() >= target,
            )
            .await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let worker_cpu = env::cpu_seconds(Some(pid)) - cpu_worker;
        let redis_cpu = redis.cpu_seconds() - cpu_redis;
        let stats_after = redis.commandstats().await?;
        // Where Redis spent its time: the commands that took the most, per delivery.
        let mut commands: Vec<(String, u64, u64)> = stats_after
            .iter()
            .map(|(name, &(calls, usec))| {
                let (c0, u0) = stats_before.get(name).copied().unwrap_or_default();
                (name.clone(), calls - c0, usec - u0)
            })
            .filter(|(_, calls, _)| *calls > 0)
            .collect();
        commands.sort_by_key(|(_, _, usec)| std::cmp::Reverse(*usec));
        let commands: serde_json::Map<String, Value> = commands
            .into_iter()
            .take(8)
            .map(|(name, calls, usec)| {
                let per = |x: u64| round(x as f64 / expected.max(1) as f64, 3);
                (
                    name,
                    json!({ "calls_per_delivery": per(calls), "usec_per_delivery": per(usec) }),
                )
            })
            .collect();
        let threads = peak.finish().await;
        let (hwm, _) = env::memory_kib(pid)?;
        fleet.stop().await;
        let per = |s: f64| round(s * 1e6 / expected.max(1) as f64, 1);
        Ok(json!({
            "seconds": round(seconds, 3),
            "cpu_s": round(worker_cpu + redis_cpu, 3),
            "worker_cpu_us_per_delivery": per(worker_cpu),
            "redis_cpu_us_per_delivery": per(redis_cpu),
            "peak_rss_mib": round(hwm as f64 / 1024.0, 1),
            "peak_threads": threads,
            "redis_commands": commands,
        }))
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The most threads a process had, sampled every 50 ms until [`PeakThreads::finish`].
struct PeakThreads {
    task: tokio::task::JoinHandle<u64>,
    stop: tokio_util::sync::CancellationToken,
}

impl PeakThreads {
    fn sample(pid: Option<u32>) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let mut most = 0;
            let Some(pid) = pid else {
                return most;
            };
            loop {
                if let Ok([threads]) = env::proc_status(pid, ["Threads:"]) {
                    most = most.max(threads);
                }
                tokio::select! {
                    _ = until.cancelled() => return most,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        Self { task, stop }
    }

    async fn finish(self) -> u64 {
        self.stop.cancel();
        self.task.await.unwrap_or(0)
    }
}
