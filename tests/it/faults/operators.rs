//! Operators at work while workers deliver: endpoints disabled and enabled, pointed at another
//! URL or at a port that refuses (so that strikes disable them), deleted and created again by a
//! new owner, and dead jobs replayed, in a random order, through the `herald` CLI.
//!
//! Besides the ledger's checks (every job delivered or dead with a reason, `herald check`
//! clean), every delivery must reach a URL of the owner its job was enqueued for: a job of a
//! deleted endpoint never reaches whoever creates the id again.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{hook_path, Enqueued, Fleet, Job, Ledger, Scale, BATCH};
use crate::support::process::poll_until;
use crate::support::receiver::{self, Receiver};
use crate::support::redis_server::free_port;
use crate::support::{redis_and_herald, Herald, SAFETY_NET};

/// How often the operators look at an endpoint they wait for.
const POLL: Duration = Duration::from_millis(20);

/// The endpoints the operators work on.
const ENDPOINTS: usize = 4;

/// What the test knows of one endpoint.
#[derive(Debug, Clone, Copy)]
struct Endpoint {
    /// Its owner: 0 until its first delete, then one more per delete.
    epoch: u32,
    exists: bool,
    /// The latest URL variant set.
    variant: u32,
}

/// One step of the operators, chosen at random.
#[derive(Debug, Clone, Copy)]
enum Action {
    Enqueue,
    Disable,
    Enable,
    SetUrl,
    SetRefusedUrl,
    Delete,
    Recreate,
    Replay,
    /// Points the endpoint at the refusing port with a backlog, waits until strikes disable it,
    /// and at once sets a working URL, while workers still settle the failed attempts.
    StrikeOutThenFix,
}

/// The actions, enqueues weighted so that jobs keep coming.
const ACTIONS: [Action; 12] = [
    Action::Enqueue,
    Action::Enqueue,
    Action::Enqueue,
    Action::Enqueue,
    Action::Disable,
    Action::Enable,
    Action::SetUrl,
    Action::SetRefusedUrl,
    Action::Delete,
    Action::Recreate,
    Action::Replay,
    Action::StrikeOutThenFix,
];

/// Whether a job may end in the dead-letter store with `reason`, given the owner of its endpoint
/// at the end of the run: any job after failing on the refusing port until its retries ran
/// out, or after waiting, parked, longer than the (short) retry window; a job of an owner that
/// deleted its endpoint, for that reason (at the delete, at its settlement, or when a claim
/// found it); but never a job of the last owner because of an earlier owner's delete.
fn may_die(job: &Job, reason: &str, last_owner: u32) -> bool {
    let failed = reason.starts_with("retries exhausted")
        || reason.starts_with("parked longer than the retry window");
    let deleted = reason.starts_with(&format!("endpoint deleted: {}", job.endpoint))
        || reason.starts_with(&format!("unknown endpoint: {}", job.endpoint));
    failed || (deleted && job.epoch < last_owner)
}

struct Operators<'a> {
    herald: &'a Herald,
    rx: &'a Receiver,
    ledger: &'a Ledger,
    /// A port nothing listens on: connections to it are refused.
    refused_port: u16,
    endpoints: Vec<Endpoint>,
    rng: StdRng,
    /// How many times each action was taken.
    taken: BTreeMap<String, usize>,
}

impl Operators<'_> {
    fn id(i: usize) -> String {
        format!("op-{i}")
    }

    fn set(&mut self, i: usize, refused: bool) {
        let e = &mut self.endpoints[i];
        e.variant += 1;
        let path = hook_path(&Self::id(i), e.epoch, e.variant);
        let base = match refused {
            true => format!("http://127.0.0.1:{}", self.refused_port),
            false => self.rx.url(),
        };
        self.herald
            .set_endpoint(&Self::id(i), &format!("{base}{path}"));
        e.exists = true;
    }

    /// Runs `herald endpoint <verb> ID`; refused with exit 2 when the endpoint does not exist.
    fn endpoint_command(&self, i: usize, verb: &str) {
        let out = self.herald.run(&["endpoint", verb, &Self::id(i)]);
        if self.endpoints[i].exists {
            out.assert_success();
        } else {
            assert_eq!(out.status.code(), Some(2), "`{}`:\n{out}", out.command);
        }
    }

    fn step(&mut self, action: Action) {
        let i = self.rng.random_range(0..ENDPOINTS);
        let e = self.endpoints[i];
        *self.taken.entry(format!("{action:?}")).or_default() += 1;
        match action {
            Action::Enqueue => {
                let count = self.rng.random_range(20..=100);
                let done = self
                    .ledger
                    .enqueue(self.herald, &Self::id(i), e.epoch, count);
                let expected = match e.exists {
                    true => Enqueued::All,
                    false => Enqueued::UnknownEndpoint,
                };
                assert_eq!(done, expected, "enqueue for {e:?}");
            }
            Action::Disable => self.endpoint_command(i, "disable"),
            Action::Enable => self.endpoint_command(i, "enable"),
            Action::SetUrl if e.exists => self.set(i, false),
            Action::SetRefusedUrl if e.exists => self.set(i, true),
            Action::SetUrl | Action::SetRefusedUrl => {}
            Action::Delete => {
                self.endpoint_command(i, "delete");
                if e.exists {
                    self.endpoints[i].exists = false;
                    self.endpoints[i].epoch += 1;
                }
            }
            Action::Recreate if !e.exists => self.set(i, false),
            Action::Recreate => {}
            Action::Replay => {
                self.herald.ok(&["dead", "replay", "--all"]);
            }
            Action::StrikeOutThenFix if e.exists => {
                self.set(i, true);
                self.ledger.enqueue(self.herald, &Self::id(i), e.epoch, 200);
                let id = Self::id(i);
                poll_until("strikes to disable the endpoint", SAFETY_NET, POLL, || {
                    let got = self.herald.endpoint(&id);
                    match got["disabled"].is_object() {
                        true => Ok(()),
                        false => Err(got.to_string()),
                    }
                });
                self.set(i, false);
            }
            Action::StrikeOutThenFix => {}
        }
    }
}

