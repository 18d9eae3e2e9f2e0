//! Core types and policy of herald, shared by the store, the producer library and the worker.
//!
//! Nothing here talks to the network or to Redis; everything here is plain data and rules.
//!
//! - [`id`]: job and endpoint identifiers, and the shard an endpoint lives in.
//! - [`schedule`]: the retry schedule (delays between attempts, jitter, parsing).
//! - [`outcome`]: what one delivery attempt came to, and how failures are classified.
//! - [`webhook_url`]: the rules a dashboard's webhook URL must follow.

pub mod id;
pub mod outcome;
pub mod schedule;
pub mod webhook_url;

pub use id::{shard_of, EndpointId, InvalidId, JobId};
pub use outcome::{FailureClass, Outcome};
pub use schedule::{RetrySchedule, ScheduleError};
pub use webhook_url::{validate_webhook_url, UrlError};
