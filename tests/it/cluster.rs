//! herald on a real Redis Cluster of three masters and three replicas: the test cluster itself
//! (keys spread, a slot moved under writes, a manual failover, a killed master), then the CLI and
//! workers in cluster mode (`HERALD_REDIS_CLUSTER`) with jobs on every master, a shard's slot
//! moved to another master while two workers deliver a stream of jobs, a manual failover and a
//! master killed mid-stream (with producers waiting for a replica, `HERALD_ENQUEUE_WAIT_REPLICAS`),
//! a slot held in migration that holds back its own shard only, an ACL user reaching every node
//! from one seed,
//! and an enqueue that waits for a frozen replica. Every run ends with every job accounted for
//! and `herald check` clean.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use herald_core::{shard_of, EndpointId};
use herald_store::Namespace;
use redis::Commands;
use serde_json::{json, Value};

use crate::faults::{hook_path, none_dead, Failure, Fleet, Ledger};
use crate::support::process::poll_until;
use crate::support::receiver::{self, Receiver};
use crate::support::redis_cluster::Migration;
use crate::support::{Herald, RedisCluster, SAFETY_NET};

/// herald's default shard count, which these tests keep.
const SHARDS: u16 = 16;

/// The product documentation's example event (service `heroku`).
const EXAMPLE: &str = include_str!("../../crates/herald-core/src/example-event.json");

/// Jobs per `herald enqueue --ndjson` of the streams that run while the cluster changes.
const STREAM_BATCH: usize = 20;

/// The workers' settings in the runs with a stream: two workers of 8 deliveries each.
const CONCURRENCY: usize = 8;
const WORKERS: usize = 2;

/// CLI commands and workers in cluster mode, seeded with every node of `cluster`.
fn on_cluster(cluster: &RedisCluster, namespace: &str) -> Herald {
    Herald::new(&cluster.seed_urls(), namespace).with_env("HERALD_REDIS_CLUSTER", "true")
}

/// Endpoint ids `dash-0`, `dash-1`, ... chosen so that each of the 16 shards holds `per_shard`
/// of them.
fn endpoints_over_every_shard(per_shard: usize) -> Vec<String> {
    let mut taken = [0; SHARDS as usize];
    let mut endpoints = Vec::new();
    for i in 0.. {
        if taken.iter().all(|&n| n == per_shard) {
            break;
        }
        let id = format!("dash-{i}");
        let shard = usize::from(shard(&id));
        if taken[shard] < per_shard {
            taken[shard] += 1;
            endpoints.push(id);
        }
    }
    endpoints
}

fn shard(endpoint: &str) -> u16 {
    shard_of(&EndpointId::new(endpoint).expect("endpoint id"), SHARDS)
}

/// The hash slot of `shard`'s keys in `namespace`: that of its hash tag.
fn slot_of_shard(cluster: &RedisCluster, namespace: &str, shard: u16) -> u16 {
    cluster.slot_of(&format!("{{{namespace}.{shard}}}"))
}

/// Whether `master` serves the slot of one of the shards of `namespace`.
fn serves_a_shard(cluster: &RedisCluster, namespace: &str, master: u16) -> bool {
    (0..SHARDS).any(|s| cluster.master_of_slot(slot_of_shard(cluster, namespace, s)) == master)
}

/// Jobs in the store on each master: the length of the `jobs` hash of every shard it serves.
fn jobs_per_master(cluster: &RedisCluster, namespace: &str) -> BTreeMap<u16, u64> {
    let ns = Namespace::new(namespace).expect("namespace");
    let mut per_master: BTreeMap<u16, u64> =
        cluster.masters().into_iter().map(|m| (m, 0)).collect();
    for shard in 0..SHARDS {
        let jobs = ns.shard(shard).jobs;
        let master = cluster.master_of(&jobs);
        let count: u64 = cluster
            .connection(master)
            .hlen(&jobs)
            .unwrap_or_else(|e| panic!("HLEN {jobs} on {master}: {e}"));
        *per_master.get_mut(&master).expect("a master") += count;
    }
    per_master
}

