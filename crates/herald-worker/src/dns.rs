//! The workers' DNS resolver: receivers are named by strangers, tens of thousands of them, and
//! during an outage many of their names resolve slowly or not at all.
//!
//! - **Asynchronous**: lookups are UDP/TCP queries on the runtime (hickory), so a resolver that
//!   never answers holds no thread, and a thousand such lookups cost a thousand timers.
//! - **Caching by TTL**: an answer is reused until its TTL runs out (so a name costs one query per
//!   TTL, however many deliveries go to it); a negative answer (`NXDOMAIN`, no address) is
//!   reused for its zone's negative TTL, at most [`NEGATIVE_TTL_AT_MOST`].
//! - **Bounded**: one lookup takes at most the configured timeout (`HERALD_DNS_TIMEOUT`), retries
//!   included. A lookup that timed out or that the server failed is remembered for
//!   [`FAILED_LOOKUP_TTL`]: the next deliveries to that name fail at once instead of each waiting
//!   the timeout again.
//!
//! The resolver only answers; the SSRF guard ([`crate::guard::GuardedResolver`]) vets every
//! answer, cached or fresh, before the client dials it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};

/// Names whose answers are kept (hickory counts records; most receivers have one or two).
pub const CACHE_RECORDS: usize = 65_536;

/// Longest a negative answer is reused, whatever its zone says: a receiver whose name was just
/// created is found within a minute.
pub const NEGATIVE_TTL_AT_MOST: Duration = Duration::from_secs(60);

/// How long a lookup that timed out or failed at the server is answered from memory.
pub const FAILED_LOOKUP_TTL: Duration = Duration::from_secs(10);

/// Most failed lookups remembered; past it, new failures are not remembered (each costs its own
/// lookup again) until old ones expire.
const FAILED_LOOKUPS_KEPT: usize = 16_384;

/// Where and how long to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Name servers to ask (`HERALD_DNS_SERVERS`); empty: the system's (`/etc/resolv.conf`,
    /// with its search domains and options), and `/etc/hosts` first.
    pub servers: Vec<SocketAddr>,
    /// Longest one lookup may take, retries included (`HERALD_DNS_TIMEOUT`).
    pub timeout: Duration,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Reads `HERALD_DNS_SERVERS`: comma-separated `address` or `address:port` (port 53 when left
/// out; IPv6 with a port as `[::1]:53`).
pub fn parse_servers(text: &str) -> Result<Vec<SocketAddr>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<SocketAddr>()
                .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    format!("{s:?} is not a name server address such as 10.0.0.2, 10.0.0.2:53 or [fd00::2]:53")
                })
        })
        .collect()
}

/// Why a name gave no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist, or has no address record.
    #[error("{host} has no address (DNS: {why})")]
    NoAddress { host: String, why: String },
    /// No answer within the lookup timeout.
    #[error("DNS lookup of {host} timed out after {after:?}")]
    TimedOut { host: String, after: Duration },
    /// The name servers failed (refused, server failure, unreachable).
    #[error("DNS lookup of {host} failed: {why}")]
    Failed { host: String, why: String },
}

impl DnsError {
    fn of(host: &str, e: &ResolveError) -> Self {
        let why = e.to_string();
        if e.is_nx_domain() || e.is_no_records_found() {
            Self::NoAddress {
                host: host.to_owned(),
                why,
            }
        } else {
            Self::Failed {
                host: host.to_owned(),
                why,
            }
        }
    }
}

/// The shared resolver of one worker. Cheap to clone.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    timeout: Duration,
    failed: Arc<Mutex<HashMap<String, (Instant, DnsError)>>>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// A resolver asking `settings.servers`, or the system's when there are none. Fails when the
    /// system's configuration cannot be read.
    pub fn new(settings: &DnsSettings) -> Result<Self, ResolveError> {
        let provider = TokioConnectionProvider::default();
        let mut builder = if settings.servers.is_empty() {
            TokioResolver::builder(provider)?
        } else {
            let mut group = NameServerConfigGroup::with_capacity(2 * settings.servers.len());
            for &addr in &settings.servers {
                group.push(NameServerConfig::new(addr, Protocol::Udp));
                group.push(NameServerConfig::new(addr, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), group),
                provider,
            )
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.cache_size = CACHE_RECORDS;
        opts.negative_max_ttl = Some(NEGATIVE_TTL_AT_MOST);
        // Two tries within the bound: a lost UDP packet costs half of it, not all.
        opts.attempts = 2;
        opts.timeout = (settings.timeout / 2).max(Duration::from_millis(50));
        Ok(Self {
            resolver: builder.build(),
            timeout: settings.timeout,
            failed: Arc::default(),
        })
    }

    /// The addresses of `host`: from the cache while their TTL lasts, else asked, within the
    /// timeout.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(e) = self.failed_recently(host) {
            return Err(e);
        }
        let answer = match tokio::time::timeout(self.timeout, self.resolver.lookup_ip(host)).await {
            Ok(Ok(lookup)) => Ok(lookup.iter().collect::<Vec<_>>()),
            Ok(Err(e)) => Err(DnsError::of(host, &e)),
            Err(_) => Err(DnsError::TimedOut {
                host: host.to_owned(),
                after: self.timeout,
            }),
        };
        match answer {
            Ok(addrs) if addrs.is_empty() => Err(DnsError::NoAddress {
                host: host.to_owned(),
                why: "no address records".into(),
            }),
            Ok(addrs) => Ok(addrs),
            // hickory keeps negative answers for their TTL itself.
            Err(e @ DnsError::NoAddress { .. }) => Err(e),
            Err(e) => {
                self.remember(host, &e);
                Err(e)
            }
        }
    }

    fn failed_recently(&self, host: &str) -> Option<DnsError> {
        let mut failed = self
            .failed
            .lock()
            .expect("the failed-lookup memo is never poisoned");
        match failed.get(host) {
            Some((until, e)) if *until > Instant::now() => Some(e.clone()),
            Some(_) => {
                failed.remove(host);
                None
            }
            None => None,
        }
    }

    fn remember(&self, host: &str, e: &DnsError) {
        let mut failed = self
            .failed
            .lock()
            .expect("the failed-lookup memo is never poisoned");
        let now = Instant::now();
        if failed.len() >= FAILED_LOOKUPS_KEPT {
            failed.retain(|_, (until, _)| *until > now);
        }
        if failed.len() < FAILED_LOOKUPS_KEPT {
            failed.insert(host.to_owned(), (now + FAILED_LOOKUP_TTL, e.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_with_and_without_a_port() {
        assert_eq!(
            parse_servers(" 10.0.0.2, 127.0.0.1:5353,[::1]:53 ,").unwrap(),
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
            ]
        );
        assert_eq!(parse_servers("").unwrap(), Vec::<SocketAddr>::new());
        let e = parse_servers("dns.example.com").unwrap_err();
        assert!(e.contains("dns.example.com"), "{e}");
    }
}
