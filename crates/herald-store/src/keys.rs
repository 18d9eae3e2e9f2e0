//! The key layout. Every key starts with the namespace and the format version, and every key of
//! a shard carries the shard's hash tag: `<ns>:v2:{<ns>.<shard>}:<name>`.
//!
//! Bumping [`FORMAT`] is how an incompatible change of layout or record format is made:
//! workers of the new version read keys that old producers never write, so a migration must be
//! run in between. The namespace's format key ([`Namespace::format_key`], outside any version)
//! says which format a namespace holds, and every process refuses to run against another one.

/// The key format version.
pub const FORMAT: &str = "v2";

/// [`FORMAT`] as the namespace's format key holds it.
pub const FORMAT_NUMBER: u32 = 2;

/// The name segments of the keys that are found by scanning rather than named by a list
/// ([`Namespace::parse_key`] reads them back): per-endpoint keys of a shard and the services'
/// subscriber indexes.
const QUEUE: &str = "q";
const ATTEMPTS: &str = "attempts";
const SUBSCRIPTIONS: &str = "subs";
const SERVICE: &str = "service";

/// How many wake-up hint sets a deployment on a Redis Cluster has (fewer with fewer shards):
/// enough to spread hint writes over the masters, few enough that an idle worker can block on
/// all of them at little cost.
pub const WAKE_GROUPS: u16 = 16;

/// A key prefix that isolates one deployment (`HERALD_NAMESPACE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// A namespace; the name may not contain `{`, `}` or whitespace (they would break hash tags).
    pub fn new(name: impl Into<String>) -> Result<Self, String> {
        let name = name.into();
        if name.is_empty()
            || name.len() > 64
            || name
                .chars()
                .any(|c| c == '{' || c == '}' || c.is_whitespace())
        {
            return Err(format!(
                "namespace {name:?} must be 1 to 64 characters without braces or whitespace"
            ));
        }
        Ok(Self { name })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The keys of one shard.
    pub fn shard(&self, shard: u16) -> ShardKeys {
        ShardKeys::new(self, shard)
    }

    /// `ZSET shard -> earliest time (ms) that shard may have due work`: wake-up hints for idle
    /// workers, the set that holds `shard`'s. Not part of any script; losing a hint costs
    /// latency, never jobs.
    ///
    /// On one node every shard's hints share one set, `<ns>:v2:wake`. On a Redis Cluster the
    /// shards are split into [`WAKE_GROUPS`] groups (shard modulo the group count), each with
    /// its set in the slot of the group's first shard, `<ns>:v2:{<ns>.<group>}:wake`, so that
    /// hints are spread over the masters as the shards are.
    pub fn wake_key(&self, shard: u16, cluster: bool) -> String {
        if cluster {
            let group = shard % WAKE_GROUPS;
            format!("{}:{FORMAT}:{{{}.{group}}}:wake", self.name, self.name)
        } else {
            format!("{}:{FORMAT}:wake", self.name)
        }
    }

    /// `STRING`: the key format this namespace holds (`2`), outside any version so that a
    /// process of any format can read it and refuse to run against data of another.
    pub fn format_key(&self) -> String {
        format!("{}:format", self.name)
    }

    /// The settings hash of format 1, which format-1 processes check at start.
    pub fn v1_meta_key(&self) -> String {
        format!("{}:v1:meta", self.name)
    }

    /// `HASH` of deployment-wide settings (`shards`), checked by every process at start.
    pub fn meta_key(&self) -> String {
        format!("{}:{FORMAT}:meta", self.name)
    }

    /// `HASH endpoint id -> subscription JSON`: who subscribes to one monitored service. Read by
    /// publishers to fan an event out; written beside the endpoint's own list.
    pub fn service_subscribers(&self, slug: &str) -> String {
        format!("{}:{FORMAT}:{SERVICE}:{slug}", self.name)
    }

    /// `HASH` of one console session (`herald serve`), named by the SHA-256 (hex) of the
    /// session id its cookie holds; expires with the session.
    pub fn session_key(&self, id_hash: &str) -> String {
        format!("{}:{FORMAT}:session:{id_hash}", self.name)
    }

    /// `STRING` lock held by the worker that samples queue depth for metrics.
    pub fn sampler_lock_key(&self) -> String {
        format!("{}:{FORMAT}:sampler", self.name)
    }

    /// The `SCAN MATCH` pattern of every key of this namespace in this format.
    pub fn scan_pattern(&self) -> String {
        format!("{}:{FORMAT}:*", glob_escape(&self.name))
    }

    /// Reads a key name back: which per-endpoint key or subscriber index it is (the inverse of
    /// [`ShardKeys::queue`], [`ShardKeys::attempts`], [`ShardKeys::subscriptions`] and
    /// [`Namespace::service_subscribers`]), for readers that find keys by `SCAN`. `None` for
    /// any other key, of this namespace or not.
    pub fn parse_key<'k>(&self, key: &'k str) -> Option<KeyName<'k>> {
        let rest = key
            .strip_prefix(self.name.as_str())?
            .strip_prefix(':')?
            .strip_prefix(FORMAT)?
            .strip_prefix(':')?;
        if let Some(slug) = rest.strip_prefix(SERVICE).and_then(|r| r.strip_prefix(':')) {
            return Some(KeyName::ServiceSubscribers { slug });
        }
        let (shard, name) = rest
            .strip_prefix('{')?
            .strip_prefix(self.name.as_str())?
            .strip_prefix('.')?
            .split_once("}:")?;
        let shard = shard.parse::<u16>().ok()?;
        let (kind, endpoint) = name.split_once(':')?;
        match kind {
            QUEUE => Some(KeyName::Queue { shard, endpoint }),
            ATTEMPTS => Some(KeyName::Attempts { shard, endpoint }),
            SUBSCRIPTIONS => Some(KeyName::Subscriptions { shard, endpoint }),
            _ => None,
        }
    }
}

