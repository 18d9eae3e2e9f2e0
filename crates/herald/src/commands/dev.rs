//! `herald dev`: the local quick start. Uses `HERALD_REDIS_URL` if set, else starts a
//! `redis-server` from PATH on a free port; runs a worker, the management API and operator
//! console (printing their address and an admin token made for the session), and a receiver
//! that prints every delivery; registers a demo dashboard subscribed to `heroku` at level `warn` and publishes
//! the documentation's example event to it; registers a second dashboard whose URL refuses
//! connections and shows its strikes until it is disabled; then keeps running until Ctrl-C and
//! cleans up what it started.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::HeaderMap;
use herald_core::{EndpointId, Level, StatusEvent, Subscription};
use herald_producer::Producer;
use herald_store::Store;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{DevArgs, Global};
use crate::commands::open_store;
use crate::failure::{store_error, Refused};

/// A retry schedule short enough to watch strikes add up in seconds.
const DEV_SCHEDULE: &str = "1s,1s,2s,3s,5s,10s,30s,1m";

/// A `redis-server` started for the session; killed, and its directory removed, when dropped.
struct LocalRedis {
    child: tokio::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_redis() -> anyhow::Result<(LocalRedis, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("herald-dev-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut child = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Refused(format!(
                "cannot start redis-server ({e}); install it (e.g. `apt-get install redis-server`) or set HERALD_REDIS_URL to a running Redis"
            ))
        })?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("redis-server did not become ready")??
            .context("redis-server exited before it was ready")?;
        if line.contains("Ready to accept connections") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((
        LocalRedis { child, dir },
        format!("redis://127.0.0.1:{port}"),
    ))
}

/// Serves POSTs on `listener` and prints each delivery.
async fn receiver(listener: TcpListener, stop: CancellationToken) {
    let app = axum::Router::new().fallback(|headers: HeaderMap, body: Bytes| async move {
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        let pretty = serde_json::from_slice::<serde_json::Value>(&body)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        println!("\n[receiver] delivery {id}:\n{pretty}");
        "ok"
    });
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
}

fn say(text: &str) {
    println!("\n[dev] {text}");
}

pub async fn run(global: &Global, args: &DevArgs) -> anyhow::Result<()> {
    let mut global = Global {
        redis_url: global.redis_url.clone(),
        redis_cluster: global.redis_cluster,
        enqueue_wait_replicas: global.enqueue_wait_replicas,
        enqueue_wait_timeout: global.enqueue_wait_timeout,
        namespace: global.namespace.clone(),
        shards: global.shards,
        json: global.json,
    };
    let _redis = redis_for(&mut global).await?;
    let store = open_store(&global).await?;
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
    }

    let listener = TcpListener::bind(("127.0.0.1", args.receiver_port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.receiver_port))?;
    let receiver_url = format!("http://{}/webhook", listener.local_addr()?);
    let receiver_task = tokio::spawn(receiver(listener, stop.clone()));
    say(&format!("receiver listening at {receiver_url}"));
    let worker = start_worker(&store, bind_or_any(&args.metrics_addr, "metrics").await?)?;
    let console = start_console(&store, bind_or_any(&args.api_addr, "the console").await?)?;

    let result = demo(&store, &receiver_url, &stop).await;
    if let Err(e) = &result {
        say(&format!("demo stopped: {e:#}"));
    } else {
        say("demo done; the worker and the console keep running. Look around in the console, or try `herald stats` or `herald endpoint get demo-dashboard` in another terminal. Ctrl-C to stop.");
        stop.cancelled().await;
    }
    say("stopping");
    console.stop.cancel();
    let _ = console.task.await;
    worker.stop.cancel();
    if let Ok(Err(e)) = worker.task.await {
        say(&format!("the worker could not run: {e}"));
    }
    stop.cancel();
    let _ = receiver_task.await;
    result
}

/// The Redis of the demo: the one given (`HERALD_REDIS_URL` or `--redis-url`), or a
/// `redis-server` started for it, whose URL `global` then names.
async fn redis_for(global: &mut Global) -> anyhow::Result<Option<LocalRedis>> {
    let given = std::env::var_os("HERALD_REDIS_URL").is_some()
        || std::env::args().any(|a| a == "--redis-url" || a.starts_with("--redis-url="));
    if given {
        say(&format!(
            "using the given Redis, namespace {:?}",
            global.namespace
        ));
        return Ok(None);
    }
    let (redis, url) = start_redis().await?;
    say(&format!(
        "started redis-server at {url} (no persistence; stopped and removed on exit); \
         in another terminal: export HERALD_REDIS_URL={url}"
    ));
    global.redis_url = url;
    Ok(Some(redis))
}

/// A listener on `addr`, or on a free loopback port when `addr` is busy (said as `what`).
async fn bind_or_any(addr: &str, what: &str) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) => {
            say(&format!(
                "{addr} is busy ({e}); serving {what} on a free port"
            ));
            Ok(TcpListener::bind("127.0.0.1:0").await?)
        }
    }
}

/// A task of the demo and how to stop it.
struct Running<T> {
    task: tokio::task::JoinHandle<T>,
    stop: CancellationToken,
}

