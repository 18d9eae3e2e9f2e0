//! A loopback TCP proxy that can play a network dropping flows: switched to blackhole mode, it
//! stops forwarding without closing anything, the way a NAT or a load balancer that forgot a
//! connection drops its packets, so that neither end learns that the other is gone.
//!
//! A connection that was blackholed stays so for good, as a dropped flow does; once the proxy
//! is healed, new connections forward again. Bytes that reach a blackholed connection are read
//! and thrown away, so the sender never blocks on a full buffer and never sees an error.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

/// A TCP proxy on 127.0.0.1 in front of `upstream`, stopped (every connection closed) when
/// dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    /// Whether new connections start blackholed.
    blackhole: AtomicBool,
    stop: AtomicBool,
    conns: Mutex<Vec<Conn>>,
}

/// One proxied connection: both sockets (to close them when the proxy stops) and its flag.
#[derive(Debug)]
struct Conn {
    sockets: [TcpStream; 2],
    blackholed: Arc<AtomicBool>,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Vec<Conn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Proxy {
    /// Starts a proxy to `127.0.0.1:upstream_port`, forwarding.
    pub fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            blackhole: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &accept_shared))
            .expect("spawn proxy thread");
        Proxy { addr, shared }
    }

    /// `redis://127.0.0.1:PORT` of the proxy (for a Redis upstream).
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Stops forwarding: every connection open now goes silent for good, and connections
    /// accepted from now on forward nothing, until [`heal`](Self::heal). Nothing is closed.
    pub fn blackhole(&self) {
        // The flag first, so that a connection accepted meanwhile cannot slip through.
        self.shared.blackhole.store(true, Ordering::SeqCst);
        for conn in self.shared.conns().iter() {
            conn.blackholed.store(true, Ordering::SeqCst);
        }
    }

    /// Connections accepted from now on forward again; those blackholed stay silent.
    pub fn heal(&self) {
        self.shared.blackhole.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for conn in self.shared.conns().drain(..) {
            for socket in &conn.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(upstream) = TcpStream::connect(shared.upstream) else {
            // Nothing to forward to (the server is down): refuse, as a closed port would.
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let blackholed = Arc::new(AtomicBool::new(shared.blackhole.load(Ordering::SeqCst)));
        let clones = (client.try_clone(), upstream.try_clone());
        let (Ok(client2), Ok(upstream2)) = clones else {
            continue;
        };
        {
            let mut conns = shared.conns();
            // Blackholed meanwhile: the flag was set before the list was walked.
            if shared.blackhole.load(Ordering::SeqCst) {
                blackholed.store(true, Ordering::SeqCst);
            }
            conns.push(Conn {
                sockets: [client2, upstream2],
                blackholed: Arc::clone(&blackholed),
            });
        }
        spawn_pump(&client, &upstream, &blackholed);
        spawn_pump(&upstream, &client, &blackholed);
    }
}

/// Copies `from` to `to` until either end closes, dropping the bytes while `blackholed`.
fn spawn_pump(from: &TcpStream, to: &TcpStream, blackholed: &Arc<AtomicBool>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let blackholed = Arc::clone(blackholed);
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if blackholed.load(Ordering::SeqCst) {
                continue;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        // One end went away: so does the other (a blackholed flow learns it only this way).
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
