//! Many receivers down at once: 2 `herald worker` processes at their defaults (200 deliveries
//! in flight each, 32 per endpoint, a 15 s request timeout) deliver a steady feed to healthy
//! endpoints while K bad endpoints, each with a backlog queued before the feed starts, hang,
//! answer slowly, answer `503`, or refuse connections; at the heal they answer `200` at once.
//! Each (K, kind) pair is one run on a fresh Redis with fresh workers; the figures are cut into
//! windows: the healthy jobs' lateness by the window they were due in, the bad endpoints'
//! deliveries by the window they were answered in, the workers' `/metrics` at each window's
//! end. Too long for `all`: it is run on its own.
//!
//! The receivers are in `receivers` (one server, a path per endpoint, a closed port for the
//! refused ones).

mod receivers;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use clap::Args;
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use herald_core::EndpointId;
use serde_json::{json, Value};

use super::shared::{
    enqueue, feed, loadavg, parse_duration, producer, round, Bench, Deployment, Noise, NAMESPACE,
};
use crate::env::{now_us, Fleet};
use receivers::{Log, Receivers};

/// A healthy job is on time when it arrives within this of its due time.
const ON_TIME: Duration = Duration::from_secs(1);
/// The share of on-time healthy jobs a window needs to count as recovered.
const RECOVERED_SHARE: f64 = 0.99;
/// The workers in every run.
const WORKERS: usize = 2;

/// How a bad endpoint's receiver misbehaves until the heal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Accepts the connection, reads the request, never answers.
    Hang,
    /// Answers `200` after `--outage-slow`.
    Slow,
    /// Answers `503` with `Retry-After: 30` at once.
    #[value(name = "503")]
    Unavailable,
    /// Nothing listens on its port.
    Refused,
    /// The K endpoints split evenly over the four kinds above.
    Mix,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Hang => "hang",
            Kind::Slow => "slow",
            Kind::Unavailable => "503",
            Kind::Refused => "refused",
            Kind::Mix => "mix",
        }
    }

    /// The kind of bad endpoint `j` of a run of this kind.
    fn of_endpoint(self, j: usize) -> Kind {
        const MIXED: [Kind; 4] = [Kind::Hang, Kind::Slow, Kind::Unavailable, Kind::Refused];
        match self {
            Kind::Mix => MIXED[j % MIXED.len()],
            k => k,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct OutageArgs {
    /// Bad endpoints per run (K), a comma list; K = 0 runs once, without bad endpoints.
    #[arg(
        long = "outage-k",
        id = "outage-k",
        value_delimiter = ',',
        default_value = "0,10,50,200,1000"
    )]
    pub k: Vec<usize>,
    /// How the bad receivers misbehave until the heal; repeatable, or a comma list. One run
    /// per K and kind.
    #[arg(
        long = "outage-kind",
        id = "outage-kind",
        value_delimiter = ',',
        default_value = "hang,slow,503,refused,mix"
    )]
    pub kinds: Vec<Kind>,
    /// Healthy endpoints the feed is spread over, round-robin.
    #[arg(long = "outage-healthy", id = "outage-healthy", default_value_t = 100)]
    pub healthy: usize,
    /// Jobs per second offered to the healthy endpoints, in total, each due at once.
    #[arg(long = "outage-rate", id = "outage-rate", default_value_t = 200)]
    pub rate: u64,
    /// Jobs queued for each bad endpoint before the feed starts.
    #[arg(
        long = "outage-bad-jobs",
        id = "outage-bad-jobs",
        default_value_t = 500
    )]
    pub bad_jobs: u64,
    /// How long the feed runs.
    #[arg(long = "outage-duration", id = "outage-duration", default_value = "90s", value_parser = parse_duration)]
    pub duration: Duration,
    /// When the bad receivers heal, from the start of the feed.
    #[arg(long = "outage-heal-at", id = "outage-heal-at", default_value = "60s", value_parser = parse_duration)]
    pub heal_at: Duration,
    /// Length of the windows the figures are cut into.
    #[arg(long = "outage-window", id = "outage-window", default_value = "10s", value_parser = parse_duration)]
    pub window: Duration,
    /// How long the run goes on after the feed, for the jobs still on their way; healthy jobs
    /// that have not arrived by then are reported missing.
    #[arg(long = "outage-drain", id = "outage-drain", default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// The workers' HERALD_REQUEST_TIMEOUT (herald's default: 15 s).
    #[arg(long = "outage-request-timeout", id = "outage-request-timeout", default_value = "15s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// How long a slow receiver takes to answer.
    #[arg(long = "outage-slow", id = "outage-slow", default_value = "2s", value_parser = parse_duration)]
    pub slow: Duration,
}

