//! Endpoints (one webhook per dashboard) and their subscriptions: configuration, flow control
//! (in-flight limit, rate, adaptive limit, pause), enabled and disabled state, strikes, parked
//! jobs, the attempt log, and who subscribes to which service.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_core::{EndpointId, Rate, Subscription, DEFAULT_MAX_IN_FLIGHT};
use serde::{Deserialize, Serialize};

use crate::error::{protocol, Result};
use crate::{Store, StoreError};

/// The longest reason an operator may give for disabling an endpoint, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// Queued jobs moved per script call when an endpoint is deleted.
const DELETE_BATCH: u64 = 1000;

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
    /// Most deliveries in flight at once across the fleet; [`DEFAULT_MAX_IN_FLIGHT`] if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Most deliveries per second, minute or hour across the fleet; none if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

impl EndpointRecord {
    /// The in-flight limit in force when nothing holds the endpoint back.
    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT)
    }

    /// The flow settings as `resume-8.lua` takes them: `<max> <interval_ms> <burst>`.
    fn flow_settings(&self) -> String {
        match &self.rate {
            Some(rate) => format!(
                "{} {} {}",
                self.max_in_flight(),
                rate.interval_ms(),
                rate.burst()
            ),
            None => format!("{} 0 1", self.max_in_flight()),
        }
    }
}

/// A change of an endpoint's flow settings; `None` keeps what is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowChange {
    pub max_in_flight: Option<u32>,
    /// `Some(None)` removes the rate limit.
    pub rate: Option<Option<Rate>>,
}

/// An endpoint's flow control as it stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// The configured in-flight limit.
    pub max_in_flight: u32,
    /// The adaptive limit in force (1 ..= `max_in_flight`): lower while the receiver struggles.
    pub current_limit: u32,
    /// Deliveries in flight now, fleet-wide.
    pub in_flight: u64,
    pub rate: Option<Rate>,
    /// Until when a `Retry-After` pauses the endpoint (ms), if it does now.
    pub paused_until_ms: Option<i64>,
    /// Judged slow: a delivery to it outlasted the workers' `HERALD_SLOW_AFTER` and none has
    /// come back quicker since, so it is served from the workers' slow lanes only.
    pub slow: bool,
}

impl Limits {
    /// Reads a `flow` hash entry (`<max> <interval_ms> <burst> <cwnd> <cut_ms> <tat_ms>
    /// <paused_ms> [<slow>]`, see `scripts/prelude/flow.lua`).
    pub(crate) fn parse(
        record: &EndpointRecord,
        flow: Option<&str>,
        in_flight: u64,
        now_ms: i64,
    ) -> Self {
        let max = record.max_in_flight();
        let (cwnd, paused, slow) = match flow.and_then(FlowState::parse) {
            Some(f) => (f.cwnd, f.paused_ms, f.slow),
            None => (f64::from(max), 0, false),
        };
        Limits {
            max_in_flight: max,
            current_limit: (cwnd.floor() as u32).clamp(1, max),
            in_flight,
            rate: record.rate,
            paused_until_ms: (paused > now_ms).then_some(paused),
            slow,
        }
    }
}

/// What the store's readers take from an endpoint's `flow` entry in its long form (`<max>
/// <interval_ms> <burst> <cwnd> <cut_ms> <tat_ms> <paused_ms> [<slow>]`, see
/// `scripts/prelude/flow.lua`); the short form `<max>` has none of them set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FlowState {
    /// The adaptive limit.
    pub cwnd: f64,
    /// Until when a `Retry-After` pauses the endpoint (ms; 0: not paused).
    pub paused_ms: i64,
    /// Judged slow.
    pub slow: bool,
}

impl FlowState {
    /// The long form's fields; `None` for the short form or an unreadable entry.
    pub fn parse(flow: &str) -> Option<Self> {
        let fields: Vec<f64> = flow.split(' ').filter_map(|f| f.parse().ok()).collect();
        let (cwnd, paused, slow) = match fields.as_slice() {
            [_, _, _, cwnd, _, _, paused] => (*cwnd, *paused, false),
            [_, _, _, cwnd, _, _, paused, slow] => (*cwnd, *paused, *slow == 1.0),
            _ => return None,
        };
        Some(Self {
            cwnd,
            paused_ms: paused as i64,
            slow,
        })
    }
}

