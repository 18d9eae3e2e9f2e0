//! End-to-end tests of herald's delivery core: the real `herald` binary against a real
//! `redis-server` and a real HTTP receiver, one Redis and one namespace per test.
//!
//! - [`support`]: the harness (Redis, receiver, binary runner).
//! - [`harness`]: smoke tests of the harness itself.
//! - [`delivery`]: one job delivered, retried, and discarded after its schedule.
//! - [`recovery`]: crashes, graceful shutdown and malformed job data.
//! - [`scale`]: two workers sharing ten thousand jobs.
//! - [`cli_errors`]: bad input and unreachable Redis at the command line.

mod cli_errors;
mod delivery;
mod harness;
mod recovery;
mod scale;
mod support;
