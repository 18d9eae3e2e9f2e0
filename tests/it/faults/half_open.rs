//! A half-open connection: the proxy between the workers and Redis stops forwarding without
//! closing anything, so that only the workers' own deadlines can tell them Redis is gone; an
//! idle worker, a loaded fleet, and the TCP keepalive that would notice a real dropped flow.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{hook_path, none_dead, Failure, Fleet, Ledger, Scale, BATCH};
use crate::support::process::poll_until;
use crate::support::proxy::Proxy;
use crate::support::receiver::{self, Receiver};
use crate::support::sockets::{tcp_sockets_of, TcpSocket, ESTABLISHED, KEEPALIVE_TIMER};
use crate::support::{http_get, redis_and_herald, SAFETY_NET};

/// The workers' lease under load.
const LEASE: Duration = Duration::from_secs(30);

/// How often a test asks a worker's `/readyz`.
const PROBE_EVERY: Duration = Duration::from_millis(50);

/// Waits until the worker's `/readyz` answers `status`.
fn wait_for_readyz(addr: &str, status: u16) {
    poll_until(
        &format!("/readyz to answer {status}"),
        SAFETY_NET,
        PROBE_EVERY,
        || match http_get(addr, "/readyz") {
            (s, _) if s == status => Ok(()),
            (s, body) => Err(format!("{s} {body}")),
        },
    );
}

/// `blocked_clients` of Redis's `INFO clients`: connections waiting in a blocking command.
fn blocked_clients(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query(con)
        .expect("INFO clients");
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no blocked_clients in INFO clients:\n{info}"))
}

#[test]
fn an_idle_worker_behind_a_blackholed_connection_reports_not_ready_and_claims_once_it_heals() {
    let (redis, herald) = redis_and_herald("it-faults-idle-blackhole");
    let proxy = Proxy::start(redis.port());
    let rx = Receiver::start(receiver::always(200));
    herald.set_endpoint("dash-1", &format!("{}/hooks/dash-1", rx.url()));
    // The worker reaches Redis through the proxy; the test's commands go straight to Redis.
    let worker = herald
        .clone()
        .with_env("HERALD_REDIS_URL", &proxy.redis_url())
        .spawn_worker(&[("HERALD_POLL_INTERVAL", "3s")]);
    let addr = worker.metrics_addr().expect("metrics address").to_owned();
    herald.enqueue("dash-1", &json!({"n": 1}));
    rx.wait_for(1, SAFETY_NET);
    wait_for_readyz(&addr, 200);

    // Idle: Redis holds the worker's wait for a wake-up hint (`BZPOPMIN`). Then the connection
    // drops everything: the wait gives up at its deadline (or, had it just ended, the next
    // claim at its timeout), and nothing can make the worker ready while it lasts.
    let mut con = redis.connection();
    poll_until(
        "the worker waiting in BZPOPMIN",
        SAFETY_NET,
        PROBE_EVERY,
        || match blocked_clients(&mut con) {
            0 => Err("no client blocked".to_owned()),
            _ => Ok(()),
        },
    );
    proxy.blackhole();
    worker.wait_for_line(SAFETY_NET, |l| {
        l.contains("redis command failed")
            && (l.contains("op=\"wait\"") || l.contains("op=\"claim\""))
    });
    assert_eq!(http_get(&addr, "/readyz").0, 503, "ready without Redis");

    // The network is back for new connections; the blackholed ones stay dead.
    proxy.heal();
    let job = herald.enqueue("dash-1", &json!({"n": 2}));
    let requests = rx.wait_for(2, SAFETY_NET);
    assert_eq!(requests[1].webhook_id(), format!("msg_{job}"));
    wait_for_readyz(&addr, 200);
    herald.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);
}

#[test]
fn every_redis_connection_of_a_worker_is_kept_alive_by_tcp() {
    let (redis, herald) = redis_and_herald("it-faults-keepalive");
    let rx = Receiver::start(receiver::always(200));
    herald.set_endpoint("dash-1", &format!("{}/hooks/dash-1", rx.url()));
    let worker = herald.spawn_worker(&[]);
    herald.enqueue("dash-1", &json!({"n": 1}));
    rx.wait_for(1, SAFETY_NET);
    // Claimed, delivered and settled: the claim, wait, settle and sampler connections are open.
    herald.wait_until_drained(SAFETY_NET);

    // A socket that just sent something shows its retransmission timer until the answer comes:
    // ask again until each shows the keepalive timer, which only a socket with keepalive has.
    let sockets = poll_until(
        "every connection to Redis with a keepalive timer",
        SAFETY_NET,
        PROBE_EVERY,
        || {
            let to_redis: Vec<TcpSocket> = tcp_sockets_of(worker.pid())
                .into_iter()
                .filter(|s| s.remote_port == redis.port() && s.state == ESTABLISHED)
                .collect();
            if !to_redis.is_empty() && to_redis.iter().all(|s| s.timer == KEEPALIVE_TIMER) {
                Ok(to_redis)
            } else {
                Err(format!("{to_redis:?}"))
            }
        },
    );
    assert!(sockets.len() >= 2, "{sockets:?}");
    worker.stop(SAFETY_NET);
}

#[test]
fn workers_cut_off_from_redis_by_half_open_connections_carry_on_once_they_heal() {
    let scale = Scale::from_env();
    // Short: until every worker has noticed; long: 100 s, longer than the lease.
    let (jobs, hold) = scale.pick((3_000, Duration::ZERO), (10_000, Duration::from_secs(100)));
    let (redis, herald) = redis_and_herald("it-faults-half-open-load");
    let proxy = Proxy::start(redis.port());
    // At most 3 × 8 / 50 ms = 480 deliveries a second: the run is cut in the middle.
    let rx = Receiver::start(receiver::slow(Duration::from_millis(50)));
    let ledger = Ledger::new();
    for endpoint in ["dash-1", "dash-2"] {
        herald.set_endpoint(
            endpoint,
            &format!("{}{}", rx.url(), hook_path(endpoint, 0, 0)),
        );
    }
    for (i, start) in (0..jobs).step_by(BATCH).enumerate() {
        let endpoint = if i % 2 == 0 { "dash-1" } else { "dash-2" };
        ledger.enqueue(&herald, endpoint, 0, BATCH.min(jobs - start));
    }
    let through_proxy = herald
        .clone()
        .with_env("HERALD_REDIS_URL", &proxy.redis_url());
    let fleet = Fleet::start(
        &through_proxy,
        3,
        &[
            ("HERALD_CONCURRENCY", "8"),
            ("HERALD_LEASE", "30s"),
            ("HERALD_RETRY_SCHEDULE", &["100ms"; 10].join(",")),
        ],
    );

    rx.wait_for_distinct(jobs / 3, scale.drain_net());
    let failure = Failure::shared("connections to redis blackholed", &rx, LEASE);
    let cut = Instant::now();
    proxy.blackhole();
    fleet.wait_for_readyz(503, SAFETY_NET);
    thread::sleep(hold.saturating_sub(cut.elapsed()));
    proxy.heal();
    ledger.failure(failure.over());
    fleet.wait_for_readyz(200, SAFETY_NET);

    let figures = ledger.account("half-open", &herald, &rx, none_dead, scale.drain_net());
    if hold < LEASE {
        // Every outcome held through the cut was written once it healed, within its lease: no
        // job went out twice. (A lease may still run out: a claim that Redis ran just before
        // the cut lost its reply, and its jobs, never sent, wait for their lease, as after a
        // Redis kill.)
        assert_eq!(figures.duplicates, 0, "{figures:?}");
    }
    fleet.stop();
}
