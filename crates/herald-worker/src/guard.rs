//! The guarded resolver: the HTTP client's only resolver. It asks herald's caching resolver
//! ([`Dns`]) and passes every answer, cached or fresh, through the SSRF guard
//! ([`herald_core::guard`]), so the client dials only addresses the guard lets through.

use std::net::SocketAddr;
use std::sync::Arc;

use herald_core::guard::{BlockedName, Guard, Refused};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::dns::{Dns, DnsError};

/// Why the guarded resolver gave no address.
#[derive(Debug, thiserror::Error)]
pub enum Lookup {
    #[error(transparent)]
    Blocked(BlockedName),
    #[error("{0} has no address")]
    NoAddress(String),
    #[error(transparent)]
    Dns(#[from] DnsError),
}

impl From<Refused> for Lookup {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Blocked(b) => Lookup::Blocked(b),
            Refused::NoAddress(host) => Lookup::NoAddress(host),
        }
    }
}

/// The HTTP client's resolver: herald's caching resolver ([`Dns`]), then the guard, on every
/// lookup, cached or not. What it returns is exactly what the client dials.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: Arc<Guard>,
    dns: Dns,
}

impl GuardedResolver {
    pub fn new(guard: Arc<Guard>, dns: Dns) -> Self {
        Self { guard, dns }
    }

    /// The addresses of `host` the guard lets through.
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, Lookup> {
        let addrs = self.dns.lookup(host).await?;
        let kept = self.guard.filter(
            host,
            addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(),
        )?;
        Ok(kept)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let kept = this.lookup(name.as_str()).await?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use herald_core::guard::{AllowList, BLOCKED_MARKER};

    use super::*;

    #[tokio::test]
    async fn the_resolver_drops_blocked_addresses() {
        let resolve = |guard: Guard, host: &'static str| async move {
            let dns = crate::dns::Dns::new(&Default::default()).unwrap();
            GuardedResolver::new(Arc::new(guard), dns)
                .resolve(host.parse().unwrap())
                .await
                .map(|a| a.collect::<Vec<_>>())
        };
        let err = resolve(Guard::default(), "localhost").await.unwrap_err();
        assert!(err.to_string().contains("localhost"), "{err}");
        assert!(
            err.source()
                .is_some_and(|s| s.to_string().contains(BLOCKED_MARKER)),
            "{err}"
        );
        let allowed = Guard::new(AllowList::parse("127.0.0.0/8").unwrap());
        let addrs = resolve(allowed, "localhost").await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs
            .iter()
            .all(|a| a.ip().is_ipv4() && a.ip().is_loopback()));
    }
}
