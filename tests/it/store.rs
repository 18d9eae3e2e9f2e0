//! The store's contract, through its Rust API against a real Redis: fencing tokens refuse stale
//! workers, expired leases count as failed attempts, idempotency keys, hand-back at shutdown,
//! fair claiming across endpoints and their in-flight limits.

use std::time::Duration;

use herald_core::{EndpointId, JobId};
use herald_store::{
    Claim, ClaimedJob, EnqueueStatus, JobState, Namespace, NewJob, Settle, Settlement, Store,
    StoreConfig, StoreError, Strike, Woken,
};

use crate::support::RedisServer;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn store(redis: &RedisServer) -> (Store, EndpointId) {
    let ns = Namespace::new("it-store").unwrap();
    let store = Store::open(StoreConfig::new(redis.url(), ns, 1)).unwrap();
    store.check().await.unwrap();
    let ep = EndpointId::new("dash-1").unwrap();
    store
        .set_endpoint(&ep, "https://hooks.example.com/", None)
        .await
        .unwrap();
    (store, ep)
}

/// The settlement of `job` as a worker sends it; its claim time (`claimed_ms`) is 0, before
/// any change of the endpoint, which a test of strikes sets to the claim's.
fn settlement(job: &ClaimedJob, action: Settle) -> Settlement {
    Settlement {
        id: job.id.clone(),
        token: job.token,
        attempt: job.attempts,
        endpoint: "dash-1".into(),
        action,
        strike: Strike::None,
        claimed_ms: 0,
        congested: false,
        pause: None,
        log_entry: None,
    }
}

/// Settles one leased job of shard 0 as the settler does.
async fn settle_one(
    store: &Store,
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    job: &ClaimedJob,
    action: Settle,
) -> herald_store::SettleReport {
    store
        .settle(conn, 0, &[settlement(job, action)], 5, 32)
        .await
        .unwrap()
}

/// Claims from shard 0 as a worker does: each claim names the endpoints the previous one
/// answered, until a claim leases jobs or no endpoint's turn has come.
async fn claim(
    store: &Store,
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    max: usize,
    lease: Duration,
) -> Claim {
    let mut candidates = Vec::new();
    loop {
        let claim = store
            .claim(conn, 0, max, lease, &candidates, 32)
            .await
            .unwrap();
        if !claim.jobs.is_empty() || claim.candidates.is_empty() {
            return claim;
        }
        candidates = claim.candidates;
    }
}

/// Sets an endpoint's in-flight limit.
async fn limit(store: &Store, ep: &EndpointId, max_in_flight: u32) {
    let flow = herald_store::FlowChange {
        max_in_flight: Some(max_in_flight),
        rate: None,
    };
    store
        .set_endpoint_with(ep, "https://hooks.example.com/", None, flow)
        .await
        .unwrap();
}

/// Enqueues `n` jobs for `ep`, due now, with payloads `{"i":0}` to `{"i":n-1}`.
async fn enqueue_numbered(store: &Store, ep: &EndpointId, n: usize) {
    for i in 0..n {
        store
            .enqueue(&NewJob::new(
                ep.clone(),
                format!("{{\"i\":{i}}}").into_bytes(),
            ))
            .await
            .unwrap();
    }
}

/// Takes back shard 0's expired leases.
async fn expire(
    store: &Store,
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    max_attempts: u32,
) -> herald_store::Expired {
    let now = store.now_ms(conn).await.unwrap();
    store.expire(conn, 0, now, max_attempts).await.unwrap()
}

/// Waits until the Redis clock has passed `deadline_ms` (the event a lease expiry waits for).
async fn redis_time_passes(store: &Store, deadline_ms: i64) {
    let mut conn = store.conn().await.unwrap();
    while store.now_ms(&mut conn).await.unwrap() <= deadline_ms {
        tokio::task::yield_now().await;
    }
}

#[test]
fn a_stale_token_cannot_settle_and_an_expired_lease_counts_as_an_attempt() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        let job = store
            .enqueue(&NewJob::new(ep, b"{}".to_vec()))
            .await
            .unwrap();
        let lease = Duration::from_millis(5);

        let first = claim(&store, &mut conn, 10, lease).await;
        assert_eq!(first.jobs.len(), 1);
        let old = &first.jobs[0];
        assert_eq!((old.id.as_str(), old.attempts), (job.job_id.as_str(), 1));
        redis_time_passes(&store, first.now_ms + 5).await;

        // Another worker takes the job back: the expired lease was a failed attempt.
        assert_eq!(expire(&store, &mut conn, 3).await.expired, 1);
        let second = claim(&store, &mut conn, 10, lease).await;
        let new = &second.jobs[0];
        assert_eq!(new.attempts, 2);
        assert_ne!(new.token, old.token);
        let info = store.job(&job.job_id).await.unwrap().unwrap();
        assert!(info.last_error.unwrap().starts_with("lease_expired"));

        // The first worker's answer comes late: refused, nothing changes.
        let stale = settle_one(&store, &mut conn, old, Settle::Ack).await;
        assert_eq!(stale.applied, [false]);
        assert!(store.job(&job.job_id).await.unwrap().is_some());

        let fresh = settle_one(&store, &mut conn, new, Settle::Ack).await;
        assert_eq!(fresh.applied, [true]);
        assert!(store.job(&job.job_id).await.unwrap().is_none());
    });
}

