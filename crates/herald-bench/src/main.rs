//! `herald-bench`: measures herald against a real `redis-server` and a real HTTP receiver, with
//! real `herald worker` processes, and prints the figures as a table and as JSON.
//!
//! - `latency`: enqueue-to-receipt latency at a fixed offered rate, with an idle fleet.
//! - `idle`: Redis commands per second spent by an idle fleet.
//!
//! Modules: `env` (Redis, receiver and worker processes), `scenarios` (what is measured).

mod env;
mod scenarios;

use clap::{Parser, Subcommand};

/// Benchmarks of herald. Build first: `cargo build --release -p herald -p herald-bench`.
#[derive(Debug, Parser)]
#[command(name = "herald-bench")]
struct Cli {
    /// Path of the `herald` binary [default: next to this one].
    #[arg(long, global = true)]
    herald: Option<std::path::PathBuf>,
    /// Print only the JSON result.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Enqueue-to-receipt latency at a fixed offered rate.
    Latency(scenarios::LatencyArgs),
    /// Redis commands per second spent by an idle fleet.
    Idle(scenarios::IdleArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let herald = match cli.herald {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("herald"),
    };
    anyhow::ensure!(
        herald.exists(),
        "{} not found; build it with `cargo build --release -p herald`",
        herald.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        match cli.scenario {
            Scenario::Latency(args) => scenarios::latency(&herald, args).await,
            Scenario::Idle(args) => scenarios::idle(&herald, args).await,
        }
    })?;
    if !cli.json {
        for (k, v) in report.as_object().into_iter().flatten() {
            println!("{k:<28} {v}");
        }
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
