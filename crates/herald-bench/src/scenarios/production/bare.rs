//! The production scenario's ceiling: the same deliveries through a bare client, run as a
//! separate process (the hidden `herald-bench https-loop`) so that its CPU time is its own.
//! The client is set up as a worker's: reqwest over the worker's own rustls configuration
//! (`herald_worker::http::tls_config`, with the run's CA as `HERALD_CA_FILE` would add it),
//! keep-alive pool, no redirects;
//! names resolved by a caching hickory resolver asking the run's DNS server, with the workers'
//! lookup timeout. Only herald's work is missing: Redis, claims, signing, the SSRF guard,
//! settlement.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::plan::{Plan, PlanArgs};
use crate::env;
use crate::receiver::payload;
use crate::scenarios::shared::{parse_duration, round};

/// What the parent passes to `herald-bench https-loop`.
#[derive(Debug, Clone, Args)]
pub struct HttpsLoopArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    #[arg(long)]
    pub rounds: u64,
    #[arg(long)]
    pub port: u16,
    #[arg(long)]
    pub dns: SocketAddr,
    #[arg(long)]
    pub ca_file: PathBuf,
    #[arg(long)]
    pub in_flight: usize,
    #[arg(long)]
    pub payload: usize,
    #[arg(long, value_parser = parse_duration)]
    pub dns_timeout: Duration,
}

/// A resolver for reqwest: hickory, caching, asking one server, bounded by a timeout.
struct Resolver {
    inner: TokioResolver,
    timeout: Duration,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (inner, timeout) = (self.inner.clone(), self.timeout);
        Box::pin(async move {
            let ips = tokio::time::timeout(timeout, inner.lookup_ip(name.as_str()))
                .await
                .map_err(|_| "DNS lookup timed out")??;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

fn client(args: &HttpsLoopArgs) -> anyhow::Result<reqwest::Client> {
    let ca = herald_worker::http::read_ca_file(&args.ca_file).map_err(anyhow::Error::msg)?;
    let tls = herald_worker::http::tls_config(&ca)?;
    let mut group = NameServerConfigGroup::with_capacity(2);
    group.push(NameServerConfig::new(args.dns, Protocol::Udp));
    group.push(NameServerConfig::new(args.dns, Protocol::Tcp));
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_parts(None, Vec::new(), group),
        TokioConnectionProvider::default(),
    );
    let opts = builder.options_mut();
    opts.cache_size = 65_536;
    opts.attempts = 2;
    opts.timeout = args.dns_timeout / 2;
    let resolver = Resolver {
        inner: builder.build(),
        timeout: args.dns_timeout,
    };
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(args.in_flight.max(1))
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .no_proxy()
        .dns_resolver(Arc::new(resolver))
        .use_preconfigured_tls(tls)
        .build()?)
}

/// The bare loop: round after round, one POST to every name, `in_flight` at most at once; a
/// round ends when every name that resolves has answered (the others' requests go on).
/// A request that fails is not tried again. Prints {delivered, failed, a few errors, seconds,
/// client_cpu_s, peak_rss_mib}.
pub async fn https_loop(args: HttpsLoopArgs) -> anyhow::Result<Value> {
    let plan = Plan::from(&args.plan);
    let client = client(&args)?;
    let slots = Arc::new(Semaphore::new(args.in_flight.max(1)));
    let (delivered, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let (started, cpu0) = (Instant::now(), env::cpu_seconds(None));
    for r in 0..args.rounds {
        let mut resolving = tokio::task::JoinSet::new();
        for i in 0..plan.names {
            let slot = slots.clone().acquire_owned().await?;
            let url = format!("https://{}:{}/hook", plan.name(i), args.port);
            let body = payload(r * plan.names as u64 + i as u64, 0, args.payload);
            let (client, delivered, failed, errors) = (
                client.clone(),
                delivered.clone(),
                failed.clone(),
                errors.clone(),
            );
            let resolves = plan.resolves(i);
            let post = async move {
                let answer = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let error = match answer {
                    Ok(a) if a.status().is_success() => {
                        a.bytes().await.err().map(|e| e.to_string())
                    }
                    Ok(a) => Some(format!("status {}", a.status())),
                    Err(e) => Some(format!("{e:?}")),
                };
                drop(slot);
                match error {
                    None => delivered.fetch_add(1, Relaxed),
                    Some(e) => {
                        // The errors of names that resolve are kept (a few) to be shown.
                        if resolves {
                            let mut kept = errors.lock().expect("never poisoned");
                            if kept.len() < 5 {
                                kept.push(e);
                            }
                        }
                        failed.fetch_add(1, Relaxed)
                    }
                };
            };
            if resolves {
                resolving.spawn(post);
            } else {
                tokio::spawn(post);
            }
        }
        while let Some(r) = resolving.join_next().await {
            r?;
        }
    }
    let (hwm_kib, _) = env::memory_kib(std::process::id())?;
    Ok(json!({
        "peak_rss_mib": round(hwm_kib as f64 / 1024.0, 1),
        "delivered": delivered.load(Relaxed),
        "failed": failed.load(Relaxed),
        "errors_of_names_that_resolve": errors.lock().expect("never poisoned").clone(),
        "seconds": round(started.elapsed().as_secs_f64(), 3),
        "client_cpu_s": round(env::cpu_seconds(None) - cpu0, 3),
    }))
}
