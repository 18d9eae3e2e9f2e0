//! Two workers share ten thousand jobs over fifty endpoints: every job is delivered, and none
//! twice.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use crate::support::receiver::{self, Receiver};
use crate::support::redis_and_herald;

const ENDPOINTS: usize = 50;
const JOBS_PER_ENDPOINT: usize = 200;
const JOBS: usize = ENDPOINTS * JOBS_PER_ENDPOINT;

/// The workers' counter of jobs claimed (a lease taken), summed over label sets.
const CLAIMED: &str = "herald_jobs_claimed_total";

/// A safety net only: on a slow machine a debug build may need a while for 10,000 POSTs.
const TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn two_workers_share_ten_thousand_jobs_and_deliver_each_once() {
    let (_redis, herald) = redis_and_herald("it-scale");
    let rx = Receiver::start(receiver::always(200));
    let dir = tempfile::tempdir().expect("temporary directory");

    let settings = [("HERALD_CONCURRENCY", "16"), ("HERALD_LEASE", "60s")];
    let a = herald.spawn_worker(&settings);
    let b = herald.spawn_worker(&settings);

    for e in 0..ENDPOINTS {
        let endpoint = format!("ep-{e:02}");
        herald.set_endpoint(&endpoint, &format!("{}/hooks/{endpoint}", rx.url()));
        let mut lines = String::new();
        for n in 0..JOBS_PER_ENDPOINT {
            let seq = e * JOBS_PER_ENDPOINT + n;
            writeln!(lines, "{{\"seq\":{seq},\"endpoint\":\"{endpoint}\"}}").expect("write");
        }
        let file = dir.path().join(format!("{endpoint}.ndjson"));
        std::fs::write(&file, lines).expect("write ndjson");
        let file = file.to_str().expect("utf-8 path");
        let out = herald.ok(&["enqueue", &endpoint, file, "--ndjson"]);
        assert!(
            out.stdout.contains(&JOBS_PER_ENDPOINT.to_string()),
            "`{}` should print the count {JOBS_PER_ENDPOINT}:\n{out}",
            out.command
        );
    }

    rx.wait_for(JOBS, TIMEOUT);
    herald.wait_until_drained(TIMEOUT);
    assert!(
        a.is_running() && b.is_running(),
        "a worker exited on its own"
    );
    let claimed = [a.metric(CLAIMED), b.metric(CLAIMED)];
    assert!(
        claimed.iter().all(|&n| n > 0.0),
        "both workers should have taken a share: {CLAIMED} = {claimed:?}"
    );
    assert_eq!(
        claimed[0] + claimed[1],
        JOBS as f64,
        "{CLAIMED} = {claimed:?}"
    );
    a.stop(TIMEOUT);
    b.stop(TIMEOUT);

    let requests = rx.requests();
    assert_eq!(requests.len(), JOBS, "total deliveries");
    let ids: HashSet<String> = requests.iter().map(|r| r.webhook_id()).collect();
    assert_eq!(ids.len(), JOBS, "distinct webhook-ids");

    let mut per_seq: HashMap<u64, usize> = HashMap::new();
    for r in &requests {
        let body = r.json();
        let seq = body["seq"].as_u64().expect("seq in body");
        let endpoint = body["endpoint"].as_str().expect("endpoint in body");
        assert_eq!(
            r.path,
            format!("/hooks/{endpoint}"),
            "delivered to the wrong URL: {body}"
        );
        *per_seq.entry(seq).or_default() += 1;
    }
    assert_eq!(per_seq.len(), JOBS, "distinct payloads");
    assert!(per_seq.values().all(|&n| n == 1));
    assert!(per_seq.keys().all(|&s| s < JOBS as u64));
}
