//! The worker's settings, with their defaults. Layering (TOML file, environment, flags) and
//! validation messages are the binary's job; this is the typed result.

use std::net::SocketAddr;
use std::time::Duration;

use herald_core::RetrySchedule;

use crate::dns::DnsSettings;
use crate::http::EgressProxy;
use herald_core::guard::AllowList;

/// Which failed attempts count as strikes towards disabling an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrikeOn {
    /// Only failures to reach the receiver at all: DNS, refused, unreachable, TLS, connect
    /// timeout, blocked by the SSRF guard. A receiver answering 500 is up, so it does not
    /// strike; it is retried by the schedule.
    #[default]
    Connection,
    /// Every failed attempt.
    All,
}

impl std::str::FromStr for StrikeOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "connection" => Ok(Self::Connection),
            "all" => Ok(Self::All),
            other => Err(format!("{other:?} is not one of connection, all")),
        }
    }
}

/// Everything a worker needs to know besides where Redis is.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Most deliveries in flight at once in this process for endpoints in good standing
    /// (`HERALD_CONCURRENCY`): the main lane.
    pub concurrency: usize,
    /// A delivery unanswered after this long judges its endpoint slow (`HERALD_SLOW_AFTER`):
    /// the delivery leaves the main lane for the slow one, and claims serve the endpoint from
    /// slow lanes only, until a delivery to it comes back quicker than this. Short enough that
    /// a receiver that hangs holds a main-lane slot for no longer than a healthy endpoint's
    /// delivery may wait; long against a healthy receiver's answer.
    pub slow_after: Duration,
    /// Most deliveries in flight at once for endpoints judged slow (`HERALD_SLOW_CONCURRENCY`),
    /// besides `concurrency`: what slow and hanging receivers share, so they still make
    /// progress, while the main lane keeps the others on time.
    pub slow_concurrency: usize,
    /// Most deliveries that outlasted `slow_after` with the slow lane full, each holding only
    /// its socket: the first deliveries to a crowd of receivers that went down together, each
    /// caught once. Past it a slow delivery keeps its main-lane slot until it ends. Not a
    /// setting: [`WorkerConfig::overflow_for`] the main lane, lowered by `herald worker` to
    /// what its open-files limit allows.
    pub slow_overflow: usize,
    /// Most jobs taken from a shard in one claim.
    pub claim_batch: usize,
    /// Total time allowed for one attempt, connect to last body byte (`HERALD_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// Time allowed to establish the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Delays between attempts (`HERALD_RETRY_SCHEDULE`, `HERALD_RETRY_JITTER`).
    pub retry: RetrySchedule,
    /// How long a claimed job belongs to this worker before others may take it back
    /// (`HERALD_LEASE`). Longer than the request timeout, so a slow delivery is not duplicated.
    pub lease: Duration,
    /// How long in-flight deliveries may finish after SIGTERM before their leases are handed
    /// back (`HERALD_SHUTDOWN_GRACE`).
    pub shutdown_grace: Duration,
    /// Safety-net scan of every shard (`HERALD_POLL_INTERVAL`), jittered by ±20 % so that
    /// workers spread out. Wake-up hints bring work at once; the scan only catches what a hint
    /// missed (a worker that died holding a hint, a lease whose holder died), so it can be rare.
    pub poll_interval: Duration,
    /// Most entries kept in the dead-letter store, over all shards (`HERALD_DEAD_MAX`).
    pub dead_max: u64,
    /// Oldest dead-letter entry kept (`HERALD_DEAD_MAX_AGE`).
    pub dead_max_age: Duration,
    /// Consecutive strikes that disable an endpoint (`HERALD_DISABLE_AFTER`).
    pub disable_after: u32,
    /// Which failed attempts count as strikes (`HERALD_STRIKE_ON`).
    pub strike_on: StrikeOn,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`HERALD_METRICS_ADDR`).
    pub metrics_addr: Option<SocketAddr>,
    /// Ranges the SSRF guard lets through (`HERALD_ALLOW_TARGETS`). Empty by default: loopback,
    /// private, link-local (cloud metadata) and the other special ranges are refused.
    pub allow_targets: AllowList,
    /// An egress proxy every delivery goes through (`HERALD_EGRESS_PROXY`); the proxy then
    /// resolves receivers' names and must vet them, herald checks only literal addresses.
    pub egress_proxy: Option<EgressProxy>,
    /// CA certificates that receivers' certificates may also chain to, besides the webpki
    /// roots (`HERALD_CA_FILE`): receivers behind a private CA.
    pub extra_roots: Vec<crate::http::CaCertificate>,
    /// Where receivers' names are resolved and how long a lookup may take
    /// (`HERALD_DNS_SERVERS`, `HERALD_DNS_TIMEOUT`).
    pub dns: DnsSettings,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 200,
            claim_batch: 100,
            request_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            retry: RetrySchedule::default(),
            lease: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(20),
            poll_interval: Duration::from_secs(30),
            dead_max: 100_000,
            dead_max_age: Duration::from_secs(30 * 24 * 3600),
            disable_after: 5,
            strike_on: StrikeOn::Connection,
            slow_after: Duration::from_millis(250),
            slow_concurrency: Self::slow_lane_for(200),
            slow_overflow: Self::overflow_for(200),
            metrics_addr: Some(SocketAddr::from(([0, 0, 0, 0], 9464))),
            allow_targets: AllowList::default(),
            egress_proxy: None,
            extra_roots: Vec::new(),
            dns: DnsSettings::default(),
        }
    }
}

impl WorkerConfig {
    /// The slow lane's size when none is set: half the main lane's, at least 1.
    pub fn slow_lane_for(concurrency: usize) -> usize {
        (concurrency / 2).max(1)
    }

    /// Room for deliveries that leave the main lane with the slow lane full: 16 per main-lane
    /// slot, enough for the first deliveries to a thousand receivers going down at once (see
    /// "Many receivers down at once" in docs/SCALING.md).
    pub fn overflow_for(concurrency: usize) -> usize {
        concurrency.saturating_mul(16)
    }

    /// The most deliveries this worker may have in flight, a socket each.
    pub fn max_deliveries(&self) -> usize {
        self.concurrency + self.slow_concurrency + self.slow_overflow
    }

    /// Problems worth a warning (not a refusal) with these settings.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.lease <= self.request_timeout + self.connect_timeout {
            w.push(format!(
                "lease ({:?}) is not longer than connect + request timeout ({:?}): a slow delivery may be taken back and sent twice",
                self.lease,
                self.request_timeout + self.connect_timeout
            ));
        }
        w
    }
}