/// One run per (K, kind) pair, K = 0 once.
pub async fn outage(b: &Bench, args: &OutageArgs) -> anyhow::Result<Value> {
    anyhow::ensure!(
        args.heal_at <= args.duration,
        "--outage-heal-at must not be after --outage-duration"
    );
    anyhow::ensure!(!args.window.is_zero(), "--outage-window must not be 0");
    let mut runs = Vec::new();
    for &k in &args.k {
        let kinds: Vec<Option<Kind>> = if k == 0 {
            vec![None]
        } else {
            args.kinds.iter().copied().map(Some).collect()
        };
        for kind in kinds {
            eprintln!(
                "outage: K = {k}, {}",
                kind.map_or("no bad endpoint", Kind::as_str)
            );
            runs.push(run(b, args, k, kind).await?);
        }
    }
    Ok(json!({
        "workers": WORKERS,
        "concurrency": b.common.concurrency,
        "request_timeout_ms": args.request_timeout.as_millis() as u64,
        "healthy_endpoints": args.healthy,
        "offered_rate_per_s": args.rate,
        "bad_jobs_per_endpoint": args.bad_jobs,
        "duration_s": args.duration.as_secs_f64(),
        "heal_at_s": args.heal_at.as_secs_f64(),
        "drain_s": args.drain.as_secs_f64(),
        "window_s": args.window.as_secs_f64(),
        "slow_ms": args.slow.as_millis() as u64,
        "on_time_ms": ON_TIME.as_millis() as u64,
        "runs": runs,
    }))
}

/// One run: endpoints, the bad backlog, the workers, then the feed with the heal and a metrics
/// sample at the end of each window, until the feed's end plus the drain.
async fn run(b: &Bench, args: &OutageArgs, k: usize, kind: Option<Kind>) -> anyhow::Result<Value> {
    let c = &b.common;
    let kinds: Vec<Kind> = (0..k)
        .map(|j| kind.expect("a kind when K > 0").of_endpoint(j))
        .collect();
    let receivers = Receivers::start(kinds.clone(), args.slow).await?;
    let redis = b.start_redis().await?;
    let producer = producer(&redis, c.shards)?;
    producer.store().check().await?;
    let healthy: Vec<EndpointId> = (0..args.healthy)
        .map(|i| EndpointId::new(format!("ok-{i}")))
        .collect::<Result<_, _>>()?;
    let bad: Vec<EndpointId> = (0..k)
        .map(|j| EndpointId::new(format!("bad-{j}")))
        .collect::<Result<_, _>>()?;
    let urls = (healthy.iter().enumerate())
        .map(|(i, id)| (id.clone(), receivers.ok_url(i)))
        .chain((bad.iter().enumerate()).map(|(j, id)| (id.clone(), receivers.bad_url(j))));
    futures::stream::iter(urls)
        .map(|(id, url)| {
            let producer = producer.clone();
            async move { producer.store().set_endpoint(&id, &url, None).await }
        })
        .buffer_unordered(4)
        .try_collect::<Vec<_>>()
        .await?;

    // Healthy jobs are numbered 0..total, the bad backlog after them.
    let total = (args.rate as f64 * args.duration.as_secs_f64()).max(1.0) as u64;
    let bad_total = k as u64 * args.bad_jobs;
    if bad_total > 0 {
        enqueue(
            &producer,
            &bad,
            total..total + bad_total,
            c.payload,
            Duration::ZERO,
            c.batch,
            1,
        )
        .await?;
    }
    let mut env = b.worker_env(c.concurrency);
    env.push((
        "HERALD_REQUEST_TIMEOUT",
        format!("{}ms", args.request_timeout.as_millis()),
    ));
    let (fleet, ports) = Fleet::start_with_metrics(&b.herald, &redis, WORKERS, &env).await?;
    let d = Deployment {
        redis,
        producer,
        endpoints: healthy,
    };

    let load = loadavg();
    let noise = Noise::start(&d);
    let t0 = now_us();
    let started = Instant::now();
    let end = args.duration + args.drain;
    let windows = end.as_secs_f64() / args.window.as_secs_f64();
    let windows = windows.ceil() as usize;
    let heal = async {
        tokio::time::sleep(args.heal_at).await;
        let at = now_us();
        let listening = receivers.heal().await;
        // A refused endpoint whose port could not be listened on again is pointed to the main
        // server instead, as `herald endpoint set` would.
        let mut switched = 0;
        if !listening {
            for (j, id) in bad.iter().enumerate() {
                if kinds[j] == Kind::Refused {
                    let url = format!("{}/bad/{j}", receivers.base_url);
                    d.producer.store().set_endpoint(id, &url, None).await?;
                    switched += 1;
                }
            }
        }
        anyhow::Ok((at, listening, switched))
    };
    let sample = async {
        let client = reqwest::Client::new();
        let mut samples = Vec::with_capacity(windows);
        for w in 1..=windows {
            let at = started + (args.window * w as u32).min(end);
            tokio::time::sleep_until(at.into()).await;
            samples.push(scrape(&client, &ports).await);
        }
        samples
    };
    let (fed, healed, samples) = tokio::join!(feed(&d, args.rate, total, c.payload), heal, sample);
    fed?;
    let (healed_us, listening, switched) = healed?;
    let noise = noise.since_start(&d, &fleet);
    let (left, dead) = d.redis.jobs_in_store(NAMESPACE, c.shards).await?;
    let log = receivers.take_log();
    receivers.stop();
    fleet.stop().await;

    let figures = Figures::cut(
        &log,
        Span {
            t0,
            window_us: args.window.as_micros() as u64,
            windows,
            end_us: end.as_micros() as u64,
            rate: args.rate,
        },
        total,
        bad_total,
    );
    let heal_s = (healed_us.saturating_sub(t0)) as f64 / 1e6;
    let mut out = figures.summary(heal_s);
    out["k"] = json!(k);
    out["kind"] = json!(kind.map(Kind::as_str));
    out["bad_jobs"] = json!(bad_total);
    out["jobs"] = json!(total);
    out["heal_at_s"] = json!(round(heal_s, 2));
    out["refused_heal"] = json!(if kinds.contains(&Kind::Refused) {
        if listening {
            "listener back on the same port"
        } else {
            "URL set to a listening receiver"
        }
    } else {
        "none refused"
    });
    out["refused_switched"] = json!(switched);
    out["left_in_store"] = json!(left);
    out["dead"] = json!(dead);
    out["loadavg_before"] = json!(load);
    out["noise"] = noise;
    out["windows"] = figures.windows(&samples);
    Ok(out)
}