#[test]
fn a_job_whose_leases_keep_expiring_ends_in_the_dead_letter_store() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        let job = store
            .enqueue(&NewJob::new(ep, b"{}".to_vec()))
            .await
            .unwrap();
        let lease = Duration::from_millis(5);
        // Two attempts allowed: the first expiry counts; the last attempt's first expiry does
        // not (the worker may have died before sending it), its second one ends the job.
        for (attempt, discarded) in [(1, 0), (2, 0), (2, 1)] {
            let claimed = claim(&store, &mut conn, 10, lease).await;
            assert_eq!(claimed.jobs[0].attempts, attempt);
            redis_time_passes(&store, claimed.now_ms + 5).await;
            let expired = expire(&store, &mut conn, 2).await;
            assert_eq!((expired.expired, expired.discarded), (1, discarded));
            if (attempt, discarded) == (2, 0) {
                let info = store.job(&job.job_id).await.unwrap().unwrap();
                assert_eq!(info.attempts, Some(1), "{info:?}");
                assert!(info.last_error.unwrap().contains("not counted"));
            }
        }
        let claimed = claim(&store, &mut conn, 10, lease).await;
        assert!(claimed.jobs.is_empty());
        let dead = store.dead_list(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].id, job.job_id);
        assert!(dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("retries exhausted"));
    });
}

#[test]
fn idempotency_keys_duplicate_ids_and_unknown_endpoints() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let keyed = NewJob {
            idempotency_key: Some("incident-42".into()),
            ..NewJob::new(ep.clone(), b"{\"a\":1}".to_vec())
        };
        let first = store.enqueue(&keyed).await.unwrap();
        assert_eq!(first.status, EnqueueStatus::Queued);
        let again = NewJob {
            id: JobId::generate(),
            ..keyed.clone()
        };
        let second = store.enqueue(&again).await.unwrap();
        assert_eq!(second.status, EnqueueStatus::Duplicate);
        assert_eq!(second.job_id, first.job_id);
        assert_eq!(store.stats().await.unwrap().total.due, 1);

        let plain = NewJob::new(ep, b"{}".to_vec());
        store.enqueue(&plain).await.unwrap();
        assert!(matches!(
            store.enqueue(&plain).await,
            Err(StoreError::DuplicateJobId(_))
        ));
        let nobody = NewJob::new(EndpointId::new("nobody").unwrap(), b"{}".to_vec());
        assert!(matches!(
            store.enqueue(&nobody).await,
            Err(StoreError::UnknownEndpoint(_))
        ));
    });
}

/// A job the scripts would refuse is refused by name before any is sent; the batch's other
/// jobs are written, and each answer stays in its job's place.
#[test]
fn a_batch_refuses_its_unsendable_jobs_by_name_and_writes_the_rest_in_order() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let good = |i: u32| NewJob::new(ep.clone(), format!("{{\"i\":{i}}}").into_bytes());
        let far = NewJob {
            delay: Duration::from_millis(herald_store::MAX_DELAY_MS + 1),
            ..good(1)
        };
        let at_most = NewJob {
            delay: Duration::from_millis(herald_store::MAX_DELAY_MS),
            ..good(2)
        };
        let empty = NewJob::new(ep.clone(), Vec::new());
        let forgetful = NewJob {
            idempotency_key: Some("k".into()),
            idempotency_ttl: Duration::ZERO,
            ..good(3)
        };
        let jobs = [good(0), far, empty, at_most, forgetful, good(4)];
        let results = store.enqueue_batch(&jobs).await.unwrap();
        assert_eq!(results.len(), jobs.len());
        for (i, words) in [
            (1, "a delay is at most"),
            (2, "payload is empty"),
            (4, "at least 1 ms"),
        ] {
            match &results[i] {
                Err(StoreError::InvalidArgument(why)) => assert!(why.contains(words), "{why}"),
                other => panic!("job {i}: {other:?}"),
            }
        }
        for i in [0, 3, 5] {
            let done = results[i].as_ref().unwrap();
            assert_eq!(done.job_id, jobs[i].id.to_string(), "job {i}");
        }
        let total = store.stats().await.unwrap().total;
        assert_eq!((total.due, total.scheduled), (2, 1));
    });
}

