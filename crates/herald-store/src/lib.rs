//! herald's Redis store: where delivery jobs, endpoints and dead letters live, and the only
//! code that knows the key layout or runs the Lua scripts.
//!
//! - [`keys`]: the key layout: namespace, format version, shards and their hash tags.
//! - [`scripts`]: the Lua scripts (one per file in `scripts/`) and their result codes.
//! - [`record`]: the job record stored in Redis, parsed for inspection.
//! - [`store`]: [`Store`], the handle on one deployment, and its settings.
//! - [`connection`]: connections to one Redis node or a Redis Cluster, and pipelines split
//!   by slot on a cluster.
//! - [`produce`]: enqueueing jobs (one, or a pipelined batch).
//! - [`lease`]: the worker's calls: claim, settle, expired leases, wake-up hints, housekeeping.
//! - [`endpoints`]: endpoints, their state and subscriptions.
//! - [`admin`]: counts by state, job lookup, the dead-letter store.
//! - [`check`]: `herald check`: the store's invariants verified, and repaired on request.
//! - [`dead_letters`]: the dead-letter store by filter: pages with a cursor, replay and purge.
//! - [`browse`]: paged listings: endpoints with their health, subscriptions, subscribers.
//! - [`secrets`]: signing-secret rotation.
//! - [`sessions`]: console sessions of `herald serve`.
//! - [`error`]: the store's error type, [`StoreError`], and its [`ErrorKind`].
//!
//! Every script touches the keys of one shard only, all sharing one hash tag, so the same
//! scripts run on a single Redis and on a Redis Cluster; work over several shards is sent as
//! one pipeline per slot on a cluster. Time always comes from Redis (`TIME`).

pub mod admin;
pub mod browse;
pub mod check;
pub mod connection;
pub mod dead_letters;
pub mod endpoints;
pub mod error;
pub mod keys;
pub mod lease;
pub mod produce;
pub mod record;
pub mod scripts;
pub mod secrets;
pub mod sessions;
pub mod store;

pub use admin::{BusyEndpoint, DeadJob, JobInfo, JobState, ShardStats, Stats, BUSIEST_SHOWN};
pub use browse::{EndpointHealth, EndpointQuery, Page, ScanCursor, StatusFilter, MAX_PAGE};
pub use check::{CheckReport, Violation, ViolationKind};
pub use connection::{Conn, Pooled};
pub use dead_letters::{DeadCursor, DeadFilter, DeadLetter, DeadPage};
pub use endpoints::{
    Disabled, EndpointRecord, EndpointSecret, EndpointState, EndpointSummary, FlowChange, Limits,
    SetEndpoint, MAX_REASON_CHARS,
};
pub use error::{ErrorKind, StoreError};
pub use keys::{KeyName, Namespace, ShardKeys};
pub use lease::{
    Claim, ClaimedJob, Expired, Held, Settle, SettleReport, Settlement, Strike, Woken,
    ATTEMPT_LOG_LEN, ENDPOINT_HINTS_PER_WAKE,
};
pub use produce::{EnqueueStatus, Enqueued, NewJob, MAX_DELAY_MS};
pub use record::JobRecord;
pub use scripts::EnqueueCode;
pub use secrets::MAX_GRACE;
pub use sessions::Session;
pub use store::{Store, StoreConfig};