/// A key read back by [`Namespace::parse_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyName<'k> {
    /// [`ShardKeys::queue`].
    Queue { shard: u16, endpoint: &'k str },
    /// [`ShardKeys::attempts`].
    Attempts { shard: u16, endpoint: &'k str },
    /// [`ShardKeys::subscriptions`].
    Subscriptions { shard: u16, endpoint: &'k str },
    /// [`Namespace::service_subscribers`].
    ServiceSubscribers { slug: &'k str },
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The names of one shard's keys; see `docs/wire-format.md` for what each holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardKeys {
    pub shard: u16,
    prefix: String,
    pub ready: String,
    pub busy: String,
    pub flow: String,
    pub inflight: String,
    pub leases: String,
    pub jobs: String,
    pub errors: String,
    pub endpoints: String,
    pub dead: String,
    pub seq: String,
    pub disabled: String,
    pub strikes: String,
    pub deleted: String,
    /// `HASH endpoint id -> Redis time (ms) of its last change` by an operator (set, enabled,
    /// secret rotated, deleted): a failed attempt claimed until then no longer strikes it.
    pub changed: String,
}

impl ShardKeys {
    fn new(ns: &Namespace, shard: u16) -> Self {
        let prefix = format!("{}:{FORMAT}:{{{}.{shard}}}", ns.as_str(), ns.as_str());
        let key = |name: &str| format!("{prefix}:{name}");
        Self {
            shard,
            ready: key("ready"),
            busy: key("busy"),
            flow: key("flow"),
            inflight: key("inflight"),
            leases: key("leases"),
            jobs: key("jobs"),
            errors: key("errors"),
            endpoints: key("endpoints"),
            dead: key("dead"),
            seq: key("seq"),
            disabled: key("disabled"),
            strikes: key("strikes"),
            deleted: key("deleted"),
            changed: key("changed"),
            prefix,
        }
    }

    /// The key that remembers an endpoint's idempotency key; with `None`, the placeholder
    /// passed to the enqueue script when there is no idempotency key.
    pub fn idempotency(&self, key: Option<(&str, &str)>) -> String {
        match key {
            // `/` cannot occur in an endpoint id, so no endpoint and key pair can name the key of
            // another pair.
            Some((endpoint, key)) => format!("{}:idem:{endpoint}/{key}", self.prefix),
            None => format!("{}:idem:", self.prefix),
        }
    }

    /// `ZSET job id -> next attempt ms`: an endpoint's queue (due, scheduled, and parked while
    /// the endpoint is disabled).
    pub fn queue(&self, endpoint: &str) -> String {
        format!("{}:{QUEUE}:{endpoint}", self.prefix)
    }

    /// `LIST` of an endpoint's latest attempts (JSON), newest first.
    pub fn attempts(&self, endpoint: &str) -> String {
        format!("{}:{ATTEMPTS}:{endpoint}", self.prefix)
    }

    /// `HASH service slug -> subscription JSON`: what an endpoint subscribes to.
    pub fn subscriptions(&self, endpoint: &str) -> String {
        format!("{}:{SUBSCRIPTIONS}:{endpoint}", self.prefix)
    }
}

/// `ZSET endpoint id -> 0`: endpoints that were just given jobs due at once, beside the wake-up
/// hint set `wake_key` and in its slot (`<wake key>:endpoints`). A worker woken by a hint takes
/// these too and names them in its first claim of their shards, which can then lease their jobs
/// at once instead of first learning which endpoints are due. Hints only: a lost or stale entry
/// costs one more claim, never a job.
pub fn wake_endpoints_key(wake_key: &str) -> String {
    format!("{wake_key}:endpoints")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_keys_share_one_hash_tag() {
        let keys = Namespace::new("herald").unwrap().shard(3);
        assert_eq!(keys.queue("dash-1"), "herald:v2:{herald.3}:q:dash-1");
        assert_eq!(
            keys.idempotency(Some(("dash-1", "k1"))),
            "herald:v2:{herald.3}:idem:dash-1/k1"
        );
        for k in [
            &keys.ready,
            &keys.busy,
            &keys.flow,
            &keys.inflight,
            &keys.leases,
            &keys.jobs,
            &keys.errors,
            &keys.endpoints,
            &keys.dead,
            &keys.seq,
            &keys.disabled,
            &keys.strikes,
            &keys.deleted,
            &keys.changed,
            &keys.queue("e"),
            &keys.attempts("e"),
            &keys.subscriptions("e"),
        ] {
            assert!(k.contains("{herald.3}"), "{k}");
        }
    }

    #[test]
    fn cluster_wake_keys_sit_in_their_groups_first_shard_slot() {
        let ns = Namespace::new("herald").unwrap();
        assert_eq!(ns.wake_key(37, false), "herald:v2:wake");
        assert_eq!(ns.wake_key(37, true), "herald:v2:{herald.5}:wake");
        assert!(ns.wake_key(5, true).contains("{herald.5}"));
        assert_eq!(
            wake_endpoints_key(&ns.wake_key(37, true)),
            "herald:v2:{herald.5}:wake:endpoints"
        );
        assert_eq!(
            wake_endpoints_key(&ns.wake_key(37, false)),
            "herald:v2:wake:endpoints"
        );
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("herald"), "herald");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn scanned_keys_read_back_as_what_they_name() {
        let ns = Namespace::new("herald").unwrap();
        let k = ns.shard(12);
        assert_eq!(
            ns.parse_key(&k.queue("dash-1")),
            Some(KeyName::Queue {
                shard: 12,
                endpoint: "dash-1"
            })
        );
        assert_eq!(
            ns.parse_key(&k.attempts("dash-1")),
            Some(KeyName::Attempts {
                shard: 12,
                endpoint: "dash-1"
            })
        );
        assert_eq!(
            ns.parse_key(&k.subscriptions("d:1")),
            Some(KeyName::Subscriptions {
                shard: 12,
                endpoint: "d:1"
            })
        );
        assert_eq!(
            ns.parse_key(&ns.service_subscribers("heroku")),
            Some(KeyName::ServiceSubscribers { slug: "heroku" })
        );
        for other in [
            k.ready.clone(),
            k.jobs.clone(),
            k.idempotency(Some(("dash-1", "k"))),
            ns.meta_key(),
            ns.format_key(),
            ns.sampler_lock_key(),
            ns.session_key("ab"),
            ns.wake_key(3, true),
            // Another namespace, or one whose name starts with this one's.
            Namespace::new("heraldx").unwrap().shard(1).queue("e"),
            Namespace::new("other").unwrap().shard(1).queue("e"),
            "herald:v1:{herald.1}:q:e".to_owned(),
            "herald:v2:{herald.x}:q:e".to_owned(),
        ] {
            assert_eq!(ns.parse_key(&other), None, "{other}");
        }
        assert_eq!(ns.scan_pattern(), "herald:v2:*");
        assert_eq!(
            Namespace::new("a*b?[c]\\").unwrap().scan_pattern(),
            "a\\*b\\?\\[c\\]\\\\:v2:*"
        );
    }

    #[test]
    fn namespaces_cannot_break_hash_tags() {
        assert!(Namespace::new("a{b").is_err());
        assert!(Namespace::new("").is_err());
        assert!(Namespace::new("test-1").is_ok());
    }
}
