//! What the tests share: the loopback DNS server of `herald-testkit`, and the worker's DNS
//! settings that point at it.
// Each test crate uses part of it.
#![allow(dead_code)]

use std::time::Duration;

pub use herald_testkit::{DnsServer, Zone};
use herald_worker::dns::DnsSettings;

/// Settings that send every lookup to `server`, bounded by `timeout`.
pub fn dns_settings(server: &DnsServer, timeout: Duration) -> DnsSettings {
    DnsSettings {
        servers: vec![server.addr()],
        timeout,
    }
}
