//! The command line: every subcommand, flag and environment variable of `herald`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::declarations::{Flags, Serve, Worker};

/// herald delivers status-change webhooks: producers enqueue jobs into Redis, workers POST them,
/// retrying failures on a schedule, and discard what never gets through into a dead-letter store.
#[derive(Debug, Parser)]
#[command(name = "herald", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings every subcommand reads.
#[derive(Debug, Args)]
pub struct Global {
    /// Redis URL (`redis://` or `rediss://` for TLS; ACL user and password in the URL); with
    /// --redis-cluster, one or more seed nodes of the cluster, comma-separated.
    #[arg(
        long,
        env = "HERALD_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true,
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Redis is a Redis Cluster: commands follow its slot map, and work over several shards
    /// goes to each master side by side.
    #[arg(long, env = "HERALD_REDIS_CLUSTER", global = true)]
    pub redis_cluster: bool,
    /// Enqueue and publish answer only once this many replicas of each master written have
    /// the jobs (Redis WAIT), so that a failover cannot lose them; 0 does not wait.
    #[arg(
        long,
        env = "HERALD_ENQUEUE_WAIT_REPLICAS",
        default_value_t = 0,
        global = true
    )]
    pub enqueue_wait_replicas: u32,
    /// How long an enqueue waits for those replicas; fewer in time fail it (the jobs were
    /// written, and enqueueing again with the same idempotency key is safe).
    #[arg(long, env = "HERALD_ENQUEUE_WAIT_TIMEOUT", default_value = "1s", global = true, value_parser = humantime::parse_duration)]
    pub enqueue_wait_timeout: std::time::Duration,
    /// Key prefix isolating one deployment.
    #[arg(
        long,
        env = "HERALD_NAMESPACE",
        default_value = "herald",
        global = true
    )]
    pub namespace: String,
    /// Number of shards; fixed for the life of a deployment (checked against Redis).
    #[arg(long, env = "HERALD_SHARDS", default_value_t = 16, global = true, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub shards: u16,
    /// Print machine-readable JSON instead of text: for a task the API also offers, the
    /// document the API answers.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one worker until SIGINT or SIGTERM, then drain gracefully.
    Worker(Box<WorkerArgs>),
    /// Manage dashboards' webhook endpoints.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Subscribe a dashboard's endpoint to a monitored service.
    Subscribe(SubscribeArgs),
    /// Remove a subscription.
    Unsubscribe {
        /// The endpoint id.
        id: String,
        /// The service slug, e.g. `heroku`.
        service: String,
    },
    /// List subscriptions, of one endpoint or of one service.
    #[command(subcommand)]
    Subscriptions(SubscriptionsCommand),
    /// Publish one status-change event: one job per subscribed endpoint whose level admits it.
    Publish {
        /// File with the event (JSON, as in the product documentation), or `-` for stdin.
        file: String,
        /// Publishing again with the same key (within 24 hours) writes no second job for a
        /// subscriber that got the first.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Enqueue a raw JSON payload for one endpoint.
    Enqueue(EnqueueArgs),
    /// Count jobs by state: due, scheduled, in flight, dead.
    Stats,
    /// Verify the store's invariants: every job in exactly one place with its record, leases
    /// and in-flight counts in agreement, no endpoint left unserved, nothing left of a deleted
    /// endpoint but its tombstone. Exits 1 when a violation remains.
    Check(CheckArgs),
    /// Inspect one job.
    #[command(subcommand)]
    Job(JobCommand),
    /// The dead-letter store: jobs that were discarded.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Local quick start: Redis, a worker, the console, a receiver and two demo dashboards,
    /// until Ctrl-C.
    Dev(DevArgs),
    /// Serve the management API and the operator console until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Tokens for `herald serve`.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// Server settings. Each is also an environment variable (`HERALD_<KEY>`) and a key of the
/// TOML file given by `--config`; a flag beats the environment, which beats the file. The
/// settings are declared in [`crate::declarations::SERVE`].
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with server settings (keys as the flags, with underscores, and `api_tokens`).
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Flags<Serve>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token for `herald serve`: prints it once, and the hashed form to list in the
    /// server's HERALD_API_TOKENS (comma-separated), which is all the server keeps.
    New {
        /// `read`: every GET of the API and every console page; `admin`: everything.
        #[arg(long)]
        scope: herald_api::auth::Scope,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also fix what has one safe fix: stranded jobs back into their queue, orphan leases,
    /// members and error lines removed, counters recounted, unserved endpoints back in
    /// `ready`, index entries rewritten from the endpoint's own subscriptions.
    #[arg(long)]
    pub repair: bool,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Port for the local receiver that prints each delivery [default: any free port].
    #[arg(long, default_value_t = 0)]
    pub receiver_port: u16,
    /// Address for the worker's /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,
    /// Address for the management API and the operator console (a free port if it is busy).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub api_addr: String,
}

#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// The endpoint id.
    pub id: String,
    /// The service slug, e.g. `heroku`.
    pub service: String,
    /// Which status changes notify: all, warn (previous or new status warn or down), down
    /// (previous or new status down), none.
    #[arg(long, default_value = "all")]
    pub level: herald_core::Level,
    /// Only changes that touch one of these components notify (comma-separated names, or
    /// `group/name`; at most 100, of at most 200 characters each).
    #[arg(long, value_delimiter = ',')]
    pub components: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionsCommand {
    /// The services one endpoint subscribes to.
    Endpoint { id: String },
    /// The endpoints subscribed to one service.
    Service { service: String },
}

/// Worker settings. Each is also an environment variable (`HERALD_<KEY>`) and a key of the
/// TOML file given by `--config`; a flag beats the environment, which beats the file. The
/// settings are declared in [`crate::declarations::WORKER`].
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// TOML file with worker settings (keys as the flags, with underscores).
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Flags<Worker>,
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Create or replace a dashboard's webhook URL.
    Set(SetArgs),
    /// Show one endpoint: state, limits, strikes, disabled reason, queued and parked jobs,
    /// latest attempts.
    Get { id: String },
    /// List every endpoint.
    List,
    /// Enable an endpoint: its parked jobs are delivered again (those already due at once).
    Enable { id: String },
    /// Disable an endpoint: its jobs wait in its queue (parked) until it is enabled.
    Disable {
        id: String,
        /// Why, for whoever looks later (at most 1,000 characters).
        #[arg(long, default_value = "disabled by an operator")]
        reason: String,
    },
    /// Delete an endpoint and its subscriptions; its queued jobs go to the dead-letter store.
    Delete { id: String },
    /// Send the endpoint a test event (the documentation's example event) through the queue;
    /// prints its job id.
    Test { id: String },
    /// Start signing with a new secret; the old one keeps signing beside it for a while.
    RotateSecret {
        id: String,
        /// How long the old secret keeps signing, e.g. `24h` (at most 30 days).
        #[arg(long, default_value = "24h")]
        grace: String,
    },
}

