//! The JSON bodies of API version 1, with their OpenAPI schemas. They mirror the store's types
//! (times in ms since the Unix epoch, Redis clock, as the CLI's `--json` prints them), so that
//! the store can change its own without changing the API.

use herald_core::{EndpointId, Level, Subscription};
use herald_store::{
    DeadLetter, Disabled, EndpointHealth, EndpointState, EnqueueStatus, Enqueued, JobInfo,
    JobState, Limits, SetEndpoint, ShardStats, Stats,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Why and when an endpoint was disabled.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisabledInfo {
    #[schema(example = "5 consecutive connection failures")]
    pub reason: String,
    pub at_ms: i64,
    /// The strike count at the time, when strikes disabled it.
    pub strikes: Option<u32>,
}

impl From<Disabled> for DisabledInfo {
    fn from(d: Disabled) -> Self {
        Self {
            reason: d.reason,
            at_ms: d.at_ms,
            strikes: d.strikes,
        }
    }
}

/// An endpoint's flow control as it stands.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LimitsInfo {
    /// The configured in-flight limit, fleet-wide.
    pub max_in_flight: u32,
    /// The adaptive limit in force (1 to `max_in_flight`): lower while the receiver struggles.
    pub current_limit: u32,
    /// Deliveries in flight now, fleet-wide.
    pub in_flight: u64,
    /// The rate limit (`50/s`, `600/m`, `100/h`), if any.
    #[schema(example = "600/m")]
    pub rate: Option<String>,
    /// Until when a `Retry-After` pauses the endpoint, if it does now.
    pub paused_until_ms: Option<i64>,
    /// Judged slow: a delivery to it outlasted the workers' `HERALD_SLOW_AFTER` and none has
    /// come back quicker since, so it is served from the workers' slow lanes only.
    pub slow: bool,
}

impl From<Limits> for LimitsInfo {
    fn from(l: Limits) -> Self {
        Self {
            max_in_flight: l.max_in_flight,
            current_limit: l.current_limit,
            in_flight: l.in_flight,
            rate: l.rate.map(|r| r.to_string()),
            paused_until_ms: l.paused_until_ms,
            slow: l.slow,
        }
    }
}

/// One attempt of the attempt log, as the worker logged it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Attempt {
    /// The Redis time of the claim.
    pub at_ms: i64,
    pub job_id: String,
    /// The attempt's number (1 for the first).
    pub attempt: u32,
    /// `delivered`, or a failure class (`http_status`, `timeout`, `refused`, `dns`, ...).
    #[schema(example = "http_status")]
    pub outcome: String,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// The start of the answer's body (up to 1024 bytes).
    pub response_body: Option<String>,
}

impl Attempt {
    fn from_value(v: serde_json::Value) -> Option<Self> {
        serde_json::from_value(v).ok()
    }
}

/// One line of the endpoint list: an endpoint's health at a glance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndpointSummary {
    #[schema(example = "dash-1")]
    pub id: String,
    #[schema(example = "https://hooks.example.com/status")]
    pub url: String,
    pub enabled: bool,
    pub disabled: Option<DisabledInfo>,
    /// Consecutive failed attempts that count as strikes.
    pub strikes: u32,
    /// Jobs in its queue: due, scheduled, or parked while it is disabled.
    pub queued: u64,
    pub limits: LimitsInfo,
    /// The latest attempt logged.
    pub last_attempt: Option<Attempt>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl From<EndpointHealth> for EndpointSummary {
    fn from(e: EndpointHealth) -> Self {
        Self {
            id: e.id,
            url: e.url,
            enabled: e.enabled,
            disabled: e.disabled.map(Into::into),
            strikes: e.strikes,
            queued: e.queued,
            limits: e.limits.into(),
            last_attempt: e.last_attempt.and_then(Attempt::from_value),
            created_at_ms: e.created_at_ms,
            updated_at_ms: e.updated_at_ms,
        }
    }
}

