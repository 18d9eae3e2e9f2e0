//! `herald check`: walks every shard and verifies the invariants of `docs/wire-format.md`
//! (every job in exactly one place with its record, leases and `inflight` in agreement,
//! per-endpoint counters equal to what they count, no endpoint left unserved, nothing left of a
//! deleted endpoint but its tombstone, subscriptions indexed both ways, no old owner's job in a
//! new owner's queue, no endpoint disabled by attempts older than its last change), and repairs
//! on request what has one safe fix.
//!
//! The walk reads with `SCAN`-family commands while workers run, so it can see a job between
//! two places. Everything it finds out of place is therefore looked at again, in one Redis
//! instant, by `check-job-9.lua` or `check-endpoint-13.lua`, which also make the repairs: only
//! what is still wrong then is reported. Subscriptions live in two slots (the endpoint's shard
//! and the service's index), so their second look reads both again, a moment apart.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use redis::aio::ConnectionLike;
use redis::FromRedisValue;
use serde::Serialize;

use herald_core::EndpointId;

use crate::connection::{Conn, Pooled};
use crate::error::{protocol, Result};
use crate::keys::KeyName;
use crate::lease::BLOCKED;
use crate::{Disabled, ShardKeys, Store};

/// How many entries one `SCAN`-family step asks for.
const SCAN_COUNT: usize = 1000;

/// A broken invariant, by kind. The names are stable: `herald check --json` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A job record in no place: no queue, not in flight, not dead. Nothing would ever
    /// deliver or discard it.
    Stranded,
    /// A job in two places or more.
    Duplicated,
    /// A job in the queue of another endpoint than its record names.
    Misfiled,
    /// A queue, `inflight` or `dead` lists a job without a record.
    OrphanMember,
    /// A lease for a job that is not in flight.
    OrphanLease,
    /// A job in flight without a lease (its lease deadline takes it back).
    LeaseMissing,
    /// A dead job without its reason.
    DeadWithoutReason,
    /// An error line for a job without a record.
    OrphanError,
    /// Jobs queued for an enabled endpoint that is not in `ready`: no claim looks at them.
    QueueNotReady,
    /// An endpoint blocked at its in-flight limit with nothing in flight.
    BlockedIdle,
    /// An endpoint's `busy` count differs from its jobs in flight.
    BusyCount,
    /// State left of an endpoint that does not exist.
    LeftoverKeys,
    /// A subscription of an endpoint missing from its service's index (publishing skips it).
    SubscriptionUnindexed,
    /// A service's index names a subscriber that does not subscribe (or does not exist).
    SubscriberOrphan,
    /// A job enqueued before its endpoint's id was deleted, queued for the id's new owner
    /// (issue 18): the old owner's payload would go to the new owner's URL.
    OldOwnerJob,
    /// An endpoint disabled by strikes after its last change, by an attempt claimed before it
    /// (issue 18): a failure against the old configuration undid the operator's fix.
    StaleDisable,
}

impl ViolationKind {
    /// The kind named by a check script's code.
    fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "stranded" => Self::Stranded,
            "duplicated" => Self::Duplicated,
            "misfiled" => Self::Misfiled,
            "orphan_member" => Self::OrphanMember,
            "orphan_lease" => Self::OrphanLease,
            "lease_missing" => Self::LeaseMissing,
            "dead_without_reason" => Self::DeadWithoutReason,
            "orphan_error" => Self::OrphanError,
            "queue_not_ready" => Self::QueueNotReady,
            "blocked_idle" => Self::BlockedIdle,
            "busy_count" => Self::BusyCount,
            "leftover_keys" => Self::LeftoverKeys,
            "old_owner_job" => Self::OldOwnerJob,
            "stale_disable" => Self::StaleDisable,
            _ => return None,
        })
    }

    /// The name `--json` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stranded => "stranded",
            Self::Duplicated => "duplicated",
            Self::Misfiled => "misfiled",
            Self::OrphanMember => "orphan_member",
            Self::OrphanLease => "orphan_lease",
            Self::LeaseMissing => "lease_missing",
            Self::DeadWithoutReason => "dead_without_reason",
            Self::OrphanError => "orphan_error",
            Self::QueueNotReady => "queue_not_ready",
            Self::BlockedIdle => "blocked_idle",
            Self::BusyCount => "busy_count",
            Self::LeftoverKeys => "leftover_keys",
            Self::SubscriptionUnindexed => "subscription_unindexed",
            Self::SubscriberOrphan => "subscriber_orphan",
            Self::OldOwnerJob => "old_owner_job",
            Self::StaleDisable => "stale_disable",
        }
    }

    /// Whether `--repair` has a safe fix for it. A job in two places, or in another endpoint's
    /// queue, has none (which place is right cannot be told); a missing lease needs none (its
    /// lease deadline takes the job back); an endpoint disabled by a stale attempt is the
    /// operator's to enable.
    pub fn repairable(self) -> bool {
        !matches!(
            self,
            Self::Duplicated | Self::Misfiled | Self::LeaseMissing | Self::StaleDisable
        )
    }
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub kind: ViolationKind,
    /// The shard, or none for the services' subscriber indexes.
    pub shard: Option<u16>,
    /// What it is about: a job id, or an endpoint id (with the service slug, for
    /// subscriptions: `<endpoint id> <slug>`).
    pub subject: String,
    pub detail: String,
    /// Whether `--repair` fixed it.
    pub repaired: bool,
}

