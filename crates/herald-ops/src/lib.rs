//! herald's operations: one typed function per operator task, over the store and the producer
//! library. The CLI, the JSON API and the console are thin adapters over [`Ops`]: each reads
//! its input its own way (flags, a request, a form), calls one operation, and shows the answer
//! its own way; the CLI's `--json` prints the same [`model`] document the API answers.
//!
//! - [`model`]: the typed inputs and answers (serde, with their OpenAPI schemas).
//! - [`error`]: [`OpError`], whose [`kind`](OpError::kind) the front-ends map to an HTTP
//!   status or an exit code.
//! - [`endpoints`], [`subscriptions`], [`jobs`], [`dead`]: the operations, by resource.

pub mod dead;
pub mod endpoints;
pub mod error;
pub mod jobs;
pub mod model;
pub mod subscriptions;

use std::sync::Arc;

use herald_core::guard::Guard;
use herald_core::EndpointId;
use herald_producer::Producer;
use herald_store::Store;

pub use error::{OpError, OpResult};

/// Items of a page when the caller names no limit.
pub const DEFAULT_LIMIT: usize = 50;

/// The operations over one store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ops {
    store: Store,
    producer: Producer,
    /// The SSRF guard that vets webhook URLs when an endpoint is set.
    guard: Arc<Guard>,
}

impl Ops {
    /// The operations over `store`, vetting webhook URLs with `guard`.
    pub fn new(store: Store, guard: Guard) -> Self {
        Self {
            producer: Producer::new(store.clone()),
            store,
            guard: Arc::new(guard),
        }
    }

    /// The store, for what is not an operator task (sessions, health).
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// An endpoint id as given, or a refusal that says what is wrong with it.
pub fn endpoint_id(text: &str) -> OpResult<EndpointId> {
    EndpointId::new(text).map_err(|e| OpError::Invalid(e.to_string()))
}

/// A page size: the default when none is given.
fn limit(given: Option<usize>) -> usize {
    given.unwrap_or(DEFAULT_LIMIT)
}

/// A duration as operators write it (`30s`, `24h`), or a refusal naming the input.
pub fn duration(name: &str, text: &str) -> OpResult<std::time::Duration> {
    humantime::parse_duration(text.trim())
        .map_err(|e| OpError::Invalid(format!("{name} {text:?} is not a duration: {e}")))
}