/// Endpoints on `rx`, at their ledger paths.
fn set_endpoints(herald: &Herald, rx: &Receiver, endpoints: &[String]) {
    for endpoint in endpoints {
        herald.set_endpoint(
            endpoint,
            &format!("{}{}", rx.url(), hook_path(endpoint, 0, 0)),
        );
    }
}

/// Jobs per endpoint queued before the workers start in the runs with a stream: enough that the
/// workers deliver for a few seconds whatever the stream does (its enqueues may wait for the
/// cluster).
const BACKLOG: usize = 100;

/// Queues [`BACKLOG`] jobs for each of `endpoints`.
fn backlog(ledger: &Ledger, herald: &Herald, endpoints: &[String]) {
    for endpoint in endpoints {
        ledger.enqueue(herald, endpoint, 0, BACKLOG);
    }
}

/// Enqueues [`STREAM_BATCH`] jobs at a time, round-robin over `endpoints`, until `stop` is set
/// (after at least one batch).
fn stream(ledger: &Ledger, herald: &Herald, endpoints: &[String], stop: &AtomicBool) {
    for endpoint in endpoints.iter().cycle() {
        ledger.enqueue(herald, endpoint, 0, STREAM_BATCH);
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
}

/// The workers of the runs with a stream.
fn fleet<'h>(herald: &'h Herald, lease: &str) -> Fleet<'h> {
    Fleet::start(
        herald,
        WORKERS,
        &[
            ("HERALD_CONCURRENCY", &CONCURRENCY.to_string()),
            ("HERALD_LEASE", lease),
            ("HERALD_RETRY_SCHEDULE", &["100ms"; 10].join(",")),
        ],
    )
}

/// Waits until a master refused herald a call for the slot `migration` moves (`ASK` or
/// `TRYAGAIN`): herald met the slot half moved.
fn wait_until_refused(migration: &Migration) {
    poll_until(
        "herald to meet the slot in migration",
        SAFETY_NET,
        Duration::from_millis(10),
        || match migration.refusals() {
            0 => Err("no ASK or TRYAGAIN yet".to_owned()),
            _ => Ok(()),
        },
    );
}

/// Reads every `key` → `value` back through a fresh cluster connection.
fn assert_keys(cluster: &RedisCluster, keys: &[(String, String)], when: &str) {
    let mut con = cluster.cluster_connection();
    for (key, value) in keys {
        let got: Option<String> = con
            .get(key)
            .unwrap_or_else(|e| panic!("GET {key} {when}: {e}"));
        assert_eq!(got.as_deref(), Some(value.as_str()), "{key} {when}");
    }
}

