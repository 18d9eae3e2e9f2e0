//! Paged listings over hashes that may be large: endpoints with their health, the
//! subscriptions of an endpoint, the subscribers of a service. Pages follow `HSCAN` cursors, so
//! no call loads a whole hash; like `HSCAN`, a listing returns every entry present from its
//! first page to its last at least once, in no particular order (each page is sorted by id).

use std::fmt;
use std::str::FromStr;

use herald_core::{EndpointId, Subscription};
use redis::FromRedisValue;
use serde::Serialize;

use crate::connection::{run_split, Pooled};
use crate::endpoints::{Disabled, EndpointRecord, Limits};
use crate::error::{protocol, Result};
use crate::{Store, StoreError};

/// Most `HSCAN` calls one page makes: with a search that matches rarely, a page comes back
/// short (even empty) with a cursor rather than scanning every shard in one request.
const MOST_SCANS: usize = 16;

/// Most entries a page may ask for.
pub const MAX_PAGE: usize = 1000;

/// A position in a listing that scans the shards one after the other: the shard, and the
/// `HSCAN` cursor within it. Its text form (`<shard>.<cursor>`) is what clients hand back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanCursor {
    pub shard: u16,
    pub scan: u64,
}

impl fmt::Display for ScanCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.shard, self.scan)
    }
}

impl FromStr for ScanCursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        let bad =
            || StoreError::InvalidArgument(format!("cursor {s:?} is not one this listing gave"));
        let (shard, scan) = s.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            shard: shard.parse().map_err(|_| bad())?,
            scan: scan.parse().map_err(|_| bad())?,
        })
    }
}

/// A page of a listing, and where the next one starts (`None`: the listing is complete). A
/// page may hold fewer entries than asked for, even none, while the cursor is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// Which endpoints a listing shows, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    #[default]
    Any,
    Enabled,
    Disabled,
}

impl FromStr for StatusFilter {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" | "any" => Ok(Self::Any),
            "enabled" => Ok(Self::Enabled),
            "disabled" => Ok(Self::Disabled),
            other => Err(StoreError::InvalidArgument(format!(
                "status {other:?} is not one of any, enabled, disabled"
            ))),
        }
    }
}

/// Which endpoints a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointQuery {
    /// Endpoints whose id contains this text (case-insensitive).
    pub search: Option<String>,
    pub status: StatusFilter,
}

/// One line of the endpoint listing: what an operator looks at first.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointHealth {
    pub id: String,
    pub url: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Disabled>,
    /// Consecutive failed attempts that count as strikes.
    pub strikes: u32,
    /// Jobs in its queue (due, scheduled, or parked while it is disabled).
    pub queued: u64,
    pub limits: Limits,
    /// The latest attempt logged, as the worker logged it.
    pub last_attempt: Option<serde_json::Value>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A `MATCH` pattern for ids containing `text`, letters in either case; `None` when no id can
/// contain it (ids are letters, digits, `.`, `_`, `-`, `:`).
fn id_pattern(text: &str) -> Option<String> {
    let mut pattern = String::from("*");
    for c in text.chars() {
        match c {
            c if c.is_ascii_alphabetic() => {
                pattern.push('[');
                pattern.push(c.to_ascii_lowercase());
                pattern.push(c.to_ascii_uppercase());
                pattern.push(']');
            }
            c if c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | ':') => pattern.push(c),
            _ => return None,
        }
    }
    pattern.push('*');
    Some(pattern)
}

/// `HSCAN key cursor [MATCH pattern] COUNT count`, as (next cursor, field and value pairs).
async fn hscan(
    conn: &mut Pooled,
    key: &str,
    cursor: u64,
    pattern: Option<&str>,
    count: usize,
) -> Result<(u64, Vec<(String, Vec<u8>)>)> {
    let mut cmd = redis::cmd("HSCAN");
    cmd.arg(key).arg(cursor);
    if let Some(p) = pattern {
        cmd.arg("MATCH").arg(p);
    }
    cmd.arg("COUNT").arg(count);
    let (next, flat): (u64, Vec<Vec<u8>>) = cmd.query_async(conn).await?;
    if flat.len() % 2 != 0 {
        return Err(protocol("hscan", "odd reply"));
    }
    let mut pairs = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(field), Some(value)) = (it.next(), it.next()) {
        pairs.push((String::from_utf8_lossy(&field).into_owned(), value));
    }
    Ok((next, pairs))
}

