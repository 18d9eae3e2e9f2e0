//! The dead-letter store by filter: pages of it, newest first, filtered by endpoint, reason and
//! time range, with a cursor; and replay or purge of everything a filter matches. Each shard is
//! walked by `dead-page-3.lua` from a position on, a bounded number of entries per call, so no
//! call loads a whole set or holds Redis for long.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use herald_core::EndpointId;
use redis::{FromRedisValue, Script, Value};
use serde::Serialize;

use crate::admin::JobState;
use crate::connection::{run_split, Pooled};
use crate::error::{protocol, Result};
use crate::record::JobRecord;
use crate::{Store, StoreError};

/// `dead-page-3.lua`, loaded once per process (`redis::Script` reloads it after a restart).
static DEAD_PAGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../scripts/dead-page-3.lua")));

/// Most entries a page examines across all shards, matching or not: with a filter that matches
/// rarely, a page comes back short (even empty) with a cursor, rather than walking the whole
/// store in one request. About 2 µs of Redis time each (`herald-bench api`).
const PAGE_EXAMINE: usize = 1024;

/// Matches per batch of a replay or purge by filter.
const BATCH: usize = 500;

/// Longest reason filter accepted.
const MAX_REASON_FILTER: usize = 200;

/// Which dead letters a listing, replay or purge is about. Every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadFilter {
    /// Jobs of this endpoint.
    pub endpoint: Option<EndpointId>,
    /// Jobs whose reason contains this text (case-insensitive).
    pub reason: Option<String>,
    /// Discarded at or after this time (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Discarded at or before this time (ms since the Unix epoch).
    pub until_ms: Option<i64>,
}

/// Reads a time as operators write it: RFC 3339 (`2026-03-01T12:00:00Z`, any offset), or
/// milliseconds since the Unix epoch.
fn parse_time(name: &str, text: &str) -> Result<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        if ms >= 0 {
            return Ok(ms);
        }
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            StoreError::InvalidArgument(format!(
                "{name} {text:?} is not a time such as 2026-03-01T12:00:00Z (RFC 3339) or milliseconds since the Unix epoch: {e}"
            ))
        })
}

impl DeadFilter {
    /// A filter from the text operators give (command-line flags, query parameters); each
    /// `None` or empty text sets no condition. Refuses an invalid endpoint id, a time that does
    /// not parse, and a range that ends before it starts.
    pub fn from_text(
        endpoint: Option<&str>,
        reason: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Self> {
        fn given(t: Option<&str>) -> Option<&str> {
            t.map(str::trim).filter(|t| !t.is_empty())
        }
        let filter = Self {
            endpoint: given(endpoint)
                .map(EndpointId::new)
                .transpose()
                .map_err(|e| StoreError::InvalidArgument(e.to_string()))?,
            reason: given(reason).map(str::to_owned),
            since_ms: given(since).map(|t| parse_time("since", t)).transpose()?,
            until_ms: given(until).map(|t| parse_time("until", t)).transpose()?,
        };
        filter.check()?;
        Ok(filter)
    }

    /// True when the filter holds no condition: it matches the whole store.
    pub fn is_empty(&self) -> bool {
        self.endpoint.is_none()
            && self.reason.is_none()
            && self.since_ms.is_none()
            && self.until_ms.is_none()
    }

    fn check(&self) -> Result<()> {
        if let Some(reason) = &self.reason {
            if reason.is_empty() || reason.len() > MAX_REASON_FILTER {
                return Err(StoreError::InvalidArgument(format!(
                    "the reason filter must be 1 to {MAX_REASON_FILTER} bytes"
                )));
            }
        }
        if let (Some(since), Some(until)) = (self.since_ms, self.until_ms) {
            if since > until {
                return Err(StoreError::InvalidArgument(
                    "the time range ends before it starts (since is after until)".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A position in the dead-letter listing: the last entry a page covered. Its text form
/// (`<discard ms>.<job id>`) is what clients hand back to get the next page.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadCursor {
    pub at_ms: i64,
    pub id: String,
}

impl DeadCursor {
    /// True when an entry at `at_ms` with `id` comes at or before this position in the
    /// listing (time descending, then id descending).
    fn covers(&self, at_ms: i64, id: &str) -> bool {
        at_ms > self.at_ms || (at_ms == self.at_ms && id >= self.id.as_str())
    }
}

impl fmt::Display for DeadCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.at_ms, self.id)
    }
}

impl FromStr for DeadCursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        let bad =
            || StoreError::InvalidArgument(format!("cursor {s:?} is not one this listing gave"));
        let (at, id) = s.split_once('.').ok_or_else(bad)?;
        let at_ms: i64 = at.parse().map_err(|_| bad())?;
        if at_ms < 0 || id.is_empty() || id.len() > 128 || id.bytes().any(|b| !b.is_ascii_graphic())
        {
            return Err(bad());
        }
        Ok(Self {
            at_ms,
            id: id.to_owned(),
        })
    }
}

/// One entry of the dead-letter listing: a job in state `dead`, with the fields of
/// [`JobInfo`](crate::JobInfo) that a listing needs. The payload is left out; [`Store::job`]
/// has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub shard: u16,
    /// Always [`JobState::Dead`].
    pub state: JobState,
    /// `None` when the job record is missing or unreadable.
    pub endpoint: Option<String>,
    pub attempts: Option<u32>,
    pub enqueued_at_ms: Option<i64>,
    pub dead_at_ms: i64,
    /// Why it was discarded.
    pub last_error: Option<String>,
}

