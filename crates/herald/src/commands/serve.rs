//! `herald serve`: reads its settings, waits for Redis, binds `HERALD_API_ADDR`, and serves the
//! management API and the operator console until SIGINT or SIGTERM.

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::{Global, ServeArgs};
use crate::commands::{open_store_waiting, spawn_signal_handler};
use crate::settings;

pub async fn run(global: &Global, args: &ServeArgs) -> anyhow::Result<()> {
    let (addr, cfg) = settings::serve_config(args)?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), "stopping")?;
    let Some(store) = open_store_waiting(global, &shutdown).await? else {
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on HERALD_API_ADDR {addr}"))?;
    let addr = listener.local_addr()?;
    info!(
        %addr,
        console = %format!("http://{addr}/"),
        namespace = %global.namespace,
        "herald serve ready"
    );
    herald_api::run(cfg, store, listener, shutdown)
        .await
        .context("serving the API")?;
    info!("herald serve stopped");
    Ok(())
}