/// A page of endpoints.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<EndpointSummary>,
    /// Where the next page starts (the `cursor` parameter); `null` when this is the last.
    /// A page may hold fewer items than `limit`, even none, while `next_cursor` is set.
    pub next_cursor: Option<String>,
}

/// A notification level: `all`, `warn`, `down` or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LevelName {
    /// Every status change, maintenance included.
    All,
    /// Changes where the previous or the new status is `warn` or `down`.
    Warn,
    /// Changes where the previous or the new status is `down`.
    Down,
    /// Subscribed, never notified.
    None,
}

impl From<Level> for LevelName {
    fn from(l: Level) -> Self {
        match l {
            Level::All => Self::All,
            Level::Warn => Self::Warn,
            Level::Down => Self::Down,
            Level::None => Self::None,
        }
    }
}

impl std::fmt::Display for LevelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Level::from(*self).fmt(f)
    }
}

impl From<LevelName> for Level {
    fn from(l: LevelName) -> Self {
        match l {
            LevelName::All => Level::All,
            LevelName::Warn => Level::Warn,
            LevelName::Down => Level::Down,
            LevelName::None => Level::None,
        }
    }
}

/// A subscription of an endpoint to a service.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceSubscription {
    #[schema(example = "heroku")]
    pub service: String,
    pub level: LevelName,
    /// When not empty, only changes touching one of these components notify (`name` or
    /// `group/name`).
    pub components: Vec<String>,
}

impl ServiceSubscription {
    pub fn new(service: String, s: Subscription) -> Self {
        Self {
            service,
            level: s.level.into(),
            components: s.components,
        }
    }
}

/// An endpoint subscribed to a service.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscriber {
    #[schema(example = "dash-1")]
    pub endpoint: String,
    pub level: LevelName,
    pub components: Vec<String>,
}

/// A page of an endpoint's subscriptions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub items: Vec<ServiceSubscription>,
    /// Where the next page starts; `null` when this is the last.
    pub next_cursor: Option<String>,
}

/// A page of a service's subscribers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriberList {
    pub items: Vec<Subscriber>,
    /// Where the next page starts; `null` when this is the last.
    pub next_cursor: Option<String>,
}

/// Everything about one endpoint. Its secrets are never shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub enabled: bool,
    pub disabled: Option<DisabledInfo>,
    pub strikes: u32,
    /// Jobs in its queue (due, scheduled or parked).
    pub queued: u64,
    /// Jobs waiting while it is disabled (0 while it is enabled).
    pub parked: u64,
    pub limits: LimitsInfo,
    /// How many signing secrets are active (0: deliveries are not signed).
    pub active_secrets: usize,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// When an operator last changed it (set, enabled, secret rotated, created again): the
    /// failures of attempts claimed until then do not strike, disable, cut or pause it.
    /// `null` when no change was recorded.
    pub changed_at_ms: Option<i64>,
    pub subscriptions: Vec<ServiceSubscription>,
    /// The latest attempts, newest first.
    pub attempts: Vec<Attempt>,
}

impl From<EndpointState> for Endpoint {
    fn from(e: EndpointState) -> Self {
        Self {
            id: e.id,
            url: e.url,
            enabled: e.enabled,
            disabled: e.disabled.map(Into::into),
            strikes: e.strikes,
            queued: e.queued,
            parked: e.parked,
            limits: e.limits.into(),
            active_secrets: e.active_secrets,
            created_at_ms: e.created_at_ms,
            updated_at_ms: e.updated_at_ms,
            changed_at_ms: e.changed_at_ms,
            subscriptions: e
                .subscriptions
                .into_iter()
                .map(|(service, s)| ServiceSubscription::new(service, s))
                .collect(),
            attempts: e
                .attempts
                .into_iter()
                .filter_map(Attempt::from_value)
                .collect(),
        }
    }
}

/// An endpoint's attempt log, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptLog {
    pub items: Vec<Attempt>,
}

