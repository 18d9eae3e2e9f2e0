//! The management API's read routes at scale: `herald serve` (a process of its own, as
//! deployed) over a store of 10,000 endpoints and 100,000 dead letters, asked one request at
//! a time over a kept-alive connection, with the time of each answer recorded per route.

use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use hdrhistogram::Histogram;
use herald_core::{EndpointId, Subscription};
use herald_producer::NewJob;
use serde_json::{json, Value};

use super::shared::{producer, round, Bench, NAMESPACE};
use crate::env::{self, Serve};

#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Endpoints in the store (each subscribed to one service, one in a hundred disabled).
    #[arg(long = "api-endpoints", id = "api-endpoints", default_value_t = 10_000)]
    pub endpoints: usize,
    /// Dead letters in the store: the queued jobs of deleted endpoints, 100 per endpoint.
    #[arg(long = "api-dead", id = "api-dead", default_value_t = 100_000)]
    pub dead: u64,
    /// Requests measured per route (after a warm-up of a tenth as many).
    #[arg(long = "api-requests", id = "api-requests", default_value_t = 1000)]
    pub requests: usize,
}

/// Dead letters per deleted endpoint.
const DEAD_PER_ENDPOINT: u64 = 100;

/// Makes the path of a route's next request from the previous answer (`None` at first).
type NextPath = Box<dyn FnMut(Option<&Value>) -> String + Send>;

/// One route's requests: the path of each, in order.
struct Route {
    name: &'static str,
    next: NextPath,
}

/// A route that walks a paged listing from `first`, following `next_cursor`, and starts over
/// at the end.
fn paged(name: &'static str, first: String) -> Route {
    let sep = if first.contains('?') { '&' } else { '?' };
    Route {
        name,
        next: Box::new(
            move |prev| match prev.and_then(|p| p["next_cursor"].as_str()) {
                Some(cursor) => format!("{first}{sep}cursor={cursor}"),
                None => first.clone(),
            },
        ),
    }
}

/// A route whose every request is made by `make(i)`.
fn each(name: &'static str, mut make: impl FnMut(usize) -> String + Send + 'static) -> Route {
    let mut i = 0;
    Route {
        name,
        next: Box::new(move |_| {
            i += 1;
            make(i)
        }),
    }
}