#[test]
fn a_released_lease_is_due_at_once_without_spending_an_attempt() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        let job = store
            .enqueue(&NewJob::new(ep, b"{}".to_vec()))
            .await
            .unwrap();
        let claimed = claim(&store, &mut conn, 10, Duration::from_secs(60)).await;
        let leased = &claimed.jobs[0];
        let report = settle_one(&store, &mut conn, leased, Settle::Release).await;
        assert_eq!(report.applied, [true]);
        let info = store.job(&job.job_id).await.unwrap().unwrap();
        assert_eq!(info.attempts, Some(0));
        let again = claim(&store, &mut conn, 10, Duration::from_secs(60)).await;
        assert_eq!(
            again.jobs[0].attempts, 1,
            "the released attempt was not counted"
        );
    });
}

#[test]
fn the_attempt_count_moves_from_the_lease_to_the_record_when_an_attempt_fails() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        let job = store
            .enqueue(&NewJob::new(ep, b"{\"n\":1}".to_vec()))
            .await
            .unwrap();
        let lease = Duration::from_secs(60);
        let attempts = |info: Option<herald_store::JobInfo>| {
            let info = info.expect("the job exists");
            (info.state, info.attempts)
        };
        use herald_store::JobState::*;

        let first = claim(&store, &mut conn, 10, lease).await;
        assert_eq!(first.jobs[0].attempts, 1);
        assert_eq!(first.jobs[0].payload, b"{\"n\":1}");
        assert_eq!(
            attempts(store.job(&job.job_id).await.unwrap()),
            (InFlight, Some(1))
        );
        let retry = Settle::Retry {
            delay: Duration::ZERO,
            error: "HTTP 500".into(),
        };
        let report = settle_one(&store, &mut conn, &first.jobs[0], retry).await;
        assert_eq!(report.applied, [true]);
        assert_eq!(
            attempts(store.job(&job.job_id).await.unwrap()),
            (Due, Some(1))
        );

        let second = claim(&store, &mut conn, 10, lease).await;
        assert_eq!(second.jobs[0].attempts, 2);
        // The first lease is stale now, even though its token was never reused.
        let stale = settle_one(&store, &mut conn, &first.jobs[0], Settle::Ack).await;
        assert_eq!(stale.applied, [false]);
        let discard = Settle::Discard {
            reason: "gave up".into(),
        };
        settle_one(&store, &mut conn, &second.jobs[0], discard).await;
        assert_eq!(
            attempts(store.job(&job.job_id).await.unwrap()),
            (Dead, Some(2))
        );
    });
}

#[test]
fn a_claim_sends_each_endpoints_json_once_and_every_job_gets_it() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        enqueue_numbered(&store, &ep, 5).await;
        let claimed = claim(&store, &mut conn, 10, Duration::from_secs(60)).await;
        assert_eq!(claimed.jobs.len(), 5);
        for job in &claimed.jobs {
            let record: herald_store::EndpointRecord =
                serde_json::from_slice(&job.endpoint_json).unwrap();
            assert_eq!(record.url, "https://hooks.example.com/");
            assert_eq!(job.endpoint, ep.as_str());
        }
    });
}

#[test]
fn a_wake_up_takes_every_pending_hint_earliest_first() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let ns = Namespace::new("it-wake").unwrap();
        let store = Store::open(StoreConfig::new(redis.url(), ns, 4)).unwrap();
        store.check().await.unwrap();
        let mut conn = store.dedicated(None).await.unwrap();
        let timeout = Duration::from_millis(50);
        let key = store.wake_key(0);
        assert_eq!(
            store.wait_wake(&mut conn, key, timeout).await.unwrap(),
            Woken::default()
        );

        store.wake(&mut conn, 2, 300).await.unwrap();
        store.wake(&mut conn, 0, 100).await.unwrap();
        store.wake(&mut conn, 3, 200).await.unwrap();
        // A hint for a shard beyond the count (a fleet started with more shards) is dropped.
        store.wake(&mut conn, 9, 50).await.unwrap();
        let hints = store.wait_wake(&mut conn, key, timeout).await.unwrap();
        assert_eq!(hints.shards, [(0, 100), (3, 200), (2, 300)]);
        assert!(hints.endpoints.is_empty());
        assert_eq!(
            store.wait_wake(&mut conn, key, timeout).await.unwrap(),
            Woken::default()
        );
    });
}

