//! The Lua scripts, embedded from `scripts/` (one file each, named `<name>-<number of fixed
//! keys>.lua`, with a header documenting KEYS, ARGV and the reply), and the codes they answer.

use redis::Script;

/// Codes of `enqueue-6.lua` and, per job, of `enqueue-batch-4.lua` (which never answers
/// `Duplicate`), mirrored from their headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueCode {
    /// The idempotency key was used before; nothing written.
    Duplicate = 0,
    Queued = 1,
    /// The endpoint is disabled: the job waits in its parked set.
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
    pub park: Script,
    pub release: Script,
    pub resume: Script,
    pub disable: Script,
    pub delete_endpoint: Script,
    pub sweep_parked: Script,
    pub replay: Script,
    pub purge: Script,
    pub dead_trim: Script,
    pub stats: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            enqueue: Script::new(ENQUEUE_SOURCE),
            enqueue_batch: Script::new(ENQUEUE_BATCH_SOURCE),
            claim: Script::new(include_str!("../scripts/claim-10.lua")),
            ack: Script::new(include_str!("../scripts/ack-5.lua")),
            fail: Script::new(include_str!("../scripts/fail-8.lua")),
            park: Script::new(include_str!("../scripts/park-3.lua")),
            release: Script::new(include_str!("../scripts/release-3.lua")),
            resume: Script::new(include_str!("../scripts/resume-6.lua")),
            disable: Script::new(include_str!("../scripts/disable-2.lua")),
            delete_endpoint: Script::new(include_str!("../scripts/delete-endpoint-9.lua")),
            sweep_parked: Script::new(include_str!("../scripts/sweep-parked-3.lua")),
            replay: Script::new(include_str!("../scripts/replay-4.lua")),
            purge: Script::new(include_str!("../scripts/purge-3.lua")),
            dead_trim: Script::new(include_str!("../scripts/dead-trim-3.lua")),
            stats: Script::new(include_str!("../scripts/stats-3.lua")),
        }
    }
}

impl Scripts {
    /// Every script, for loading them all at once.
    pub fn all(&self) -> [&Script; 15] {
        [
            &self.enqueue,
            &self.enqueue_batch,
            &self.claim,
            &self.ack,
            &self.fail,
            &self.park,
            &self.release,
            &self.resume,
            &self.disable,
            &self.delete_endpoint,
            &self.sweep_parked,
            &self.replay,
            &self.purge,
            &self.dead_trim,
            &self.stats,
        ]
    }
}
