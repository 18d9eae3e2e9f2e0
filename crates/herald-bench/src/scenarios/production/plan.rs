//! The receivers' names and what each does: `r<i>.bench.test` for i below `--names`, a few of
//! them missing from DNS (NXDOMAIN), never answered by it, or answered late, on one of
//! `--addresses` loopback addresses (127.0.1.1 onwards); a share keep their connections alive
//! between deliveries, the others close each after its answer. Every run (herald's and the
//! bare client's) derives the same plan from the same arguments.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::Args;
use herald_testkit::Zone;
use rand::Rng as _;

use crate::scenarios::shared::parse_duration;

/// The domain every receiver's name is under; the receivers' certificate is for `*.` it.
pub const DOMAIN: &str = "bench.test";

/// What the DNS server does for one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Answered at once.
    Good,
    /// Answered after `--dns-slow-delay`.
    Slow,
    /// NXDOMAIN.
    Missing,
    /// Never answered.
    Silent,
}

/// The receivers, as asked on the command line (and passed on to the bare client's process).
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Receivers, each a name of its own (`r<i>.bench.test`) and an endpoint of its own.
    #[arg(long, default_value_t = 10_000)]
    pub names: usize,
    /// Share of names that do not exist (NXDOMAIN).
    #[arg(long, default_value_t = 0.02)]
    pub dns_missing: f64,
    /// Share of names whose lookups are never answered.
    #[arg(long, default_value_t = 0.01)]
    pub dns_silent: f64,
    /// Share of names answered late, after `--dns-slow-delay`.
    #[arg(long, default_value_t = 0.02)]
    pub dns_slow: f64,
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub dns_slow_delay: Duration,
    /// TTL of the DNS answers, seconds (also the negative TTL of the missing names).
    #[arg(long, default_value_t = 300)]
    pub dns_ttl: u32,
    /// Share of receivers that keep HTTP/1.1 connections alive between deliveries; the others
    /// close each connection after its answer, as a receiver met again minutes later has.
    #[arg(long, default_value_t = 0.2)]
    pub keep_alive_share: f64,
    /// Loopback addresses the receivers listen on, 127.0.1.1 onwards (names spread over them).
    #[arg(long, default_value_t = 16)]
    pub addresses: u8,
    /// Receivers' answer time: median of a log-normal distribution...
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub answer_p50: Duration,
    /// ...and its 99th percentile.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub answer_p99: Duration,
}

impl PlanArgs {
    /// The same arguments, as flags for another `herald-bench` process.
    pub fn to_flags(&self) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        [
            ("--names", self.names.to_string()),
            ("--dns-missing", self.dns_missing.to_string()),
            ("--dns-silent", self.dns_silent.to_string()),
            ("--dns-slow", self.dns_slow.to_string()),
            ("--dns-slow-delay", ms(self.dns_slow_delay)),
            ("--dns-ttl", self.dns_ttl.to_string()),
            ("--keep-alive-share", self.keep_alive_share.to_string()),
            ("--addresses", self.addresses.to_string()),
            ("--answer-p50", ms(self.answer_p50)),
            ("--answer-p99", ms(self.answer_p99)),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    }
}

/// The plan of one scenario run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub names: usize,
    pub missing: f64,
    pub silent: f64,
    pub slow: f64,
    pub slow_delay: Duration,
    pub ttl: u32,
    pub keep_alive_share: f64,
    pub addresses: u8,
    /// The receivers' answer time: log-normal with this median, and this σ of its logarithm.
    pub answer_median: Duration,
    pub answer_sigma: f64,
}

/// The 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_348;

/// The longest answer time drawn: well under the workers' 15 s request timeout.
const ANSWER_CAP: Duration = Duration::from_secs(10);

impl From<&PlanArgs> for Plan {
    fn from(a: &PlanArgs) -> Self {
        Self {
            names: a.names,
            missing: a.dns_missing,
            silent: a.dns_silent,
            slow: a.dns_slow,
            slow_delay: a.dns_slow_delay,
            ttl: a.dns_ttl,
            keep_alive_share: a.keep_alive_share,
            addresses: a.addresses,
            answer_median: a.answer_p50,
            answer_sigma: Self::sigma(a.answer_p50, a.answer_p99),
        }
    }
}

impl Plan {
    /// The σ of a log-normal distribution with median `p50` and 99th percentile `p99`.
    pub fn sigma(p50: Duration, p99: Duration) -> f64 {
        (p99.as_secs_f64() / p50.as_secs_f64().max(1e-6))
            .ln()
            .max(0.0)
            / Z99
    }