#[test]
fn a_wake_up_names_the_endpoints_given_jobs_due_at_once_and_their_first_claim_leases_them() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, first) = store(&redis).await;
        let second = EndpointId::new("dash-2").unwrap();
        let later = EndpointId::new("dash-3").unwrap();
        for ep in [&second, &later] {
            store
                .set_endpoint(ep, "https://hooks.example.com/", None)
                .await
                .unwrap();
        }
        let mut jobs = vec![
            NewJob::new(first.clone(), b"{}".to_vec()),
            NewJob::new(second.clone(), b"{}".to_vec()),
            NewJob::new(second.clone(), b"{}".to_vec()),
        ];
        let mut delayed = NewJob::new(later.clone(), b"{}".to_vec());
        delayed.delay = Duration::from_secs(60);
        jobs.push(delayed);
        for r in store.enqueue_batch(&jobs).await.unwrap() {
            r.unwrap();
        }
        let mut conn = store.dedicated(None).await.unwrap();
        let hints = store
            .wait_wake(&mut conn, store.wake_key(0), Duration::from_millis(50))
            .await
            .unwrap();
        let mut named: Vec<(u16, &str)> = hints
            .endpoints
            .iter()
            .map(|(s, e)| (*s, e.as_str()))
            .collect();
        named.sort();
        let mut want = vec![
            (store.shard_of(&first), first.as_str()),
            (store.shard_of(&second), second.as_str()),
        ];
        want.sort();
        assert_eq!(named, want, "the delayed job's endpoint is not named");

        // Named as candidates, they are served by the first claim of their shard.
        let mut conn = store.conn().await.unwrap();
        for (shard, ep) in want {
            let claim = store
                .claim(
                    &mut conn,
                    shard,
                    10,
                    Duration::from_secs(60),
                    &[ep.to_owned()],
                    32,
                )
                .await
                .unwrap();
            assert!(
                !claim.jobs.is_empty() && claim.jobs.iter().all(|j| j.endpoint == ep),
                "{ep}: {:?}",
                claim.jobs
            );
        }
    });
}

#[test]
fn a_small_endpoints_job_is_claimed_in_the_next_round_behind_another_endpoints_backlog() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, big) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        limit(&store, &big, 10_000).await;
        let small = EndpointId::new("dash-2").unwrap();
        store
            .set_endpoint(&small, "https://hooks.example.com/", None)
            .await
            .unwrap();
        // The big backlog first: in one due-time order it would all come before dash-2's job.
        let backlog: Vec<NewJob> = (0..5_000)
            .map(|i| NewJob::new(big.clone(), format!("{{\"i\":{i}}}").into_bytes()))
            .collect();
        for r in store.enqueue_batch(&backlog).await.unwrap() {
            r.unwrap();
        }
        let job = store
            .enqueue(&NewJob::new(small.clone(), b"{}".to_vec()))
            .await
            .unwrap();

        // A claim with no candidates learns whose turn it is; the next one serves both.
        let lease = Duration::from_secs(60);
        let first = store.claim(&mut conn, 0, 10, lease, &[], 32).await.unwrap();
        assert!(first.jobs.is_empty());
        assert_eq!(first.candidates, ["dash-1", "dash-2"]);
        let second = store
            .claim(&mut conn, 0, 10, lease, &first.candidates, 32)
            .await
            .unwrap();
        let ids: Vec<&str> = second.jobs.iter().map(|j| j.id.as_str()).collect();
        assert!(ids.contains(&job.job_id.as_str()), "{ids:?}");
        assert_eq!(
            second.jobs.len(),
            6,
            "a share of 5 for dash-1, its only job for dash-2"
        );
        // dash-1 was served: it goes behind any endpoint that waited, and is still due.
        assert_eq!(second.candidates, ["dash-1"]);
    });
}

#[test]
fn an_endpoint_judged_slow_takes_jobs_from_the_slow_lane_only() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, slow) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        let fast = EndpointId::new("dash-2").unwrap();
        store
            .set_endpoint(&fast, "https://hooks.example.com/", None)
            .await
            .unwrap();
        for ep in [&slow, &fast] {
            enqueue_numbered(&store, ep, 4).await;
        }
        let verdict = |e: &str, slow: bool| vec![(e.to_owned(), slow)];
        assert_eq!(
            store
                .judge_speed(&mut conn, 0, &verdict("dash-1", true))
                .await
                .unwrap(),
            1
        );
        // The same verdict again changes nothing; an endpoint that does not exist gets no
        // flow record.
        assert_eq!(
            store
                .judge_speed(&mut conn, 0, &verdict("dash-1", true))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .judge_speed(&mut conn, 0, &verdict("nobody", true))
                .await
                .unwrap(),
            0
        );
        let now = store.now_ms(&mut conn).await.unwrap();
        let state = store.endpoint_state(&slow, now).await.unwrap().unwrap();
        assert!(state.limits.slow);

        let lease = Duration::from_secs(60);
        let both = ["dash-1".to_owned(), "dash-2".to_owned()];
        // Nothing in flight: the one judged slow takes a probe of one job from the main lane (a
        // quick answer would judge it fast again); the other its share.
        let claim = store
            .claim_lanes(&mut conn, 0, 10, 0, lease, &both, 32)
            .await
            .unwrap();
        let lanes: Vec<(&str, bool, bool)> = claim
            .jobs
            .iter()
            .map(|j| (j.endpoint.as_str(), j.slow, j.judged_slow))
            .collect();
        assert_eq!(
            lanes,
            [
                ("dash-2", false, false),
                ("dash-2", false, false),
                ("dash-2", false, false),
                ("dash-2", false, false),
                ("dash-1", false, true)
            ],
            "{claim:?}"
        );
        // With one in flight, the slow one needs room in the slow lane: none, so it is held,
        // and waits before the next look (it is not among the candidates named for now).
        let claim = store
            .claim_lanes(&mut conn, 0, 10, 0, lease, &both, 32)
            .await
            .unwrap();
        assert!(claim.jobs.is_empty(), "{claim:?}");
        assert_eq!(claim.held.slow, 1);
        assert!(
            !claim.candidates.contains(&"dash-1".to_owned()),
            "{claim:?}"
        );
        // Room for two in the slow lane: two of its jobs, marked as the slow lane's.
        let claim = store
            .claim_lanes(&mut conn, 0, 10, 2, lease, &both, 32)
            .await
            .unwrap();
        assert_eq!(claim.jobs.len(), 2, "{claim:?}");
        assert!(claim
            .jobs
            .iter()
            .all(|j| j.endpoint == "dash-1" && j.slow && j.judged_slow));

        // Without lanes (`claim`), a slow endpoint takes from the one budget like the others.
        let claim = store
            .claim(&mut conn, 0, 10, lease, &["dash-1".to_owned()], 32)
            .await
            .unwrap();
        assert_eq!(claim.jobs.len(), 1);
        assert!(claim.jobs.iter().all(|j| !j.slow && !j.judged_slow));

        // Judged fast again: back in the main lane.
        store
            .judge_speed(&mut conn, 0, &verdict("dash-1", false))
            .await
            .unwrap();
        let state = store.endpoint_state(&slow, now).await.unwrap().unwrap();
        assert!(!state.limits.slow);
    });
}