/// One page of the dead-letter listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadPage {
    pub items: Vec<DeadLetter>,
    /// Where the next page starts; `None` when the listing is complete. A page may hold fewer
    /// entries than asked for (even none) while the cursor is set: the filter matched rarely
    /// in the part of the store this page examined.
    pub next: Option<DeadCursor>,
}

/// What one shard's walk found.
struct ShardWalk {
    /// The last entry examined, unless the shard's range was examined to its end.
    stopped_at: Option<DeadCursor>,
    matches: Vec<DeadLetter>,
}

fn parse_walk(shard: u16, reply: Value) -> Result<ShardWalk> {
    let bad = |what: &str| protocol("dead-page", what.to_owned());
    let Value::Array(items) = reply else {
        return Err(bad("not an array"));
    };
    if items.len() < 3 || (items.len() - 3) % 4 != 0 {
        return Err(bad("wrong reply length"));
    }
    let mut it = items.into_iter();
    let mut next = || it.next().ok_or_else(|| bad("short reply"));
    let done = i64::from_redis_value(next()?)? == 1;
    let last_at = String::from_redis_value(next()?)?;
    let last_id = String::from_redis_value(next()?)?;
    let stopped_at = if done {
        None
    } else {
        Some(DeadCursor {
            at_ms: parse_ms(&last_at).ok_or_else(|| bad("bad time"))?,
            id: last_id,
        })
    };
    let mut matches = Vec::new();
    loop {
        let Ok(id) = next() else { break };
        let id = String::from_redis_value(id)?;
        let at = String::from_redis_value(next()?)?;
        let header = Vec::<u8>::from_redis_value(next()?)?;
        let reason = Vec::<u8>::from_redis_value(next()?)?;
        let record = (!header.is_empty())
            .then(|| JobRecord::parse(&[header.as_slice(), b"\n"].concat()))
            .flatten();
        matches.push(DeadLetter {
            id,
            shard,
            state: JobState::Dead,
            endpoint: record.as_ref().map(|r| r.endpoint.clone()),
            attempts: record.as_ref().map(|r| r.attempts),
            enqueued_at_ms: record.as_ref().map(|r| r.enqueued_ms),
            dead_at_ms: parse_ms(&at).ok_or_else(|| bad("bad time"))?,
            last_error: (!reason.is_empty()).then(|| String::from_utf8_lossy(&reason).into_owned()),
        });
    }
    Ok(ShardWalk {
        stopped_at,
        matches,
    })
}