/// Creates or replaces an endpoint.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    /// The webhook URL: http or https, with a host, no credentials, no fragment, at most 2048
    /// bytes. A literal address in a range the SSRF guard refuses is refused unless the
    /// server's `HERALD_ALLOW_TARGETS` lists it.
    #[schema(example = "https://hooks.example.com/status", max_length = 2048)]
    pub url: String,
    /// Signing secret (`whsec_` + base64 of 24 to 64 bytes); replaces the current ones.
    /// Without it, the endpoint keeps its secrets (a new endpoint gets none: unsigned).
    pub secret: Option<String>,
    /// Most deliveries in flight at once across the fleet (1 to 10000); unchanged if absent
    /// (32 for a new endpoint).
    #[schema(minimum = 1, maximum = 10000)]
    pub max_in_flight: Option<u64>,
    /// Rate limit (`50/s`, `600/m`, `100/h`), or `none` to remove it; unchanged if absent.
    #[schema(example = "600/m")]
    pub rate: Option<String>,
}

/// What setting an endpoint did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndpointSaved {
    pub id: String,
    pub url: String,
    /// True when the endpoint did not exist before.
    pub created: bool,
    /// Queued jobs served again (parked jobs of a disabled endpoint included).
    pub resumed_jobs: u64,
    pub max_in_flight: u32,
    pub rate: Option<String>,
}

impl EndpointSaved {
    /// What `endpoint set` (CLI) and `PUT /api/v1/endpoints/{id}` (API) answer.
    pub fn new(id: &EndpointId, done: &SetEndpoint) -> Self {
        Self {
            id: id.to_string(),
            url: done.record.url.clone(),
            created: done.created,
            resumed_jobs: done.resumed,
            max_in_flight: done.record.max_in_flight(),
            rate: done.record.rate.map(|r| r.to_string()),
        }
    }
}

/// Disables an endpoint.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableInput {
    /// Why, for whoever looks later (default "disabled by an operator"); at most 1,000
    /// characters.
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
}

/// An endpoint enabled.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnableResult {
    pub id: String,
    /// Always true.
    pub enabled: bool,
    /// Jobs in its queue, served again.
    pub resumed_jobs: u64,
}

impl EnableResult {
    pub fn new(id: &EndpointId, resumed_jobs: u64) -> Self {
        Self {
            id: id.to_string(),
            enabled: true,
            resumed_jobs,
        }
    }
}

/// An endpoint disabled.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisableResult {
    pub id: String,
    /// Always false.
    pub enabled: bool,
    /// False when it already was disabled.
    pub changed: bool,
}

impl DisableResult {
    pub fn new(id: &EndpointId, changed: bool) -> Self {
        Self {
            id: id.to_string(),
            enabled: false,
            changed,
        }
    }
}

/// Rotates an endpoint's signing secret.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateInput {
    /// How long the previous secrets keep signing, e.g. `24h` (default); at most 30 days.
    #[schema(example = "24h")]
    pub grace: Option<String>,
}

/// A new signing secret, shown once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rotated {
    pub id: String,
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
    pub old_secrets_expire_in_s: u64,
}

impl Rotated {
    pub fn new(id: &EndpointId, secret: String, grace: std::time::Duration) -> Self {
        Self {
            id: id.to_string(),
            secret,
            old_secrets_expire_in_s: grace.as_secs(),
        }
    }
}

/// An endpoint deleted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    /// Always true.
    pub deleted: bool,
    /// Queued jobs moved to the dead-letter store (jobs in flight follow as they settle).
    pub queued_jobs_discarded: u64,
}

impl Deleted {
    pub fn new(id: &EndpointId, queued_jobs_discarded: u64) -> Self {
        Self {
            id: id.to_string(),
            deleted: true,
            queued_jobs_discarded,
        }
    }
}

/// Where an enqueued job went.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnqueueOutcome {
    /// In the queue.
    Queued,
    /// The endpoint is disabled: the job waits, spending no attempt, until it is enabled.
    Parked,
    /// The idempotency key was used before: nothing was written; `job_id` is the first job's.
    Duplicate,
}

