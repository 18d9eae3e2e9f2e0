//! Endpoints (one webhook per dashboard) and their subscriptions: configuration, enabled and
//! disabled state, strikes, parked jobs, the attempt log, and who subscribes to which service.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::{EndpointId, Subscription};
use serde::{Deserialize, Serialize};

use crate::store::{protocol, Result};
use crate::{Store, StoreError};

/// Parked jobs moved per script call when an endpoint is resumed or deleted.
const PARKED_BATCH: u64 = 1000;

/// A signing secret of an endpoint (`whsec_…`), with the time it stops signing (rotation).
/// Its `Debug` output leaves the secret out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSecret {
    pub secret: String,
    /// `None`: active until replaced. Set on the old secret when a new one is rotated in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

impl std::fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSecret")
            .field("secret", &"whsec_<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// An endpoint's configuration, as stored in its shard's `endpoints` hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub url: String,
    /// Signing secrets, newest first; several are active during a rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<EndpointSecret>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Why and when an endpoint was disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub reason: String,
    pub at_ms: i64,
    /// The strike count at the time, when strikes disabled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strikes: Option<u32>,
}

/// Everything known about one endpoint. Secrets are left out on purpose.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointState {
    pub id: String,
    pub url: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Disabled>,
    /// Consecutive failed attempts that count as strikes.
    pub strikes: u32,
    /// Jobs waiting while the endpoint is disabled.
    pub parked: u64,
    /// How many signing secrets are active.
    pub active_secrets: usize,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Service slug → subscription.
    pub subscriptions: BTreeMap<String, Subscription>,
    /// The latest attempts, newest first (as the worker logged them).
    pub attempts: Vec<serde_json::Value>,
}

/// One line of the endpoint list.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointSummary {
    pub id: String,
    pub url: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Disabled>,
    pub strikes: u32,
}

/// What setting an endpoint did.
#[derive(Debug, Clone, Serialize)]
pub struct SetEndpoint {
    pub created: bool,
    /// Parked jobs made due again by this re-activation.
    pub resumed: u64,
    pub record: EndpointRecord,
}

fn unreadable(id: &str, source: serde_json::Error) -> StoreError {
    StoreError::BadEndpoint {
        id: id.to_owned(),
        source,
    }
}

impl Store {
    /// Creates or replaces an endpoint's URL (validated by the caller) and, when `secret` is
    /// given, its signing secret; keeps the existing secrets otherwise. Re-activates a disabled
    /// endpoint: its parked jobs are due again at once.
    pub async fn set_endpoint(
        &self,
        id: &EndpointId,
        url: &str,
        secret: Option<String>,
    ) -> Result<SetEndpoint> {
        let mut conn = self.conn().await?;
        let now = self.now_ms(&mut conn).await?;
        let existing = self.endpoint(id).await?;
        let record = EndpointRecord {
            url: url.to_owned(),
            secrets: match (secret, &existing) {
                (Some(secret), _) => vec![EndpointSecret {
                    secret,
                    expires_at_ms: None,
                }],
                (None, Some(e)) => e.secrets.clone(),
                (None, None) => Vec::new(),
            },
            created_at_ms: existing.as_ref().map_or(now, |e| e.created_at_ms),
            updated_at_ms: now,
        };
        let json = serde_json::to_string(&record).expect("endpoint record serialises");
        let (created, resumed) = self.resume(id, &json).await?;
        Ok(SetEndpoint {
            created,
            resumed,
            record,
        })
    }

    /// Enables an endpoint; its parked jobs are due again at once, attempt counts kept.
    /// Returns how many parked jobs were resumed.
    pub async fn enable_endpoint(&self, id: &EndpointId) -> Result<u64> {
        Ok(self.resume(id, "").await?.1)
    }

    async fn resume(&self, id: &EndpointId, json: &str) -> Result<(bool, u64)> {
        let mut conn = self.conn().await?;
        let k = self.keys_of(id);
        let mut json = json.to_owned();
        let (mut created, mut moved) = (false, 0);
        loop {
            let reply: Vec<i64> = self
                .inner
                .scripts
                .resume
                .key(&k.endpoints)
                .key(&k.disabled)
                .key(&k.strikes)
                .key(&k.deleted)
                .key(&k.queue)
                .key(k.parked(id.as_str()))
                .arg(id.as_str())
                .arg(&json)
                .arg(PARKED_BATCH)
                .invoke_async(&mut conn)
                .await?;
            match reply.as_slice() {
                [-1] => return Err(StoreError::UnknownEndpoint(id.to_string())),
                [c, m, remaining] => {
                    created |= *c == 1;
                    moved += *m as u64;
                    json.clear();
                    if *remaining == 0 {
                        break;
                    }
                }
                other => return Err(protocol("resume", format!("{other:?}"))),
            }
        }
        if moved > 0 {
            let now = self.now_ms(&mut conn).await?;
            self.wake(&mut conn, self.shard_of(id), now).await?;
        }
        Ok((created, moved))
    }