/// Why and when an endpoint was disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub reason: String,
    pub at_ms: i64,
    /// The strike count at the time, when strikes disabled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strikes: Option<u32>,
    /// When strikes disabled it: the Redis time of the claim of the attempt that did, always
    /// after the endpoint's last change (`herald check` reports one that is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_ms: Option<i64>,
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
    /// Jobs in its queue (due, scheduled or parked).
    pub queued: u64,
    /// Jobs waiting while the endpoint is disabled (its queue then; 0 while it is enabled).
    pub parked: u64,
    pub limits: Limits,
    /// How many signing secrets are active.
    pub active_secrets: usize,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Redis time of the last change by an operator (set, enabled, secret rotated, created
    /// again): attempts claimed until then no longer strike, disable, cut or pause it. `None`
    /// for an endpoint last changed by a version that did not record it.
    pub changed_at_ms: Option<i64>,
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
    /// Jobs in its queue, which claims serve again (parked ones of a disabled endpoint
    /// included).
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
    /// given, its signing secret; keeps the existing secrets and flow settings otherwise.
    /// Re-activates a disabled endpoint: its parked jobs are served again, those already due at
    /// once.
    pub async fn set_endpoint(
        &self,
        id: &EndpointId,
        url: &str,
        secret: Option<String>,
    ) -> Result<SetEndpoint> {
        self.set_endpoint_with(id, url, secret, FlowChange::default())
            .await
    }

    /// [`Store::set_endpoint`], changing its flow settings too. Setting an endpoint starts its
    /// adaptive limit at the configured maximum and ends a pause. The change is made against
    /// the stored configuration it read: when an operator changed the endpoint meanwhile, it is
    /// read again and the change made again on top of theirs.
    pub async fn set_endpoint_with(
        &self,
        id: &EndpointId,
        url: &str,
        secret: Option<String>,
        flow: FlowChange,
    ) -> Result<SetEndpoint> {
        let mut conn = self.conn().await?;
        loop {
            let now = self.now_ms(&mut conn).await?;
            let (raw, existing) = self.endpoint_raw(id).await?;
            let record = EndpointRecord {
                url: url.to_owned(),
                secrets: match (&secret, &existing) {
                    (Some(secret), _) => vec![EndpointSecret {
                        secret: secret.clone(),
                        expires_at_ms: None,
                    }],
                    (None, Some(e)) => e.secrets.clone(),
                    (None, None) => Vec::new(),
                },
                created_at_ms: existing.as_ref().map_or(now, |e| e.created_at_ms),
                updated_at_ms: now,
                max_in_flight: flow
                    .max_in_flight
                    .or_else(|| existing.as_ref().and_then(|e| e.max_in_flight)),
                rate: flow
                    .rate
                    .unwrap_or_else(|| existing.as_ref().and_then(|e| e.rate)),
            };
            let json = serde_json::to_string(&record).expect("endpoint record serialises");
            let Some((created, resumed)) = self
                .resume(
                    id,
                    &json,
                    &record.flow_settings(),
                    raw.as_deref().unwrap_or(""),
                )
                .await?
            else {
                continue;
            };
            return Ok(SetEndpoint {
                created,
                resumed,
                record,
            });
        }
    }

    /// Changes an endpoint's stored configuration with `change` (no state change; for secret
    /// rotation), against the configuration it read: when an operator changed it meanwhile,
    /// `change` runs again on what they stored. Returns what was stored; refuses an endpoint
    /// that does not exist (or was deleted meanwhile) without writing anything.
    pub async fn update_endpoint(
        &self,
        id: &EndpointId,
        mut change: impl FnMut(&mut EndpointRecord, i64),
    ) -> Result<EndpointRecord> {
        let mut conn = self.conn().await?;
        loop {
            let now = self.now_ms(&mut conn).await?;
            let (Some(raw), Some(mut record)) = self.endpoint_raw(id).await? else {
                return Err(StoreError::UnknownEndpoint(id.to_string()));
            };
            change(&mut record, now);
            let json = serde_json::to_string(&record).expect("endpoint record serialises");
            let written: i64 = self
                .inner
                .scripts
                .update_endpoint
                .key(&self.keys_of(id).endpoints)
                .key(&self.keys_of(id).changed)
                .arg(id.as_str())
                .arg(&raw)
                .arg(&json)
                .invoke_async(&mut conn)
                .await?;
            match written {
                1 => return Ok(record),
                0 => continue,
                -1 => return Err(StoreError::UnknownEndpoint(id.to_string())),
                other => return Err(protocol("update-endpoint", format!("{other}"))),
            }
        }
    }

    /// Enables an endpoint; its parked jobs are served again (those already due at once),
    /// attempt counts kept. Returns how many jobs its queue holds.
    pub async fn enable_endpoint(&self, id: &EndpointId) -> Result<u64> {
        let (_, queued) = self
            .resume(id, "", "", "")
            .await?
            .expect("enabling compares nothing");
        Ok(queued)
    }

    /// Runs `resume-8.lua`: stores `json` and `flow` (unless empty) if the stored JSON is still
    /// `read`, clears the disabled state, and puts the endpoint's queue back in the claims'
    /// way. `None` when the stored JSON changed meanwhile (nothing written).
    async fn resume(
        &self,
        id: &EndpointId,
        json: &str,
        flow: &str,
        read: &str,
    ) -> Result<Option<(bool, u64)>> {
        let mut conn = self.conn().await?;
        let k = self.keys_of(id);
        let reply = loop {
            let reply: Vec<i64> = self
                .inner
                .scripts
                .resume
                .key(&k.endpoints)
                .key(&k.disabled)
                .key(&k.strikes)
                .key(&k.deleted)
                .key(&k.ready)
                .key(&k.flow)
                .key(k.queue(id.as_str()))
                .key(&k.changed)
                .arg(id.as_str())
                .arg(json)
                .arg(flow)
                .arg(read)
                .invoke_async(&mut conn)
                .await?;
            // Deleted in this very millisecond: set it in a later one (a few round trips), so
            // that its jobs can be told from the deleted one's by their enqueue time.
            if reply != [-2] {
                break reply;
            }
        };
        let (created, moved) = match reply.as_slice() {
            [-1] => return Err(StoreError::UnknownEndpoint(id.to_string())),
            [-3] => return Ok(None),
            [c, queued] => (*c == 1, *queued as u64),
            other => return Err(protocol("resume", format!("{other:?}"))),
        };
        if moved > 0 {
            let now = self.now_ms(&mut conn).await?;
            self.wake(&mut conn, self.shard_of(id), now).await?;
        }
        Ok(Some((created, moved)))
    }

    /// Disables an endpoint by hand. Returns false when it already was. A reason longer than
    /// [`MAX_REASON_CHARS`] is refused: it is stored with the endpoint and shown by every
    /// listing.
    pub async fn disable_endpoint(&self, id: &EndpointId, reason: &str) -> Result<bool> {
        let chars = reason.chars().count();
        if chars > MAX_REASON_CHARS {
            return Err(StoreError::InvalidArgument(format!(
                "a disable reason is at most {MAX_REASON_CHARS} characters, not {chars}"
            )));
        }
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

    /// Deletes an endpoint and its subscriptions. Its queued jobs go to the dead-letter store
    /// now, those in flight when they settle. Returns how many queued jobs were discarded.
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
                .key(k.queue(id.as_str()))
                .key(&k.dead)
                .key(&k.errors)
                .key(k.attempts(id.as_str()))
                .key(k.subscriptions(id.as_str()))
                .key(&k.ready)
                .key(&k.flow)
                .key(&k.changed)
                .arg(id.as_str())
                .arg(DELETE_BATCH)
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

    /// An endpoint's configuration as stored, and parsed.
    async fn endpoint_raw(
        &self,
        id: &EndpointId,
    ) -> Result<(Option<String>, Option<EndpointRecord>)> {
        let mut conn = self.conn().await?;
        let raw: Option<String> = redis::cmd("HGET")
            .arg(&self.keys_of(id).endpoints)
            .arg(id.as_str())
            .query_async(&mut conn)
            .await?;
        let record = raw
            .as_deref()
            .map(|raw| serde_json::from_str(raw).map_err(|e| unreadable(id.as_str(), e)))
            .transpose()?;
        Ok((raw, record))
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
        let (raw, disabled, strikes, queued, flow, in_flight, subs, attempts, changed): (
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<u32>,
            u64,
            Option<String>,
            Option<i64>,
            BTreeMap<String, String>,
            Vec<String>,
            Option<i64>,
        ) = redis::pipe()
            .hget(&k.endpoints, e)
            .hget(&k.disabled, e)
            .hget(&k.strikes, e)
            .zcard(k.queue(e))
            .hget(&k.flow, e)
            .hget(&k.busy, e)
            .hgetall(k.subscriptions(e))
            .lrange(k.attempts(e), 0, -1)
            .hget(&k.changed, e)
            .query_async(&mut conn)
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        let record: EndpointRecord =
            serde_json::from_slice(&raw).map_err(|err| unreadable(e, err))?;
        let disabled: Option<Disabled> = disabled
            .map(|d| serde_json::from_slice(&d).map_err(|err| unreadable(e, err)))
            .transpose()?;
        let limits = Limits::parse(
            &record,
            flow.as_deref(),
            in_flight.unwrap_or(0).max(0) as u64,
            now_ms,
        );
        Ok(Some(EndpointState {
            id: e.to_owned(),
            url: record.url.clone(),
            enabled: disabled.is_none(),
            parked: if disabled.is_some() { queued } else { 0 },
            disabled,
            strikes: strikes.unwrap_or(0),
            queued,
            limits,
            active_secrets: record
                .secrets
                .iter()
                .filter(|s| s.expires_at_ms.is_none_or(|t| t > now_ms))
                .count(),
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
            changed_at_ms: changed,
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
        sub.check().map_err(StoreError::InvalidArgument)?;
        let mut conn = self.conn().await?;
        let json = serde_json::to_string(sub).expect("subscription serialises");
        let k = self.keys_of(id);
        // The endpoint's own list first, and only while it exists; the service's list, which
        // publishers read, last, so that a subscriber is never notified without the endpoint's
        // own list saying so.
        let written: i64 = self
            .inner
            .scripts
            .subscribe
            .key(&k.endpoints)
            .key(k.subscriptions(id.as_str()))
            .arg(id.as_str())
            .arg(slug)
            .arg(&json)
            .invoke_async(&mut conn)
            .await?;
        if written != 1 {
            return Err(StoreError::UnknownEndpoint(id.to_string()));
        }
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
