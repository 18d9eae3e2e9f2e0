//! Loopback servers that herald's tests and `herald-bench` run against real clients:
//!
//! - [`dns`]: a DNS server on 127.0.0.1 answering from a fixed table (addresses with a TTL,
//!   NXDOMAIN, silence, or any of them late), counting the queries it receives;
//! - [`ca`]: a private certificate authority and the certificate it issues to receivers, as a
//!   rustls server configuration and as the PEM a client is told to trust.

pub mod ca;
pub mod dns;

pub use ca::TestCa;
pub use dns::{DnsServer, Zone};