/// What an enqueue did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnqueuedJob {
    #[schema(example = "01JH3W0AB8C9D0E1F2G3H4J5K6")]
    pub job_id: String,
    pub status: EnqueueOutcome,
    /// When the first attempt is due (0 unless queued); for a duplicate, the first job's while
    /// it waits (0 once it was delivered).
    pub due_at_ms: i64,
    pub shard: u16,
}

impl From<Enqueued> for EnqueuedJob {
    fn from(e: Enqueued) -> Self {
        Self {
            job_id: e.job_id,
            status: match e.status {
                EnqueueStatus::Queued => EnqueueOutcome::Queued,
                EnqueueStatus::Parked => EnqueueOutcome::Parked,
                EnqueueStatus::Duplicate => EnqueueOutcome::Duplicate,
            },
            due_at_ms: e.due_ms,
            shard: e.shard,
        }
    }
}

/// What a batch enqueue did: every job, in the order given.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnqueuedBatch {
    pub enqueued: u64,
    pub jobs: Vec<EnqueuedJob>,
}

/// The body of a batch enqueue: 1 to 1000 payloads, each any JSON document (the body POSTed to
/// the endpoint). Its schema is for the OpenAPI document; [`Ops::enqueue_batch`] reads the
/// array as raw JSON, each payload's bytes kept as sent.
///
/// [`Ops::enqueue_batch`]: crate::Ops::enqueue_batch
#[derive(Debug, Clone)]
pub struct PayloadBatch(pub Vec<serde_json::Value>);

impl utoipa::PartialSchema for PayloadBatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, ObjectBuilder, SchemaType};
        ArrayBuilder::new()
            .items(ArrayItems::RefOrSchema(Box::new(
                ObjectBuilder::new()
                    .schema_type(SchemaType::AnyValue)
                    .into(),
            )))
            .min_items(Some(1))
            .max_items(Some(1000))
            .description(Some("1 to 1000 payloads, each any JSON document"))
            .into()
    }
}

impl ToSchema for PayloadBatch {}

/// Subscribes an endpoint to a service.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInput {
    /// Which status changes notify (default `all`).
    pub level: Option<LevelName>,
    /// Only changes touching one of these components notify (`name` or `group/name`): at most
    /// 100 names of at most 200 characters each.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub components: Vec<String>,
}

/// One job written by a publish.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishedJob {
    pub endpoint: String,
    pub job_id: String,
}

/// What publishing an event did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishReport {
    /// Jobs queued for delivery.
    pub enqueued: u64,
    /// Jobs parked: their endpoint is disabled.
    pub parked: u64,
    /// Subscribers that already had a job for this idempotency key (nothing written).
    pub duplicates: u64,
    /// Subscribers whose level or component filter does not admit this change.
    pub skipped_by_level: u64,
    /// Subscribers whose endpoint no longer exists.
    pub skipped_unknown_endpoint: u64,
    /// The jobs, by endpoint (for duplicates, the first job).
    pub jobs: Vec<PublishedJob>,
}

impl From<herald_producer::Published> for PublishReport {
    fn from(p: herald_producer::Published) -> Self {
        Self {
            enqueued: p.enqueued,
            parked: p.parked,
            duplicates: p.duplicates,
            skipped_by_level: p.skipped_by_level,
            skipped_unknown_endpoint: p.skipped_unknown_endpoint,
            jobs: p
                .jobs
                .into_iter()
                .map(|(endpoint, job_id)| PublishedJob { endpoint, job_id })
                .collect(),
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStateName {
    Due,
    Scheduled,
    InFlight,
    /// Waiting while its endpoint is disabled.
    Parked,
    Dead,
    /// The record exists but no set holds it (an interrupted write).
    Orphaned,
}

impl From<JobState> for JobStateName {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Due => Self::Due,
            JobState::Scheduled => Self::Scheduled,
            JobState::InFlight => Self::InFlight,
            JobState::Parked => Self::Parked,
            JobState::Dead => Self::Dead,
            JobState::Orphaned => Self::Orphaned,
        }
    }
}

/// One job: where it is, its attempts, its last error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub shard: u16,
    pub state: JobStateName,
    /// Attempts started so far; for a job in flight, the attempt under way included.
    pub attempts: Option<u32>,
    pub endpoint: Option<String>,
    pub enqueued_at_ms: Option<i64>,
    /// When the next attempt is due (due or scheduled jobs).
    pub next_attempt_at_ms: Option<i64>,
    pub lease_deadline_ms: Option<i64>,
    pub dead_at_ms: Option<i64>,
    pub last_error: Option<String>,
    /// The payload, when it is JSON.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    /// The payload's bytes (invalid UTF-8 replaced), when it is not JSON: what a worker
    /// discards as `malformed`.
    pub raw_payload: Option<String>,
    /// The stored record, when it could not be parsed.
    pub raw_record: Option<String>,
}

