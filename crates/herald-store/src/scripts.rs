//! The Lua scripts, embedded from `scripts/` (one file each, named `<name>-<number of fixed
//! keys>.lua`, with a header documenting KEYS, ARGV and the reply), and the codes they answer.
//! The worker-side scripts that share flow control (claim, ack, fail, release, expire, slow) are
//! sent with `scripts/prelude/clock.lua` and `scripts/prelude/flow.lua` prepended, the other
//! scripts that read the Redis clock with `clock.lua`; the producers' scripts stand alone.

use redis::Script;

/// Codes of `enqueue-6.lua` and, per job, of `enqueue-batch-4.lua` (which never answers
/// `Duplicate`), mirrored from their headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueCode {
    /// The idempotency key was used before; nothing written.
    Duplicate = 0,
    Queued = 1,
    /// The endpoint is disabled: the job is parked in its queue until the endpoint is enabled.
    Parked = 2,
    UnknownEndpoint = -1,
    DuplicateJobId = -2,
    InvalidArgument = -3,
}

impl EnqueueCode {
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Self::Duplicate,
            1 => Self::Queued,
            2 => Self::Parked,
            -1 => Self::UnknownEndpoint,
            -2 => Self::DuplicateJobId,
            -3 => Self::InvalidArgument,
            _ => return None,
        })
    }
}

/// The source of the enqueue script, for producers that ship it to another language.
pub const ENQUEUE_SOURCE: &str = include_str!("../scripts/enqueue-6.lua");

/// The source of the batch enqueue script: many jobs of one shard, none with an idempotency key.
pub const ENQUEUE_BATCH_SOURCE: &str = include_str!("../scripts/enqueue-batch-4.lua");

/// Every script, loaded once per store; `redis::Script` runs EVALSHA and reloads on NOSCRIPT.
#[derive(Debug)]
pub struct Scripts {
    pub enqueue: Script,
    pub enqueue_batch: Script,
    pub claim: Script,
    pub ack: Script,
    pub fail: Script,
    pub release: Script,
    pub expire: Script,
    pub slow: Script,
    pub resume: Script,
    pub disable: Script,
    pub delete_endpoint: Script,
    pub sweep_parked: Script,
    pub replay: Script,
    pub purge: Script,
    pub dead_trim: Script,
    pub stats: Script,
    pub scan_records: Script,
    pub check_job: Script,
    pub check_endpoint: Script,
    pub update_endpoint: Script,
    pub subscribe: Script,
}

/// A worker-side script: `scripts/prelude/clock.lua`, `scripts/prelude/flow.lua`, then the
/// script itself.
macro_rules! with_flow {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("../scripts/prelude/clock.lua"),
            include_str!("../scripts/prelude/flow.lua"),
            include_str!(concat!("../scripts/", $file))
        ))
    };
}

/// A script that reads the Redis clock: `scripts/prelude/clock.lua`, then the script itself.
macro_rules! with_clock {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("../scripts/prelude/clock.lua"),
            include_str!(concat!("../scripts/", $file))
        ))
    };
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            enqueue: Script::new(ENQUEUE_SOURCE),
            enqueue_batch: Script::new(ENQUEUE_BATCH_SOURCE),
            claim: with_flow!("claim-12.lua"),
            ack: with_flow!("ack-8.lua"),
            fail: with_flow!("fail-12.lua"),
            release: with_flow!("release-9.lua"),
            expire: with_flow!("expire-9.lua"),
            slow: with_flow!("slow-1.lua"),
            resume: with_clock!("resume-8.lua"),
            disable: with_clock!("disable-2.lua"),
            delete_endpoint: with_clock!("delete-endpoint-12.lua"),
            sweep_parked: with_clock!("sweep-parked-3.lua"),
            replay: with_clock!("replay-5.lua"),
            purge: Script::new(include_str!("../scripts/purge-3.lua")),
            dead_trim: with_clock!("dead-trim-3.lua"),
            stats: Script::new(include_str!("../scripts/stats-4.lua")),
            scan_records: Script::new(include_str!("../scripts/scan-records-1.lua")),
            check_job: with_clock!("check-job-9.lua"),
            check_endpoint: with_clock!("check-endpoint-13.lua"),
            update_endpoint: with_clock!("update-endpoint-2.lua"),
            subscribe: Script::new(include_str!("../scripts/subscribe-2.lua")),
        }
    }
}

impl Scripts {
    /// Every script, for loading them all at once.
    pub fn all(&self) -> [&Script; 21] {
        [
            &self.enqueue,
            &self.enqueue_batch,
            &self.claim,
            &self.ack,
            &self.fail,
            &self.release,
            &self.expire,
            &self.slow,
            &self.resume,
            &self.disable,
            &self.delete_endpoint,
            &self.sweep_parked,
            &self.replay,
            &self.purge,
            &self.dead_trim,
            &self.stats,
            &self.scan_records,
            &self.check_job,
            &self.check_endpoint,
            &self.update_endpoint,
            &self.subscribe,
        ]
    }
}
