//! `herald enqueue`: one raw JSON payload for one endpoint, or many with `--ndjson`.

use std::time::Duration;

use herald_core::{EndpointId, JobId};
use herald_producer::{check_payload, NewJob, Producer};
use herald_store::EnqueueStatus;

use crate::cli::{EnqueueArgs, Global};
use crate::commands::{open_store, print_json, read_input};
use crate::failure::{store_error, Refused};

/// Jobs per pipelined round trip in `--ndjson` mode.
const BATCH: usize = 1000;

pub async fn run(global: &Global, args: &EnqueueArgs) -> anyhow::Result<()> {
    let endpoint = EndpointId::new(args.id.clone()).map_err(|e| Refused(e.to_string()))?;
    let delay = match &args.delay {
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| Refused(format!("--delay {text:?} is not a duration: {e}")))?,
        None => Duration::ZERO,
    };
    let input = read_input(&args.file)?;
    let job = |payload: Vec<u8>| NewJob {
        delay,
        idempotency_key: args.idempotency_key.clone(),
        ..NewJob::new(endpoint.clone(), payload)
    };

    if !args.ndjson {
        let payload = input.trim_ascii().to_vec();
        check_payload(&payload).map_err(|e| Refused(format!("{}: {e}", args.file)))?;
        let store = open_store(global).await?;
        let producer = Producer::new(store);
        let done = producer
            .store()
            .enqueue(&job(payload))
            .await
            .map_err(store_error)?;
        if global.json {
            return print_json(&done);
        }
        outln!("{}", done.job_id);
        match done.status {
            EnqueueStatus::Queued => {}
            EnqueueStatus::Parked => {
                eprintln!("herald: endpoint {endpoint} is disabled; the job is parked until it is enabled")
            }
            EnqueueStatus::Duplicate => {
                eprintln!("herald: idempotency key already used; nothing enqueued, first job shown")
            }
        }
        return Ok(());
    }

    // --ndjson: check every line before enqueueing anything.
    let mut jobs = Vec::new();
    for (n, line) in input.split(|b| *b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        check_payload(line).map_err(|e| Refused(format!("{} line {}: {e}", args.file, n + 1)))?;
        jobs.push(NewJob {
            id: JobId::generate(),
            ..job(line.to_vec())
        });
    }
    let store = open_store(global).await?;
    let producer = Producer::new(store);
    let mut enqueued = 0u64;
    for chunk in jobs.chunks(BATCH) {
        for result in producer
            .store()
            .enqueue_batch(chunk)
            .await
            .map_err(store_error)?
        {
            result.map_err(store_error)?;
            enqueued += 1;
        }
    }
    if global.json {
        print_json(&serde_json::json!({ "enqueued": enqueued }))
    } else {
        outln!("enqueued {enqueued} jobs");
        Ok(())
    }
}
