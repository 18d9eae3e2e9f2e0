//! A child process under test supervision: its output is drained and kept line by line, and its
//! exit is observed as an event, so tests wait on what the process does, never on the clock.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Which pipe a captured line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A running (or finished) child process whose pipes are read by background threads.
///
/// The threads never stop reading, so a chatty process can never block on a full pipe; every
/// line is kept so that tests can assert on it and print it when they fail. The process is
/// killed with SIGKILL when this value is dropped, so a failing test leaves nothing behind.
#[derive(Debug)]
pub struct Proc {
    name: String,
    pid: Pid,
    shared: Arc<Shared>,
}

/// What the reader and waiter threads publish, guarded by one lock and announced by one condvar.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    lines: Vec<(Stream, String)>,
    /// Pipes not yet at end of file: 2 while the process (or a child holding them) lives.
    open_streams: usize,
    /// Set once by the waiter thread, which owns the [`Child`] and reaps it.
    exit: Option<ExitStatus>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the process state from `Drop`.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `done` holds or `timeout` passes; returns the guard and whether it held.
    fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&State) -> bool,
    ) -> (MutexGuard<'_, State>, bool) {
        let (guard, result) = self
            .changed
            .wait_timeout_while(self.lock(), timeout, |s| !done(s))
            .unwrap_or_else(|e| e.into_inner());
        let held = !result.timed_out();
        (guard, held)
    }
}

impl Proc {
    /// Starts `cmd` with stdout and stderr piped (and `stdin` fed, then closed, if given).
    pub fn spawn(name: impl Into<String>, mut cmd: Command, stdin: Option<Vec<u8>>) -> Proc {
        let name = name.into();
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
        let shared = Arc::new(Shared::default());
        shared.lock().open_streams = 2;

        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            // A thread, so that a process that writes before it reads cannot deadlock us.
            thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        spawn_reader(&name, Stream::Stdout, stdout, Arc::clone(&shared));
        spawn_reader(&name, Stream::Stderr, stderr, Arc::clone(&shared));
        spawn_waiter(&name, child, Arc::clone(&shared));
        Proc { name, pid, shared }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Waits for the first line (on either stream) that matches `pred` and returns it.
    ///
    /// Returns `None` when both streams closed (the process is gone) without such a line.
    /// Panics after `timeout`, which is a safety net only.
    pub fn wait_for_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let find = |s: &State| {
            s.lines
                .iter()
                .find(|(_, l)| pred(l))
                .map(|(_, l)| l.clone())
        };
        let (state, _) = self
            .shared
            .wait_until(timeout, |s| find(s).is_some() || s.open_streams == 0);
        if let Some(line) = find(&state) {
            return Some(line);
        }
        if state.open_streams == 0 {
            return None;
        }
        drop(state);
        panic!(
            "{}: no matching output line within {timeout:?}; output so far:\n{}",
            self.name,
            self.output()
        );
    }

    /// Waits for the process to exit and for its pipes to be drained; `None` after `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let (state, held) = self
            .shared
            .wait_until(timeout, |s| s.exit.is_some() && s.open_streams == 0);
        if held {
            state.exit
        } else {
            None
        }
    }

    /// The exit status if the process has been reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.shared.lock().exit
    }

    /// Sends `sig` unless the process has already exited.
    pub fn signal(&self, sig: Signal) {
        let state = self.shared.lock();
        if state.exit.is_none() {
            // The waiter may have reaped the process an instant ago: ESRCH is fine then.
            let _ = signal::kill(self.pid, sig);
        }
    }

    /// Lines written to stdout so far, joined with newlines.
    pub fn stdout(&self) -> String {
        self.stream(Stream::Stdout)
    }

    /// Lines written to stderr so far, joined with newlines.
    pub fn stderr(&self) -> String {
        self.stream(Stream::Stderr)
    }

    fn stream(&self, which: Stream) -> String {
        let state = self.shared.lock();
        let lines: Vec<&str> = state
            .lines
            .iter()
            .filter(|(s, _)| *s == which)
            .map(|(_, l)| l.as_str())
            .collect();
        lines.join("\n")
    }

    /// Every line so far, each prefixed with its stream, for failure messages.
    pub fn output(&self) -> String {
        let state = self.shared.lock();
        let mut out = String::new();
        for (stream, line) in &state.lines {
            let tag = match stream {
                Stream::Stdout => "out",
                Stream::Stderr => "err",
            };
            out.push_str(&format!("  [{} {tag}] {line}\n", self.name));
        }
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
        // Reaping is quick after SIGKILL; the bound only guards against a stuck pipe holder.
        let _ = self.wait_exit(Duration::from_secs(10));
    }
}

fn spawn_reader(name: &str, stream: Stream, pipe: impl Read + Send + 'static, shared: Arc<Shared>) {
    thread::Builder::new()
        .name(format!("{name}-{stream:?}"))
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']).to_owned();
                        shared.lock().lines.push((stream, line));
                        shared.changed.notify_all();
                    }
                }
            }
            shared.lock().open_streams -= 1;
            shared.changed.notify_all();
        })
        .expect("spawn reader thread");
}

fn spawn_waiter(name: &str, mut child: Child, shared: Arc<Shared>) {
    thread::Builder::new()
        .name(format!("{name}-wait"))
        .spawn(move || {
            let status = child.wait().expect("wait for child");
            shared.lock().exit = Some(status);
            shared.changed.notify_all();
        })
        .expect("spawn waiter thread");
}

/// Polls `probe` every `interval` until it yields a value; panics after `timeout`.
///
/// Only for conditions that no event announces (e.g. counters read through `herald stats`).
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => thread::sleep(interval),
        }
    }
}
