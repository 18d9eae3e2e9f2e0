//! `enqueue_batch` through `enqueue-batch-4.lua`: per-job results in the order given, over
//! several shards, with unknown, disabled and duplicate cases; the script's own refusals of bad
//! arguments; wake-up hints; reloading after a script flush; and delivery by a real worker.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use herald_core::{EndpointId, JobId};
use herald_store::scripts::ENQUEUE_BATCH_SOURCE;
use herald_store::{
    EnqueueStatus, Enqueued, JobState, Namespace, NewJob, Store, StoreConfig, StoreError,
};
use redis::Value;

use crate::support::receiver::{self, Receiver};
use crate::support::{redis_and_herald, RedisServer, SAFETY_NET};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn open(redis_url: &str, namespace: &str, shards: u16) -> Store {
    Store::open(StoreConfig::new(
        redis_url,
        Namespace::new(namespace).unwrap(),
        shards,
    ))
    .unwrap()
}

/// A store of `shards` shards in `namespace`, its shard count recorded.
async fn checked(redis: &RedisServer, namespace: &str, shards: u16) -> Store {
    let store = open(&redis.url(), namespace, shards);
    store.check().await.unwrap();
    store
}

/// Creates these endpoints, all with one URL.
async fn set_endpoints<'a>(store: &Store, endpoints: impl IntoIterator<Item = &'a EndpointId>) {
    for ep in endpoints {
        store
            .set_endpoint(ep, "https://hooks.example.com/", None)
            .await
            .unwrap();
    }
}

/// Endpoint ids `ep-<i>` grouped by shard, at least `per_shard` in each of the first shards
/// found, for `shards` shards.
fn endpoints_by_shard(
    store: &Store,
    shards: usize,
    per_shard: usize,
) -> Vec<(u16, Vec<EndpointId>)> {
    let mut by_shard: BTreeMap<u16, Vec<EndpointId>> = BTreeMap::new();
    for i in 0.. {
        let ep = EndpointId::new(format!("ep-{i}")).unwrap();
        by_shard.entry(store.shard_of(&ep)).or_default().push(ep);
        let full = by_shard.values().filter(|v| v.len() >= per_shard).count();
        if full >= shards {
            break;
        }
    }
    by_shard
        .into_iter()
        .filter(|(_, v)| v.len() >= per_shard)
        .map(|(s, v)| (s, v.into_iter().take(per_shard).collect()))
        .take(shards)
        .collect()
}

fn job(endpoint: &EndpointId, payload: &str) -> NewJob {
    NewJob::new(endpoint.clone(), payload.as_bytes().to_vec())
}

fn ok(r: &Result<Enqueued, StoreError>) -> &Enqueued {
    r.as_ref().unwrap_or_else(|e| panic!("refused: {e}"))
}