/// What a check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub shards: u16,
    /// Job records walked.
    pub jobs: u64,
    /// Endpoints walked (existing ones).
    pub endpoints: u64,
    pub violations: Vec<Violation>,
}

impl CheckReport {
    /// True when every violation found was repaired (or none was found).
    pub fn clean(&self) -> bool {
        self.violations.iter().all(|v| v.repaired)
    }
}

/// Where the walk saw a job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Queue(String),
    InFlight,
    Dead,
}

/// The keys of one shard that the namespace-wide `SCAN` found, by endpoint.
#[derive(Debug, Default)]
struct ShardKeyNames {
    queues: BTreeSet<String>,
    attempt_logs: HashSet<String>,
    subscriptions: BTreeSet<String>,
}

/// What the walk of one shard read.
#[derive(Debug, Default)]
struct ShardWalk {
    /// Job id -> the endpoint its record names (`None`: unreadable record).
    records: HashMap<String, Option<String>>,
    /// Job id -> when it was enqueued (readable records only).
    enqueued: HashMap<String, i64>,
    /// Endpoint id -> when it was last deleted (its tombstone).
    deleted: HashMap<String, i64>,
    places: HashMap<String, Vec<Place>>,
    queue_sizes: HashMap<String, u64>,
    leases: HashSet<String>,
    errors: HashSet<String>,
    in_flight: HashSet<String>,
    dead: HashSet<String>,
}

/// Every key matching `pattern` (`SCAN`, a step at a time, on every master).
async fn scan_keys(conn: &mut Conn, pattern: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let first = redis::cmd("DBSIZE");
    for (master, _) in conn.on_each_master(&first).await? {
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, batch): (u64, Vec<String>) =
                FromRedisValue::from_redis_value(conn.on_master(&master, &scan).await?)?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(keys)
}

/// Every member of a sorted set, or every field of a hash (`ZSCAN`/`HSCAN`), without scores
/// or values.
async fn scan_members<C: ConnectionLike + Send>(
    conn: &mut C,
    command: &str,
    key: &str,
) -> Result<Vec<String>> {
    let mut cursor = 0u64;
    let mut members = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd(command)
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await?;
        members.extend(batch.into_iter().step_by(2));
        if next == 0 {
            return Ok(members);
        }
        cursor = next;
    }
}

/// Every member of a sorted set with its score (`ZSCAN`).
async fn scan_scores<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
) -> Result<HashMap<String, f64>> {
    Ok(scan_pairs(conn, "ZSCAN", key).await?.into_iter().collect())
}

/// The existing endpoints disabled by strikes after their last change: the second look tells
/// whether by an attempt claimed before it.
async fn struck_after_change<C: ConnectionLike + Send>(
    conn: &mut C,
    k: &ShardKeys,
    disabled: &HashMap<String, String>,
    endpoints: &HashSet<String>,
) -> Result<Vec<String>> {
    let struck: Vec<&String> = disabled
        .iter()
        .filter(|(e, json)| endpoints.contains(*e) && json.contains("\"strikes\""))
        .map(|(e, _)| e)
        .collect();
    if struck.is_empty() {
        return Ok(Vec::new());
    }
    let changed: Vec<Option<i64>> = redis::cmd("HMGET")
        .arg(&k.changed)
        .arg(&struck)
        .query_async(conn)
        .await?;
    let mut found = Vec::new();
    for (e, changed) in struck.into_iter().zip(changed) {
        let at = serde_json::from_str::<Disabled>(&disabled[e]).map(|d| d.at_ms);
        if let (Some(changed), Ok(at)) = (changed, at) {
            if at > changed {
                found.push(e.clone());
            }
        }
    }
    Ok(found)
}