impl From<JobInfo> for Job {
    fn from(j: JobInfo) -> Self {
        Self {
            id: j.id,
            shard: j.shard,
            state: j.state.into(),
            attempts: j.attempts,
            endpoint: j.endpoint,
            enqueued_at_ms: j.enqueued_at_ms,
            next_attempt_at_ms: j.next_attempt_at_ms,
            lease_deadline_ms: j.lease_deadline_ms,
            dead_at_ms: j.dead_at_ms,
            last_error: j.last_error,
            payload: j.payload,
            raw_payload: j.raw_payload,
            raw_record: j.raw_record,
        }
    }
}

/// One entry of the dead-letter store (its payload: `GET /api/v1/jobs/{id}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetterEntry {
    pub id: String,
    pub shard: u16,
    /// `null` when the job record is unreadable.
    pub endpoint: Option<String>,
    pub attempts: Option<u32>,
    pub enqueued_at_ms: Option<i64>,
    pub dead_at_ms: i64,
    /// Why it was discarded.
    #[schema(
        example = "retries exhausted after 21 attempts; last error: http_status 500: Internal Server Error"
    )]
    pub last_error: Option<String>,
}

impl From<DeadLetter> for DeadLetterEntry {
    fn from(d: DeadLetter) -> Self {
        Self {
            id: d.id,
            shard: d.shard,
            endpoint: d.endpoint,
            attempts: d.attempts,
            enqueued_at_ms: d.enqueued_at_ms,
            dead_at_ms: d.dead_at_ms,
            last_error: d.last_error,
        }
    }
}

/// A page of the dead-letter store, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetterList {
    pub items: Vec<DeadLetterEntry>,
    /// Where the next page starts; `null` when this is the last. A page may hold fewer
    /// items than `limit`, even none, while `next_cursor` is set (a filter that matches
    /// rarely: each page examines a bounded part of the store).
    pub next_cursor: Option<String>,
}

/// Which dead letters a bulk replay or purge takes: every condition given must hold; with
/// none, `all` must be true.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadSelection {
    /// Jobs of this endpoint.
    pub endpoint: Option<String>,
    /// Jobs whose reason contains this text, ignoring case.
    pub reason: Option<String>,
    /// Discarded at or after this time (RFC 3339, or ms since the Unix epoch).
    #[schema(example = "2026-03-01T00:00:00Z")]
    pub since: Option<String>,
    /// Discarded at or before this time (RFC 3339, or ms since the Unix epoch).
    pub until: Option<String>,
    /// Every dead letter: required when no condition is given.
    #[serde(default)]
    pub all: bool,
}

/// How many dead letters a replay put back in the queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Replayed {
    pub replayed: u64,
}

/// How many dead letters a purge deleted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Purged {
    pub purged: u64,
}

/// Job counts of one shard, or of the deployment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobCounts {
    pub due: u64,
    pub scheduled: u64,
    pub in_flight: u64,
    pub parked: u64,
    pub dead: u64,
    /// Endpoints held back now: at their in-flight or adaptive limit, or paused.
    pub held_back_endpoints: u64,
    /// When the oldest due job became due; `null` when none is due.
    pub oldest_due_ms: Option<i64>,
}