/// The series of the workers' `/metrics` that the windows show.
const SERIES: [&str; 4] = [
    "herald_in_flight_deliveries",
    "herald_deliveries_total{",
    "herald_disabled_endpoints",
    "herald_endpoints_held_back",
];

/// One sample of every worker's [`SERIES`], series text → value (empty for a worker that did
/// not answer).
async fn scrape(client: &reqwest::Client, ports: &[u16]) -> Vec<BTreeMap<String, f64>> {
    let mut out = Vec::with_capacity(ports.len());
    for p in ports {
        let text = async {
            client
                .get(format!("http://127.0.0.1:{p}/metrics"))
                .timeout(Duration::from_secs(2))
                .send()
                .await?
                .text()
                .await
        };
        let text = text.await.unwrap_or_default();
        out.push(
            text.lines()
                .filter(|l| SERIES.iter().any(|s| l.starts_with(s)))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_owned(), value.parse().ok()?))
                })
                .collect(),
        );
    }
    out
}

/// The run's time line on the local clock, in µs.
struct Span {
    /// The start of the feed.
    t0: u64,
    window_us: u64,
    windows: usize,
    /// From `t0` to the end of the run.
    end_us: u64,
    /// The feed's rate: when a healthy job that never arrived was due.
    rate: u64,
}

impl Span {
    /// The window of a local clock reading (before the feed: the first; after the run: the last).
    fn window(&self, at_us: u64) -> usize {
        let w = at_us.saturating_sub(self.t0) / self.window_us;
        (w as usize).min(self.windows - 1)
    }

    /// The window's start and end, in seconds from the start of the feed.
    fn bounds(&self, w: usize) -> (f64, f64) {
        let from = w as u64 * self.window_us;
        let to = (from + self.window_us).min(self.end_us);
        (from as f64 / 1e6, to as f64 / 1e6)
    }
}

/// What one window saw.
struct Window {
    /// Healthy jobs due in the window, those that arrived on time, those that never arrived.
    due: u64,
    on_time: u64,
    missing: u64,
    /// Receipt minus due time of the healthy jobs due in the window that arrived, in µs.
    latency_us: Histogram<u64>,
    /// Bad endpoints' jobs answered `2xx` (first time) in the window, and their other
    /// requests.
    bad_delivered: u64,
    bad_failed: u64,
}

impl Window {
    fn share(&self) -> Option<f64> {
        (self.due > 0).then(|| self.on_time as f64 / self.due as f64)
    }