/// Every field and value of a hash (`HSCAN`).
async fn scan_hash<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
) -> Result<Vec<(String, String)>> {
    scan_pairs(conn, "HSCAN", key).await
}

/// Every pair a `HSCAN` or `ZSCAN` of `key` gives, cursor after cursor.
async fn scan_pairs<C: ConnectionLike + Send, V: FromRedisValue>(
    conn: &mut C,
    scan: &str,
    key: &str,
) -> Result<Vec<(String, V)>> {
    let mut cursor = 0u64;
    let mut pairs = Vec::new();
    loop {
        let (next, batch): (u64, Vec<(String, V)>) = redis::cmd(scan)
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn)
            .await?;
        pairs.extend(batch);
        if next == 0 {
            return Ok(pairs);
        }
        cursor = next;
    }
}

/// The endpoint a record header (`1 <attempts> <enqueued_ms> <endpoint>`) names, and when the
/// job was enqueued.
fn header_endpoint(header: &str) -> Option<(String, i64)> {
    let mut parts = header.split(' ');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse::<u32>().ok()?;
    let enqueued = parts.next()?.parse::<i64>().ok()?;
    let endpoint = parts.next()?;
    (!endpoint.is_empty() && parts.next().is_none()).then(|| (endpoint.to_owned(), enqueued))
}

/// `{code, detail, code, detail, …}` from a check script.
fn parse_findings(
    script: &'static str,
    reply: Vec<String>,
) -> Result<Vec<(ViolationKind, String)>> {
    if reply.len() % 2 != 0 {
        return Err(protocol(script, "odd number of entries"));
    }
    reply
        .chunks(2)
        .map(|pair| {
            ViolationKind::from_code(&pair[0])
                .map(|kind| (kind, pair[1].clone()))
                .ok_or_else(|| protocol(script, format!("unknown code {:?}", pair[0])))
        })
        .collect()
}

impl Store {
    /// Walks every shard and verifies the store's invariants; with `repair`, fixes what has one
    /// safe fix. Safe to run while workers deliver (what the walk sees out of place is looked
    /// at again atomically before it is reported), though a busy deployment makes it slower.
    pub async fn check_invariants(&self, repair: bool) -> Result<CheckReport> {
        let mut conn = self.conn().await?;
        let mut report = CheckReport {
            shards: self.shards(),
            ..CheckReport::default()
        };
        let (mut names, services) = self.key_names(&mut conn).await?;
        let mut subscriptions: Vec<(u16, String)> = Vec::new();
        for shard in 0..self.shards() {
            let names = names.remove(&shard).unwrap_or_default();
            let found = self
                .check_shard(&mut conn, shard, names, repair, &mut report)
                .await?;
            subscriptions.extend(found.into_iter().map(|e| (shard, e)));
        }
        let found = self
            .check_subscriptions(&mut conn, &subscriptions, &services, repair)
            .await?;
        report.violations.extend(found);
        Ok(report)
    }

    /// One pass over the namespace's keys: the per-endpoint keys of every shard, and the
    /// services that have a subscriber index.
    async fn key_names(
        &self,
        conn: &mut Pooled,
    ) -> Result<(BTreeMap<u16, ShardKeyNames>, Vec<String>)> {
        let ns = self.namespace();
        let mut names: BTreeMap<u16, ShardKeyNames> = BTreeMap::new();
        let mut services: Vec<String> = Vec::new();
        for key in scan_keys(&mut conn.shared(), &ns.scan_pattern()).await? {
            match ns.parse_key(&key) {
                Some(KeyName::ServiceSubscribers { slug }) => services.push(slug.to_owned()),
                Some(KeyName::Queue { shard, endpoint }) => {
                    let entry = names.entry(shard).or_default();
                    entry.queues.insert(endpoint.to_owned());
                }
                Some(KeyName::Attempts { shard, endpoint }) => {
                    let entry = names.entry(shard).or_default();
                    entry.attempt_logs.insert(endpoint.to_owned());
                }
                Some(KeyName::Subscriptions { shard, endpoint }) => {
                    let entry = names.entry(shard).or_default();
                    entry.subscriptions.insert(endpoint.to_owned());
                }
                None => {}
            }
        }
        Ok((names, services))
    }