    /// Disables an endpoint by hand. Returns false when it already was.
    pub async fn disable_endpoint(&self, id: &EndpointId, reason: &str) -> Result<bool> {
        let mut conn = self.conn().await?;
        let k = self.keys_of(id);
        let r: i64 = self
            .inner
            .scripts
            .disable
            .key(&k.endpoints)
            .key(&k.disabled)
            .arg(id.as_str())
            .arg(reason)
            .invoke_async(&mut conn)
            .await?;
        match r {
            -1 => Err(StoreError::UnknownEndpoint(id.to_string())),
            r => Ok(r == 1),
        }
    }

    /// Deletes an endpoint and its subscriptions. Its parked jobs go to the dead-letter store
    /// now, its queued ones as they come due. Returns how many parked jobs were discarded.
    pub async fn delete_endpoint(&self, id: &EndpointId) -> Result<u64> {
        let mut conn = self.conn().await?;
        let k = self.keys_of(id);
        if self.endpoint(id).await?.is_none() {
            return Err(StoreError::UnknownEndpoint(id.to_string()));
        }
        let slugs: Vec<String> = redis::cmd("HKEYS")
            .arg(k.subscriptions(id.as_str()))
            .query_async(&mut conn)
            .await?;
        for slug in &slugs {
            let _: i64 = redis::cmd("HDEL")
                .arg(self.inner.namespace.service_subscribers(slug))
                .arg(id.as_str())
                .query_async(&mut conn)
                .await?;
        }
        let mut discarded = 0;
        loop {
            let reply: Vec<i64> = self
                .inner
                .scripts
                .delete_endpoint
                .key(&k.endpoints)
                .key(&k.disabled)
                .key(&k.strikes)
                .key(&k.deleted)
                .key(k.parked(id.as_str()))
                .key(&k.dead)
                .key(&k.errors)
                .key(k.attempts(id.as_str()))
                .key(k.subscriptions(id.as_str()))
                .arg(id.as_str())
                .arg(PARKED_BATCH)
                .invoke_async(&mut conn)
                .await?;
            match reply.as_slice() {
                [_, moved, remaining] => {
                    discarded += *moved as u64;
                    if *remaining == 0 {
                        break;
                    }
                }
                other => return Err(protocol("delete-endpoint", format!("{other:?}"))),
            }
        }
        Ok(discarded)
    }

    /// An endpoint's configuration, if it exists.
    pub async fn endpoint(&self, id: &EndpointId) -> Result<Option<EndpointRecord>> {
        let mut conn = self.conn().await?;
        let raw: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(&self.keys_of(id).endpoints)
            .arg(id.as_str())
            .query_async(&mut conn)
            .await?;
        raw.map(|raw| serde_json::from_slice(&raw).map_err(|e| unreadable(id.as_str(), e)))
            .transpose()
    }

