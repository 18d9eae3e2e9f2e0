//! The benchmark's environment: its own `redis-server`, a receiver that answers 200 and measures
//! latency from a timestamp in the payload, and `herald worker` processes.

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;

pub fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// A `redis-server` without persistence on a free port; killed on drop.
pub struct Redis {
    _child: tokio::process::Child,
    pub url: String,
}

impl Redis {
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("herald-bench-{port}"));
        std::fs::create_dir_all(&dir)?;
        let mut child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (is it on PATH?)")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        loop {
            let line = lines
                .next_line()
                .await?
                .context("redis-server exited before it was ready")?;
            if line.contains("Ready to accept connections") {
                break;
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            _child: child,
            url: format!("redis://127.0.0.1:{port}"),
        })
    }

    pub fn client(&self) -> anyhow::Result<redis::Client> {
        Ok(redis::Client::open(self.url.as_str())?)
    }
}

/// What the receiver saw.
pub struct Received {
    pub count: Mutex<u64>,
    pub latency_us: Mutex<Histogram<u64>>,
    pub notify: Notify,
}

/// Starts the receiver on 127.0.0.1:0; the payload's `"t"` field (µs since the epoch, written
/// by the producer just before enqueueing) gives the enqueue-to-receipt latency.
pub async fn receiver() -> anyhow::Result<(String, Arc<Received>)> {
    let received = Arc::new(Received {
        count: Mutex::new(0),
        latency_us: Mutex::new(Histogram::new(3)?),
        notify: Notify::new(),
    });
    let app = axum::Router::new()
        .route(
            "/hook",
            post(|State(r): State<Arc<Received>>, body: Bytes| async move {
                let now = now_us();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    if let Some(t) = v.get("t").and_then(|t| t.as_u64()) {
                        let _ = r
                            .latency_us
                            .lock()
                            .expect("lock")
                            .record(now.saturating_sub(t));
                    }
                }
                *r.count.lock().expect("lock") += 1;
                r.notify.notify_waiters();
                "ok"
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, received))
}

/// `herald worker` processes; killed on drop.
pub struct Fleet {
    children: Vec<tokio::process::Child>,
}

impl Fleet {
    /// Starts `n` workers and waits until each says it is ready.
    pub async fn start(
        herald: &Path,
        redis_url: &str,
        n: usize,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut children = Vec::new();
        for _ in 0..n {
            let mut cmd = tokio::process::Command::new(herald);
            cmd.arg("worker")
                .env("HERALD_REDIS_URL", redis_url)
                .env("HERALD_METRICS_ADDR", "")
                .env("RUST_LOG", "info")
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().context("starting herald worker")?;
            let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
            loop {
                let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                    .await
                    .context("worker did not become ready")??
                    .context("worker exited before it was ready")?;
                if line.contains("herald worker ready") {
                    break;
                }
            }
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            children.push(child);
        }
        Ok(Self { children })
    }

    pub async fn stop(mut self) {
        for c in &mut self.children {
            let _ = c.kill().await;
        }
    }
}

/// Redis's count of commands processed so far (the INFO call itself included).
pub async fn commands_processed(
    conn: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("stats").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .context("INFO stats without total_commands_processed")?
        .trim()
        .parse()
        .context("total_commands_processed is not a number")
}