    /// Checks one shard's jobs and endpoints into `report`; answers its existing endpoints
    /// that have subscriptions, for the check of the services' indexes.
    async fn check_shard(
        &self,
        conn: &mut Pooled,
        shard: u16,
        names: ShardKeyNames,
        repair: bool,
        report: &mut CheckReport,
    ) -> Result<Vec<String>> {
        let k = self.keys(shard).clone();
        let endpoints: Vec<String> = redis::cmd("HKEYS")
            .arg(&k.endpoints)
            .query_async(conn)
            .await?;
        report.endpoints += endpoints.len() as u64;
        let walk = self.walk_shard(conn, &k, &names).await?;
        report.jobs += walk.records.len() as u64;
        let violation = |subject: &str, (kind, detail): (ViolationKind, String)| Violation {
            kind,
            shard: Some(shard),
            subject: subject.to_owned(),
            detail,
            repaired: repair && kind.repairable(),
        };
        for (id, queues) in suspect_jobs(&walk) {
            let findings = self.check_job(conn, &k, &id, &queues, repair).await?;
            report
                .violations
                .extend(findings.into_iter().map(|f| violation(&id, f)));
        }
        let endpoints: HashSet<String> = endpoints.into_iter().collect();
        for e in self
            .suspect_endpoints(conn, &k, &walk, &names, &endpoints)
            .await?
        {
            let findings = self.check_endpoint(conn, &k, &e, repair).await?;
            report
                .violations
                .extend(findings.into_iter().map(|f| violation(&e, f)));
        }
        Ok(names
            .subscriptions
            .into_iter()
            .filter(|e| endpoints.contains(e))
            .collect())
    }

