//! The SSRF guard's policy: webhook URLs are typed in by strangers, so a delivery must never
//! reach into our own network (loopback, private ranges, cloud metadata at 169.254.169.254,
//! ...). This module says which addresses are refused; it does no I/O.
//!
//! Two doors, both guarded by one [`Guard`]:
//! - host names go through the worker's guarded resolver (`herald_worker::guard`), the HTTP
//!   client's only resolver: it passes every answer, cached or fresh, through
//!   [`Guard::filter`], and the client dials only what is left, so a second lookup answering
//!   differently (DNS rebinding) has nothing to act on;
//! - literal addresses (`http://10.0.0.1/`) never reach a resolver, so the delivery checks them
//!   with [`Guard::check_url`] before sending anything, and the CLI and the API check them with
//!   [`Guard::check_webhook_url`] when a URL is saved.
//!
//! `HERALD_ALLOW_TARGETS` lists CIDRs let through anyway (a test receiver on loopback, a
//! receiver in one's own VPC).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::LazyLock;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use url::Url;

use crate::webhook_url::{validate_webhook_url, UrlError};

/// Text every refusal carries; the failure classifier and operators grep for it.
pub const BLOCKED_MARKER: &str = "blocked by the SSRF guard";

/// How an IPv6 range relates to IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Embedded {
    /// No IPv4 address inside: the range itself is blocked.
    No,
    /// An IPv4 address sits in the last 32 bits (mapped, translated, compatible, NAT64).
    Low32,
    /// 6to4: the IPv4 address follows the 16-bit prefix.
    SixToFour,
    /// Teredo: the server's IPv4 follows the 32-bit prefix, the client's is the last 32 bits
    /// inverted.
    Teredo,
}

/// The IPv4 ranges refused by default, each with the name a refusal gives.
const BLOCKED_V4: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\" (0.0.0.0/8)"),
    ("10.0.0.0/8", "private (10.0.0.0/8)"),
    ("100.64.0.0/10", "carrier-grade NAT (100.64.0.0/10)"),
    ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
    (
        "169.254.0.0/16",
        "link-local, cloud metadata (169.254.0.0/16)",
    ),
    ("172.16.0.0/12", "private (172.16.0.0/12)"),
    ("192.0.0.0/24", "IETF protocol assignments (192.0.0.0/24)"),
    ("192.0.2.0/24", "documentation (192.0.2.0/24)"),
    ("192.88.99.0/24", "6to4 relay anycast (192.88.99.0/24)"),
    ("192.168.0.0/16", "private (192.168.0.0/16)"),
    ("198.18.0.0/15", "benchmarking (198.18.0.0/15)"),
    ("198.51.100.0/24", "documentation (198.51.100.0/24)"),
    ("203.0.113.0/24", "documentation (203.0.113.0/24)"),
    ("224.0.0.0/4", "multicast (224.0.0.0/4)"),
    ("255.255.255.255/32", "broadcast (255.255.255.255)"),
    ("240.0.0.0/4", "reserved (240.0.0.0/4)"),
];

/// The IPv6 ranges refused by default, or judged by the IPv4 address they embed. More specific
/// entries come first: the first match decides.
const BLOCKED_V6: &[(&str, &str, Embedded)] = &[
    ("::/128", "unspecified (::)", Embedded::No),
    ("::1/128", "loopback (::1)", Embedded::No),
    (
        "::ffff:0:0/96",
        "IPv4-mapped (::ffff:0:0/96)",
        Embedded::Low32,
    ),
    (
        "::ffff:0:0:0/96",
        "IPv4-translated (::ffff:0:0:0/96)",
        Embedded::Low32,
    ),
    (
        "::/96",
        "IPv4-compatible, deprecated (::/96)",
        Embedded::Low32,
    ),
    ("64:ff9b::/96", "NAT64 (64:ff9b::/96)", Embedded::Low32),
    (
        "64:ff9b:1::/48",
        "local-use NAT64 (64:ff9b:1::/48)",
        Embedded::No,
    ),
    ("100::/64", "discard-only (100::/64)", Embedded::No),
    ("2001:2::/48", "benchmarking (2001:2::/48)", Embedded::No),
    ("2001:10::/28", "ORCHID (2001:10::/28)", Embedded::No),
    ("2001:20::/28", "ORCHIDv2 (2001:20::/28)", Embedded::No),
    (
        "2001:db8::/32",
        "documentation (2001:db8::/32)",
        Embedded::No,
    ),
    ("2001::/32", "Teredo (2001::/32)", Embedded::Teredo),
    ("2002::/16", "6to4 (2002::/16)", Embedded::SixToFour),
    ("3fff::/20", "documentation (3fff::/20)", Embedded::No),
    ("fc00::/7", "unique local (fc00::/7)", Embedded::No),
    ("fe80::/10", "link-local (fe80::/10)", Embedded::No),
    (
        "fec0::/10",
        "site-local, deprecated (fec0::/10)",
        Embedded::No,
    ),
    ("ff00::/8", "multicast (ff00::/8)", Embedded::No),
];