#[test]
fn an_endpoint_at_its_in_flight_limit_is_skipped_until_a_settlement_frees_a_slot() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        limit(&store, &ep, 2).await;
        enqueue_numbered(&store, &ep, 5).await;
        let lease = Duration::from_secs(60);
        let first = claim(&store, &mut conn, 10, lease).await;
        assert_eq!(
            first.jobs.len(),
            2,
            "the limit, not the batch, bounds the claim"
        );
        assert_eq!(first.held.in_flight, 1);
        // Blocked: no candidate, no timer, until a slot is freed.
        assert!(first.candidates.is_empty());
        assert_eq!(first.next_ready_ms, None);
        assert!(claim(&store, &mut conn, 10, lease).await.jobs.is_empty());

        let report = settle_one(&store, &mut conn, &first.jobs[0], Settle::Ack).await;
        assert_eq!(report.unblocked, 1);
        let next = claim(&store, &mut conn, 10, lease).await;
        assert_eq!(next.jobs.len(), 1, "one slot was freed");
    });
}

#[test]
fn a_producer_refuses_a_namespace_of_another_format_and_writes_nothing() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let mut con = redis.connection();
        redis::cmd("SET")
            .arg("it-producer-format:format")
            .arg(1)
            .exec(&mut con)
            .unwrap();
        let producer =
            herald_producer::Producer::connect(&redis.url(), "it-producer-format", 16).unwrap();
        let err = producer
            .enqueue(&EndpointId::new("dash-1").unwrap(), b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("format 1"), "{err}");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("it-producer-format:v2:*")
            .query(&mut con)
            .unwrap();
        assert!(keys.is_empty(), "{keys:?}");
    });
}

#[test]
fn idempotency_keys_of_two_endpoints_never_share_a_redis_key() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, _) = store(&redis).await;
        // "org:7" + "dash-18:evt-42" and "org:7:dash-18" + "evt-42" once made the same key.
        let (a, b) = (
            EndpointId::new("org:7").unwrap(),
            EndpointId::new("org:7:dash-18").unwrap(),
        );
        for ep in [&a, &b] {
            store
                .set_endpoint(ep, "https://hooks.example.com/", None)
                .await
                .unwrap();
        }
        let keyed = |ep: &EndpointId, key: &str| NewJob {
            idempotency_key: Some(key.into()),
            ..NewJob::new(ep.clone(), b"{}".to_vec())
        };
        let first = store.enqueue(&keyed(&a, "dash-18:evt-42")).await.unwrap();
        let second = store.enqueue(&keyed(&b, "evt-42")).await.unwrap();
        assert_eq!(first.status, EnqueueStatus::Queued);
        assert_eq!(
            second.status,
            EnqueueStatus::Queued,
            "the second job was not written"
        );
        assert_ne!(first.job_id, second.job_id);
    });
}