fn check_limit(limit: usize) -> Result<()> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "limit {limit} must be between 1 and {MAX_PAGE}"
        )))
    }
}

fn subscriptions_of(pairs: Vec<(String, Vec<u8>)>) -> Vec<(String, Subscription)> {
    let mut items: Vec<(String, Subscription)> = pairs
        .into_iter()
        .filter_map(|(name, json)| Some((name, serde_json::from_slice(&json).ok()?)))
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items
}

impl Store {
    /// One page of endpoints with their health, starting at `after` (the cursor of the
    /// previous page of the same query) or at the first shard. About `limit` entries (1 to
    /// 1000; `HSCAN` hands small hashes back whole), sorted by id within the page.
    pub async fn endpoint_page(
        &self,
        query: &EndpointQuery,
        after: Option<ScanCursor>,
        limit: usize,
    ) -> Result<Page<EndpointHealth, ScanCursor>> {
        check_limit(limit)?;
        let pattern = match query.search.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => match id_pattern(text) {
                Some(p) => Some(p),
                None => {
                    return Ok(Page {
                        items: Vec::new(),
                        next: None,
                    })
                }
            },
        };
        let mut cursor = after.unwrap_or(ScanCursor { shard: 0, scan: 0 });
        if cursor.shard >= self.inner.shards {
            return Err(StoreError::InvalidArgument(format!(
                "cursor {cursor} is not one this listing gave"
            )));
        }
        let mut conn = self.conn().await?;
        let mut found: Vec<(u16, String)> = Vec::new();
        let mut next = Some(cursor);
        for _ in 0..MOST_SCANS {
            let k = self.keys(cursor.shard);
            let key = match query.status {
                StatusFilter::Disabled => &k.disabled,
                StatusFilter::Any | StatusFilter::Enabled => &k.endpoints,
            };
            let (scan, pairs) =
                hscan(&mut conn, key, cursor.scan, pattern.as_deref(), limit).await?;
            found.extend(pairs.into_iter().map(|(id, _)| (cursor.shard, id)));
            next = if scan != 0 {
                Some(ScanCursor {
                    shard: cursor.shard,
                    scan,
                })
            } else if cursor.shard + 1 < self.inner.shards {
                Some(ScanCursor {
                    shard: cursor.shard + 1,
                    scan: 0,
                })
            } else {
                None
            };
            match next {
                Some(n) if found.len() < limit => cursor = n,
                _ => break,
            }
        }
        let mut items = self.health_of(&mut conn, found).await?;
        if query.status == StatusFilter::Enabled {
            items.retain(|e| e.enabled);
        }
        items.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Page { items, next })
    }

    /// The health of the endpoints found by a scan, read in one pipelined round trip.
    async fn health_of(
        &self,
        conn: &mut Pooled,
        found: Vec<(u16, String)>,
    ) -> Result<Vec<EndpointHealth>> {
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now_ms(conn).await?;
        let mut cmds: Vec<(String, redis::Cmd)> = Vec::with_capacity(7 * found.len());
        for (shard, id) in &found {
            let k = self.keys(*shard);
            let route = || k.endpoints.clone();
            cmds.push((route(), redis::Cmd::hget(&k.endpoints, id)));
            cmds.push((route(), redis::Cmd::hget(&k.disabled, id)));
            cmds.push((route(), redis::Cmd::hget(&k.strikes, id)));
            cmds.push((route(), redis::Cmd::hget(&k.flow, id)));
            cmds.push((route(), redis::Cmd::hget(&k.busy, id)));
            cmds.push((route(), redis::Cmd::zcard(k.queue(id))));
            cmds.push((route(), redis::Cmd::lindex(k.attempts(id), 0)));
        }
        let replies = run_split(&conn.shared(), cmds).await?;
        let bad = || protocol("endpoint page", "short reply");
        let mut replies = replies.into_iter();
        let mut items = Vec::with_capacity(found.len());
        for (_, id) in found {
            let mut next = || replies.next().ok_or_else(bad);
            let raw: Option<Vec<u8>> = FromRedisValue::from_redis_value(next()?)?;
            let disabled: Option<Vec<u8>> = FromRedisValue::from_redis_value(next()?)?;
            let strikes: Option<u32> = FromRedisValue::from_redis_value(next()?)?;
            let flow: Option<String> = FromRedisValue::from_redis_value(next()?)?;
            let busy: Option<i64> = FromRedisValue::from_redis_value(next()?)?;
            let queued: u64 = FromRedisValue::from_redis_value(next()?)?;
            let last: Option<String> = FromRedisValue::from_redis_value(next()?)?;
            // Deleted since the scan saw it.
            let Some(raw) = raw else { continue };
            let record: EndpointRecord =
                serde_json::from_slice(&raw).map_err(|source| StoreError::BadEndpoint {
                    id: id.clone(),
                    source,
                })?;
            let disabled: Option<Disabled> = disabled.and_then(|d| serde_json::from_slice(&d).ok());
            let limits = Limits::parse(
                &record,
                flow.as_deref(),
                busy.unwrap_or(0).max(0) as u64,
                now,
            );
            items.push(EndpointHealth {
                url: record.url,
                enabled: disabled.is_none(),
                disabled,
                strikes: strikes.unwrap_or(0),
                queued,
                limits,
                last_attempt: last.and_then(|a| serde_json::from_str(&a).ok()),
                created_at_ms: record.created_at_ms,
                updated_at_ms: record.updated_at_ms,
                id,
            });
        }
        Ok(items)
    }

    /// One page of the services an endpoint subscribes to (service slug, subscription),
    /// starting at `after` (`HSCAN` cursor; 0 or `None` for the first page).
    pub async fn subscription_page(
        &self,
        id: &EndpointId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<(String, Subscription), u64>> {
        check_limit(limit)?;
        let mut conn = self.conn().await?;
        let key = self.keys_of(id).subscriptions(id.as_str());
        let (next, pairs) = hscan(&mut conn, &key, after.unwrap_or(0), None, limit).await?;
        Ok(Page {
            items: subscriptions_of(pairs),
            next: (next != 0).then_some(next),
        })
    }

    /// One page of the endpoints subscribed to a service (endpoint id, subscription), starting
    /// at `after` (`HSCAN` cursor; 0 or `None` for the first page).
    pub async fn subscriber_page(
        &self,
        slug: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<(String, Subscription), u64>> {
        check_limit(limit)?;
        let mut conn = self.conn().await?;
        let key = self.inner.namespace.service_subscribers(slug);
        let (next, pairs) = hscan(&mut conn, &key, after.unwrap_or(0), None, limit).await?;
        Ok(Page {
            items: subscriptions_of(pairs),
            next: (next != 0).then_some(next),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_patterns_ignore_case_and_refuse_what_no_id_holds() {
        assert_eq!(
            id_pattern("Dash-1").as_deref(),
            Some("*[dD][aA][sS][hH]-1*")
        );
        assert_eq!(id_pattern("a*").as_deref(), None);
        assert_eq!(id_pattern("[x]"), None);
    }

    #[test]
    fn scan_cursors_round_trip() {
        let c = ScanCursor {
            shard: 3,
            scan: 1234,
        };
        assert_eq!(c.to_string().parse::<ScanCursor>().unwrap(), c);
        for bad in ["", "3", "x.1", "3.y", "70000.1"] {
            assert!(bad.parse::<ScanCursor>().is_err(), "{bad}");
        }
        assert_eq!("any".parse::<StatusFilter>().unwrap(), StatusFilter::Any);
        assert!("off".parse::<StatusFilter>().is_err());
    }
}