#[test]
fn the_test_cluster_reshards_fails_over_and_loses_no_replicated_key_to_a_killed_master() {
    let mut cluster = RedisCluster::start();
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    for &master in &masters {
        assert!(!masters.contains(&cluster.replica_of(master)));
    }
    let seeds = cluster.seed_urls();
    assert_eq!(seeds.split(',').count(), 6, "{seeds}");
    assert!(seeds
        .split(',')
        .all(|u| u.starts_with("redis://127.0.0.1:")));

    // Keys spread over every master; each is served by the master the cluster names.
    let mut con = cluster.cluster_connection();
    let mut keys: Vec<(String, String)> = (0..300)
        .map(|i| (format!("key:{i}"), i.to_string()))
        .collect();
    for (key, value) in &keys {
        let () = con.set(key, value).expect("SET through the cluster");
    }
    let counts = cluster.key_counts();
    assert_eq!(counts.values().sum::<u64>(), 300, "{counts:?}");
    assert!(counts.values().all(|&n| n > 0), "{counts:?}");
    let owner = cluster.master_of("key:7");
    let got: String = cluster
        .connection(owner)
        .get("key:7")
        .expect("GET on the master of its slot");
    assert_eq!(got, "7");
    let other = *masters
        .iter()
        .find(|&&m| m != owner)
        .expect("another master");
    let refused = cluster
        .connection(other)
        .get::<_, String>("key:7")
        .expect_err("another master redirects");
    assert_eq!(refused.code(), Some("MOVED"), "{refused}");

    // A slot holding keys moves while a writer adds keys to it, one redirection at a time.
    let slot = cluster.slot_of("{moving}");
    assert_eq!(cluster.slot_of("{moving}:anything"), slot);
    for i in 0..200 {
        keys.push((format!("{{moving}}:{i}"), i.to_string()));
        let () = con.set(&keys.last().unwrap().0, i).expect("SET");
    }
    let from = cluster.master_of_slot(slot);
    let to = *masters
        .iter()
        .find(|&&m| m != from)
        .expect("another master");
    let written = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut con = cluster.cluster_connection();
        let (written, stop) = (Arc::clone(&written), Arc::clone(&stop));
        thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let () = con
                    .set(format!("{{moving}}:w{n}"), n)
                    .unwrap_or_else(|e| panic!("SET while the slot moves: {e}"));
                n += 1;
                written.store(n, Ordering::SeqCst);
            }
            n
        })
    };
    let progress = Arc::clone(&written);
    let batches = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&batches);
    let mover = cluster.move_slot_in_background(slot, to, 20, move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        // The writer gets some keys in between every two batches.
        let before = progress.load(Ordering::SeqCst);
        poll_until(
            "the writer to write during the move",
            SAFETY_NET,
            Duration::from_millis(1),
            || match progress.load(Ordering::SeqCst) {
                now if now >= before + 5 => Ok(()),
                now => Err(format!("{now} keys written")),
            },
        );
    });
    let migration = mover.join();
    stop.store(true, Ordering::SeqCst);
    let w = writer.join().expect("the writer");
    assert!(migration.moved >= 200, "{migration:?}");
    assert!(migration.refusals() > 0, "the writer met no redirection");
    assert!(batches.load(Ordering::SeqCst) >= 10);
    assert_eq!(cluster.master_of_slot(migration.slot), to);
    keys.extend((0..w).map(|n| (format!("{{moving}}:w{n}"), n.to_string())));
    let in_slot: usize = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut cluster.connection(to))
        .expect("CLUSTER COUNTKEYSINSLOT");
    assert_eq!(in_slot, 200 + w, "keys of slot {slot} on its new master");
    assert_keys(&cluster, &keys, "after the slot move");

    // A manual failover swaps a master and its replica.
    let old = masters[0];
    let new = cluster.manual_failover(old);
    let now = cluster.masters();
    assert!(now.contains(&new) && !now.contains(&old), "{now:?}");
    assert_eq!(cluster.replica_of(new), old);
    assert_keys(&cluster, &keys, "after a manual failover");

    // A master killed once its replica has every write: its replica takes over, nothing lost.
    cluster.wait_replicated();
    let victim = now[1];
    let promoted = cluster.kill_master(victim);
    let now = cluster.masters();
    assert!(now.contains(&promoted) && !now.contains(&victim), "{now:?}");
    assert_eq!(now.len(), 3);
    assert_keys(&cluster, &keys, "after a master was killed");
    cluster.restart(victim);
    assert_eq!(cluster.replica_of(promoted), victim);
}