    /// The name of receiver `i`.
    pub fn name(&self, i: usize) -> String {
        format!("r{i}.{DOMAIN}")
    }

    /// Receiver `i`'s index, from its name.
    pub fn index(name: &str) -> Option<usize> {
        name.strip_prefix('r')?
            .strip_suffix(DOMAIN)?
            .strip_suffix('.')?
            .parse()
            .ok()
    }

    /// A fixed scatter of `i` over 0..1000, so that the kinds and the keep-alive share do not
    /// line up with each other or with the addresses.
    fn per_mille(i: usize, salt: usize) -> f64 {
        ((i.wrapping_mul(7919)
            .wrapping_add(salt.wrapping_mul(104_729)))
            % 1000) as f64
            / 1000.0
    }

    pub fn kind(&self, i: usize) -> Kind {
        let p = Self::per_mille(i, 0);
        if p < self.missing {
            Kind::Missing
        } else if p < self.missing + self.silent {
            Kind::Silent
        } else if p < self.missing + self.silent + self.slow {
            Kind::Slow
        } else {
            Kind::Good
        }
    }

    /// Whether deliveries to receiver `i` can succeed (its name resolves, maybe late).
    pub fn resolves(&self, i: usize) -> bool {
        matches!(self.kind(i), Kind::Good | Kind::Slow)
    }

    /// Receivers whose names resolve.
    pub fn resolving(&self) -> usize {
        (0..self.names).filter(|&i| self.resolves(i)).count()
    }

    /// Whether receiver `i` keeps its connections alive between deliveries.
    pub fn keeps_alive(&self, i: usize) -> bool {
        Self::per_mille(i, 1) < self.keep_alive_share
    }

    /// The loopback address receiver `i` listens on.
    pub fn address(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            127,
            0,
            1,
            1 + (i % usize::from(self.addresses.max(1))) as u8,
        )
    }

    /// Every name and what the DNS server answers for it.
    pub fn zones(&self) -> Vec<(String, Zone)> {
        (0..self.names)
            .map(|i| {
                let answer = Zone::Answer(vec![IpAddr::V4(self.address(i))], self.ttl);
                let zone = match self.kind(i) {
                    Kind::Good => answer,
                    Kind::Slow => Zone::Late(self.slow_delay, Box::new(answer)),
                    Kind::Missing => Zone::Missing(self.ttl),
                    Kind::Silent => Zone::Silent,
                };
                (self.name(i), zone)
            })
            .collect()
    }

    /// One receiver's answer time, drawn from the log-normal distribution.
    pub fn answer_time(&self) -> Duration {
        let mut rng = rand::rng();
        // Box–Muller: a standard normal draw from two uniform ones.
        let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        self.answer_median
            .mul_f64((self.answer_sigma * z).exp())
            .min(ANSWER_CAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            names: 10_000,
            missing: 0.02,
            silent: 0.01,
            slow: 0.02,
            slow_delay: Duration::from_secs(1),
            ttl: 300,
            keep_alive_share: 0.2,
            addresses: 16,
            answer_median: Duration::from_millis(100),
            answer_sigma: Plan::sigma(Duration::from_millis(100), Duration::from_secs(2)),
        }
    }

    #[test]
    fn the_kinds_and_the_keep_alive_share_come_out_as_asked() {
        let p = plan();
        let count = |k: Kind| (0..p.names).filter(|&i| p.kind(i) == k).count();
        assert_eq!(count(Kind::Missing), 200);
        assert_eq!(count(Kind::Silent), 100);
        assert_eq!(count(Kind::Slow), 200);
        assert_eq!(p.resolving(), 9_700);
        let alive = (0..p.names).filter(|&i| p.keeps_alive(i)).count();
        assert_eq!(alive, 2_000);
        assert_eq!(Plan::index(&p.name(1234)), Some(1234));
        assert_eq!(Plan::index("r12.other.test"), None);
    }

    #[test]
    fn answer_times_have_the_median_and_99th_percentile_asked() {
        let p = plan();
        let mut t: Vec<Duration> = (0..20_000).map(|_| p.answer_time()).collect();
        t.sort();
        let (p50, p99) = (t[10_000].as_secs_f64(), t[19_800].as_secs_f64());
        assert!((0.09..0.11).contains(&p50), "p50 {p50}");
        assert!((1.6..2.5).contains(&p99), "p99 {p99}");
    }
}
