//! herald's Redis store: where delivery jobs, endpoints and dead letters live, and the only
//! code that knows the key layout or runs the Lua scripts.
//!
//! - [`keys`]: the key layout: namespace, format version, shards and their hash tags.
//! - [`scripts`]: the Lua scripts (one per file in `scripts/`) and their result codes.
//! - [`record`]: the job record stored in Redis, parsed for inspection.
//! - [`store`]: [`Store`], the typed API used by the producer library, the worker and the CLI.
//! - [`error`]: the store's error type, [`StoreError`].
//!
//! Every script touches the keys of one shard only, all sharing one hash tag, so the same
//! code runs on a single Redis and on Redis Cluster. Time always comes from Redis (`TIME`).

pub mod error;
pub mod keys;
pub mod record;
pub mod scripts;
pub mod store;

pub use error::StoreError;
pub use keys::{Namespace, ShardKeys};
pub use record::JobRecord;
pub use scripts::EnqueueCode;
pub use store::{
    Claim, ClaimedJob, DeadJob, EndpointRecord, Enqueued, JobInfo, JobState, NewJob, Settle,
    SettleReport, Settlement, ShardStats, Stats, Store, StoreConfig,
};