#[test]
fn a_batch_over_several_shards_answers_each_job_in_order() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let store = checked(&redis, "it-batch", 4).await;
        let groups = endpoints_by_shard(&store, 3, 3);
        let (shard_a, a) = (groups[0].0, &groups[0].1);
        let (shard_b, b) = (groups[1].0, &groups[1].1);
        let (shard_c, c) = (groups[2].0, &groups[2].1);
        set_endpoints(&store, a.iter().chain(b).chain(c)).await;
        store.disable_endpoint(&a[2], "maintenance").await.unwrap();
        let existing = store.enqueue(&job(&b[0], "{\"old\":1}")).await.unwrap();
        // Not in shard c, whose hint is checked below: a job due at once leaves a hint for its
        // shard whatever becomes of it.
        let nobody = (0..)
            .map(|i| EndpointId::new(format!("nobody-{i}")).unwrap())
            .find(|ep| store.shard_of(ep) != shard_c)
            .unwrap();

        let mut jobs = vec![
            job(&a[0], "{\"n\":0}"), // 0 queued
            job(&b[0], "{\"n\":1}"), // 1 queued
            job(&nobody, "{\"n\":2}"), // 2 unknown endpoint, in the middle
            job(&a[1], "{\"n\":3}"), // 3 queued
            job(&a[2], "{\"n\":4}"), // 4 parked: a[2] is disabled
            job(&b[1], ""),          // 5 invalid: empty payload
            job(&a[0], "{\"n\":6}"), // 6 duplicate of job 0's id, same batch
            job(&b[1], "{\"n\":7}"), // 7 duplicate of a job already in the store
            job(&c[0], "{\"n\":8}"), // 8 delayed: shard c only has delayed jobs
            job(&c[1], "{\"n\":9}"), // 9 delayed
            job(&b[2], "{\"n\":10}"), // 10 keyed
            job(&b[2], "{\"n\":11}"), // 11 same key: duplicate, answers job 10's id
            job(&a[1], "{\"n\":12}"), // 12 queued after the keyed ones
        ];
        jobs[6].id = jobs[0].id;
        jobs[7].id = existing.job_id.parse::<JobId>().unwrap();
        jobs[8].delay = Duration::from_secs(600);
        jobs[9].delay = Duration::from_secs(300);
        for j in &mut jobs[10..12] {
            j.idempotency_key = Some("incident-7".into());
        }

        // Setting endpoints and the first enqueue left hints of their own.
        let mut conn = redis.connection();
        let wake = Namespace::new("it-batch").unwrap().wake_key(0, false);
        let () = redis::cmd("DEL").arg(&wake).query(&mut conn).unwrap();

        let results = store.enqueue_batch(&jobs).await.unwrap();
        assert_eq!(results.len(), jobs.len());
        let now: i64 = {
            let t: (i64, i64) = redis::cmd("TIME").query(&mut conn).unwrap();
            t.0 * 1000 + t.1 / 1000
        };

        for i in [0, 1, 3, 12] {
            let e = ok(&results[i]);
            assert_eq!(e.status, EnqueueStatus::Queued, "job {i}");
            assert_eq!(e.job_id, jobs[i].id.to_string());
            assert_eq!(e.shard, store.shard_of(&jobs[i].endpoint));
            assert!(e.due_ms > now - 60_000 && e.due_ms <= now, "job {i}: {e:?}");
        }
        assert!(
            matches!(&results[2], Err(StoreError::UnknownEndpoint(id)) if *id == nobody.to_string()),
            "{:?}",
            results[2]
        );
        let parked = ok(&results[4]);
        assert_eq!((parked.status, parked.due_ms), (EnqueueStatus::Parked, 0));
        assert!(
            matches!(results[5], Err(StoreError::InvalidArgument(_))),
            "{:?}",
            results[5]
        );
        assert!(
            matches!(&results[6], Err(StoreError::DuplicateJobId(id)) if *id == jobs[0].id.to_string()),
            "{:?}",
            results[6]
        );
        assert!(
            matches!(results[7], Err(StoreError::DuplicateJobId(_))),
            "{:?}",
            results[7]
        );
        let (d8, d9) = (ok(&results[8]), ok(&results[9]));
        assert_eq!((d8.status, d9.status), (EnqueueStatus::Queued, EnqueueStatus::Queued));
        assert_eq!(d8.due_ms - d9.due_ms, 300_000, "one clock reading per call");
        assert!(d9.due_ms > now + 200_000, "{d9:?}");
        let (k10, k11) = (ok(&results[10]), ok(&results[11]));
        assert_eq!(k10.status, EnqueueStatus::Queued);
        assert_eq!(k11.status, EnqueueStatus::Duplicate);
        assert_eq!(k11.job_id, k10.job_id);

        // What was written: the documented record, the right set, nothing for refused jobs.
        let keys_a = store.keys(shard_a);
        let record: String = redis::cmd("HGET")
            .arg(&keys_a.jobs)
            .arg(jobs[0].id.to_string())
            .query(&mut conn)
            .unwrap();
        let due0 = ok(&results[0]).due_ms;
        assert_eq!(record, format!("1 0 {due0} {}\n{{\"n\":0}}", a[0]));
        let parked_record: String = redis::cmd("HGET")
            .arg(&keys_a.jobs)
            .arg(jobs[4].id.to_string())
            .query(&mut conn)
            .unwrap();
        assert_eq!(parked_record, format!("1 0 {due0} {}\n{{\"n\":4}}", a[2]));
        let in_queue: Option<f64> = redis::cmd("ZSCORE")
            .arg(keys_a.queue(a[2].as_str()))
            .arg(jobs[4].id.to_string())
            .query(&mut conn)
            .unwrap();
        assert!(in_queue.is_some(), "job 4 is not in its endpoint's queue");
        // A disabled endpoint is kept out of the claims' way.
        let ready: Option<f64> = redis::cmd("ZSCORE")
            .arg(&keys_a.ready)
            .arg(a[2].as_str())
            .query(&mut conn)
            .unwrap();
        assert_eq!(ready, None, "a disabled endpoint is not ready");
        let info = store.job(&jobs[4].id.to_string()).await.unwrap().unwrap();
        assert_eq!(info.state, JobState::Parked);
        for i in [2, 5] {
            assert!(
                store.job(&jobs[i].id.to_string()).await.unwrap().is_none(),
                "refused job {i} was written"
            );
        }
        // The duplicate id did not overwrite the first job, nor the one in the store.
        let first = store.job(&jobs[0].id.to_string()).await.unwrap().unwrap();
        assert_eq!(first.payload, Some(serde_json::json!({"n": 0})));
        let old = store.job(&existing.job_id).await.unwrap().unwrap();
        assert_eq!(old.payload, Some(serde_json::json!({"old": 1})));
        let sched = store.job(&jobs[8].id.to_string()).await.unwrap().unwrap();
        assert_eq!(sched.state, JobState::Scheduled);
        assert_eq!(sched.next_attempt_at_ms, Some(d8.due_ms));

        // Wake-up hints: 0 for shards with a job due at once, the earliest due time for a shard
        // with delayed jobs only.
        let hint = |conn: &mut redis::Connection, shard: u16| -> Option<i64> {
            redis::cmd("ZSCORE")
                .arg(&wake)
                .arg(shard)
                .query(conn)
                .unwrap()
        };
        assert_eq!(hint(&mut conn, shard_a), Some(0));
        assert_eq!(hint(&mut conn, shard_b), Some(0));
        assert_eq!(hint(&mut conn, shard_c), Some(d9.due_ms));

        let stats = store.stats().await.unwrap().total;
        // Queued: 0, 1, 3, 12, 10 and the one enqueued first; scheduled: 8, 9.
        assert_eq!((stats.due, stats.scheduled), (6, 2));
    });
}