struct Tables {
    v4: Vec<(Ipv4Net, &'static str)>,
    v6: Vec<(Ipv6Net, &'static str, Embedded)>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| Tables {
    v4: BLOCKED_V4
        .iter()
        .map(|(net, name)| (net.parse().expect("valid IPv4 range"), *name))
        .collect(),
    v6: BLOCKED_V6
        .iter()
        .map(|(net, name, e)| (net.parse().expect("valid IPv6 range"), *name, *e))
        .collect(),
});

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    TABLES
        .v4
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, name)| *name)
}

/// The IPv4 addresses an IPv6 address of a translation range stands for.
fn embedded_v4(ip: Ipv6Addr, how: Embedded) -> Vec<Ipv4Addr> {
    let bits = u128::from(ip);
    match how {
        Embedded::No => Vec::new(),
        Embedded::Low32 => vec![Ipv4Addr::from(bits as u32)],
        Embedded::SixToFour => vec![Ipv4Addr::from((bits >> 80) as u32)],
        Embedded::Teredo => vec![
            Ipv4Addr::from((bits >> 64) as u32),
            Ipv4Addr::from(!(bits as u32)),
        ],
    }
}

/// Why `ip` is refused by default, naming its range; `None` when it is a public address.
pub fn blocked_range(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4).map(str::to_owned),
        IpAddr::V6(v6) => {
            let (_, name, how) = TABLES.v6.iter().find(|(net, _, _)| net.contains(&v6))?;
            if *how == Embedded::No {
                return Some((*name).to_owned());
            }
            embedded_v4(v6, *how).into_iter().find_map(|v4| {
                blocked_v4(v4).map(|inner| format!("{name} embedding {v4}, {inner}"))
            })
        }
    }
}