#[test]
fn a_job_in_flight_when_its_endpoint_was_deleted_never_reaches_a_new_owner_of_the_id() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        let old = store
            .enqueue(&NewJob::new(ep.clone(), b"{\"owner\":\"old\"}".to_vec()))
            .await
            .unwrap();
        let lease = Duration::from_secs(60);
        let claimed = claim(&store, &mut conn, 10, lease).await;
        assert_eq!(claimed.jobs.len(), 1);

        // Deleted while its job is in flight, then the id is taken by someone else.
        store.delete_endpoint(&ep).await.unwrap();
        store
            .set_endpoint(&ep, "https://new-owner.example.com/", None)
            .await
            .unwrap();
        let new = store
            .enqueue(&NewJob::new(ep.clone(), b"{\"owner\":\"new\"}".to_vec()))
            .await
            .unwrap();
        // The old job's attempt fails and is scheduled again, into the id's queue.
        let retry = Settle::Retry {
            delay: Duration::ZERO,
            error: "timeout".into(),
        };
        let report = settle_one(&store, &mut conn, &claimed.jobs[0], retry).await;
        assert_eq!(report.applied, [true]);

        let next = claim(&store, &mut conn, 10, lease).await;
        let ids: Vec<&str> = next.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, [new.job_id.as_str()], "only the new owner's job");
        let dead = store.job(&old.job_id).await.unwrap().unwrap();
        assert_eq!(dead.state, herald_store::JobState::Dead);
        assert_eq!(dead.last_error.as_deref(), Some("endpoint deleted: dash-1"));
    });
}

#[test]
fn the_enqueue_scripts_take_delays_and_lifetimes_in_decimal_digits_only() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let k = store.keys(0);
        let mut con = redis.connection();
        let mut enqueue = |id: &str, delay: &str, key: &str, ttl: &str| -> i64 {
            let reply: Vec<redis::Value> = redis::cmd("EVAL")
                .arg(herald_store::scripts::ENQUEUE_SOURCE)
                .arg(6)
                .arg(k.queue(ep.as_str()))
                .arg(&k.jobs)
                .arg(&k.endpoints)
                .arg(k.idempotency((!key.is_empty()).then_some((ep.as_str(), key))))
                .arg(&k.disabled)
                .arg(&k.ready)
                .arg(id)
                .arg(ep.as_str())
                .arg("{}")
                .arg(delay)
                .arg(key)
                .arg(ttl)
                .query(&mut con)
                .unwrap();
            redis::from_redis_value(reply[0].clone()).unwrap()
        };
        for delay in ["1e3", "0x10", "1.5", "-1", " 5", "", "100000000000000"] {
            assert_eq!(enqueue("job-d", delay, "", "1"), -3, "delay {delay:?}");
        }
        // A lifetime of 1.5 once turned de-duplication off without a word.
        for ttl in ["1.5", "0", "1e3"] {
            assert_eq!(enqueue("job-t", "0", "evt-1", ttl), -3, "lifetime {ttl:?}");
        }
        assert_eq!(enqueue("job-ok", "1000", "evt-1", "86400000"), 1);
        assert_eq!(
            store.stats().await.unwrap().total.scheduled,
            1,
            "only job-ok"
        );

        let batch: Vec<redis::Value> = redis::cmd("EVAL")
            .arg(herald_store::scripts::ENQUEUE_BATCH_SOURCE)
            .arg(5)
            .arg(&k.jobs)
            .arg(&k.endpoints)
            .arg(&k.disabled)
            .arg(&k.ready)
            .arg(k.queue(ep.as_str()))
            .arg(ep.as_str())
            .arg("b-1")
            .arg(1)
            .arg("{}")
            .arg("1e3")
            .arg("b-2")
            .arg(1)
            .arg("{}")
            .arg("2000")
            .query(&mut con)
            .unwrap();
        let codes: Vec<i64> = batch[1..]
            .iter()
            .map(|v| redis::from_redis_value(v.clone()).unwrap())
            .collect();
        assert_eq!(codes, [-3, 1]);
    });
}

#[test]
fn a_settle_batch_counts_strikes_in_the_order_the_attempts_ended() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        for _ in 0..6 {
            store
                .enqueue(&NewJob::new(ep.clone(), b"{}".to_vec()))
                .await
                .unwrap();
        }
        // Strikes count for attempts claimed after the endpoint's last change (its set): claim
        // once Redis's clock has moved past it.
        let set_at = store.now_ms(&mut conn).await.unwrap();
        while store.now_ms(&mut conn).await.unwrap() <= set_at {}
        let claimed = claim(&store, &mut conn, 10, Duration::from_secs(60)).await;
        assert_eq!(claimed.jobs.len(), 6);
        // fail, fail, ok, fail, fail, fail: never 5 strikes in a row.
        let batch: Vec<Settlement> = claimed
            .jobs
            .iter()
            .enumerate()
            .map(|(i, job)| {
                if i == 2 {
                    return settlement(job, Settle::Ack);
                }
                let mut failed = settlement(
                    job,
                    Settle::Retry {
                        delay: Duration::from_secs(60),
                        error: "refused: test".into(),
                    },
                );
                failed.strike = Strike::One;
                failed.claimed_ms = claimed.now_ms;
                failed
            })
            .collect();
        let report = store.settle(&mut conn, 0, &batch, 5, 32).await.unwrap();
        assert!(report.applied.iter().all(|a| *a), "{report:?}");
        assert!(report.disabled.is_empty(), "{report:?}");
        let now = store.now_ms(&mut conn).await.unwrap();
        let state = store.endpoint_state(&ep, now).await.unwrap().unwrap();
        assert!(state.disabled.is_none(), "{state:?}");
        assert_eq!(state.strikes, 3, "{state:?}");
    });
}