    /// Reads where every job of a shard is, its records' endpoints, leases and error lines.
    async fn walk_shard<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        k: &ShardKeys,
        names: &ShardKeyNames,
    ) -> Result<ShardWalk> {
        let mut walk = ShardWalk::default();
        let mut cursor = "0".to_owned();
        loop {
            let reply: Vec<String> = self
                .inner
                .scripts
                .scan_records
                .key(&k.jobs)
                .arg(&cursor)
                .arg(SCAN_COUNT)
                .invoke_async(conn)
                .await?;
            let mut it = reply.into_iter();
            cursor = it
                .next()
                .ok_or_else(|| protocol("scan-records", "empty reply"))?;
            while let (Some(id), Some(header)) = (it.next(), it.next()) {
                let header = header_endpoint(&header);
                if let Some((_, enqueued)) = &header {
                    walk.enqueued.insert(id.clone(), *enqueued);
                }
                walk.records.insert(id, header.map(|(e, _)| e));
            }
            if cursor == "0" {
                break;
            }
        }
        for e in &names.queues {
            let members = scan_members(conn, "ZSCAN", &k.queue(e)).await?;
            walk.queue_sizes.insert(e.clone(), members.len() as u64);
            for id in members {
                walk.places
                    .entry(id)
                    .or_default()
                    .push(Place::Queue(e.clone()));
            }
        }
        for id in scan_members(conn, "ZSCAN", &k.inflight).await? {
            walk.places
                .entry(id.clone())
                .or_default()
                .push(Place::InFlight);
            walk.in_flight.insert(id);
        }
        for id in scan_members(conn, "ZSCAN", &k.dead).await? {
            walk.places.entry(id.clone()).or_default().push(Place::Dead);
            walk.dead.insert(id);
        }
        walk.leases = scan_members(conn, "HSCAN", &k.leases)
            .await?
            .into_iter()
            .collect();
        walk.errors = scan_members(conn, "HSCAN", &k.errors)
            .await?
            .into_iter()
            .collect();
        walk.deleted = scan_hash(conn, &k.deleted)
            .await?
            .into_iter()
            .filter_map(|(e, at)| Some((e, at.parse().ok()?)))
            .collect();
        Ok(walk)
    }

    /// The endpoints of a shard whose state, as the walk read it, breaks an invariant.
    async fn suspect_endpoints<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        k: &ShardKeys,
        walk: &ShardWalk,
        names: &ShardKeyNames,
        endpoints: &HashSet<String>,
    ) -> Result<BTreeSet<String>> {
        let disabled: HashMap<String, String> =
            scan_hash(conn, &k.disabled).await?.into_iter().collect();
        let strikes: Vec<String> = redis::cmd("HKEYS")
            .arg(&k.strikes)
            .query_async(conn)
            .await?;
        let flow: Vec<String> = scan_members(conn, "HSCAN", &k.flow).await?;
        let busy: HashMap<String, i64> =
            redis::cmd("HGETALL").arg(&k.busy).query_async(conn).await?;
        let ready = scan_scores(conn, &k.ready).await?;
        let mut counted: HashMap<&str, i64> = HashMap::new();
        for id in &walk.in_flight {
            if let Some(Some(e)) = walk.records.get(id) {
                *counted.entry(e.as_str()).or_default() += 1;
            }
        }

        let mut suspects = BTreeSet::new();
        for (e, size) in &walk.queue_sizes {
            if *size > 0 && !disabled.contains_key(e) && !ready.contains_key(e) {
                suspects.insert(e.clone());
            }
        }
        for (e, score) in &ready {
            if *score >= BLOCKED && counted.get(e.as_str()).copied().unwrap_or(0) == 0 {
                suspects.insert(e.clone());
            }
        }
        let counters: BTreeSet<&str> = busy
            .keys()
            .map(String::as_str)
            .chain(counted.keys().copied())
            .collect();
        for e in counters {
            if busy.get(e).copied().unwrap_or(0) != counted.get(e).copied().unwrap_or(0) {
                suspects.insert(e.to_owned());
            }
        }
        suspects.extend(struck_after_change(conn, k, &disabled, endpoints).await?);
        let leftovers = disabled
            .keys()
            .chain(&strikes)
            .chain(&flow)
            .chain(&names.attempt_logs)
            .chain(&names.subscriptions);
        for e in leftovers {
            if !endpoints.contains(e) {
                suspects.insert(e.clone());
            }
        }
        Ok(suspects)
    }

    /// Looks again at one job in one Redis instant (`check-job-9.lua`), repairing with `repair`.
    async fn check_job<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        k: &ShardKeys,
        id: &str,
        queues: &[String],
        repair: bool,
    ) -> Result<Vec<(ViolationKind, String)>> {
        let mut call = self.inner.scripts.check_job.prepare_invoke();
        call.key(&k.jobs)
            .key(&k.inflight)
            .key(&k.leases)
            .key(&k.dead)
            .key(&k.errors)
            .key(&k.ready)
            .key(&k.disabled)
            .key(&k.deleted)
            .key(&k.endpoints)
            .arg(id)
            .arg(if repair { 1 } else { 0 });
        for e in queues {
            call.key(k.queue(e)).arg(e);
        }
        let reply: Vec<String> = call.invoke_async(conn).await?;
        parse_findings("check-job", reply)
    }

    /// Looks again at one endpoint in one Redis instant (`check-endpoint-13.lua`), repairing
    /// with `repair`.
    async fn check_endpoint<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        k: &ShardKeys,
        e: &str,
        repair: bool,
    ) -> Result<Vec<(ViolationKind, String)>> {
        let reply: Vec<String> = self
            .inner
            .scripts
            .check_endpoint
            .key(&k.endpoints)
            .key(&k.disabled)
            .key(&k.deleted)
            .key(&k.ready)
            .key(&k.busy)
            .key(&k.flow)
            .key(&k.strikes)
            .key(&k.inflight)
            .key(&k.jobs)
            .key(k.queue(e))
            .key(k.attempts(e))
            .key(k.subscriptions(e))
            .key(&k.changed)
            .arg(e)
            .arg(if repair { 1 } else { 0 })
            .invoke_async(conn)
            .await?;
        parse_findings("check-endpoint", reply)
    }

    /// Compares every existing endpoint's subscriptions with the services' subscriber indexes.
    /// The endpoint's own hash is the truth (it is written first): an index entry that differs
    /// is rewritten from it, one it does not have is removed.
    async fn check_subscriptions<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        subscriptions: &[(u16, String)],
        services: &[String],
        repair: bool,
    ) -> Result<Vec<Violation>> {
        let suspects = self
            .subscription_suspects(conn, subscriptions, services)
            .await?;
        let mut found = Vec::new();
        for (e, slug) in suspects {
            let (exists, sub, entry) = self.subscription_now(conn, &e, &slug).await?;
            let (kind, detail) = match (&sub, &entry) {
                (Some(s), Some(i)) if s == i => continue,
                (None, None) => continue,
                (Some(_), _) => (
                    ViolationKind::SubscriptionUnindexed,
                    format!("subscribes to {slug}, but the service's index does not say so"),
                ),
                (None, Some(_)) => (
                    ViolationKind::SubscriberOrphan,
                    if exists {
                        format!("listed by the index of {slug}, but does not subscribe to it")
                    } else {
                        format!("listed by the index of {slug}, but does not exist")
                    },
                ),
            };
            if repair {
                let index = self.namespace().service_subscribers(&slug);
                let mut fix = match &sub {
                    Some(_) => redis::cmd("HSET"),
                    None => redis::cmd("HDEL"),
                };
                fix.arg(&index).arg(&e);
                if let Some(s) = &sub {
                    fix.arg(s);
                }
                let _: () = fix.query_async(conn).await?;
            }
            found.push(Violation {
                kind,
                shard: None,
                subject: format!("{e} {slug}"),
                detail,
                repaired: repair,
            });
        }
        Ok(found)
    }

    /// The first look: the (endpoint, service) pairs on which the endpoints' own subscriptions
    /// and the services' indexes disagree, as scanned (the writes under way included).
    async fn subscription_suspects<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        subscriptions: &[(u16, String)],
        services: &[String],
    ) -> Result<BTreeSet<(String, String)>> {
        let ns = self.namespace();
        // (endpoint, slug) -> subscription JSON, from both sides.
        let mut own: BTreeMap<(String, String), String> = BTreeMap::new();
        for (shard, e) in subscriptions {
            for (slug, sub) in scan_hash(conn, &self.keys(*shard).subscriptions(e)).await? {
                own.insert((e.clone(), slug), sub);
            }
        }
        let mut indexed: BTreeMap<(String, String), String> = BTreeMap::new();
        for slug in services {
            for (e, sub) in scan_hash(conn, &ns.service_subscribers(slug)).await? {
                indexed.insert((e, slug.clone()), sub);
            }
        }
        let mut suspects: BTreeSet<(String, String)> = BTreeSet::new();
        for (pair, sub) in &own {
            if indexed.get(pair) != Some(sub) {
                suspects.insert(pair.clone());
            }
        }
        for pair in indexed.keys() {
            if !own.contains_key(pair) {
                suspects.insert(pair.clone());
            }
        }
        Ok(suspects)
    }

    /// The second look at one suspect pair: whether the endpoint exists, its subscription to
    /// the service, and the service index's entry for it.
    async fn subscription_now<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        e: &str,
        slug: &str,
    ) -> Result<(bool, Option<String>, Option<String>)> {
        let index = self.namespace().service_subscribers(slug);
        let (exists, sub) = match EndpointId::new(e) {
            Ok(id) => {
                let keys = self.keys_of(&id);
                let (exists, sub): (bool, Option<String>) = redis::pipe()
                    .hexists(&keys.endpoints, e)
                    .hget(keys.subscriptions(e), slug)
                    .query_async(conn)
                    .await?;
                // A subscription of an endpoint that does not exist is a leftover (its shard's
                // check reports it); the index must not list it.
                (exists, sub.filter(|_| exists))
            }
            Err(_) => (false, None),
        };
        // Another command: on a cluster the index lives in another slot.
        let entry: Option<String> = redis::cmd("HGET")
            .arg(&index)
            .arg(e)
            .query_async(conn)
            .await?;
        Ok((exists, sub, entry))
    }
}