/// The loopback ranges the demo's receivers listen on, which the SSRF guard refuses by default.
fn loopback() -> herald_core::guard::AllowList {
    herald_core::guard::AllowList::parse("127.0.0.0/8,::1/128").expect("loopback ranges parse")
}

/// A worker with the demo's short retry schedule, serving its metrics on `metrics`.
fn start_worker(
    store: &Store,
    metrics: TcpListener,
) -> anyhow::Result<Running<Result<(), herald_worker::http::ClientError>>> {
    let metrics_addr = metrics.local_addr()?;
    let mut cfg = herald_worker::WorkerConfig {
        retry: DEV_SCHEDULE.parse().expect("the dev schedule parses"),
        ..herald_worker::WorkerConfig::default()
    };
    cfg.poll_interval = Duration::from_secs(2);
    cfg.allow_targets = loopback();
    let stop = CancellationToken::new();
    let task = tokio::spawn(herald_worker::run(
        cfg,
        store.clone(),
        Some(metrics),
        stop.clone(),
    ));
    say(&format!(
        "worker running (retry schedule {DEV_SCHEDULE}); metrics at http://{metrics_addr}/metrics"
    ));
    Ok(Running { task, stop })
}

/// The API and the console on `api`, with an admin token made for this session.
fn start_console(store: &Store, api: TcpListener) -> anyhow::Result<Running<std::io::Result<()>>> {
    let api_addr = api.local_addr()?;
    let token = herald_api::auth::new_token(herald_api::auth::Scope::Admin);
    let mut api_cfg = herald_api::ApiConfig::new(
        herald_api::auth::Tokens::parse(&token.hashed).expect("a token just made parses"),
    );
    // Let endpoints set from the console point at the demo's receivers too.
    api_cfg.allow_targets = loopback();
    let stop = CancellationToken::new();
    let task = tokio::spawn(herald_api::run(api_cfg, store.clone(), api, stop.clone()));
    say(&format!(
        "console at http://{api_addr}/ ; log in with this admin token, made for this session: {}",
        token.token
    ));
    say(&format!(
        "API at http://{api_addr}/api/v1 with the same token (Authorization: Bearer …); \
         its OpenAPI document at http://{api_addr}/openapi.json"
    ));
    Ok(Running { task, stop })
}

/// The demo: one working dashboard, one broken one.
async fn demo(store: &Store, receiver_url: &str, stop: &CancellationToken) -> anyhow::Result<()> {
    let producer = Producer::new(store.clone());
    let warn = Subscription {
        level: Level::Warn,
        components: Vec::new(),
    };
    let demo = EndpointId::new("demo-dashboard").expect("valid id");
    store
        .set_endpoint(&demo, receiver_url, None)
        .await
        .map_err(store_error)?;
    store
        .subscribe(&demo, "heroku", &warn)
        .await
        .map_err(store_error)?;
    say("dashboard demo-dashboard subscribed to heroku at level warn");

    let event = StatusEvent::from_json(herald_core::event::EXAMPLE.as_bytes())?;
    let report = producer.publish(&event).await?;
    say(&format!(
        "published the example event (heroku up -> warn): {} job(s) enqueued",
        report.enqueued
    ));
    wait_delivered(store, &report.jobs, stop).await?;

    let refused_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let broken = EndpointId::new("broken-dashboard").expect("valid id");
    let broken_url = format!("http://127.0.0.1:{refused_port}/webhook");
    store
        .set_endpoint(&broken, &broken_url, None)
        .await
        .map_err(store_error)?;
    store
        .subscribe(&broken, "heroku", &warn)
        .await
        .map_err(store_error)?;
    say(&format!(
        "dashboard broken-dashboard at {broken_url} (nothing listens there) subscribed to heroku"
    ));
    let report = producer.publish(&event).await?;
    say(&format!(
        "published the event again: {} job(s); watch broken-dashboard's strikes",
        report.enqueued
    ));
    let mut last = u32::MAX;
    loop {
        let mut conn = store.conn().await.map_err(store_error)?;
        let now = store.now_ms(&mut conn).await.map_err(store_error)?;
        let state = store
            .endpoint_state(&broken, now)
            .await
            .map_err(store_error)?
            .context("broken-dashboard vanished")?;
        if let Some(d) = state.disabled {
            say(&format!("broken-dashboard disabled: {}", d.reason));
            say(
                "its jobs are parked as they come due, spending no attempts; fix it with \
                 `herald endpoint set broken-dashboard --url <working url>` and they are \
                 delivered at once",
            );
            return Ok(());
        }
        if state.strikes != last {
            last = state.strikes;
            say(&format!("broken-dashboard strikes: {last}"));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.cancelled() => return Ok(()),
        }
    }
}

/// Waits until the given jobs have left the store (delivered).
async fn wait_delivered(
    store: &Store,
    jobs: &[(String, String)],
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    for (_, job) in jobs {
        loop {
            if store.job(job).await.map_err(store_error)?.is_none() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.cancelled() => return Ok(()),
            }
        }
    }
    say(&format!(
        "{} delivery(ies) acknowledged by the receiver",
        jobs.len()
    ));
    Ok(())
}