    /// A percentile in ms, none without a delivery (an empty histogram would say 0).
    fn ms(&self, q: f64) -> Option<f64> {
        (!self.latency_us.is_empty())
            .then(|| round(self.latency_us.value_at_quantile(q) as f64 / 1000.0, 1))
    }
}

/// The run cut into windows.
struct Figures {
    span: Span,
    windows: Vec<Window>,
    healthy_received: u64,
    healthy_duplicates: u64,
    healthy_missing: u64,
    latency_us: Histogram<u64>,
    /// Due time (µs from `t0`) of the last healthy job that was late or never arrived.
    last_late_us: Option<u64>,
    bad_total: u64,
    /// When each bad job was first answered `2xx`, µs from `t0`, in order.
    bad_times: Vec<u64>,
    bad_duplicates: u64,
    bad_failed: u64,
}

impl Figures {
    fn cut(log: &Log, span: Span, total: u64, bad_total: u64) -> Self {
        let new_histogram = || Histogram::<u64>::new(3).expect("histogram");
        let mut windows: Vec<Window> = (0..span.windows)
            .map(|_| Window {
                due: 0,
                on_time: 0,
                missing: 0,
                latency_us: new_histogram(),
                bad_delivered: 0,
                bad_failed: 0,
            })
            .collect();
        let mut first: Vec<Option<(u64, u64)>> = vec![None; total as usize];
        let mut healthy_duplicates = 0;
        for &(at, i, due) in &log.healthy {
            match first.get_mut(i as usize) {
                Some(Some(_)) => healthy_duplicates += 1,
                Some(slot) => *slot = Some((at, due)),
                None => {}
            }
        }
        let on_time_us = ON_TIME.as_micros() as u64;
        let mut latency_us = new_histogram();
        let (mut received, mut missing, mut last_late_us) = (0, 0, None);
        for (i, r) in first.iter().enumerate() {
            let (due, late) = match *r {
                Some((at, due)) => {
                    let late = at.saturating_sub(due);
                    let w = &mut windows[span.window(due)];
                    let _ = w.latency_us.record(late);
                    let _ = latency_us.record(late);
                    w.due += 1;
                    received += 1;
                    if late <= on_time_us {
                        w.on_time += 1;
                    }
                    (due, late > on_time_us)
                }
                None => {
                    // Never arrived: due when the paced feed offered it.
                    let due = span.t0 + i as u64 * 1_000_000 / span.rate.max(1);
                    let w = &mut windows[span.window(due)];
                    w.due += 1;
                    w.missing += 1;
                    missing += 1;
                    (due, true)
                }
            };
            if late {
                last_late_us = last_late_us.max(Some(due.saturating_sub(span.t0)));
            }
        }
        let mut delivered = log.bad_delivered.clone();
        delivered.sort_unstable();
        let mut seen = HashSet::new();
        let (mut bad_times, mut bad_duplicates) = (Vec::new(), 0);
        for (at, i) in delivered {
            if seen.insert(i) {
                bad_times.push(at.saturating_sub(span.t0));
                windows[span.window(at)].bad_delivered += 1;
            } else {
                bad_duplicates += 1;
            }
        }
        for &at in &log.bad_failed {
            windows[span.window(at)].bad_failed += 1;
        }
        Self {
            span,
            windows,
            healthy_received: received,
            healthy_duplicates,
            healthy_missing: missing,
            latency_us,
            last_late_us,
            bad_total,
            bad_times,
            bad_duplicates,
            bad_failed: log.bad_failed.len() as u64,
        }
    }