    /// Stores a changed configuration as it is (no state change); for secret rotation.
    pub async fn update_endpoint(&self, id: &EndpointId, record: &EndpointRecord) -> Result<()> {
        let mut conn = self.conn().await?;
        let json = serde_json::to_string(record).expect("endpoint record serialises");
        let _: i64 = redis::cmd("HSET")
            .arg(&self.keys_of(id).endpoints)
            .arg(id.as_str())
            .arg(json)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Everything about one endpoint, if it exists.
    pub async fn endpoint_state(
        &self,
        id: &EndpointId,
        now_ms: i64,
    ) -> Result<Option<EndpointState>> {
        let mut conn = self.conn().await?;
        let k = self.keys_of(id);
        let e = id.as_str();
        #[allow(clippy::type_complexity)]
        let (raw, disabled, strikes, parked, subs, attempts): (
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<u32>,
            u64,
            BTreeMap<String, String>,
            Vec<String>,
        ) = redis::pipe()
            .hget(&k.endpoints, e)
            .hget(&k.disabled, e)
            .hget(&k.strikes, e)
            .zcard(k.parked(e))
            .hgetall(k.subscriptions(e))
            .lrange(k.attempts(e), 0, -1)
            .query_async(&mut conn)
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        let record: EndpointRecord =
            serde_json::from_slice(&raw).map_err(|err| unreadable(e, err))?;
        let disabled: Option<Disabled> = disabled
            .map(|d| serde_json::from_slice(&d).map_err(|err| unreadable(e, err)))
            .transpose()?;
        Ok(Some(EndpointState {
            id: e.to_owned(),
            url: record.url.clone(),
            enabled: disabled.is_none(),
            disabled,
            strikes: strikes.unwrap_or(0),
            parked,
            active_secrets: record
                .secrets
                .iter()
                .filter(|s| s.expires_at_ms.is_none_or(|t| t > now_ms))
                .count(),
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
            subscriptions: subs
                .into_iter()
                .filter_map(|(slug, json)| Some((slug, serde_json::from_str(&json).ok()?)))
                .collect(),
            attempts: attempts
                .iter()
                .filter_map(|a| serde_json::from_str(a).ok())
                .collect(),
        }))
    }

    /// Every endpoint with its state in brief, sorted by id.
    pub async fn list_endpoints(&self) -> Result<Vec<EndpointSummary>> {
        let mut conn = self.conn().await?;
        let mut all = Vec::new();
        for shard in 0..self.inner.shards {
            let k = self.keys(shard);
            type Raw = BTreeMap<String, Vec<u8>>;
            let (records, disabled, strikes): (Raw, Raw, BTreeMap<String, u32>) = redis::pipe()
                .hgetall(&k.endpoints)
                .hgetall(&k.disabled)
                .hgetall(&k.strikes)
                .query_async(&mut conn)
                .await?;
            for (id, raw) in records {
                let record: EndpointRecord =
                    serde_json::from_slice(&raw).map_err(|e| unreadable(&id, e))?;
                let d = disabled
                    .get(&id)
                    .and_then(|d| serde_json::from_slice(d).ok());
                let s = strikes.get(&id).copied().unwrap_or(0);
                all.push(EndpointSummary {
                    enabled: d.is_none(),
                    id,
                    url: record.url,
                    disabled: d,
                    strikes: s,
                });
            }
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    /// Subscribes an endpoint to a service (replacing an earlier subscription to it).
    pub async fn subscribe(&self, id: &EndpointId, slug: &str, sub: &Subscription) -> Result<()> {
        if self.endpoint(id).await?.is_none() {
            return Err(StoreError::UnknownEndpoint(id.to_string()));
        }
        let mut conn = self.conn().await?;
        let json = serde_json::to_string(sub).expect("subscription serialises");
        // The service's list is what publishers read: write it last, so that a subscriber
        // is never notified without the endpoint's own list saying so.
        let _: () = redis::pipe()
            .hset(self.keys_of(id).subscriptions(id.as_str()), slug, &json)
            .ignore()
            .query_async(&mut conn)
            .await?;
        let _: () = redis::pipe()
            .hset(
                self.inner.namespace.service_subscribers(slug),
                id.as_str(),
                &json,
            )
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Removes a subscription. Returns false when there was none.
    pub async fn unsubscribe(&self, id: &EndpointId, slug: &str) -> Result<bool> {
        let mut conn = self.conn().await?;
        let a: i64 = redis::cmd("HDEL")
            .arg(self.inner.namespace.service_subscribers(slug))
            .arg(id.as_str())
            .query_async(&mut conn)
            .await?;
        let b: i64 = redis::cmd("HDEL")
            .arg(self.keys_of(id).subscriptions(id.as_str()))
            .arg(slug)
            .query_async(&mut conn)
            .await?;
        Ok(a + b > 0)
    }

    /// The subscribers of one service: endpoint id → subscription.
    pub async fn subscribers(&self, slug: &str) -> Result<BTreeMap<String, Subscription>> {
        let mut conn = self.conn().await?;
        let raw: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(self.inner.namespace.service_subscribers(slug))
            .query_async(&mut conn)
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, json)| Some((id, serde_json::from_str(&json).ok()?)))
            .collect())
    }

    /// How long a secret replaced by rotation keeps signing, by default.
    pub const ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);
}
