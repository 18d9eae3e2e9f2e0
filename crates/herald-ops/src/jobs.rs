//! Jobs: publishing a status-change event, enqueueing raw jobs for one endpoint, looking a
//! job up, and the counts of jobs by state.

use herald_core::{job_id_key, StatusEvent};
use herald_store::NewJob;

use crate::model::{
    EnqueueOutcome, EnqueueQuery, EnqueuedBatch, EnqueuedJob, Job, PublishReport, StatsReport,
};
use crate::{duration, endpoint_id, OpError, OpResult, Ops};

/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Most payloads in one batch enqueue.
pub const MOST_PER_BATCH: usize = 1000;

/// An idempotency key as given (an HTTP header's bytes, a flag): 1 to
/// [`MAX_IDEMPOTENCY_KEY`] visible ASCII characters.
pub fn idempotency_key(given: &[u8]) -> OpResult<String> {
    let fits = !given.is_empty()
        && given.len() <= MAX_IDEMPOTENCY_KEY
        && given.iter().all(|b| b.is_ascii_graphic());
    match std::str::from_utf8(given) {
        Ok(text) if fits => Ok(text.to_owned()),
        _ => Err(OpError::Invalid(format!(
            "the Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        ))),
    }
}

/// The delay of an enqueue: none when not given.
fn delay(q: &EnqueueQuery) -> OpResult<std::time::Duration> {
    Ok(q.delay
        .as_deref()
        .map(|d| duration("delay", d))
        .transpose()?
        .unwrap_or_default())
}

impl Ops {
    /// Publishes a status-change event to the endpoints subscribed to its service; with an
    /// idempotency key, a repeat writes nothing for the subscribers that already have it.
    pub async fn publish(
        &self,
        event: &StatusEvent,
        idempotency_key: Option<&str>,
    ) -> OpResult<PublishReport> {
        Ok(self
            .producer
            .publish_once(event, idempotency_key)
            .await?
            .into())
    }

    /// Enqueues one job of any JSON `payload` for an endpoint. An idempotency key used before
    /// answers the first job (status `duplicate`, its id and due time) and writes nothing.
    pub async fn enqueue(
        &self,
        id: &str,
        q: &EnqueueQuery,
        idempotency_key: Option<String>,
        payload: &[u8],
    ) -> OpResult<EnqueuedJob> {
        let endpoint = endpoint_id(id)?;
        let job = NewJob {
            delay: delay(q)?,
            idempotency_key,
            ..NewJob::new(endpoint, payload.trim_ascii().to_vec())
        };
        let mut done = EnqueuedJob::from(self.producer.enqueue_job(job).await?);
        if matches!(done.status, EnqueueOutcome::Duplicate) {
            // A repeat answers what the first enqueue did: the first job's due time, while it
            // waits (a job delivered since has left the store: 0).
            let first = self.store.job(&done.job_id).await?;
            done.due_at_ms = first.and_then(|j| j.next_attempt_at_ms).unwrap_or(0);
        }
        Ok(done)
    }

    /// Enqueues a JSON array of 1 to [`MOST_PER_BATCH`] payloads for an endpoint, in order.
    pub async fn enqueue_batch(
        &self,
        id: &str,
        q: &EnqueueQuery,
        body: &[u8],
    ) -> OpResult<EnqueuedBatch> {
        let endpoint = endpoint_id(id)?;
        let delay = delay(q)?;
        let payloads: Vec<Box<serde_json::value::RawValue>> = serde_json::from_slice(body)
            .map_err(|e| {
                OpError::Invalid(format!("the body must be a JSON array of payloads: {e}"))
            })?;
        if payloads.is_empty() || payloads.len() > MOST_PER_BATCH {
            return Err(OpError::Invalid(format!(
                "a batch holds 1 to {MOST_PER_BATCH} payloads, not {}",
                payloads.len()
            )));
        }
        let jobs: Vec<NewJob> = payloads
            .iter()
            .map(|p| NewJob {
                delay,
                ..NewJob::new(endpoint.clone(), p.get().as_bytes().to_vec())
            })
            .collect();
        let mut done = Vec::with_capacity(jobs.len());
        for result in self.producer.enqueue_batch(&jobs).await? {
            done.push(EnqueuedJob::from(result?));
        }
        Ok(EnqueuedBatch {
            enqueued: done.len() as u64,
            jobs: done,
        })
    }

    /// One job, wherever it is (with or without the `msg_` prefix of `webhook-id`).
    pub async fn job(&self, id: &str) -> OpResult<Job> {
        let id = job_id_key(id);
        let job = self.store.job(id).await?.ok_or_else(|| {
            OpError::NotFound(format!(
                "job {id} not found (delivered jobs leave the store)"
            ))
        })?;
        Ok(job.into())
    }

    /// Jobs by state and disabled endpoints, counted at one Redis instant.
    pub async fn stats(&self) -> OpResult<StatsReport> {
        Ok(self.store.stats().await?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_visible_ascii_of_bounded_length() {
        assert_eq!(idempotency_key(b"incident-9").unwrap(), "incident-9");
        let longest = "k".repeat(MAX_IDEMPOTENCY_KEY);
        assert!(idempotency_key(longest.as_bytes()).is_ok());
        for bad in [&b""[..], b"has space", b"tab\t", "é".as_bytes(), &[0xff]] {
            assert!(idempotency_key(bad).is_err(), "{bad:?}");
        }
        assert!(idempotency_key("k".repeat(256).as_bytes()).is_err());
    }
}
