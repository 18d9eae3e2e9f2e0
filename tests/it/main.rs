//! End-to-end tests of herald's delivery core: the real `herald` binary against a real
//! `redis-server` and a real HTTP receiver, one Redis and one namespace per test.
//!
//! - [`support`]: the harness (Redis, receiver, binary runner).
//! - [`harness`]: smoke tests of the harness itself.
//! - [`delivery`]: one job delivered, retried, and discarded after its schedule.
//! - [`recovery`]: crashes, graceful shutdown and malformed job data.
//! - [`scale`]: two workers sharing ten thousand jobs.
//! - [`endpoints`]: endpoints, subscriptions, levels, strikes, parking and resuming.
//! - [`isolation`]: one endpoint's trouble stays its own: a hanging receiver, `--max-in-flight`
//!   across workers and a killed worker, `--rate`, `Retry-After` pauses, the adaptive limit.
//! - [`outage`]: many receivers down at once: 50 hanging or slow endpoints beside healthy ones,
//!   the slow lane draining their backlog, an endpoint judged fast again once it answers.
//! - [`enqueue_batch`]: batches through `enqueue-batch-4.lua`: per-job results, refusals, wake-up
//!   hints, delivery.
//! - [`store`]: the store's contract through its Rust API (tokens, leases, idempotency).
//! - [`observability`]: `/metrics` counts, `/readyz`, the queue-depth sampler, held-back
//!   endpoints, start-up warnings, failure logs, and the dashboards, alerts and manifests in
//!   `deploy/`.
//! - [`prometheus`]: a real Prometheus server scraping two workers: every dashboard query has
//!   data at rest, and every alert rule goes pending or fires in its situation (failing
//!   deliveries, a worker killed, a refused endpoint, Redis down, a held-back backlog) and,
//!   where its window allows, resolves after recovery.
//! - [`hardening`]: signatures and rotation, the SSRF guard, HTTP semantics (redirects,
//!   timeouts, capped bodies, `Retry-After`), Redis passwords, ACL users and TLS.
//! - [`faults`]: fault injection: workers killed in a loop, Redis killed, paused and cut off
//!   by a half-open connection, operators acting while workers deliver; every job accounted for.
//! - [`operator_fix`]: an operator's fix holds: late failures of attempts claimed before an
//!   endpoint's URL was set, it was enabled, or its id deleted and created again neither strike,
//!   disable, cut nor pause it; an old owner's jobs die, never reach the new owner; a rolling fix
//!   of twenty endpoints; `herald check` reports what the issue left behind.
//! - [`wire`]: a producer in shell, through the documented Lua script.
//! - [`cli_errors`]: bad input and unreachable Redis at the command line.
//! - [`cluster`]: herald on a real Redis Cluster: the CLI and workers across three masters,
//!   a slot moved, a manual failover and a killed master while workers deliver, enqueues that
//!   wait for replicas.
//! - [`check`]: `herald check` finds every broken invariant, also while workers deliver, and
//!   `--repair` fixes the safe ones.
//! - [`console`]: the operator console over HTTP (login, session cookie, form tokens, scopes,
//!   every page and button), and a real headless Chromium going through an operator's round.
//! - [`api`]: the management API of `herald serve` over HTTP: every route, tokens and scopes,
//!   4xx problems for bad input, cursors, the test event through a worker, the CLI's twins.

mod api;
mod check;
mod cli_errors;
mod cluster;
mod console;
mod delivery;
mod endpoints;
mod enqueue_batch;
mod faults;
mod hardening;
mod harness;
mod isolation;
mod observability;
mod operator_fix;
mod outage;
mod prometheus;
mod recovery;
mod scale;
mod store;
mod support;
mod wire;
