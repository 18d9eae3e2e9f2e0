//! herald on a real Redis Cluster of three masters and three replicas: the test cluster itself
//! (keys spread, a slot moved under writes, a manual failover, a killed master).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use redis::Commands;

use crate::support::process::poll_until;
use crate::support::{RedisCluster, SAFETY_NET};

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
    let moved = mover.join();
    stop.store(true, Ordering::SeqCst);
    let w = writer.join().expect("the writer");
    assert!(moved >= 200, "{moved} keys migrated");
    assert!(batches.load(Ordering::SeqCst) >= 10);
    assert_eq!(cluster.master_of_slot(slot), to);
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
