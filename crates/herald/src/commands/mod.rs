//! The subcommands. Each module runs one family; this one opens the store and dispatches.

mod dead;
mod endpoint;
mod enqueue;
mod inspect;
mod worker;

use std::fmt;

use anyhow::Context as _;
use herald_store::{Namespace, Store, StoreConfig, StoreError};

use crate::cli::{Cli, Command, Global};

/// An error caused by the input (bad argument, unknown id): exit code 2.
#[derive(Debug)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Turns a store error into the command's error: refusals keep exit code 2.
pub fn store_error(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::UnknownEndpoint(_)
        | StoreError::DuplicateJobId(_)
        | StoreError::InvalidArgument(_)
        | StoreError::ShardMismatch { .. } => Refused(e.to_string()).into(),
        e @ (StoreError::Redis(_) | StoreError::Pool(_)) => {
            anyhow::Error::new(e).context("cannot reach Redis (check HERALD_REDIS_URL)")
        }
        e => e.into(),
    }
}

/// Opens the deployment's store and checks that Redis answers with a matching layout.
pub async fn open_store(global: &Global) -> anyhow::Result<Store> {
    let ns = Namespace::new(&global.namespace).map_err(Refused)?;
    let store = Store::open(StoreConfig::new(&global.redis_url, ns, global.shards)).map_err(
        |e| match e {
            StoreError::Config(msg) => anyhow::Error::new(Refused(msg)),
            e => store_error(e),
        },
    )?;
    store.check().await.map_err(store_error)?;
    Ok(store)
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("serialising output")?
    );
    Ok(())
}

/// Formats a Redis-clock time in ms as RFC 3339 (UTC).
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Worker(args) => worker::run(g, &args).await,
        Command::Endpoint(cmd) => endpoint::run(g, cmd).await,
        Command::Enqueue(args) => enqueue::run(g, &args).await,
        Command::Stats => inspect::stats(g).await,
        Command::Job(crate::cli::JobCommand::Get { job_id }) => inspect::job(g, &job_id).await,
        Command::Dead(cmd) => dead::run(g, cmd).await,
    }
}
