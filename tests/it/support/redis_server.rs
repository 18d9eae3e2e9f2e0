//! A real `redis-server` per test, on a free port and in its own temporary directory.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use super::process::Proc;

/// How long redis may take to say it is ready: a safety net, readiness itself is an event.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many fresh ports to try when another process grabbed the one we picked.
const PORT_ATTEMPTS: usize = 5;

/// A `redis-server` child process with persistence off, listening on 127.0.0.1 only.
///
/// Dropping it kills the server (SIGKILL) and removes its directory.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// Settings added to the defaults (a password, ACL users, TLS files), kept for restarts.
    extra: Vec<String>,
    /// Whether the port speaks TLS only.
    tls: bool,
    /// Redis's working directory; kept alive as long as the server may write into it.
    dir: TempDir,
    proc: Option<Proc>,
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (the OS picked it for us).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

impl RedisServer {
    /// Starts a server on a free port and returns once it accepts connections.
    pub fn start() -> RedisServer {
        Self::start_with(&[], false)
    }

    /// Starts a server that keeps its data across a restart in an append-only file, synced
    /// as `appendfsync` says (`always`, `everysec`).
    pub fn start_with_aof(appendfsync: &str) -> RedisServer {
        let args = ["--appendonly", "yes", "--appendfsync", appendfsync];
        Self::start_with(&args.map(String::from), false)
    }

    /// Starts a server with `extra` arguments after the defaults (`--requirepass`, `--user`
    /// ...); with `tls`, the port speaks TLS only (`extra` must name the certificate files).
    pub fn start_with(extra: &[String], tls: bool) -> RedisServer {
        let dir = tempfile::tempdir().expect("temporary directory for redis");
        let mut last_failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match launch(port, &dir, extra, tls) {
                Ok(proc) => {
                    return RedisServer {
                        port,
                        extra: extra.to_vec(),
                        tls,
                        dir,
                        proc: Some(proc),
                    }
                }
                // Someone took the port between our probe and redis's bind: pick another.
                Err(output) if output.contains("Address already in use") => last_failure = output,
                Err(output) => panic!("redis-server did not start on port {port}:\n{output}"),
            }
        }
        panic!("redis-server found no free port in {PORT_ATTEMPTS} attempts:\n{last_failure}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A synchronous client connection, for tests that look at or tamper with keys directly.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()))
    }

    /// Kills the server with SIGKILL (no shutdown, no save) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.signal(Signal::SIGKILL);
            proc.wait_exit(READY_TIMEOUT)
                .unwrap_or_else(|| panic!("redis-server survived SIGKILL:\n{}", proc.output()));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, sig: Signal) {
        self.proc
            .as_ref()
            .expect("redis-server is running")
            .signal(sig);
    }

    /// The value of `field` in the `section` of `INFO`, e.g. `("persistence",
    /// "aof_buffer_length")`.
    pub fn info(&self, section: &str, field: &str) -> String {
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut self.connection())
            .unwrap_or_else(|e| panic!("INFO {section}: {e}"));
        info.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {field} in INFO {section}:\n{info}"))
    }

    /// Kills the server if it runs, then starts a new one on the same port and in the same
    /// directory: empty without persistence, with what its append-only file kept otherwise.
    pub fn restart(&mut self) {
        self.kill();
        let proc = launch(self.port, &self.dir, &self.extra, self.tls).unwrap_or_else(|output| {
            panic!(
                "redis-server did not restart on port {}:\n{output}",
                self.port
            )
        });
        self.proc = Some(proc);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts redis on `port` and waits for its readiness line; `Err` carries its output if it
/// exited instead.
fn launch(port: u16, dir: &TempDir, extra: &[String], tls: bool) -> Result<Proc, String> {
    assert_ne!(port, 6379, "tests never use the default redis port");
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string()])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--bind", "127.0.0.1"])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path())
        .args(extra);
    if tls {
        cmd.args(["--port", "0", "--tls-port", &port.to_string()]);
    }
    let proc = Proc::spawn(format!("redis:{port}"), cmd, None);
    match proc.wait_for_line(READY_TIMEOUT, |l| l.contains("Ready to accept connections")) {
        Some(_) => Ok(proc),
        None => Err(proc.output()),
    }
}
