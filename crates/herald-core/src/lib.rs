//! Core types and policy of herald, shared by the store, the producer library and the worker.
//!
//! Nothing here talks to the network or to Redis; everything here is plain data and rules.
//!
//! - [`event`]: the status-change event (the payload) and notification levels.
//! - [`flow`]: an endpoint's in-flight limit and rate.
//! - [`guard`]: the SSRF guard's policy: blocked address ranges and the allow list.
//! - [`id`]: job and endpoint identifiers, and the shard an endpoint lives in.
//! - [`schedule`]: the retry schedule (delays between attempts, jitter, parsing).
//! - [`outcome`]: what one delivery attempt came to, and how failures are classified.
//! - [`signing`]: Standard Webhooks signatures and the `whsec_` secrets endpoints sign with.
//! - [`webhook_url`]: the rules a dashboard's webhook URL must follow.

pub mod event;
pub mod flow;
pub mod guard;
pub mod id;
pub mod outcome;
pub mod schedule;
pub mod signing;
pub mod webhook_url;

pub use event::{check_slug, EventError, Level, SlugError, Status, StatusEvent, Subscription};
pub use flow::{
    check_max_in_flight, parse_rate_setting, MaxInFlightError, Per, Rate, RateError,
    DEFAULT_MAX_IN_FLIGHT, MAX_IN_FLIGHT_CEILING,
};
pub use id::{job_id_key, shard_of, EndpointId, InvalidId, JobId};
pub use outcome::{FailureClass, Outcome};
pub use schedule::{RetrySchedule, ScheduleError};
pub use signing::{Secret, SecretError};
pub use webhook_url::{validate_webhook_url, UrlError};