#[test]
fn the_cli_and_a_worker_deliver_every_job_once_with_jobs_on_every_master() {
    let cluster = RedisCluster::start();
    let namespace = "it-cluster-cli";
    let herald = on_cluster(&cluster, namespace);
    let rx = Receiver::start(receiver::always(200));
    let endpoints = endpoints_over_every_shard(2);
    let masters: BTreeSet<u16> = (0..SHARDS)
        .map(|s| cluster.master_of_slot(slot_of_shard(&cluster, namespace, s)))
        .collect();
    assert_eq!(
        masters.len(),
        3,
        "the shards should spread over all masters"
    );

    for endpoint in &endpoints {
        herald.set_endpoint(endpoint, &format!("{}/hooks/{endpoint}", rx.url()));
    }
    let listed = herald.ok(&["endpoint", "list", "--json"]).json();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(endpoints.len()),
        "{listed}"
    );
    let subscribers: Vec<&String> = endpoints.iter().step_by(2).collect();
    for endpoint in &subscribers {
        herald.ok(&["subscribe", endpoint, "heroku", "--level", "all"]);
    }

    // An event fanned out to every subscriber, once even when published twice with one key.
    let event: Value = serde_json::from_str(EXAMPLE).expect("the example event");
    for expected in [subscribers.len(), 0] {
        let report = herald
            .run_stdin(
                &["publish", "-", "--idempotency-key", "evt-1", "--json"],
                event.to_string(),
            )
            .assert_success()
            .json();
        assert_eq!(
            report["enqueued"].as_u64(),
            Some(expected as u64),
            "{report}"
        );
    }
    // One job per endpoint through `enqueue-6.lua`, then a batch each through
    // `enqueue-batch-4.lua`.
    let singles: Vec<String> = endpoints
        .iter()
        .map(|e| herald.enqueue(e, &json!({"kind": "single", "endpoint": e})))
        .collect();
    const BATCH: usize = 25;
    for endpoint in &endpoints {
        herald.enqueue_many(
            endpoint,
            (0..BATCH).map(|n| json!({"kind": "batch", "endpoint": endpoint, "n": n})),
        );
    }
    let total = subscribers.len() + endpoints.len() * (1 + BATCH);

    let stats = herald.stats();
    assert_eq!(stats.due, total as u64, "{stats:?}");
    assert_eq!(stats.queued(), total as u64, "{stats:?}");
    let job = herald.job(&singles[0]).expect("the job is in the store");
    assert_eq!(job["state"], "due", "{job}");
    let jobs = jobs_per_master(&cluster, namespace);
    assert_eq!(jobs.values().sum::<u64>(), total as u64, "{jobs:?}");
    assert!(jobs.values().all(|&n| n > 0), "jobs per master: {jobs:?}");
    let keys = cluster.key_counts();
    assert!(keys.values().all(|&n| n > 0), "keys per master: {keys:?}");

    let worker = herald.spawn_worker(&[]);
    rx.wait_for(total, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);

    let requests = rx.requests();
    assert_eq!(requests.len(), total, "deliveries");
    let ids: HashSet<String> = requests.iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids.len(), total, "distinct webhook-ids");
    for single in &singles {
        assert!(
            ids.contains(&format!("msg_{single}")),
            "{single} was not delivered"
        );
    }
    let mut events: HashMap<String, usize> = HashMap::new();
    for request in &requests {
        let body = request.json();
        let endpoint = request
            .path
            .strip_prefix("/hooks/")
            .expect("a hook path")
            .to_owned();
        if body == event {
            *events.entry(endpoint).or_default() += 1;
        } else {
            assert_eq!(
                body["endpoint"],
                endpoint.as_str(),
                "delivered to the wrong URL"
            );
        }
    }
    let expected: HashMap<String, usize> = subscribers.iter().map(|e| ((*e).clone(), 1)).collect();
    assert_eq!(events, expected, "the event, once per subscriber");
    assert!(herald.dead_list().is_empty());
    herald.assert_check_clean();
    assert_eq!(
        jobs_per_master(&cluster, namespace).values().sum::<u64>(),
        0
    );
}

#[test]
fn a_shard_whose_slot_moves_to_another_master_under_a_stream_delivers_every_job_once() {
    let cluster = RedisCluster::start();
    let namespace = "it-cluster-move";
    let herald = on_cluster(&cluster, namespace);
    let rx = Receiver::start(receiver::slow(Duration::from_millis(10)));
    let endpoints = endpoints_over_every_shard(1);
    set_endpoints(&herald, &rx, &endpoints);
    let masters = cluster.masters();
    // The shard of the first endpoint the stream feeds moves.
    let slot = slot_of_shard(&cluster, namespace, shard(&endpoints[0]));
    let from = cluster.master_of_slot(slot);
    let to = *masters
        .iter()
        .find(|&&m| m != from)
        .expect("another master");

    let ledger = Ledger::new();
    backlog(&ledger, &herald, &endpoints);
    let fleet = fleet(&herald, "30s");
    rx.wait_for(STREAM_BATCH, SAFETY_NET);

    let stop = AtomicBool::new(false);
    let migration = thread::scope(|s| {
        let producer = s.spawn(|| stream(&ledger, &herald, &endpoints, &stop));
        // After its first key the move waits until herald met the slot in migration: with the
        // shard's keys on both masters, its scripts are refused (`TRYAGAIN`) until the move
        // ends, and herald must redo them then. The other keys follow one per `MIGRATE`.
        let mover = cluster.move_slot_in_background(slot, to, 1, |migration| {
            if migration.moved == 1 {
                wait_until_refused(migration);
            }
        });
        let migration = mover.join();
        // The stream goes on while the workers deliver more, the moved shard's from its new
        // master.
        let target = rx.count() + 4 * CONCURRENCY;
        rx.wait_until("deliveries after the move", SAFETY_NET, |r| {
            r.len() >= target
        });
        stop.store(true, Ordering::SeqCst);
        producer.join().expect("the producer");
        migration
    });
    assert!(
        migration.moved > 1,
        "the shard's slot held only {migration:?}"
    );

    let figures = ledger.account("slot-move", &herald, &rx, none_dead, SAFETY_NET);
    assert_eq!(figures.duplicates, 0);
    assert_eq!(cluster.master_of_slot(slot), to, "the slot's new master");
    assert_eq!(cluster.masters(), masters, "no failover happened");
    fleet.stop();
}

