//! Publishing a status-change event: one delivery job for every subscribed endpoint whose
//! notification level and component filter admit the change; and the test event an operator
//! sends one endpoint to check that it receives.

use herald_core::{EndpointId, StatusEvent};
use herald_store::{EnqueueStatus, Enqueued, NewJob};
use serde::Serialize;

use crate::{ProduceError, Producer};

/// What publishing one event did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Published {
    /// Jobs queued for delivery.
    pub enqueued: u64,
    /// Jobs parked because their endpoint is disabled (delivered when it is enabled again).
    pub parked: u64,
    /// Subscribers that already had a job for this idempotency key: nothing was written for
    /// them (their first job is in `jobs`).
    pub duplicates: u64,
    /// Subscribers whose level or component filter does not admit this change.
    pub skipped_by_level: u64,
    /// Subscribers whose endpoint no longer exists.
    pub skipped_unknown_endpoint: u64,
    /// The ids of the jobs written (queued or parked), by endpoint.
    pub jobs: Vec<(String, String)>,
}

impl Producer {
    /// Fans `event` out to the subscribers of its service, in one pipelined round trip.
    pub async fn publish(&self, event: &StatusEvent) -> Result<Published, ProduceError> {
        self.publish_once(event, None).await
    }

    /// [`Producer::publish`] with an idempotency key: publishing again with the same key (within
    /// the key's lifetime, 24 hours) writes no second job for a subscriber that got the first.
    pub async fn publish_once(
        &self,
        event: &StatusEvent,
        idempotency_key: Option<&str>,
    ) -> Result<Published, ProduceError> {
        let subscribers = self.store().subscribers(&event.slug).await?;
        let payload = event.to_json();
        let mut report = Published::default();
        let mut jobs = Vec::new();
        for (endpoint, subscription) in subscribers {
            if !subscription.admits(event) {
                report.skipped_by_level += 1;
                continue;
            }
            let Ok(endpoint) = EndpointId::new(endpoint) else {
                report.skipped_unknown_endpoint += 1;
                continue;
            };
            jobs.push(NewJob {
                idempotency_key: idempotency_key.map(str::to_owned),
                ..NewJob::new(endpoint, payload.clone())
            });
        }
        self.check().await?;
        let results = self.store().enqueue_batch(&jobs).await?;
        for (job, result) in jobs.iter().zip(results) {
            match result {
                Ok(done) => {
                    match done.status {
                        EnqueueStatus::Parked => report.parked += 1,
                        EnqueueStatus::Queued => report.enqueued += 1,
                        EnqueueStatus::Duplicate => report.duplicates += 1,
                    }
                    report.jobs.push((job.endpoint.to_string(), done.job_id));
                }
                Err(herald_store::StoreError::UnknownEndpoint(_)) => {
                    report.skipped_unknown_endpoint += 1
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(report)
    }
}

impl Producer {
    /// Sends one endpoint a test event: the example event of the product documentation, as a
    /// job through the normal queue (signed with the endpoint's secrets, retried, logged in its
    /// attempt log like any other). A disabled endpoint's test event is parked until it is
    /// enabled.
    pub async fn send_test_event(&self, endpoint: &EndpointId) -> Result<Enqueued, ProduceError> {
        self.enqueue(
            endpoint,
            herald_core::event::EXAMPLE.trim().as_bytes().to_vec(),
        )
        .await
    }
}
