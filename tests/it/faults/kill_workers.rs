//! Workers killed with SIGKILL while they deliver: what a killed worker held comes back after
//! its lease, and is delivered again only if it was on the wire.

use std::thread;
use std::time::{Duration, Instant};

use super::{hook_path, none_dead, Fleet, Ledger, Scale, BATCH};
use crate::support::receiver::{self, Receiver};
use crate::support::redis_and_herald;

/// Time between two kills.
const KILL_EVERY: Duration = Duration::from_secs(2);

/// The workers' lease: a killed worker's jobs come back after it.
const LEASE: Duration = Duration::from_secs(5);

#[test]
fn workers_killed_every_two_seconds_under_load_lose_nothing() {
    let scale = Scale::from_env();
    let (jobs, kills) = scale.pick((3_000, 6), (20_000, 20));
    let (_redis, herald) = redis_and_herald("it-faults-kill-loop");
    // Every answer takes 100 ms: the fleet delivers at most 3 × 8 / 0.1 s = 240 jobs a second,
    // fewer than are enqueued, so that every kill finds a backlog and deliveries on the wire.
    let rx = Receiver::start(receiver::slow(Duration::from_millis(100)));
    let endpoints = ["dash-1", "dash-2", "dash-3", "dash-4"];
    for endpoint in endpoints {
        herald.set_endpoint(
            endpoint,
            &format!("{}{}", rx.url(), hook_path(endpoint, 0, 0)),
        );
    }
    let ledger = Ledger::new();
    let mut fleet = Fleet::start(
        &herald,
        3,
        &[
            ("HERALD_CONCURRENCY", "8"),
            ("HERALD_LEASE", "5s"),
            ("HERALD_REQUEST_TIMEOUT", "2s"),
            // A lease taken back counts as an attempt: more retries than kills.
            ("HERALD_RETRY_SCHEDULE", &["100ms"; 30].join(",")),
        ],
    );

    let mut batches = (0..jobs)
        .step_by(BATCH)
        .map(|start| BATCH.min(jobs - start));
    let per_kill = jobs.div_ceil(BATCH).div_ceil(kills);
    for kill in 0..kills {
        let period = Instant::now();
        for (i, count) in batches.by_ref().take(per_kill).enumerate() {
            ledger.enqueue(&herald, endpoints[i % endpoints.len()], 0, count);
        }
        thread::sleep(KILL_EVERY.saturating_sub(period.elapsed()));
        ledger.failure(fleet.kill_and_replace(kill % 3, &rx, LEASE));
    }
    for (i, count) in batches.enumerate() {
        ledger.enqueue(&herald, endpoints[i % endpoints.len()], 0, count);
    }

    let figures = ledger.account("kill-loop", &herald, &rx, none_dead, scale.drain_net());
    fleet.stop();
    assert_eq!(figures.jobs, jobs);
    assert_eq!(figures.failures, kills);
}
