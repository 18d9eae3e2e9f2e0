//! `herald worker`: reads its settings, raises its open-files limit, waits for Redis, binds the
//! metrics address, and runs the worker until SIGINT or SIGTERM.

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{Global, WorkerArgs};
use crate::commands::{open_store_waiting, spawn_signal_handler};
use crate::failure::Refused;
use crate::settings;

pub async fn run(global: &Global, args: &WorkerArgs) -> anyhow::Result<()> {
    let mut cfg = settings::worker_config(args)?;
    fit_open_files(&mut cfg);
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
    herald_worker::run(cfg, store, listener, shutdown)
        .await
        .map_err(|e| Refused(e.to_string()))?;
    Ok(())
}

/// Files a worker keeps open besides its deliveries' sockets: Redis connections, the metrics
/// listener and its clients, standard streams.
const OTHER_FILES: usize = 256;

/// Raises the soft limit on open files to the hard one, and fits the slow lane's overflow to
/// what is left: each delivery holds a socket, and with the overflow of deliveries that
/// outlasted `HERALD_SLOW_AFTER` a worker may hold many more than the common soft limit of
/// 1024.
fn fit_open_files(cfg: &mut herald_worker::WorkerConfig) {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
        Err(e) => {
            warn!(error = %e, "cannot read or raise the open-files limit");
            return;
        }
    };
    let lanes = cfg.concurrency + cfg.slow_concurrency + OTHER_FILES;
    let room = limit.saturating_sub(lanes);
    if room < cfg.slow_overflow {
        cfg.slow_overflow = room;
        warn!(
            open_files = limit,
            overflow = room,
            "the open-files limit leaves little room for deliveries that outlast HERALD_SLOW_AFTER while the slow lane is full; raise it (ulimit -n) for many receivers down at once"
        );
    }
}
