//! `herald worker`: reads its settings, waits for Redis, binds the metrics address, and runs the
//! worker until SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{Global, WorkerArgs};
use crate::commands::{open_store, redact, Refused};
use crate::settings;

pub async fn run(global: &Global, args: &WorkerArgs) -> anyhow::Result<()> {
    let cfg = settings::worker_config(args)?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;

    // Redis may not be up yet (fresh deployment): keep trying, but refuse bad settings at once.
    let mut delay = Duration::from_millis(100);
    let store = loop {
        match open_store(global).await {
            Ok(store) => break store,
            Err(e) if e.downcast_ref::<Refused>().is_some() => return Err(e),
            Err(e) => {
                let error = redact(&format!("{e:#}"), &global.redis_url);
                warn!(%error, retry_in_ms = delay.as_millis() as u64, "waiting for Redis");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
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

fn spawn_signal_handler(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        // Cancel first: logging may fail (stderr closed) and must not keep the worker running.
        shutdown.cancel();
        info!("{name} received; draining");
    });
    Ok(())
}