#[test]
fn a_claim_held_up_past_its_callers_timeout_leases_nothing() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let ns = Namespace::new("it-store").unwrap();
        let mut cfg = StoreConfig::new(redis.url(), ns, 1);
        cfg.response_timeout = Duration::from_millis(300);
        let store = Store::open(cfg).unwrap();
        store.check().await.unwrap();
        let ep = EndpointId::new("dash-1").unwrap();
        store
            .set_endpoint(&ep, "https://hooks.example.com/", None)
            .await
            .unwrap();
        let job = store
            .enqueue(&NewJob::new(ep, b"{}".to_vec()))
            .await
            .unwrap();
        let mut conn = store.conn().await.unwrap();
        // A first claim names the endpoints whose turn has come (and reads the Redis clock).
        let first = store
            .claim(&mut conn, 0, 10, Duration::from_secs(60), &[], 32)
            .await
            .unwrap();
        assert_eq!(first.candidates, ["dash-1"]);

        // Redis holds every command for 1.5 s, as a paused or stopped Redis would: the claim
        // times out at the client, then runs when Redis goes on.
        let mut admin = redis.connection();
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(1500)
            .arg("ALL")
            .query(&mut admin)
            .unwrap();
        let held = store
            .claim(
                &mut conn,
                0,
                10,
                Duration::from_secs(60),
                &first.candidates,
                32,
            )
            .await;
        assert!(held.is_err(), "the claim should time out: {held:?}");
        // A command after it on the same connection answers once the claim has run (those sent
        // while Redis still holds them time out too).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "Redis never went on");
        }

        let info = store.job(&job.job_id).await.unwrap().unwrap();
        assert_eq!(info.state, JobState::Due, "{info:?}");
        assert_eq!(info.attempts, Some(0), "{info:?}");
        let claim = claim(&store, &mut conn, 10, Duration::from_secs(60)).await;
        assert_eq!(claim.jobs.len(), 1);
        assert_eq!(claim.jobs[0].attempts, 1);
    });
}

#[test]
fn a_change_made_meanwhile_by_another_operator_is_kept_and_a_delete_is_not_undone() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let endpoints = store.keys_of(&ep).endpoints.clone();
        let mut sneaky = redis.connection();
        let secret = |s: &str| herald_store::EndpointSecret {
            secret: s.into(),
            expires_at_ms: None,
        };

        // Between this rotation's read and its write, another operator adds a secret: the
        // rotation is made again on top of it, and both are kept.
        let mut calls = 0;
        let stored = store
            .update_endpoint(&ep, |record, _| {
                calls += 1;
                if calls == 1 {
                    let mut theirs = record.clone();
                    theirs.secrets.insert(0, secret("whsec_theirs"));
                    let _: () = redis::Commands::hset(
                        &mut sneaky,
                        &endpoints,
                        ep.as_str(),
                        serde_json::to_string(&theirs).unwrap(),
                    )
                    .unwrap();
                }
                record.secrets.insert(0, secret("whsec_ours"));
            })
            .await
            .unwrap();
        assert_eq!(calls, 2);
        let secrets: Vec<&str> = stored.secrets.iter().map(|s| s.secret.as_str()).collect();
        assert_eq!(secrets, ["whsec_ours", "whsec_theirs"]);
        assert_eq!(store.endpoint(&ep).await.unwrap().unwrap(), stored);

        // Deleted between the read and the write: the change is refused, nothing comes back.
        let refused = store
            .update_endpoint(&ep, |record, _| {
                let _: () = redis::Commands::hdel(&mut sneaky, &endpoints, ep.as_str()).unwrap();
                record.secrets.clear();
            })
            .await;
        assert!(
            matches!(refused, Err(StoreError::UnknownEndpoint(_))),
            "{refused:?}"
        );
        assert!(store.endpoint(&ep).await.unwrap().is_none());

        // A subscription of an endpoint that does not exist is refused, and writes nothing.
        let sub: herald_core::Subscription = serde_json::from_str(r#"{"level":"all"}"#).unwrap();
        let refused = store.subscribe(&ep, "heroku", &sub).await;
        assert!(
            matches!(refused, Err(StoreError::UnknownEndpoint(_))),
            "{refused:?}"
        );
        let subs_exist: bool =
            redis::Commands::exists(&mut sneaky, store.keys_of(&ep).subscriptions(ep.as_str()))
                .unwrap();
        assert!(!subs_exist);
        assert!(store.subscribers("heroku").await.unwrap().is_empty());
    });
}