/// A list of ranges let through the guard (`HERALD_ALLOW_TARGETS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    /// Reads comma-separated CIDRs (`127.0.0.0/8, 10.1.0.0/16`); a bare address counts as one
    /// host. Empty entries are skipped; the error names the entry that does not parse.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "{entry:?} is not a CIDR such as 127.0.0.0/8 or fd00::/8"
                        ))
                    }
                },
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip`, or the IPv4 address it embeds, is listed.
    fn allows(&self, ip: IpAddr) -> bool {
        let listed = |ip: IpAddr| self.0.iter().any(|net| net.contains(&ip));
        if listed(ip) {
            return true;
        }
        match ip {
            IpAddr::V6(v6) => TABLES
                .v6
                .iter()
                .find(|(net, _, _)| net.contains(&v6))
                .is_some_and(|(_, _, how)| {
                    let inner = embedded_v4(v6, *how);
                    !inner.is_empty() && inner.into_iter().all(|v4| listed(IpAddr::V4(v4)))
                }),
            IpAddr::V4(_) => false,
        }
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&nets.join(","))
    }
}

/// An address the guard refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{addr} is {range}; {BLOCKED_MARKER} (HERALD_ALLOW_TARGETS lists exceptions)")]
pub struct Blocked {
    pub addr: IpAddr,
    /// The range, named (`loopback (127.0.0.0/8)`).
    pub range: String,
}

/// Why a webhook URL was refused when it was set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    /// It breaks a rule of every webhook URL (scheme, host, credentials, length...).
    #[error("invalid webhook URL: {0}")]
    Rule(#[from] UrlError),
    /// Its host is a literal address in a range the guard refuses.
    #[error("invalid webhook URL: {0}")]
    Blocked(#[from] Blocked),
}

/// A name whose every address the guard refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} resolves only to refused addresses, first {first}")]
pub struct BlockedName {
    pub host: String,
    #[source]
    pub first: Blocked,
}

/// The policy: the default blocked ranges, minus what the allow list lets through.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow: AllowList,
}

impl Guard {
    pub fn new(allow: AllowList) -> Self {
        Self { allow }
    }

    /// Refuses `ip` when it is in a blocked range that the allow list does not cover.
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.allow.allows(ip) {
            return Ok(());
        }
        match blocked_range(ip) {
            Some(range) => Err(Blocked { addr: ip, range }),
            None => Ok(()),
        }
    }

    /// Checks a URL whose host is a literal address; host names pass (the resolver checks
    /// what they resolve to).
    pub fn check_url(&self, url: &Url) -> Result<(), Blocked> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check(IpAddr::V6(v6)),
            _ => Ok(()),
        }
    }

    /// Checks a webhook URL as it is saved (by the CLI and the API alike): the URL rules of
    /// [`validate_webhook_url`], then the guard when its host is a literal address. Host names
    /// pass; the worker judges what they resolve to at each attempt.
    pub fn check_webhook_url(&self, input: &str) -> Result<Url, WebhookUrlError> {
        let url = validate_webhook_url(input)?;
        self.check_url(&url)?;
        Ok(url)
    }

    /// Keeps the allowed addresses; errs naming the first refused one when none is left.
    pub fn filter(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
        let mut first_refused = None;
        let mut kept = Vec::with_capacity(addrs.len());
        for addr in addrs {
            match self.check(addr.ip()) {
                Ok(()) => kept.push(addr),
                Err(b) => {
                    first_refused.get_or_insert(b);
                }
            }
        }
        match (kept.is_empty(), first_refused) {
            (false, _) => Ok(kept),
            (true, Some(first)) => Err(Refused::Blocked(BlockedName {
                host: host.to_owned(),
                first,
            })),
            (true, None) => Err(Refused::NoAddress(host.to_owned())),
        }
    }
}

/// Why [`Guard::filter`] left no address to dial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Blocked(BlockedName),
    #[error("{0} has no address")]
    NoAddress(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn first_and_last(net: IpNet) -> [IpAddr; 2] {
        [net.network(), net.broadcast()]
    }

    #[test]
    fn every_blocked_range_is_refused_at_both_ends_and_allowed_when_listed() {
        let guard = Guard::default();
        let mut nets: Vec<IpNet> = BLOCKED_V4.iter().map(|(n, _)| n.parse().unwrap()).collect();
        nets.extend(
            BLOCKED_V6
                .iter()
                .filter(|(_, _, how)| *how == Embedded::No)
                .map(|(n, _, _)| n.parse::<IpNet>().unwrap()),
        );
        for net in nets {
            for addr in first_and_last(net) {
                let err = guard.check(addr).expect_err(&format!("{addr} in {net}"));
                assert!(err.to_string().contains(BLOCKED_MARKER), "{err}");
                let allowed = Guard::new(AllowList::parse(&net.to_string()).unwrap());
                assert_eq!(allowed.check(addr), Ok(()), "{addr} with {net} allowed");
            }
        }
    }

    #[test]
    fn named_ranges_from_the_issue() {
        let cases = [
            ("127.0.0.1", "loopback"),
            ("0.0.0.0", "this network"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.254", "carrier-grade NAT"),
            ("169.254.169.254", "cloud metadata"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("240.0.0.1", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "unique local"),
            ("fd00:ec2::254", "unique local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
        ];
        for (addr, name) in cases {
            let range = blocked_range(ip(addr)).unwrap_or_else(|| panic!("{addr} passed"));
            assert!(range.contains(name), "{addr}: {range}");
        }
    }

    #[test]
    fn ipv4_embedded_in_ipv6_is_judged_by_the_ipv4_address() {
        let blocked = [
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::ffff:169.254.169.254", "IPv4-mapped"),
            ("::ffff:10.0.0.1", "IPv4-mapped"),
            ("::127.0.0.1", "IPv4-compatible"),
            ("::ffff:0:127.0.0.1", "IPv4-translated"),
            ("::ffff:0:a9fe:a9fe", "IPv4-translated"),
            ("64:ff9b::7f00:1", "NAT64"),
            ("64:ff9b::a9fe:a9fe", "NAT64"),
            ("2002:7f00:1::1", "6to4"),
            ("2002:c0a8:101::", "6to4"),
            // Teredo, client 127.0.0.1 (stored inverted: 0x80ffffFE), public server.
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),
            // Teredo with a private server address.
            ("2001:0:a00:1:8000:63bf:f7f7:f7f7", "Teredo"),
        ];
        for (addr, name) in blocked {
            let range = blocked_range(ip(addr)).unwrap_or_else(|| panic!("{addr} passed"));
            assert!(range.contains(name), "{addr}: {range}");
        }
        let public = [
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            // Teredo, server 65.54.227.120, client 8.8.8.8 (inverted f7f7:f7f7).
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        ];
        for addr in public {
            assert_eq!(blocked_range(ip(addr)), None, "{addr}");
        }
        // Listing the IPv4 range lets the embedding addresses through too.
        let guard = Guard::new(AllowList::parse("127.0.0.0/8").unwrap());
        assert_eq!(guard.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(guard.check(ip("2002:7f00:1::1")), Ok(()));
        assert!(Guard::default().check(ip("::ffff:127.0.0.1")).is_err());
        assert!(guard.check(ip("::ffff:10.0.0.1")).is_err());
    }

    #[test]
    fn public_addresses_and_range_neighbours_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "192.167.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
        ] {
            assert_eq!(Guard::default().check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn allow_list_parsing() {
        let list = AllowList::parse(" 127.0.0.0/8, 10.1.2.3 ,fd00::/8,").unwrap();
        assert_eq!(list.to_string(), "127.0.0.0/8,10.1.2.3/32,fd00::/8");
        assert!(AllowList::parse("").unwrap().is_empty());
        let err = AllowList::parse("127.0.0.0/8,localhost").unwrap_err();
        assert!(err.contains("localhost"), "{err}");
        assert!(AllowList::parse("10.0.0.0/33").is_err());
        // Host bits are dropped.
        assert_eq!(
            AllowList::parse("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn literal_urls_are_checked() {
        let guard = Guard::default();
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(guard.check_url(&url("http://127.0.0.1:8080/x")).is_err());
        assert!(guard
            .check_url(&url("http://[::ffff:127.0.0.1]/x"))
            .is_err());
        assert!(guard
            .check_url(&url("http://[::ffff:0:127.0.0.1]/x"))
            .is_err());
        assert!(guard.check_url(&url("http://[::1]/x")).is_err());
        // WHATWG URL parsing turns these spellings into 127.0.0.1 before we see them.
        assert!(guard.check_url(&url("http://2130706433/x")).is_err());
        assert!(guard.check_url(&url("http://0x7f.1/x")).is_err());
        assert_eq!(guard.check_url(&url("https://example.com/x")), Ok(()));
        let err = guard
            .check_webhook_url("http://127.0.0.1:8080/x")
            .unwrap_err();
        assert!(matches!(err, WebhookUrlError::Blocked(_)), "{err}");
        assert!(
            err.to_string()
                .starts_with("invalid webhook URL: 127.0.0.1 is loopback"),
            "{err}"
        );
        let err = guard.check_webhook_url("ftp://example.com/").unwrap_err();
        assert_eq!(err, WebhookUrlError::Rule(UrlError::Scheme("ftp".into())));
        assert!(guard.check_webhook_url("https://example.com/x").is_ok());
        assert_eq!(guard.check_url(&url("http://8.8.8.8/x")), Ok(()));
    }

    #[test]
    fn filter_keeps_only_allowed_addresses() {
        let guard = Guard::default();
        let sa = |s: &str| SocketAddr::new(ip(s), 443);
        let kept = guard
            .filter("mixed", vec![sa("10.0.0.1"), sa("8.8.8.8"), sa("::1")])
            .unwrap();
        assert_eq!(kept, vec![sa("8.8.8.8")]);
        assert!(matches!(
            guard.filter("none", vec![]),
            Err(Refused::NoAddress(_))
        ));
    }
}
