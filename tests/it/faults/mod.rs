//! Fault injection against real processes: the `herald` binary, `redis-server`, a loopback
//! receiver, and a TCP proxy between the workers and Redis.
//!
//! - [`half_open`]: the workers' Redis connections blackholed by the proxy (a flow dropped by
//!   a NAT or load balancer), idle and under load.

mod half_open;