/// What a walk reads of each entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// Its position only (discard time and id).
    Positions,
    /// Its record's header and its reason too.
    Entries,
}

/// The first `limit` matches of several shards' walks, in listing order, and where the next
/// page starts.
fn merge(walks: Vec<ShardWalk>, limit: usize) -> DeadPage {
    let mut matches = Vec::new();
    // The earliest position in the listing where a shard stopped: past it, a shard may hold
    // entries no walk examined yet.
    let mut frontier: Option<DeadCursor> = None;
    for walk in walks {
        matches.extend(walk.matches);
        if let Some(stop) = walk.stopped_at {
            if frontier.as_ref().is_none_or(|f| stop > *f) {
                frontier = Some(stop);
            }
        }
    }
    if let Some(f) = &frontier {
        matches.retain(|m| f.covers(m.dead_at_ms, &m.id));
    }
    matches.sort_by(|a, b| {
        b.dead_at_ms
            .cmp(&a.dead_at_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    let next = if matches.len() > limit {
        matches.truncate(limit);
        matches.last().map(|m| DeadCursor {
            at_ms: m.dead_at_ms,
            id: m.id.clone(),
        })
    } else {
        frontier
    };
    DeadPage {
        items: matches,
        next,
    }
}

/// A score as Redis prints it (`1700000000000`, or `1.7e+12` past 17 digits).
fn parse_ms(text: &str) -> Option<i64> {
    text.parse::<i64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().map(|f| f as i64))
}

/// Runs one script call per shard (each with a key of its shard) in one pipelined round trip,
/// split by slot on a cluster, loading the script and running again if Redis lost its script
/// cache.
pub(crate) async fn eval_per_shard(
    conn: &mut Pooled,
    script: &Script,
    calls: Vec<(String, redis::Cmd)>,
) -> Result<Vec<Value>> {
    let shared = conn.shared();
    match run_split(&shared, calls.clone()).await {
        Err(StoreError::Redis(e))
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
        {
            script.load_async(conn).await?;
            run_split(&shared, calls).await
        }
        other => other,
    }
}

impl Store {
    /// One page of the dead letters that `filter` matches, newest first, starting after
    /// `after` (a cursor of the previous page of the same filter) or at the newest.
    ///
    /// At most `limit` entries (1 to 1000); every shard is walked from the same position, and
    /// a page never examines more than a few thousand entries in all, so it answers in bounded
    /// time whatever the size of the store.
    pub async fn dead_page(
        &self,
        filter: &DeadFilter,
        after: Option<&DeadCursor>,
        limit: usize,
    ) -> Result<DeadPage> {
        if !(1..=1000).contains(&limit) {
            return Err(StoreError::InvalidArgument(format!(
                "limit {limit} must be between 1 and 1000"
            )));
        }
        filter.check()?;
        if filter.endpoint.is_none() && filter.reason.is_none() {
            return self.page_by_position(filter, after, limit).await;
        }
        let examine = limit.max(PAGE_EXAMINE / usize::from(self.inner.shards));
        self.walk(filter, after, limit, examine).await
    }

    async fn walk(
        &self,
        filter: &DeadFilter,
        after: Option<&DeadCursor>,
        limit: usize,
        examine: usize,
    ) -> Result<DeadPage> {
        let wants = vec![Some(limit); usize::from(self.inner.shards)];
        let walks = self
            .walk_shards(filter, after, &wants, examine, Reads::Entries)
            .await?;
        Ok(merge(walks, limit))
    }

    /// A page without conditions on endpoint or reason, in two steps: the positions of the
    /// page's entries first (every shard's next `limit`, positions only, merged), then the
    /// entries themselves, from the shards that hold them and no more of them. When the store
    /// changed in between (an entry discarded, replayed or purged), the page is read in one
    /// step instead.
    async fn page_by_position(
        &self,
        filter: &DeadFilter,
        after: Option<&DeadCursor>,
        limit: usize,
    ) -> Result<DeadPage> {
        let shards = usize::from(self.inner.shards);
        let positions = merge(
            self.walk_shards(
                filter,
                after,
                &vec![Some(limit); shards],
                limit,
                Reads::Positions,
            )
            .await?,
            limit,
        );
        let mut wants = vec![None; shards];
        for item in &positions.items {
            *wants[usize::from(item.shard)].get_or_insert(0) += 1;
        }
        let most = wants.iter().flatten().copied().max().unwrap_or(0);
        if most == 0 {
            return Ok(positions);
        }
        let walks = self
            .walk_shards(filter, after, &wants, most, Reads::Entries)
            .await?;
        let items: Vec<DeadLetter> = walks.into_iter().flat_map(|w| w.matches).collect();
        let same = items.len() == positions.items.len()
            && items.iter().all(|i| {
                positions
                    .items
                    .iter()
                    .any(|p| p.id == i.id && p.shard == i.shard)
            });
        if !same {
            return self.walk(filter, after, limit, limit).await;
        }
        let mut page = merge(
            vec![ShardWalk {
                stopped_at: None,
                matches: items,
            }],
            limit,
        );
        page.next = positions.next;
        Ok(page)
    }

    /// Runs `dead-page-3.lua` on every shard whose want is set (at most that many matches, at
    /// most `examine` entries examined), in one pipelined round trip.
    async fn walk_shards(
        &self,
        filter: &DeadFilter,
        after: Option<&DeadCursor>,
        wants: &[Option<usize>],
        examine: usize,
        reads: Reads,
    ) -> Result<Vec<ShardWalk>> {
        // The start: the cursor, or the end of the range; a cursor later than the range's end
        // (another filter's) starts at the range's end.
        let (hi, after_id) = match (after, filter.until_ms) {
            (Some(c), Some(until)) if until < c.at_ms => (until.to_string(), String::new()),
            (Some(c), _) => (c.at_ms.to_string(), c.id.clone()),
            (None, Some(until)) => (until.to_string(), String::new()),
            (None, None) => ("+inf".to_owned(), String::new()),
        };
        let lo = filter
            .since_ms
            .map_or_else(|| "-inf".to_owned(), |t| t.to_string());
        let endpoint = filter.endpoint.as_ref().map_or("", |e| e.as_str());
        let reason = filter
            .reason
            .as_deref()
            .map(str::to_lowercase)
            .unwrap_or_default();
        let asked: Vec<(u16, usize)> = (0..self.inner.shards)
            .zip(wants)
            .filter_map(|(shard, want)| want.map(|w| (shard, w)))
            .collect();
        let calls = asked
            .iter()
            .map(|(shard, want)| {
                let k = self.keys(*shard);
                let mut cmd = redis::cmd("EVALSHA");
                let route = k.dead.clone();
                cmd.arg(DEAD_PAGE.get_hash())
                    .arg(3)
                    .arg(&k.dead)
                    .arg(&k.jobs)
                    .arg(&k.errors)
                    .arg(&hi)
                    .arg(&after_id)
                    .arg(&lo)
                    .arg(endpoint)
                    .arg(&reason)
                    .arg(*want)
                    .arg(examine.max(*want))
                    .arg(match reads {
                        Reads::Positions => "1",
                        Reads::Entries => "0",
                    });
                (route, cmd)
            })
            .collect();
        let mut conn = self.conn().await?;
        let replies = eval_per_shard(&mut conn, &DEAD_PAGE, calls).await?;
        asked
            .iter()
            .zip(replies)
            .map(|((shard, _), reply)| parse_walk(*shard, reply))
            .collect()
    }

    /// Every dead letter `filter` matches, batch by batch, handed to `act` (shard, ids), which
    /// answers how many it took care of. Returns the sum.
    async fn for_each_matching<F, Fut>(&self, filter: &DeadFilter, mut act: F) -> Result<u64>
    where
        F: FnMut(u16, Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<u64>>,
    {
        filter.check()?;
        let mut done = 0;
        let mut cursor = None;
        loop {
            let page = self.walk(filter, cursor.as_ref(), BATCH, BATCH * 4).await?;
            let mut by_shard: BTreeMap<u16, Vec<String>> = BTreeMap::new();
            for item in page.items {
                by_shard.entry(item.shard).or_default().push(item.id);
            }
            for (shard, ids) in by_shard {
                done += act(shard, ids).await?;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(done),
            }
        }
    }

    /// How many dead letters `filter` matches now (every one, with an empty filter): what a
    /// bulk replay or purge of it would take, for a confirmation to name.
    pub async fn dead_count_matching(&self, filter: &DeadFilter) -> Result<u64> {
        if filter.is_empty() {
            return Ok(self.stats().await?.total.dead);
        }
        self.for_each_matching(filter, |_, ids| async move { Ok(ids.len() as u64) })
            .await
    }

    /// Replays every dead letter `filter` matches (as [`Store::dead_replay`]: due at once,
    /// attempt count reset). Entries that are discarded again meanwhile are newer than the
    /// walk's position and are not replayed twice. Returns how many were replayed.
    pub async fn dead_replay_matching(&self, filter: &DeadFilter) -> Result<u64> {
        self.for_each_matching(filter, |shard, ids| async move {
            let mut conn = self.conn().await?;
            self.replay_in(&mut conn, shard, &ids).await
        })
        .await
    }

    /// Deletes every dead letter `filter` matches, for good. Returns how many were deleted.
    pub async fn dead_purge_matching(&self, filter: &DeadFilter) -> Result<u64> {
        self.for_each_matching(filter, |shard, ids| async move {
            let mut conn = self.conn().await?;
            let k = self.keys(shard);
            let flags: Vec<i64> = self
                .inner
                .scripts
                .purge
                .key(&k.dead)
                .key(&k.jobs)
                .key(&k.errors)
                .arg(&ids)
                .invoke_async(&mut conn)
                .await?;
            Ok(flags.iter().filter(|f| **f == 1).count() as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = DeadCursor {
            at_ms: 1_700_000_000_123,
            id: "01HX.Y".into(),
        };
        assert_eq!(c.to_string().parse::<DeadCursor>().unwrap(), c);
        for bad in ["", "x", "12", "x.id", "-1.id", "12.", "12.a b"] {
            assert!(bad.parse::<DeadCursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cursor_covers_what_comes_before_it() {
        let c = DeadCursor {
            at_ms: 10,
            id: "M".into(),
        };
        assert!(c.covers(11, "A"));
        assert!(c.covers(10, "M"));
        assert!(c.covers(10, "Z"));
        assert!(!c.covers(10, "A"));
        assert!(!c.covers(9, "Z"));
    }

    #[test]
    fn filters_read_from_text() {
        let f = DeadFilter::from_text(
            Some("dash-1"),
            Some(" "),
            Some("2026-03-01T12:00:00+02:00"),
            Some("1772366400000"),
        )
        .unwrap();
        assert_eq!(f.endpoint.unwrap().as_str(), "dash-1");
        assert_eq!(f.reason, None);
        assert_eq!(f.since_ms, Some(1_772_359_200_000));
        assert_eq!(f.until_ms, Some(1_772_366_400_000));
        let err = DeadFilter::from_text(None, None, Some("yesterday"), None).unwrap_err();
        assert!(err.to_string().contains("since \"yesterday\""), "{err}");
        assert!(DeadFilter::from_text(Some("a b"), None, None, None).is_err());
        assert!(DeadFilter::from_text(None, None, Some("2"), Some("1")).is_err());
        assert!(DeadFilter::from_text(None, None, None, None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn filters_refuse_an_empty_reason_and_a_reversed_range() {
        assert!(DeadFilter::default().is_empty());
        let reason = DeadFilter {
            reason: Some(String::new()),
            ..DeadFilter::default()
        };
        assert!(reason.check().is_err());
        let reversed = DeadFilter {
            since_ms: Some(2),
            until_ms: Some(1),
            ..DeadFilter::default()
        };
        assert!(reversed.check().unwrap_err().to_string().contains("since"));
    }
}
