//! The Lua scripts, embedded from `scripts/` (one file each, named `<name>-<number of keys>.lua`,
//! with a header documenting KEYS, ARGV and the reply), and the codes they answer with.

use redis::Script;

/// Negative codes of `enqueue-4.lua`, mirrored from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueCode {
    UnknownEndpoint = -1,
    DuplicateJobId = -2,
    InvalidArgument = -3,
}

impl EnqueueCode {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            -1 => Some(Self::UnknownEndpoint),
            -2 => Some(Self::DuplicateJobId),
            -3 => Some(Self::InvalidArgument),
            _ => None,
        }
    }
}

/// The source of the enqueue script, for producers that ship it to another language.
pub const ENQUEUE_SOURCE: &str = include_str!("../scripts/enqueue-4.lua");

/// Every script, loaded once per store; `redis::Script` runs EVALSHA and reloads on NOSCRIPT.
#[derive(Debug)]
pub struct Scripts {
    pub enqueue: Script,
    pub claim: Script,
    pub ack: Script,
    pub retry: Script,
    pub discard: Script,
    pub release: Script,
    pub replay: Script,
    pub purge: Script,
    pub dead_trim: Script,
    pub stats: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            enqueue: Script::new(ENQUEUE_SOURCE),
            claim: Script::new(include_str!("../scripts/claim-8.lua")),
            ack: Script::new(include_str!("../scripts/ack-4.lua")),
            retry: Script::new(include_str!("../scripts/retry-4.lua")),
            discard: Script::new(include_str!("../scripts/discard-4.lua")),
            release: Script::new(include_str!("../scripts/release-4.lua")),
            replay: Script::new(include_str!("../scripts/replay-4.lua")),
            purge: Script::new(include_str!("../scripts/purge-3.lua")),
            dead_trim: Script::new(include_str!("../scripts/dead-trim-3.lua")),
            stats: Script::new(include_str!("../scripts/stats-3.lua")),
        }
    }
}

impl Scripts {
    /// Every script, for loading them all at once.
    pub fn all(&self) -> [&Script; 10] {
        [
            &self.enqueue,
            &self.claim,
            &self.ack,
            &self.retry,
            &self.discard,
            &self.release,
            &self.replay,
            &self.purge,
            &self.dead_trim,
            &self.stats,
        ]
    }
}
