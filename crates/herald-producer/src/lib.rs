//! The producer library: how a service pushes webhook delivery jobs into herald.
//!
//! It runs the same scripts that producers in other languages run (`enqueue-6.lua`, and
//! `enqueue-batch-4.lua` for a batch's jobs of one shard; see `docs/wire-format.md`), after
//! checking what only the producer can check cheaply: that the payload is JSON.
//!
//! - [`publish`]: fans a status-change event out to the subscribed endpoints.
//! - [`verify`]: checks the Standard Webhooks signature of a delivery, for receivers in Rust.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herald_producer::ProduceError> {
//! use herald_producer::{EndpointId, Producer};
//! let producer = Producer::connect("redis://127.0.0.1:6379", "herald", 16)?;
//! let job = producer
//!     .enqueue(&EndpointId::new("dash-1").unwrap(), br#"{"current_status":"down"}"#.to_vec())
//!     .await?;
//! println!("enqueued {}", job.job_id);
//! # Ok(()) }
//! ```

pub mod publish;
pub mod verify;

use std::sync::Arc;

pub use herald_core::{EndpointId, JobId, Secret, SecretError};
pub use herald_store::{Enqueued, NewJob, Store, StoreConfig, StoreError};
pub use publish::Published;
use tokio::sync::OnceCell;
pub use verify::{Verifier, VerifyError};

use serde::de::IgnoredAny;

/// Why a job was not enqueued.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("the payload is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    #[error("invalid namespace: {0}")]
    Namespace(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Pushes delivery jobs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Producer {
    store: Store,
    /// Set once the namespace's key format and shard count were found to be this producer's
    /// ([`Store::check`]): writing jobs another format's workers never read would lose them.
    checked: Arc<OnceCell<()>>,
}

/// Checks that a payload is one JSON document.
pub fn check_payload(payload: &[u8]) -> Result<(), ProduceError> {
    serde_json::from_slice::<IgnoredAny>(payload)
        .map(|_| ())
        .map_err(ProduceError::InvalidJson)
}

impl Producer {
    /// A producer over an existing store handle.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            checked: Arc::default(),
        }
    }

    /// Checks the namespace once, before the first job is written.
    async fn check(&self) -> Result<(), ProduceError> {
        self.checked.get_or_try_init(|| self.store.check()).await?;
        Ok(())
    }

    /// A producer for the deployment at `redis_url` with this namespace and shard count.
    pub fn connect(redis_url: &str, namespace: &str, shards: u16) -> Result<Self, ProduceError> {
        let ns = herald_store::Namespace::new(namespace).map_err(ProduceError::Namespace)?;
        Ok(Self::new(Store::open(StoreConfig::new(
            redis_url, ns, shards,
        ))?))
    }

    /// A producer for the deployment on the Redis Cluster reached through `seed_urls` (one or
    /// more nodes' URLs, comma-separated), with this namespace and shard count. For more
    /// settings (waiting for replicas), build a [`StoreConfig`] and use [`Producer::new`].
    pub fn connect_cluster(
        seed_urls: &str,
        namespace: &str,
        shards: u16,
    ) -> Result<Self, ProduceError> {
        let ns = herald_store::Namespace::new(namespace).map_err(ProduceError::Namespace)?;
        let mut cfg = StoreConfig::new(seed_urls, ns, shards);
        cfg.cluster = true;
        Ok(Self::new(Store::open(cfg)?))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Enqueues one payload for one endpoint, due at once.
    pub async fn enqueue(
        &self,
        endpoint: &EndpointId,
        payload: Vec<u8>,
    ) -> Result<Enqueued, ProduceError> {
        self.enqueue_job(NewJob::new(endpoint.clone(), payload))
            .await
    }

    /// Enqueues a job described in full (id, delay, idempotency key).
    pub async fn enqueue_job(&self, job: NewJob) -> Result<Enqueued, ProduceError> {
        check_payload(&job.payload)?;
        self.check().await?;
        Ok(self.store.enqueue(&job).await?)
    }

    /// Enqueues many jobs in one pipelined round trip. Every payload is checked first; if one is
    /// not JSON, nothing is enqueued. Each job then succeeds or fails on its own.
    pub async fn enqueue_batch(
        &self,
        jobs: &[NewJob],
    ) -> Result<Vec<Result<Enqueued, StoreError>>, ProduceError> {
        for job in jobs {
            check_payload(&job.payload)?;
        }
        self.check().await?;
        Ok(self.store.enqueue_batch(jobs).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_must_be_one_json_document() {
        assert!(check_payload(br#"{"a":[1,2]}"#).is_ok());
        assert!(check_payload(b"  {}\n").is_ok());
        assert!(check_payload(b"{").is_err());
        assert!(check_payload(b"{} {}").is_err());
        assert!(check_payload(b"").is_err());
    }
}
