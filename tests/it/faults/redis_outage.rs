//! Redis failing under the workers: killed with SIGKILL and restarted from its append-only file
//! (`appendfsync always`, then `everysec`), and frozen with SIGSTOP. Workers keep the outcomes
//! of their deliveries, report not ready, and carry on once Redis answers again.

use std::thread;
use std::time::{Duration, Instant};

use super::{hook_path, none_dead, Failure, Fleet, Ledger, Scale, BATCH};
use crate::support::process::poll_until;
use crate::support::receiver::{self, Receiver};
use crate::support::{Herald, RedisServer, SAFETY_NET};

/// The workers' lease: longer than any outage here, so that no lease runs out during one.
const LEASE: Duration = Duration::from_secs(30);

const ENDPOINTS: [&str; 4] = ["dash-1", "dash-2", "dash-3", "dash-4"];

/// Endpoints on `rx`, `jobs` jobs spread over them, and a fleet of three workers delivering them
/// at most 3 × 8 / 50 ms = 480 a second, so that a run lasts long enough to be cut in the
/// middle.
fn start<'h>(herald: &'h Herald, rx: &Receiver, ledger: &Ledger, jobs: usize) -> Fleet<'h> {
    for endpoint in ENDPOINTS {
        herald.set_endpoint(
            endpoint,
            &format!("{}{}", rx.url(), hook_path(endpoint, 0, 0)),
        );
    }
    for (i, start) in (0..jobs).step_by(BATCH).enumerate() {
        ledger.enqueue(
            herald,
            ENDPOINTS[i % ENDPOINTS.len()],
            0,
            BATCH.min(jobs - start),
        );
    }
    Fleet::start(
        herald,
        3,
        &[
            ("HERALD_CONCURRENCY", "8"),
            ("HERALD_LEASE", "30s"),
            ("HERALD_RETRY_SCHEDULE", &["100ms"; 10].join(",")),
        ],
    )
}

fn slow_receiver() -> Receiver {
    Receiver::start(receiver::slow(Duration::from_millis(50)))
}

/// Kills Redis with SIGKILL at evenly spread points of the run, and restarts it at once.
fn redis_killed_and_restarted(appendfsync: &str) {
    let scale = Scale::from_env();
    let (jobs, kills) = scale.pick((3_000, 1), (10_000, 3));
    let mut redis = RedisServer::start_with_aof(appendfsync);
    let herald = Herald::new(&redis.url(), &format!("it-faults-redis-kill-{appendfsync}"));
    let rx = slow_receiver();
    let ledger = Ledger::new();
    let fleet = start(&herald, &rx, &ledger, jobs);
    // The jobs are in the append-only file before any kill. (With `everysec`, Redis holds
    // writes back while a slow fsync runs, up to 2 s: a kill then loses the latest, as
    // documented; the enqueues are not what this run is about.)
    poll_until(
        "the jobs written to the append-only file",
        SAFETY_NET,
        POLL,
        || match redis.info("persistence", "aof_buffer_length").as_str() {
            "0" => Ok(()),
            other => Err(format!("aof_buffer_length {other}")),
        },
    );

    for kill in 1..=kills {
        rx.wait_for_distinct(jobs * kill / (kills + 1), scale.drain_net());
        let failure = Failure::shared("redis killed", &rx, LEASE);
        redis.kill();
        redis.restart();
        ledger.failure(failure.over());
    }

    let figures = ledger.account(
        &format!("redis-kill-{appendfsync}"),
        &herald,
        &rx,
        none_dead,
        scale.drain_net(),
    );
    // No lease check here: a claim that Redis ran (and wrote to its file) just before the
    // kill lost its reply with the connection, so its jobs wait for their lease to run out.
    // They were never sent, so the ledger sees no repeat of them.
    fleet.stop();
    assert_eq!(figures.failures, kills);
}

/// A freeze shorter than the lease: every outcome was written in time, no claim ran late, and no
/// lease was taken back.
fn assert_no_lease_ran_out(fleet: &Fleet) {
    assert_eq!(
        fleet.metric("herald_leases_expired_total"),
        0.0,
        "a lease ran out during an outage shorter than the lease"
    );
}

/// How often the tests here ask Redis.
const POLL: Duration = Duration::from_millis(50);

#[test]
fn redis_killed_and_restarted_with_appendfsync_always_loses_nothing() {
    redis_killed_and_restarted("always");
}

#[test]
fn redis_killed_and_restarted_with_appendfsync_everysec_loses_no_job_enqueued_before() {
    redis_killed_and_restarted("everysec");
}

#[test]
fn redis_frozen_by_sigstop_holds_up_deliveries_until_it_goes_on() {
    let scale = Scale::from_env();
    // Short: until every worker has noticed; long: 20 s.
    let (jobs, pause) = scale.pick((3_000, Duration::ZERO), (10_000, Duration::from_secs(20)));
    let redis = RedisServer::start();
    let herald = Herald::new(&redis.url(), "it-faults-redis-sigstop");
    let rx = slow_receiver();
    let ledger = Ledger::new();
    let fleet = start(&herald, &rx, &ledger, jobs);

    rx.wait_for_distinct(jobs / 3, scale.drain_net());
    let failure = Failure::shared("redis paused", &rx, LEASE);
    let paused = Instant::now();
    redis.pause();
    fleet.wait_for_readyz(503, SAFETY_NET);
    thread::sleep(pause.saturating_sub(paused.elapsed()));
    redis.resume();
    ledger.failure(failure.over());
    fleet.wait_for_readyz(200, SAFETY_NET);

    ledger.account("redis-sigstop", &herald, &rx, none_dead, scale.drain_net());
    // A claim that its worker gave up on while Redis was frozen ran as a no-op when Redis went
    // on: no job was left on a lease that nobody held.
    assert_no_lease_ran_out(&fleet);
    fleet.stop();
}