#[test]
fn a_slot_held_in_migration_holds_back_its_own_shard_only() {
    let cluster = RedisCluster::start();
    let namespace = "it-cluster-held";
    let herald = on_cluster(&cluster, namespace);
    let rx = Receiver::start(receiver::slow(Duration::from_millis(10)));
    let endpoints = endpoints_over_every_shard(1);
    set_endpoints(&herald, &rx, &endpoints);
    let moving = shard(&endpoints[0]);
    let slot = slot_of_shard(&cluster, namespace, moving);
    let from = cluster.master_of_slot(slot);
    let to = *cluster
        .masters()
        .iter()
        .find(|&&m| m != from)
        .expect("another master");

    let ledger = Ledger::new();
    // The moving shard has work, so the workers keep claiming from it during the move.
    ledger.enqueue(&herald, &endpoints[0], 0, BACKLOG);
    let fleet = fleet(&herald, "30s");
    rx.wait_for(1, SAFETY_NET);

    // The move stops after its first key (the shard's keys then sit on two masters, and its
    // scripts are refused) until the test lets it go on.
    let met = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let mover = {
        let (met, release) = (met.clone(), release.clone());
        cluster.move_slot_in_background(slot, to, 1, move |migration| {
            if migration.moved == 1 {
                wait_until_refused(migration);
                met.store(true, Ordering::SeqCst);
                poll_until(
                    "the test to let the move go on",
                    5 * SAFETY_NET,
                    Duration::from_millis(10),
                    || match release.load(Ordering::SeqCst) {
                        true => Ok(()),
                        false => Err("held".to_owned()),
                    },
                );
            }
        })
    };
    poll_until(
        "the move to be held",
        SAFETY_NET,
        Duration::from_millis(10),
        || match met.load(Ordering::SeqCst) {
            true => Ok(()),
            false => Err("not yet".to_owned()),
        },
    );
    // Meanwhile the other fifteen shards get 2,000 jobs: all of them are delivered while the
    // one shard is held. (A claim round waiting for the held shard's claim, retried for
    // seconds, delivered about 10 jobs a second: 2,000 would outlast the safety net.)
    let before = rx.count();
    let others: Vec<String> = endpoints[1..].to_vec();
    let mut sent = 0;
    for endpoint in others.iter().cycle().take(20) {
        ledger.enqueue(&herald, endpoint, 0, 100);
        sent += 100;
    }
    rx.wait_until("the other shards' jobs during the move", SAFETY_NET, |r| {
        r.len() >= before + sent
    });
    assert!(
        !release.load(Ordering::SeqCst) && cluster.master_of_slot(slot) != to,
        "the slot was still in migration"
    );
    release.store(true, Ordering::SeqCst);
    let migration = mover.join();
    assert!(migration.moved > 1, "{migration:?}");

    let figures = ledger.account("held-move", &herald, &rx, none_dead, SAFETY_NET);
    assert_eq!(figures.duplicates, 0);
    assert_eq!(cluster.master_of_slot(slot), to, "the slot's new master");
    fleet.stop();
}

