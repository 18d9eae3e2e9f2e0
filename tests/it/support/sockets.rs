//! The TCP sockets a process holds, read from Linux's `/proc`: which connections are whose, and
//! whether the kernel keeps them alive.

use std::collections::HashSet;
use std::fs;

/// One IPv4 or IPv6 TCP socket of a process, from `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    pub local_port: u16,
    pub remote_port: u16,
    /// The kernel's state number: 1 is ESTABLISHED, 10 LISTEN.
    pub state: u8,
    /// Which timer is pending: 0 none, 1 retransmission, 2 keepalive, 3 TIME_WAIT, 4 zero
    /// window probe.
    pub timer: u8,
}

/// Kernel state number of an established connection.
pub const ESTABLISHED: u8 = 1;

/// Timer number of a pending keepalive timer.
pub const KEEPALIVE_TIMER: u8 = 2;

/// The TCP sockets process `pid` holds open now (listening ones included).
pub fn tcp_sockets_of(pid: i32) -> Vec<TcpSocket> {
    let inodes = socket_inodes(pid);
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            let (Some(local), Some(remote), Some(state), Some(timer), Some(inode)) = (
                fields.get(1),
                fields.get(2),
                fields.get(3),
                fields.get(5),
                fields.get(9),
            ) else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            let port = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            let timer = timer
                .split(':')
                .next()
                .and_then(|t| u8::from_str_radix(t, 16).ok());
            if let (Some(local_port), Some(remote_port), Ok(state), Some(timer)) = (
                port(local),
                port(remote),
                u8::from_str_radix(state, 16),
                timer,
            ) {
                sockets.push(TcpSocket {
                    local_port,
                    remote_port,
                    state,
                    timer,
                });
            }
        }
    }
    sockets
}

/// The inode numbers of the sockets among `pid`'s open files.
fn socket_inodes(pid: i32) -> HashSet<String> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    entries
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_owned())
        })
        .collect()
}
