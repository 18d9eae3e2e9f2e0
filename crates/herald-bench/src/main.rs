//! `herald-bench`: measures herald against its own `redis-server` and a fast local receiver,
//! with real `herald worker` processes, and prints the figures as a table and as JSON.
//!
//! - `all`: every scenario below but `outage`, `production` and `ingest`, in turn (three to
//!   ten minutes on two cores with the defaults).
//! - `throughput`: (a) the ceiling, a bare reqwest POST loop against the receiver without
//!   Redis; (b) end-to-end deliveries per second of 1 and then 2 workers.
//! - `enqueue`: (e) `enqueue_batch` throughput, and Redis memory per queued job (f).
//! - `latency`: (c) enqueue-to-receipt latency at a fixed offered rate.
//! - `backlog`: (d) end-to-end throughput with a million jobs scheduled for later.
//! - `memory`: (f) a worker's peak RSS with 1,000 deliveries in flight, and each delivery's
//!   time from claim to receipt.
//! - `idle`: Redis commands per second of an idle fleet, and pickup latency (issue 2).
//! - `scripts`: Redis time per job of the enqueue, claim and ack scripts, measured alone.
//! - `redis`: claim and settle through the store API without HTTP, concurrent loops draining a
//!   backlog: jobs settled per second and Redis CPU per job.
//! - `isolation`: healthy endpoints' deliveries next to one that never answers, against
//!   the same without it (issue 10).
//! - `api`: the management API's read routes (`herald serve`) with 10,000 endpoints and
//!   100,000 dead letters in the store, p50 and p99 per route.
//! - `outage`: many receivers down at once: healthy endpoints' lateness, window by window, next
//!   to K endpoints that hang, answer slowly, answer `503` or refuse connections, then heal;
//!   one run per K and kind, 90 s each by default. Not part of `all`: too long.
//! - `production`: HTTPS deliveries to 10,000 names resolved by a DNS server the bench runs,
//!   receivers answering in 100 ms at the median and 2 s at p99, a few names missing, silent or
//!   late in DNS; herald's CPU, handshakes, lookups and memory per delivery against a bare
//!   client's doing the same work. Not part of `all`.
//! - `ingest`: single-job enqueues over HTTP through `herald serve`, driven by `h2load` (64
//!   connections, 20,000 requests), while one worker delivers them: `serve`'s CPU per enqueue
//!   and the end-to-end rate. Not part of `all`.
//! - `receive`: the receiver alone, for the peer comparison in `peers/`.
//!
//! `--cluster-masters N` runs any scenario on a local Redis Cluster of N masters instead of one
//! `redis-server`.
//!
//! Modules: `env` (Redis, worker processes, what is read from them), `cluster` (forming a local
//! Redis Cluster), `receiver` (the HTTP receiver and its counters), `scenarios` (what is
//! measured, one module per scenario), `report` (the table).

/// The same allocator as the `herald` binary, so that the ceiling's bare loop and the
/// receiver run on what the workers run on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cluster;
mod env;
mod node;
mod receiver;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::receiver::{Receiver, Tracker};
use crate::scenarios::{Bench, Common};

/// Benchmarks of herald. Build first: `cargo build --release -p herald -p herald-bench`.
#[derive(Debug, Parser)]
#[command(name = "herald-bench")]
struct Cli {
    /// Path of the `herald` binary [default: next to this one].
    #[arg(long, global = true)]
    herald: Option<PathBuf>,
    /// Print only the JSON result.
    #[arg(long, global = true)]
    json: bool,
    /// Also write the JSON result to this file.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Every scenario in turn.
    All(Box<scenarios::AllArgs>),
    /// The ceiling, then end-to-end throughput of 1 and 2 workers.
    Throughput(scenarios::ThroughputArgs),
    /// The ceiling alone: a bare reqwest POST loop against the receiver.
    Ceiling(scenarios::CeilingArgs),
    /// enqueue_batch throughput and Redis memory per queued job.
    Enqueue(scenarios::EnqueueArgs),
    /// Enqueue-to-receipt latency at a fixed offered rate.
    Latency(scenarios::LatencyArgs),
    /// End-to-end throughput with jobs scheduled for later sitting in the sets.
    Backlog(scenarios::BacklogArgs),
    /// A worker's peak RSS with many deliveries in flight, and claim-to-receipt times.
    Memory(scenarios::MemoryArgs),
    /// Redis commands per second of an idle fleet, then pickup latency.
    Idle(scenarios::IdleArgs),
    /// Redis time per job of the hot scripts (enqueue, claim, ack), measured alone.
    Scripts(scenarios::ScriptsArgs),
    /// Claim and settle without HTTP: loops drain a backlog; jobs/s and Redis CPU per job.
    Redis(scenarios::RedisArgs),
    /// Enqueue latency and rate to a Redis with one replica, with and without waiting for it.
    Replicas(scenarios::ReplicasArgs),
    /// Healthy endpoints' delivered rate and latency with and without one that never answers.
    Isolation(scenarios::IsolationArgs),
    /// The management API's read routes over 10,000 endpoints and 100,000 dead letters.
    Api(scenarios::ApiArgs),
    /// Many receivers down at once (hanging, slow, 503, refusing), then healed; not in `all`.
    Outage(scenarios::OutageArgs),
    /// HTTPS to many names through a real DNS server, slow receivers; herald against a bare
    /// client. Not in `all`.
    Production(Box<scenarios::ProductionArgs>),
    /// Single-job enqueues over HTTP through `herald serve` (h2load) while a worker delivers;
    /// not in `all`.
    Ingest(scenarios::IngestArgs),
    /// Runs the receiver alone until interrupted; prints its base URL first.
    Receive(ReceiveArgs),
    /// The bare POST loop of the ceiling (run by `ceiling` as a separate process).
    #[command(hide = true)]
    PostLoop(scenarios::PostLoopArgs),
    /// The bare HTTPS client of `production` (run by it as a separate process).
    #[command(hide = true)]
    HttpsLoop(Box<scenarios::HttpsLoopArgs>),
}