#[test]
fn a_manual_failover_mid_stream_loses_nothing_and_workers_carry_on() {
    let cluster = RedisCluster::start();
    let namespace = "it-cluster-failover";
    let herald = on_cluster(&cluster, namespace);
    let rx = Receiver::start(receiver::slow(Duration::from_millis(10)));
    let endpoints = endpoints_over_every_shard(1);
    set_endpoints(&herald, &rx, &endpoints);
    let ledger = Ledger::new();
    backlog(&ledger, &herald, &endpoints);
    let fleet = fleet(&herald, "30s");
    rx.wait_for(STREAM_BATCH, SAFETY_NET);

    let stop = AtomicBool::new(false);
    let old = cluster.masters()[0];
    assert!(serves_a_shard(&cluster, namespace, old));
    let new = thread::scope(|s| {
        let producer = s.spawn(|| stream(&ledger, &herald, &endpoints, &stop));
        let new = cluster.manual_failover(old);
        // The workers deliver again through the new master.
        let target = rx.count() + 4 * CONCURRENCY;
        rx.wait_until("deliveries after the failover", SAFETY_NET, |r| {
            r.len() >= target
        });
        stop.store(true, Ordering::SeqCst);
        producer.join().expect("the producer");
        new
    });

    let figures = ledger.account("manual-failover", &herald, &rx, none_dead, SAFETY_NET);
    assert_eq!(figures.duplicates, 0);
    assert!(cluster.masters().contains(&new));
    assert_eq!(cluster.replica_of(new), old);
    fleet.stop();
}

#[test]
fn a_master_killed_mid_stream_fails_over_and_loses_no_job_enqueued_with_wait() {
    let mut cluster = RedisCluster::start();
    let namespace = "it-cluster-kill";
    // Producers answer once a replica has each job (Redis WAIT).
    let herald = on_cluster(&cluster, namespace).with_env("HERALD_ENQUEUE_WAIT_REPLICAS", "1");
    // Slow answers: the kill finds deliveries on the wire.
    let rx = Receiver::start(receiver::slow(Duration::from_millis(20)));
    let endpoints = endpoints_over_every_shard(1);
    set_endpoints(&herald, &rx, &endpoints);
    let ledger = Ledger::new();
    backlog(&ledger, &herald, &endpoints);
    // A short lease: a lease whose settlement the kill lost runs out soon.
    let lease = Duration::from_secs(5);
    let fleet = fleet(&herald, "5s");
    rx.wait_for(STREAM_BATCH, SAFETY_NET);

    // The stream runs until the workers delivered some of it; its last batch is answered (so
    // on a replica) just before the kill.
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let producer = s.spawn(|| stream(&ledger, &herald, &endpoints, &stop));
        let target = rx.count() + 4 * CONCURRENCY;
        rx.wait_until("deliveries of the stream", SAFETY_NET, |r| {
            r.len() >= target
        });
        stop.store(true, Ordering::SeqCst);
        producer.join().expect("the producer");
    });
    let victim = cluster.masters()[0];
    let queued = jobs_per_master(&cluster, namespace)[&victim];
    assert!(queued > 0, "the master to kill holds no job");
    let failure = Failure::shared("master killed", &rx, lease);
    let promoted = cluster.kill_master(victim);
    ledger.failure(failure.over());
    // The workers, not restarted, deliver every job through the promoted replica (a seed node
    // down does not keep the CLI from the cluster).
    herald.wait_for_stats("every job delivered after the failover", SAFETY_NET, |s| {
        s.queued() == 0 && s.in_flight == 0 && s.parked == 0
    });

    // Back as the promoted master's replica, the killed node acknowledges writes again: more
    // jobs, to every shard.
    cluster.restart(victim);
    assert_eq!(cluster.replica_of(promoted), victim);
    for endpoint in &endpoints {
        ledger.enqueue(&herald, endpoint, 0, STREAM_BATCH);
    }

    let figures = ledger.account("master-killed", &herald, &rx, none_dead, SAFETY_NET);
    assert!(
        figures.duplicates <= WORKERS * CONCURRENCY,
        "{} duplicates, more than the {} deliveries the fleet can have in flight",
        figures.duplicates,
        WORKERS * CONCURRENCY
    );
    fleet.stop();
}