/// The jobs of a shard that the walk saw out of place, with the queues to look at for each:
/// the one its record names first, then any other it was seen in.
fn suspect_jobs(walk: &ShardWalk) -> BTreeMap<String, Vec<String>> {
    let mut suspects: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let queues_of = |id: &str| -> Vec<String> {
        let mut queues: Vec<String> = Vec::new();
        if let Some(Some(e)) = walk.records.get(id) {
            queues.push(e.clone());
        }
        for place in walk.places.get(id).into_iter().flatten() {
            if let Place::Queue(e) = place {
                if !queues.contains(e) {
                    queues.push(e.clone());
                }
            }
        }
        queues
    };
    for (id, endpoint) in &walk.records {
        let places = walk.places.get(id).map(Vec::as_slice).unwrap_or_default();
        // Queued for its endpoint, but enqueued before the id was last deleted: the second look
        // tells whether a new owner holds the id.
        let old_owner = |e: &String| {
            walk.deleted
                .get(e)
                .zip(walk.enqueued.get(id))
                .is_some_and(|(gone, enqueued)| enqueued <= gone)
        };
        let misplaced = match places {
            [Place::Queue(e)] => endpoint.as_ref().is_some_and(|r| r != e) || old_owner(e),
            [_] => false,
            _ => true,
        };
        if misplaced {
            suspects.insert(id.clone(), queues_of(id));
        }
    }
    let unrecorded = walk
        .places
        .keys()
        .chain(&walk.leases)
        .chain(&walk.errors)
        .filter(|id| !walk.records.contains_key(*id));
    let lease_mismatch = walk
        .leases
        .symmetric_difference(&walk.in_flight)
        .chain(walk.dead.difference(&walk.errors));
    for id in unrecorded.chain(lease_mismatch) {
        if !suspects.contains_key(id) {
            suspects.insert(id.clone(), queues_of(id));
        }
    }
    suspects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_headers_name_their_endpoint() {
        assert_eq!(
            header_endpoint("1 0 1795730620162 dash-1"),
            Some(("dash-1".to_owned(), 1795730620162))
        );
        assert_eq!(header_endpoint("2 0 1 dash-1"), None);
        assert_eq!(header_endpoint("1 x 1 dash-1"), None);
        assert_eq!(header_endpoint("1 0 1 "), None);
        assert_eq!(header_endpoint("1 0 1 a b"), None);
    }

    #[test]
    fn only_out_of_place_jobs_are_suspects() {
        let mut walk = ShardWalk::default();
        let rec = |walk: &mut ShardWalk, id: &str, e: &str, places: Vec<Place>| {
            walk.records.insert(id.to_owned(), Some(e.to_owned()));
            if !places.is_empty() {
                walk.places.insert(id.to_owned(), places);
            }
        };
        rec(&mut walk, "queued", "a", vec![Place::Queue("a".into())]);
        rec(&mut walk, "flying", "a", vec![Place::InFlight]);
        walk.in_flight.insert("flying".into());
        walk.leases.insert("flying".into());
        rec(&mut walk, "buried", "a", vec![Place::Dead]);
        walk.dead.insert("buried".into());
        walk.errors.insert("buried".into());
        rec(&mut walk, "stranded", "a", vec![]);
        rec(
            &mut walk,
            "twice",
            "a",
            vec![Place::Queue("a".into()), Place::Dead],
        );
        walk.dead.insert("twice".into());
        walk.errors.insert("twice".into());
        rec(&mut walk, "misfiled", "a", vec![Place::Queue("b".into())]);
        walk.places
            .insert("ghost".into(), vec![Place::Queue("c".into())]);
        walk.leases.insert("lonely-lease".into());
        let suspects = suspect_jobs(&walk);
        let ids: Vec<&str> = suspects.keys().map(String::as_str).collect();
        assert_eq!(
            ids,
            ["ghost", "lonely-lease", "misfiled", "stranded", "twice"]
        );
        assert_eq!(suspects["misfiled"], ["a", "b"]);
        assert_eq!(suspects["ghost"], ["c"]);
        assert_eq!(suspects["stranded"], ["a"]);
    }

    #[test]
    fn every_script_code_has_a_kind() {
        for code in [
            "stranded",
            "duplicated",
            "misfiled",
            "orphan_member",
            "orphan_lease",
            "lease_missing",
            "dead_without_reason",
            "orphan_error",
            "queue_not_ready",
            "blocked_idle",
            "busy_count",
            "leftover_keys",
            "old_owner_job",
            "stale_disable",
        ] {
            let kind = ViolationKind::from_code(code).expect(code);
            assert_eq!(kind.as_str(), code);
        }
    }
}