/// `herald endpoint set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The dashboard's endpoint id (letters, digits, `.`, `_`, `-`, `:`; up to 128).
    pub id: String,
    /// The webhook URL (http or https).
    #[arg(long)]
    pub url: String,
    /// Signing secret (`whsec_` + base64 of 24 to 64 bytes); replaces the current ones.
    /// Without it, the endpoint keeps its secrets (a new endpoint gets none: unsigned).
    #[arg(long, env = "HERALD_ENDPOINT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// CIDRs the SSRF guard lets through; a URL with a literal address in a blocked range
    /// (loopback, private, link-local, metadata...) is refused unless listed here.
    #[arg(long, env = "HERALD_ALLOW_TARGETS", default_value = "")]
    pub allow_targets: String,
    /// Most deliveries in flight at once to this endpoint across all workers (1 to 10000).
    /// Timeouts and 5xx answers lower the limit in force, successes raise it back.
    /// [default: 32 for a new endpoint; unchanged for an existing one]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_in_flight: Option<u32>,
    /// Most deliveries to this endpoint across all workers: `<count>/s`, `/m` or `/h`
    /// (e.g. `50/s`, `600/m`), with a burst of one second's worth; `none` removes it.
    /// [default: none for a new endpoint; unchanged for an existing one]
    #[arg(long)]
    pub rate: Option<String>,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The endpoint id.
    pub id: String,
    /// File with the JSON payload, or `-` for standard input.
    pub file: String,
    /// Read one JSON payload per line and enqueue them all, pipelined (for backfills).
    #[arg(long)]
    pub ndjson: bool,
    /// Wait this long before the first attempt, e.g. `30s` (at most 10^13 ms).
    #[arg(long)]
    pub delay: Option<String>,
    /// A repeated enqueue with the same key is a no-op that answers the first job's id.
    #[arg(long, conflicts_with = "ndjson")]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Show one job: state, attempts, next attempt, last error.
    Get {
        /// The job id (with or without the `msg_` prefix of the webhook-id header).
        job_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead jobs, newest first.
    List {
        /// Most entries shown.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        filter: DeadFilterArgs,
    },
    /// Put dead jobs back in the queue, due at once, with a fresh retry schedule.
    Replay(Selection),
    /// Delete dead jobs for good.
    Purge(Selection),
}

/// Conditions on dead jobs; every one given must hold.
#[derive(Debug, Args)]
pub struct DeadFilterArgs {
    /// Only jobs of this endpoint.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Only jobs whose reason (last error) contains this text, ignoring case.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only jobs discarded at or after this time (RFC 3339, e.g. 2026-03-01T00:00:00Z, or ms
    /// since the Unix epoch).
    #[arg(long)]
    pub since: Option<String>,
    /// Only jobs discarded at or before this time (RFC 3339 or ms since the Unix epoch).
    #[arg(long)]
    pub until: Option<String>,
}

/// Which dead jobs: ids, `--all`, or conditions.
#[derive(Debug, Args)]
pub struct Selection {
    /// Every dead job.
    #[arg(long, conflicts_with_all = ["job_ids", "endpoint", "reason", "since", "until"])]
    pub all: bool,
    /// These job ids.
    #[arg(conflicts_with_all = ["endpoint", "reason", "since", "until"])]
    pub job_ids: Vec<String>,
    /// Or every dead job matching these conditions.
    #[command(flatten)]
    pub filter: DeadFilterArgs,
}