    /// The run's figures: the worst window, the recovery after the heal (`heal_s` from the
    /// start of the feed), the bad endpoints' delivered rate before and after it.
    fn summary(&self, heal_s: f64) -> Value {
        let shares: Vec<(usize, f64)> = (self.windows.iter().enumerate())
            .filter_map(|(w, x)| Some((w, x.share()?)))
            .collect();
        let worst_share = shares.iter().map(|(_, s)| *s).reduce(f64::min);
        let worst_p99 = self
            .windows
            .iter()
            .filter_map(|w| w.ms(0.99))
            .reduce(f64::max);
        // The first window from which every window with healthy jobs due is on time.
        let recovered_from = match shares.last() {
            Some((_, s)) if *s >= RECOVERED_SHARE => {
                let bad = shares.iter().rev().find(|(_, s)| *s < RECOVERED_SHARE);
                Some(bad.map_or(0, |(w, _)| w + 1))
            }
            _ => None,
        };
        let on_time_from_s = recovered_from.map(|w| self.span.bounds(w).0);
        let heal_us = (heal_s * 1e6) as u64;
        let before = self.bad_times.iter().filter(|t| **t < heal_us).count();
        let after = self.bad_times.len() - before;
        let after_s = (self.span.end_us as f64 / 1e6 - heal_s).max(0.001);
        let drained_s = (self.bad_total > 0 && self.bad_times.len() as u64 >= self.bad_total)
            .then(|| self.bad_times.last().map(|t| round(*t as f64 / 1e6, 1)))
            .flatten();
        let ms = |us: u64| (!self.latency_us.is_empty()).then(|| round(us as f64 / 1000.0, 1));
        json!({
            "healthy_received": self.healthy_received,
            "healthy_duplicates": self.healthy_duplicates,
            "healthy_missing": self.healthy_missing,
            "healthy_p50_ms": ms(self.latency_us.value_at_quantile(0.50)),
            "healthy_p99_ms": ms(self.latency_us.value_at_quantile(0.99)),
            "healthy_max_ms": ms(self.latency_us.max()),
            "worst_window_on_time_share": worst_share.map(|s| round(s, 4)),
            "worst_window_p99_ms": worst_p99,
            "healthy_on_time_from_s": on_time_from_s,
            "healthy_recovered_after_heal_s": on_time_from_s.map(|s| round((s - heal_s).max(0.0), 1)),
            "last_late_healthy_due_s": self.last_late_us.map(|t| round(t as f64 / 1e6, 1)),
            "bad_delivered": self.bad_times.len(),
            "bad_duplicates": self.bad_duplicates,
            "bad_failed_requests": self.bad_failed,
            "bad_delivered_per_s_before_heal": round(before as f64 / heal_s.max(0.001), 1),
            "bad_delivered_per_s_after_heal": round(after as f64 / after_s, 1),
            "bad_drained_at_s": drained_s,
            "bad_drained_after_heal_s": drained_s.map(|s| round((s - heal_s).max(0.0), 1)),
        })
    }

    /// One object per window, with the workers' metrics sampled at its end: deliveries in
    /// flight (summed), attempts by outcome during the window (summed), endpoints disabled and
    /// held back over the deployment (the largest worker's sample).
    fn windows(&self, samples: &[Vec<BTreeMap<String, f64>>]) -> Value {
        let sum = |w: usize, series: &str| -> f64 {
            samples
                .get(w)
                .map(|s| s.iter().filter_map(|m| m.get(series)).sum())
                .unwrap_or(0.0)
        };
        let max = |w: usize, series: &str| -> Option<f64> {
            samples
                .get(w)?
                .iter()
                .filter_map(|m| m.get(series).copied())
                .reduce(f64::max)
        };
        let outcomes: Vec<String> = samples
            .iter()
            .flatten()
            .flat_map(|m| m.keys())
            .filter(|k| k.starts_with("herald_deliveries_total{"))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let rows: Vec<Value> = (self.windows.iter().enumerate())
            .map(|(w, x)| {
                let (from, to) = self.span.bounds(w);
                let mut attempts = serde_json::Map::new();
                for o in &outcomes {
                    let prev = if w == 0 { 0.0 } else { sum(w - 1, o) };
                    let n = (sum(w, o) - prev).max(0.0);
                    if n > 0.0 {
                        let label = o
                            .split('"')
                            .nth(1)
                            .unwrap_or(o.as_str())
                            .to_owned();
                        attempts.insert(label, json!(n as u64));
                    }
                }
                json!({
                    "from_s": round(from, 1),
                    "to_s": round(to, 1),
                    "healthy_due": x.due,
                    "healthy_on_time_share": x.share().map(|s| round(s, 4)),
                    "healthy_missing": x.missing,
                    "healthy_p50_ms": x.ms(0.50),
                    "healthy_p99_ms": x.ms(0.99),
                    "healthy_max_ms": (!x.latency_us.is_empty()).then(|| round(x.latency_us.max() as f64 / 1000.0, 1)),
                    "bad_delivered": x.bad_delivered,
                    "bad_delivered_per_s": round(x.bad_delivered as f64 / (to - from).max(0.001), 1),
                    "bad_failed_requests": x.bad_failed,
                    "attempts": attempts,
                    "in_flight": max(w, "herald_in_flight_deliveries").map(|_| sum(w, "herald_in_flight_deliveries")),
                    "disabled_endpoints": max(w, "herald_disabled_endpoints"),
                    "endpoints_held_back": max(w, "herald_endpoints_held_back"),
                })
            })
            .collect();
        Value::Array(rows)
    }
}
