//! One `redis-server` process of the benchmark's Redis ([`crate::env::Redis`]) or of its
//! Redis Cluster ([`crate::cluster`]).

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};

/// One `redis-server` process; killed on drop, its directory removed.
#[derive(Debug)]
pub(crate) struct Node {
    child: tokio::process::Child,
    dir: PathBuf,
    pub(crate) port: u16,
}

impl Node {
    /// Starts a `redis-server` on `port` with `extra` arguments and waits until it accepts
    /// connections; fails when it exits first (another process took the port, say).
    /// `appendonly` turns on the append-only file with `appendfsync everysec`.
    pub(crate) async fn start(port: u16, appendonly: bool, extra: &[&str]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("herald-bench-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
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
                if appendonly { "yes" } else { "no" },
                "--appendfsync",
                "everysec",
                "--maxmemory-policy",
                "noeviction",
            ])
            .args(extra)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (is it on PATH?)")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        // From here the node is killed and its directory removed if anything fails.
        let node = Self { child, dir, port };
        loop {
            let line = lines.next_line().await?.with_context(|| {
                format!("redis-server on port {port} exited before it was ready")
            })?;
            if line.contains("Ready to accept connections") {
                break;
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(node)
    }

    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain connection to this node (no cluster redirections followed).
    pub(crate) async fn conn(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await?)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