impl From<ShardStats> for JobCounts {
    fn from(s: ShardStats) -> Self {
        Self {
            due: s.due,
            scheduled: s.scheduled,
            in_flight: s.in_flight,
            parked: s.parked,
            dead: s.dead,
            held_back_endpoints: s.held_back_endpoints,
            oldest_due_ms: s.oldest_due_ms,
        }
    }
}

/// Jobs by state and disabled endpoints, counted at one Redis instant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsReport {
    pub now_ms: i64,
    pub jobs: JobCounts,
    pub disabled_endpoints: u64,
    pub shards: Vec<JobCounts>,
    /// The endpoints holding the most delivery slots now, most first (at most 5).
    pub busiest: Vec<BusyEndpointInfo>,
}

/// An endpoint and the delivery slots it holds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BusyEndpointInfo {
    pub id: String,
    /// Its deliveries in flight now, fleet-wide.
    pub in_flight: u64,
    /// Judged slow: a delivery to it outlasted the workers' `HERALD_SLOW_AFTER`, so it is
    /// served from the workers' slow lanes only.
    pub slow: bool,
}

impl From<Stats> for StatsReport {
    fn from(s: Stats) -> Self {
        Self {
            now_ms: s.now_ms,
            jobs: s.total.into(),
            disabled_endpoints: s.disabled_endpoints,
            shards: s.shards.into_iter().map(Into::into).collect(),
            busiest: s
                .busiest
                .into_iter()
                .map(|b| BusyEndpointInfo {
                    id: b.id,
                    in_flight: b.in_flight,
                    slow: b.slow,
                })
                .collect(),
        }
    }
}

/// `limit` and `cursor` of a paged listing.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Most items (1 to 1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Query of the endpoint list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndpointListQuery {
    /// Endpoints whose id contains this text, ignoring case.
    pub search: Option<String>,
    /// `any` (default), `enabled` or `disabled`.
    #[param(pattern = "^(any|enabled|disabled)?$")]
    pub status: Option<String>,
    /// About how many items (1 to 1000, default 50): small shards come whole.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Query of the dead-letter list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadListQuery {
    /// Jobs of this endpoint.
    pub endpoint: Option<String>,
    /// Jobs whose reason contains this text, ignoring case.
    pub reason: Option<String>,
    /// Discarded at or after this time (RFC 3339, or ms since the Unix epoch).
    pub since: Option<String>,
    /// Discarded at or before this time (RFC 3339, or ms since the Unix epoch).
    pub until: Option<String>,
    /// Most items (1 to 1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Query of a raw enqueue.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnqueueQuery {
    /// Wait this long before the first attempt, e.g. `30s`; at most 10^13 ms.
    pub delay: Option<String>,
}

/// A status-change event, exactly the JSON object receivers get. Unknown fields and unknown
/// statuses (`up`, `warn`, `down`, `maintenance`) are refused.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!(serde_json::from_str::<serde_json::Value>(herald_core::event::EXAMPLE).expect("the example is JSON")))]
pub struct StatusEventBody {
    pub component_status_changes: Vec<ComponentChangeBody>,
    pub component_statuses: Vec<ComponentStatusBody>,
    pub current_status: StatusName,
    pub details: String,
    pub favicon_url: String,
    pub home_page_url: String,
    pub last_status: StatusName,
    pub message: String,
    /// RFC 3339 with its original offset.
    #[schema(example = "2022-01-20T10:52:30-04:00")]
    pub occurred_at: String,
    pub service_name: String,
    /// The service's slug: 1 to 100 of a-z, 0-9, `.`, `_`, `-`.
    pub slug: String,
    pub status_page_url: String,
}

/// A status.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusName {
    Up,
    Warn,
    Down,
    Maintenance,
}

/// One component's change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComponentChangeBody {
    pub group_name: Option<String>,
    pub name: String,
    pub last_status: StatusName,
    pub current_status: StatusName,
}

/// One component's status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComponentStatusBody {
    pub group_name: Option<String>,
    pub name: String,
    pub status: StatusName,
}