#[test]
fn a_lease_lost_with_redis_writes_never_matches_a_later_lease() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, _ep) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        store
            .enqueue(&NewJob::new(
                EndpointId::new("dash-1").unwrap(),
                b"{}".to_vec(),
            ))
            .await
            .unwrap();
        let k = store.keys(0).clone();
        let mut raw = redis.connection();
        // What Redis holds before the claim, as a snapshot taken then would restore it.
        let dump = |raw: &mut redis::Connection, key: &str| -> Option<Vec<u8>> {
            redis::cmd("DUMP").arg(key).query(raw).unwrap()
        };
        let keys = [
            k.queue("dash-1"),
            k.ready.clone(),
            k.busy.clone(),
            k.inflight.clone(),
            k.leases.clone(),
            k.seq.clone(),
        ];
        let before: Vec<Option<Vec<u8>>> = keys.iter().map(|key| dump(&mut raw, key)).collect();

        let lost = claim(&store, &mut conn, 10, Duration::from_secs(60)).await;
        assert_eq!(lost.jobs.len(), 1);
        // Redis loses the claim (a crash before its write reached the disk): every key is
        // back as it was, `seq` included.
        for (key, value) in keys.iter().zip(&before) {
            let _: () = redis::cmd("DEL").arg(key).query(&mut raw).unwrap();
            if let Some(value) = value {
                let _: () = redis::cmd("RESTORE")
                    .arg(key)
                    .arg(0)
                    .arg(value.as_slice())
                    .query(&mut raw)
                    .unwrap();
            }
        }
        // Recovering takes time (a restart, a failover): at least the next millisecond.
        redis_time_passes(&store, lost.now_ms).await;

        let again = claim(&store, &mut conn, 10, Duration::from_secs(60)).await;
        assert_eq!(again.jobs.len(), 1);
        assert_eq!(again.jobs[0].id, lost.jobs[0].id);
        assert_ne!(again.jobs[0].token, lost.jobs[0].token);
        // The worker that held the lost lease finishes late: refused.
        let stale = settle_one(&store, &mut conn, &lost.jobs[0], Settle::Ack).await;
        assert_eq!(stale.applied, [false]);
        let live = settle_one(&store, &mut conn, &again.jobs[0], Settle::Ack).await;
        assert_eq!(live.applied, [true]);
    });
}

#[test]
fn a_settle_batch_that_names_a_job_twice_settles_it_once() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        limit(&store, &ep, 2).await;
        enqueue_numbered(&store, &ep, 4).await;
        let lease = Duration::from_secs(60);
        let first = claim(&store, &mut conn, 10, lease).await;
        assert_eq!(first.jobs.len(), 2);
        let twice = settlement(&first.jobs[0], Settle::Ack);
        let report = store
            .settle(&mut conn, 0, &[twice.clone(), twice], 5, 32)
            .await
            .unwrap();
        assert_eq!(report.applied, [true, false]);
        // One slot came free, not two: the other job still holds its own.
        let next = claim(&store, &mut conn, 10, lease).await;
        assert_eq!(next.jobs.len(), 1);
    });
}

#[test]
fn a_claim_and_a_settlement_of_2500_jobs_at_once_lease_and_settle_every_one() {
    // Far beyond a worker's usual batch: a script that reads or writes a call's jobs with
    // variadic commands must still lease each job once, with its own token, and settle all.
    let redis = RedisServer::start();
    runtime().block_on(async {
        let (store, ep) = store(&redis).await;
        let mut conn = store.conn().await.unwrap();
        limit(&store, &ep, 5_000).await;
        let jobs: Vec<NewJob> = (0..2_500)
            .map(|i| NewJob::new(ep.clone(), format!("{{\"i\":{i}}}").into_bytes()))
            .collect();
        for enqueued in store.enqueue_batch(&jobs).await.unwrap() {
            enqueued.unwrap();
        }
        let claimed = claim(&store, &mut conn, 2_500, Duration::from_secs(60)).await;
        assert_eq!(claimed.jobs.len(), 2_500);
        let mut tokens: Vec<u64> = claimed.jobs.iter().map(|j| j.token).collect();
        tokens.sort_unstable();
        tokens.dedup();
        assert_eq!(tokens.len(), 2_500, "every lease has its own token");
        let items: Vec<Settlement> = claimed
            .jobs
            .iter()
            .map(|job| settlement(job, Settle::Ack))
            .collect();
        let report = store.settle(&mut conn, 0, &items, 5, 32).await.unwrap();
        assert!(report.applied.iter().all(|applied| *applied));
        for job in &claimed.jobs {
            assert!(store.job(&job.id).await.unwrap().is_none());
        }
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.total.due, stats.total.in_flight), (0, 0));
    });
}