/// Runs `enqueue-batch-4.lua` as a producer in another language would.
fn eval_batch(
    conn: &mut redis::Connection,
    keys: &[String],
    args: &[&str],
) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(ENQUEUE_BATCH_SOURCE).arg(keys.len());
    for k in keys {
        cmd.arg(k);
    }
    for a in args {
        cmd.arg(*a);
    }
    cmd.query(conn)
}

#[test]
fn the_batch_script_refuses_bad_arguments_job_by_job() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let store = checked(&redis, "it-batch-raw", 1).await;
        set_endpoints(&store, [&EndpointId::new("dash-1").unwrap()]).await;
        let k = store.keys(0);
        let keys = vec![
            k.jobs.clone(),
            k.endpoints.clone(),
            k.disabled.clone(),
            k.ready.clone(),
            k.queue("dash-1"),
            k.queue("bad id"),
        ];
        let mut conn = redis.connection();
        let reply = eval_batch(
            &mut conn,
            &keys,
            &[
                "dash-1",
                "bad id", // endpoints 1 and 2
                "job-ok",
                "1",
                "{}",
                "0", // queued
                "bad id!",
                "1",
                "{}",
                "0", // invalid job id
                &"x".repeat(65),
                "1",
                "{}",
                "0", // job id too long
                "job-e2",
                "2",
                "{}",
                "0", // invalid endpoint id
                "job-e3",
                "3",
                "{}",
                "0", // no endpoint 3
                "job-e0",
                "0",
                "{}",
                "0", // no endpoint 0
                "job-en",
                "one",
                "{}",
                "0", // not a number
                "job-p",
                "1",
                "",
                "0", // empty payload
                "job-d1",
                "1",
                "{}",
                "-1", // negative delay
                "job-d2",
                "1",
                "{}",
                "nan", // not a delay
                "job-d3",
                "1",
                "{}",
                "1e14", // over 1e13
                "job-fx",
                "1",
                "{}",
                "1500.7", // a fraction
                "job-fr",
                "1",
                "{}",
                "1500", // queued
            ],
        )
        .unwrap();
        let Value::Array(items) = reply else {
            panic!("{reply:?}")
        };
        let codes: Vec<i64> = items
            .into_iter()
            .map(|v| redis::from_redis_value(v).unwrap())
            .collect();
        let now = codes[0];
        assert_eq!(
            &codes[1..],
            &[1, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, 1]
        );
        let ids: Vec<String> = redis::cmd("HKEYS").arg(&k.jobs).query(&mut conn).unwrap();
        let ids: HashSet<String> = ids.into_iter().collect();
        assert_eq!(
            ids,
            HashSet::from(["job-ok".to_owned(), "job-fr".to_owned()])
        );
        let due: i64 = redis::cmd("ZSCORE")
            .arg(k.queue("dash-1"))
            .arg("job-fr")
            .query(&mut conn)
            .unwrap();
        assert_eq!(due, now + 1500);
        let record: String = redis::cmd("HGET")
            .arg(&k.jobs)
            .arg("job-ok")
            .query(&mut conn)
            .unwrap();
        assert_eq!(record, format!("1 0 {now} dash-1\n{{}}"));

        // Arguments that are not E endpoints then groups of 4: an error, nothing written.
        let err = eval_batch(&mut conn, &keys[..5], &["dash-1", "job-x", "1", "{}"]).unwrap_err();
        assert!(err.to_string().contains("enqueue-batch-4.lua"), "{err}");
        let err = eval_batch(&mut conn, &keys[..3], &[]).unwrap_err();
        assert!(err.to_string().contains("enqueue-batch-4.lua"), "{err}");
        let n: u64 = redis::cmd("HLEN").arg(&k.jobs).query(&mut conn).unwrap();
        assert_eq!(n, 2);
        // No jobs at all: just the clock.
        let reply = eval_batch(&mut conn, &keys[..4], &[]).unwrap();
        assert!(
            matches!(reply, Value::Array(ref v) if v.len() == 1),
            "{reply:?}"
        );
    });
}

