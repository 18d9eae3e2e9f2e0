//! `herald worker`: reads its settings, waits for Redis, binds the metrics address, and runs the
//! worker until SIGINT or SIGTERM.

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::{Global, WorkerArgs};
use crate::commands::{open_store_waiting, spawn_signal_handler};
use crate::settings;

pub async fn run(global: &Global, args: &WorkerArgs) -> anyhow::Result<()> {
    let cfg = settings::worker_config(args)?;
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