#[test]
fn operators_acting_while_workers_deliver_strand_and_misdeliver_nothing() {
    let scale = Scale::from_env();
    let steps = scale.pick(300, 3_000);
    let seed: u64 = match std::env::var("HERALD_FAULTS_SEED") {
        Ok(seed) => seed.parse().expect("HERALD_FAULTS_SEED is a number"),
        Err(_) => rand::rng().random(),
    };
    eprintln!("faults operators: HERALD_FAULTS_SEED={seed}");
    let (_redis, herald) = redis_and_herald("it-faults-operators");
    let rx = Receiver::start(receiver::slow(Duration::from_millis(5)));
    let ledger = Ledger::new();
    let mut operators = Operators {
        herald: &herald,
        rx: &rx,
        ledger: &ledger,
        refused_port: free_port(),
        endpoints: vec![
            Endpoint {
                epoch: 0,
                exists: false,
                variant: 0,
            };
            ENDPOINTS
        ],
        rng: StdRng::seed_from_u64(seed),
        taken: BTreeMap::new(),
    };
    for i in 0..ENDPOINTS {
        operators.set(i, false);
    }
    let fleet = Fleet::start(
        &herald,
        3,
        &[
            ("HERALD_CONCURRENCY", "8"),
            ("HERALD_RETRY_SCHEDULE", &["100ms"; 10].join(",")),
        ],
    );

    for _ in 0..steps {
        let action = ACTIONS[operators.rng.random_range(0..ACTIONS.len())];
        operators.step(action);
    }
    // The last owners fix their endpoints: every job left is served or dead.
    for i in 0..ENDPOINTS {
        operators.set(i, false);
    }

    eprintln!("faults operators: actions {:?}", operators.taken);
    let last_owner: Vec<u32> = operators.endpoints.iter().map(|e| e.epoch).collect();
    let figures = ledger.account(
        "operators",
        &herald,
        &rx,
        |job, reason| {
            let i: usize = job.endpoint["op-".len()..].parse().expect("op-<i>");
            may_die(job, reason, last_owner[i])
        },
        scale.drain_net(),
    );
    fleet.stop();
    assert!(figures.delivered > 0, "{figures}");
}

#[test]
fn replaying_every_dead_job_ends_while_workers_send_them_straight_back() {
    const JOBS: usize = 20_000;
    let (_redis, herald) = redis_and_herald("it-faults-replay-all");
    let rx = Receiver::start(receiver::always(200));
    herald.set_endpoint("gone", &format!("{}/hooks/gone", rx.url()));
    let ledger = Ledger::new();
    for _ in 0..JOBS / BATCH {
        assert_eq!(ledger.enqueue(&herald, "gone", 0, BATCH), Enqueued::All);
    }
    herald.ok(&["endpoint", "delete", "gone"]);
    herald.wait_for_stats("every job dead", SAFETY_NET, |s| s.dead == JOBS as u64);

    // A replayed job of a deleted endpoint goes straight back to the dead-letter store: the
    // replay takes each job dead when it began once, and ends. (All of them in one shard, far
    // above that shard's share of the default dead-letter bound: no trimming here.)
    let worker = herald.spawn_worker(&[("HERALD_DEAD_MAX", "10000000")]);
    let out = herald.ok(&["dead", "replay", "--all", "--json"]);
    assert_eq!(out.json()["replayed"], JOBS, "{out}");
    herald.wait_for_stats("every job dead again", SAFETY_NET, |s| {
        s.dead == JOBS as u64 && s.queued() == 0 && s.in_flight == 0
    });
    worker.stop(SAFETY_NET);
    assert_eq!(rx.count(), 0, "a job of the deleted endpoint was delivered");
}