#[test]
fn a_batch_runs_again_after_redis_lost_its_scripts() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let store = checked(&redis, "it-batch-flush", 2).await;
        let groups = endpoints_by_shard(&store, 2, 2);
        set_endpoints(&store, groups.iter().flat_map(|(_, eps)| eps)).await;
        let mut conn = redis.connection();
        let () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
        let jobs: Vec<NewJob> = groups
            .iter()
            .flat_map(|(_, eps)| eps.iter().map(|ep| job(ep, "{}")))
            .collect();
        let results = store.enqueue_batch(&jobs).await.unwrap();
        for (job, r) in jobs.iter().zip(&results) {
            let e = ok(r);
            assert_eq!(e.status, EnqueueStatus::Queued);
            assert_eq!(e.job_id, job.id.to_string());
        }
        assert_eq!(store.stats().await.unwrap().total.due, jobs.len() as u64);
    });
}

#[test]
fn a_worker_delivers_jobs_enqueued_in_a_batch() {
    let (redis, herald) = redis_and_herald("it-batch-deliver");
    let rx = Receiver::start(receiver::always(200));
    let endpoints: Vec<String> = (0..5).map(|i| format!("dash-{i}")).collect();
    for ep in &endpoints {
        herald.set_endpoint(ep, &format!("{}/hooks/{ep}", rx.url()));
    }
    let jobs: Vec<NewJob> = (0..300)
        .map(|i| {
            let ep = EndpointId::new(endpoints[i % endpoints.len()].clone()).unwrap();
            job(&ep, &format!("{{\"n\":{i}}}"))
        })
        .collect();
    runtime().block_on(async {
        let store = open(&redis.url(), herald.namespace(), 16);
        for r in store.enqueue_batch(&jobs).await.unwrap() {
            assert_eq!(ok(&r).status, EnqueueStatus::Queued);
        }
    });

    let worker = herald.spawn_worker(&[]);
    rx.wait_for(jobs.len(), SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);

    let requests = rx.requests();
    assert_eq!(requests.len(), jobs.len(), "delivered more than once");
    let want: HashSet<(String, String)> = jobs
        .iter()
        .map(|j| (format!("msg_{}", j.id), format!("/hooks/{}", j.endpoint)))
        .collect();
    let got: HashSet<(String, String)> = requests
        .iter()
        .map(|r| (r.webhook_id(), r.path.clone()))
        .collect();
    assert_eq!(got, want);
    for r in &requests {
        let n = r.json()["n"].as_u64().unwrap() as usize;
        assert_eq!(r.webhook_id(), format!("msg_{}", jobs[n].id));
    }
}

#[test]
fn a_long_run_of_one_shard_is_split_over_several_calls_in_order() {
    let redis = RedisServer::start();
    runtime().block_on(async {
        let store = checked(&redis, "it-batch-long", 1).await;
        let ep = EndpointId::new("dash-1").unwrap();
        set_endpoints(&store, [&ep]).await;
        let mut jobs: Vec<NewJob> = (0..1200)
            .map(|i| job(&ep, &format!("{{\"n\":{i}}}")))
            .collect();
        // The same id in the first and the last call: the first one is written.
        jobs[1100].id = jobs[3].id;
        // Loaded beforehand: a first run that met NOSCRIPT could not tell a duplicate id from
        // a job of its own that landed before the reload.
        let mut aconn = store.conn().await.unwrap();
        store.load_scripts(&mut aconn).await.unwrap();
        let mut conn = redis.connection();
        let () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut conn)
            .unwrap();
        let results = store.enqueue_batch(&jobs).await.unwrap();
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut conn)
            .unwrap();
        assert!(
            stats.contains("cmdstat_evalsha:calls=3,"),
            "1,200 jobs of one shard take 3 calls: {stats}"
        );
        for (i, r) in results.iter().enumerate() {
            if i == 1100 {
                assert!(matches!(r, Err(StoreError::DuplicateJobId(_))), "{r:?}");
            } else {
                assert_eq!(ok(r).status, EnqueueStatus::Queued, "job {i}");
            }
        }
        let third = store.job(&jobs[3].id.to_string()).await.unwrap().unwrap();
        assert_eq!(third.payload, Some(serde_json::json!({"n": 3})));
        assert_eq!(store.stats().await.unwrap().total.due, 1199);
    });
}