#[test]
fn an_enqueue_that_waits_for_a_replica_fails_while_it_is_frozen_and_the_job_is_kept() {
    let cluster = RedisCluster::start();
    let namespace = "it-cluster-wait";
    let plain = on_cluster(&cluster, namespace);
    let waiting = plain
        .clone()
        .with_env("HERALD_ENQUEUE_WAIT_REPLICAS", "1")
        .with_env("HERALD_ENQUEUE_WAIT_TIMEOUT", "200ms");
    let rx = Receiver::start(receiver::always(200));
    plain.set_endpoint("dash-1", &format!("{}/hooks/dash-1", rx.url()));
    let master = cluster.master_of_slot(slot_of_shard(&cluster, namespace, shard("dash-1")));
    let replica = cluster.replica_of(master);

    let mut ids = vec![waiting.enqueue("dash-1", &json!({"n": 0}))];
    cluster.pause(replica);
    let out = waiting.run_stdin(&["enqueue", "dash-1", "-"], json!({"n": 1}).to_string());
    let error = out.assert_failure();
    assert!(
        error.contains("only 0 of 1 replicas acknowledged"),
        "`{}` should say that no replica acknowledged the job:\n{out}",
        out.command
    );
    // Without waiting, the master answers alone.
    ids.push(plain.enqueue("dash-1", &json!({"n": 2})));
    cluster.resume(replica);
    ids.push(waiting.enqueue("dash-1", &json!({"n": 3})));

    // The job whose enqueue failed was written all the same: four jobs, each delivered once.
    assert_eq!(plain.stats().due, 4);
    let worker = plain.spawn_worker(&[]);
    let got = rx.wait_for(4, SAFETY_NET);
    plain.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);
    let mut numbers: Vec<u64> = got
        .iter()
        .map(|r| r.json()["n"].as_u64().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [0, 1, 2, 3]);
    for id in &ids {
        assert!(got.iter().any(|r| r.webhook_id() == format!("msg_{id}")));
    }
    plain.assert_check_clean();
}

#[test]
fn an_acl_user_of_every_node_reaches_the_whole_cluster_from_one_seed() {
    let cluster = RedisCluster::start();
    let namespace = "it-cluster-acl";
    // The least-privileged user of docs/security.md, created on every node (ACL users are per
    // node); the default user stays open for the test's own connections.
    let rule = format!("~{namespace}:* &* +@all -@dangerous +info +config|get");
    let mut ports = cluster.masters();
    ports.extend(cluster.masters().into_iter().map(|m| cluster.replica_of(m)));
    for port in ports {
        let mut args = vec!["SETUSER", "herald", "on", ">s3cr%t"];
        args.extend(rule.split(' '));
        let () = redis::cmd("ACL")
            .arg(&args)
            .query(&mut cluster.connection(port))
            .unwrap_or_else(|e| panic!("ACL SETUSER on {port}: {e}"));
    }
    // One seed: the client learns the other nodes from it, and uses the same credentials there.
    let seed = cluster.masters()[0];
    let url = |password: &str| format!("redis://herald:{password}@127.0.0.1:{seed}");
    let herald = Herald::new(&url("s3cr%25t"), namespace).with_env("HERALD_REDIS_CLUSTER", "true");
    let rx = Receiver::start(receiver::always(200));
    let endpoints = endpoints_over_every_shard(1);
    for endpoint in &endpoints {
        herald.set_endpoint(endpoint, &format!("{}/hooks/{endpoint}", rx.url()));
    }
    for endpoint in &endpoints {
        herald.enqueue(endpoint, &json!({"endpoint": endpoint}));
    }
    let worker = herald.spawn_worker(&[]);
    rx.wait_for(endpoints.len(), SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    herald.assert_check_clean();
    worker.stop(SAFETY_NET);

    let wrong = Herald::new(&url("wrong"), namespace).with_env("HERALD_REDIS_CLUSTER", "true");
    let out = wrong.run(&["stats"]);
    let stderr = out.assert_failure();
    assert!(
        stderr.contains("credentials") && !stderr.contains("wrong"),
        "a wrong password should fail plainly, without showing it:\n{out}"
    );
}
