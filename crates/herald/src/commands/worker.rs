//! `herald worker`: reads its settings, raises its open-files limit, waits for Redis, binds the
//! metrics address, and runs the worker until SIGINT or SIGTERM.

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{Global, WorkerArgs};
use crate::commands::{open_store_waiting, spawn_signal_handler};
use crate::settings;

pub async fn run(global: &Global, args: &WorkerArgs) -> anyhow::Result<()> {
    let cfg = settings::worker_config(args)?;
    raise_open_files_limit(&cfg);
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), "draining")?;
    let Some(store) = open_store_waiting(global, &shutdown).await? else {
        return Ok(());
    };
    let listener = match cfg.metrics_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on HERALD_METRICS_ADDR {addr}"))?,
        ),
        None => None,
    };
    let metrics = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .unwrap_or_else(|| "off".into());
    info!(
        metrics = %metrics,
        concurrency = cfg.concurrency,
        retries = cfg.retry.retries(),
        namespace = %global.namespace,
        shards = global.shards,
        "herald worker ready"
    );
    herald_worker::run(cfg, store, listener, shutdown).await;
    Ok(())
}

/// Raises the soft limit on open files to the hard one: each delivery holds a socket, and the
/// worker may hold the main and slow lanes' slots plus an overflow of slow deliveries (see
/// `herald_worker::max_sockets`), more than the common soft limit of 1024.
fn raise_open_files_limit(cfg: &herald_worker::WorkerConfig) {
    let wanted = herald_worker::max_sockets(cfg) as u64 + 256;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < wanted => warn!(
            limit,
            wanted,
            "the open-files limit is below what the delivery slots may need; raise it (ulimit -n) or lower HERALD_CONCURRENCY"
        ),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot read or raise the open-files limit"),
    }
}