#[derive(Debug, clap::Args)]
struct ReceiveArgs {
    /// Port to listen on (0: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Count jobs 0..expect by the index in their payload (0: count requests only).
    #[arg(long, default_value_t = 0)]
    expect: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.scenario {
        Scenario::PostLoop(args) => {
            let v = rt.block_on(scenarios::post_loop(args))?;
            println!("{v}");
            return Ok(());
        }
        Scenario::HttpsLoop(args) => {
            let v = rt.block_on(scenarios::https_loop(*args))?;
            println!("{v}");
            return Ok(());
        }
        Scenario::Receive(args) => {
            return rt.block_on(async {
                let r = Receiver::start(args.port).await?;
                r.arm(Tracker::new(args.expect, false, Duration::ZERO)?);
                println!("{}", r.base_url);
                tokio::signal::ctrl_c().await?;
                Ok(())
            })
        }
        _ => {}
    }
    let herald = match cli.herald {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("herald"),
    };
    anyhow::ensure!(
        herald.exists(),
        "{} not found; build it with `cargo build --release -p herald` or pass --herald",
        herald.display()
    );
    let (name, results, machine) = rt.block_on(async {
        let bench = Bench {
            herald: herald.clone(),
            receiver: Receiver::start(0).await?,
            common: cli.common.clone(),
        };
        let machine = scenarios::machine(&herald).await;
        let (name, results) = match &cli.scenario {
            Scenario::All(a) => ("all", scenarios::all(&bench, a).await?),
            Scenario::Throughput(a) => (
                "throughput",
                json!({ "throughput": scenarios::throughput(&bench, a).await? }),
            ),
            Scenario::Ceiling(a) => (
                "ceiling",
                json!({ "ceiling": scenarios::ceiling(&bench, a).await? }),
            ),
            Scenario::Enqueue(a) => (
                "enqueue",
                json!({ "enqueue": scenarios::enqueue_rate(&bench, a).await? }),
            ),
            Scenario::Latency(a) => (
                "latency",
                json!({ "latency": scenarios::latency(&bench, a).await? }),
            ),
            Scenario::Backlog(a) => (
                "backlog",
                json!({ "backlog": scenarios::backlog(&bench, a).await? }),
            ),
            Scenario::Memory(a) => (
                "memory",
                json!({ "memory": scenarios::memory(&bench, a).await? }),
            ),
            Scenario::Idle(a) => ("idle", json!({ "idle": scenarios::idle(&bench, a).await? })),
            Scenario::Scripts(a) => (
                "scripts",
                json!({ "scripts": scenarios::scripts(&bench, a).await? }),
            ),
            Scenario::Redis(a) => (
                "redis",
                json!({ "redis": scenarios::redis(&bench, a).await? }),
            ),
            Scenario::Replicas(a) => (
                "replicas",
                json!({ "replicas": scenarios::replicas(&bench, a).await? }),
            ),
            Scenario::Isolation(a) => (
                "isolation",
                json!({ "isolation": scenarios::isolation(&bench, a).await? }),
            ),
            Scenario::Api(a) => ("api", json!({ "api": scenarios::api(&bench, a).await? })),
            Scenario::Outage(a) => (
                "outage",
                json!({ "outage": scenarios::outage(&bench, a).await? }),
            ),
            Scenario::Ingest(a) => (
                "ingest",
                json!({ "ingest": scenarios::ingest(&bench, a).await? }),
            ),
            Scenario::Production(a) => (
                "production",
                json!({ "production": scenarios::production(&bench, a).await? }),
            ),
            Scenario::Receive(_) | Scenario::PostLoop(_) | Scenario::HttpsLoop(_) => {
                unreachable!("handled above")
            }
        };
        anyhow::Ok((name, results, machine))
    })?;
    let rows = report::summary(&results);
    let doc = json!({
        "scenario": name,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": machine,
        "summary": rows,
        "results": results,
    });
    if !cli.json {
        print!("{}", report::outage_tables(&results));
        print!("{}", report::table(&rows));
    }
    println!("{doc}");
    if let Some(path) = cli.out {
        std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    }
    Ok(())
}