/// Sets up the store, starts `herald serve`, and times each read route.
pub async fn api(b: &Bench, args: &ApiArgs) -> anyhow::Result<Value> {
    let shards = b.common.shards;
    let redis = b.start_redis().await?;
    let producer = producer(&redis, shards)?;
    producer.store().check().await?;

    let setup = Instant::now();
    let live: Vec<EndpointId> = (0..args.endpoints)
        .map(|i| EndpointId::new(format!("ep-{i}")))
        .collect::<Result<_, _>>()?;
    let doomed: Vec<EndpointId> = (0..args.dead.div_ceil(DEAD_PER_ENDPOINT))
        .map(|i| EndpointId::new(format!("gone-{i}")))
        .collect::<Result<_, _>>()?;
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in live.chunks(live.len().div_ceil(8).max(1)) {
        let (store, chunk) = (producer.store().clone(), chunk.to_vec());
        tasks.spawn(async move {
            for id in &chunk {
                let url = format!("https://hooks.example.com/{id}");
                store.set_endpoint(id, &url, None).await?;
                store
                    .subscribe(id, "heroku", &Subscription::default())
                    .await?;
                if id.as_str().ends_with("00") {
                    store.disable_endpoint(id, "benchmark").await?;
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    for id in &doomed {
        producer
            .store()
            .set_endpoint(id, "https://hooks.example.com/gone", None)
            .await?;
    }
    let mut dead_ids = Vec::new();
    let jobs: Vec<NewJob> = (0..args.dead)
        .map(|i| {
            let id = doomed[(i / DEAD_PER_ENDPOINT) as usize].clone();
            NewJob::new(
                id,
                format!(r#"{{"order":{i},"pad":"{}"}}"#, "x".repeat(200)),
            )
        })
        .collect();
    for chunk in jobs.chunks(b.common.batch) {
        for r in producer.enqueue_batch(chunk).await? {
            dead_ids.push(r?.job_id);
        }
    }
    drop(jobs);
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in doomed.chunks(doomed.len().div_ceil(8).max(1)) {
        let (store, chunk) = (producer.store().clone(), chunk.to_vec());
        tasks.spawn(async move {
            for id in &chunk {
                store.delete_endpoint(id).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let stats = producer.store().stats().await?;
    anyhow::ensure!(
        stats.total.dead == args.dead,
        "{} dead letters, not {}",
        stats.total.dead,
        args.dead
    );
    let setup_s = setup.elapsed().as_secs_f64();
    // The middle of the discard times, for a time-range filter.
    let mut conn = redis.conn().await?;
    let mut ends = Vec::new();
    for at in [0, -1] {
        let entry: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&producer.store().keys(0).dead)
            .arg(at)
            .arg(at)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        ends.push(entry.first().map_or(0, |(_, t)| *t as i64));
    }
    let since = (ends[0] + ends[1]) / 2;

    let token = std::process::Command::new(&b.herald)
        .args(["token", "new", "--scope", "read", "--json"])
        .output()
        .context("herald token new")?;
    let token: Value = serde_json::from_slice(&token.stdout).context("herald token new --json")?;
    let hashed = token["hashed"].as_str().context("hashed")?;
    let serve = Serve::start(&b.herald, &redis, NAMESPACE, b.common.shards, hashed).await?;
    let bearer = format!("Bearer {}", token["token"].as_str().context("token")?);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .no_proxy()
        .build()?;

    let n_live = live.len();
    let n_doomed = doomed.len();
    let dead_ids = std::sync::Arc::new(dead_ids);
    let routes = vec![
        paged(
            "GET /endpoints (50 a page, every page)",
            "/api/v1/endpoints?limit=50".into(),
        ),
        paged(
            "GET /endpoints?status=disabled",
            "/api/v1/endpoints?status=disabled&limit=50".into(),
        ),
        paged(
            "GET /endpoints?search=ep-12",
            "/api/v1/endpoints?search=ep-12&limit=50".into(),
        ),
        each("GET /endpoints/{id}", move |i| {
            format!("/api/v1/endpoints/ep-{}", (i * 7919) % n_live)
        }),
        each("GET /endpoints/{id}/attempts", move |i| {
            format!("/api/v1/endpoints/ep-{}/attempts", (i * 104_729) % n_live)
        }),
        paged(
            "GET /services/heroku/subscribers",
            "/api/v1/services/heroku/subscribers?limit=50".into(),
        ),
        paged(
            "GET /dead-letters (50 a page, every page)",
            "/api/v1/dead-letters?limit=50".into(),
        ),
        {
            let mut n = 0;
            let mut current = String::new();
            Route {
                name: "GET /dead-letters?endpoint=<one of 1,000>",
                next: Box::new(
                    move |prev| match prev.and_then(|p| p["next_cursor"].as_str()) {
                        Some(cursor) => format!("{current}&cursor={cursor}"),
                        None => {
                            n += 1;
                            current = format!(
                                "/api/v1/dead-letters?limit=50&endpoint=gone-{}",
                                (n * 31) % n_doomed
                            );
                            current.clone()
                        }
                    },
                ),
            }
        },
        paged(
            "GET /dead-letters?reason=gone-7",
            "/api/v1/dead-letters?limit=50&reason=gone-7".into(),
        ),
        paged(
            "GET /dead-letters?since=…",
            format!("/api/v1/dead-letters?limit=50&since={since}"),
        ),
        {
            let ids = dead_ids.clone();
            each("GET /jobs/{id}", move |i| {
                format!("/api/v1/jobs/{}", ids[(i * 7_727) % ids.len()])
            })
        },
        each("GET /stats", |_| "/api/v1/stats".into()),
    ];

    let ticks = env::machine_ticks();
    let (cpu_bench, cpu_redis, cpu_serve) = (
        env::cpu_seconds(None),
        redis.cpu_seconds(),
        env::cpu_seconds(serve.child.id()),
    );
    let mut out = Vec::new();
    for mut route in routes {
        let mut hist = Histogram::<u64>::new(3)?;
        let mut prev: Option<Value> = None;
        let warmup = args.requests / 10;
        for k in 0..warmup + args.requests {
            let path = (route.next)(prev.as_ref());
            let started = Instant::now();
            let resp = client
                .get(format!("{}{path}", serve.base))
                .header("authorization", &bearer)
                .send()
                .await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            let us = started.elapsed().as_micros() as u64;
            anyhow::ensure!(
                status.is_success(),
                "{path}: {status} {}",
                String::from_utf8_lossy(&body)
            );
            if k >= warmup {
                hist.record(us.max(1))?;
            }
            prev = Some(serde_json::from_slice(&body)?);
        }
        let ms = |q: f64| round(hist.value_at_quantile(q) as f64 / 1000.0, 2);
        out.push(json!({
            "route": route.name,
            "requests": hist.len(),
            "p50_ms": ms(0.5),
            "p99_ms": ms(0.99),
            "max_ms": round(hist.max() as f64 / 1000.0, 2),
        }));
    }
    let ours = env::cpu_seconds(None) - cpu_bench + redis.cpu_seconds() - cpu_redis
        + env::cpu_seconds(serve.child.id())
        - cpu_serve;
    Ok(json!({
        "endpoints": n_live,
        "dead_letters": args.dead,
        "shards": shards,
        "setup_s": round(setup_s, 1),
        "routes": out,
        "noise": env::noise_since(ticks, ours),
    }))
}
