//! What the benchmark measures. Each scenario sets up what it needs (its own `redis-server`,
//! endpoints on the shared receiver, `herald worker` processes), runs, and returns its figures
//! as a JSON object. [`all`] runs every one of them in turn.
//!
//! - `shared`: the common settings, a fresh deployment under test, the enqueue loop, a paced
//!   feed, waiting for progress, the noise figure, the machine's description.
//! - `ceiling`: (a) a bare reqwest POST loop against the receiver, and that loop itself.
//! - `throughput`: (b) end-to-end deliveries per second, and the end-to-end run `backlog` reuses.
//! - `latency`: (c) enqueue-to-receipt latency at a fixed offered rate.
//! - `backlog`: (d) end-to-end throughput with jobs scheduled for later in the store.
//! - `enqueue`: (e) `enqueue_batch` throughput, and Redis memory per queued job.
//! - `memory`: (f) a worker's peak RSS with many deliveries in flight, and each delivery's
//!   time from claim to receipt.
//! - `idle`: an idle fleet's Redis commands per second, and pickup latency (issue 2).
//! - `scripts`: Redis time per job of the enqueue, claim and ack scripts, measured alone.
//! - `redis`: claim and settle without HTTP, loops draining a backlog: jobs per second and
//!   Redis CPU per job, on one node or a cluster.
//! - `isolation`: healthy endpoints' deliveries with and without one endpoint that never
//!   answers (issue 10).
//! - `replicas`: what waiting for a replica on enqueue costs (`HERALD_ENQUEUE_WAIT_REPLICAS`).
//! - `api`: the management API's read routes over 10,000 endpoints and 100,000 dead letters.
//! - `ingest`: single-job enqueues over HTTP through `herald serve` (driven by `h2load`) while
//!   a worker delivers them: `serve`'s CPU per enqueue, the end-to-end rate. Not in `all`.
//! - `outage`: many receivers down at once (hanging, slow, `503`, refusing), then healed: the
//!   healthy endpoints' lateness window by window, and how long recovery takes. Not in `all`.
//! - `production`: HTTPS to 10,000 names through a real DNS server, slow receivers, failing
//!   names; herald against a bare client doing the same deliveries. Not in `all`.
//! - `all`: every scenario but `outage`, `production` and `ingest` in turn.

mod all;
mod api;
mod backlog;
mod ceiling;
mod enqueue;
mod idle;
mod ingest;
mod isolation;
mod latency;
mod memory;
mod outage;
mod production;
mod redis;
mod replicas;
mod scripts;
mod shared;
mod throughput;

pub use all::{all, AllArgs};
pub use api::{api, ApiArgs};
pub use backlog::{backlog, BacklogArgs};
pub use ceiling::{ceiling, post_loop, CeilingArgs, PostLoopArgs};
pub use enqueue::{enqueue_rate, EnqueueArgs};
pub use idle::{idle, IdleArgs};
pub use ingest::{ingest, IngestArgs};
pub use isolation::{isolation, IsolationArgs};
pub use latency::{latency, LatencyArgs};
pub use memory::{memory, MemoryArgs};
pub use outage::{outage, OutageArgs};
pub use production::{https_loop, production, HttpsLoopArgs, ProductionArgs};
pub use redis::{redis, RedisArgs};
pub use replicas::{replicas, ReplicasArgs};
pub use scripts::{scripts, ScriptsArgs};
pub use shared::{machine, Bench, Common};
pub use throughput::{throughput, ThroughputArgs};
