//! Endpoints: list (paged, with health), get, set, delete, enable, disable, rotate the secret,
//! send a test event, the attempt log.

use herald_core::{check_max_in_flight, parse_rate_setting, Secret};
use herald_store::{EndpointQuery, FlowChange, ScanCursor, StatusFilter};

use crate::model::{
    AttemptLog, Deleted, DisableInput, DisableResult, EnableResult, Endpoint, EndpointInput,
    EndpointList, EndpointListQuery, EndpointSaved, EnqueuedJob, RotateInput, Rotated,
};
use crate::{duration, endpoint_id, limit, OpError, OpResult, Ops};

/// The reason of a disable that gives none.
pub const DEFAULT_DISABLE_REASON: &str = "disabled by an operator";

/// The grace period of a rotation that names none.
pub const DEFAULT_GRACE: &str = "24h";

impl Ops {
    /// A page of endpoints with their health. Pages follow the store's shards in turn; an
    /// endpoint present for the whole listing is listed at least once.
    pub async fn list_endpoints(&self, q: &EndpointListQuery) -> OpResult<EndpointList> {
        let query = EndpointQuery {
            search: q.search.clone(),
            status: q.status.as_deref().unwrap_or("").parse::<StatusFilter>()?,
        };
        let after = q
            .cursor
            .as_deref()
            .map(str::parse::<ScanCursor>)
            .transpose()?;
        let page = self
            .store
            .endpoint_page(&query, after, limit(q.limit))
            .await?;
        Ok(EndpointList {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next.map(|c| c.to_string()),
        })
    }

    /// Every endpoint matching `q`, all pages read: the list with no `next_cursor`.
    pub async fn list_all_endpoints(&self, q: &EndpointListQuery) -> OpResult<EndpointList> {
        let mut q = q.clone();
        // The largest pages: fewer round trips for the same items.
        q.limit.get_or_insert(herald_store::MAX_PAGE);
        let mut items = Vec::new();
        loop {
            let page = self.list_endpoints(&q).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(next) => q.cursor = Some(next),
                None => break,
            }
        }
        // A shard's page may repeat what an earlier one gave while endpoints move.
        items.sort_by(|a, b| a.id.cmp(&b.id));
        items.dedup_by(|a, b| a.id == b.id);
        Ok(EndpointList {
            items,
            next_cursor: None,
        })
    }

    /// One endpoint: state, strikes, limits, subscriptions, latest attempts.
    pub async fn endpoint(&self, id: &str) -> OpResult<Endpoint> {
        let id = endpoint_id(id)?;
        let mut conn = self.store.conn().await?;
        let now = self.store.now_ms(&mut conn).await?;
        drop(conn);
        let state = self
            .store
            .endpoint_state(&id, now)
            .await?
            .ok_or(OpError::UnknownEndpoint(id))?;
        Ok(state.into())
    }

    /// Creates an endpoint, or replaces its URL (re-activating it if it was disabled). Secrets
    /// and flow limits not given are kept. Everything given is checked before Redis is asked.
    pub async fn set_endpoint(&self, id: &str, input: EndpointInput) -> OpResult<EndpointSaved> {
        let id = endpoint_id(id)?;
        let rate = input
            .rate
            .as_deref()
            .map(|r| {
                parse_rate_setting(r).map_err(|e| OpError::Invalid(format!("invalid rate: {e}")))
            })
            .transpose()?;
        let max_in_flight = input
            .max_in_flight
            .map(|n| check_max_in_flight(n).map_err(|e| OpError::Invalid(e.to_string())))
            .transpose()?;
        let url = self
            .guard
            .check_webhook_url(&input.url)
            .map_err(|e| OpError::Invalid(e.to_string()))?;
        let secret = input
            .secret
            .map(|text| {
                Secret::parse(&text)
                    .map(|parsed| parsed.expose())
                    .map_err(|e| OpError::Invalid(format!("invalid secret: {e}")))
            })
            .transpose()?;
        let flow = FlowChange {
            max_in_flight,
            rate,
        };
        let done = self
            .store
            .set_endpoint_with(&id, url.as_str(), secret, flow)
            .await?;
        Ok(EndpointSaved::new(&id, &done))
    }

    /// Deletes an endpoint and its subscriptions; its queued jobs go to the dead-letter store.
    pub async fn delete_endpoint(&self, id: &str) -> OpResult<Deleted> {
        let id = endpoint_id(id)?;
        let discarded = self.store.delete_endpoint(&id).await?;
        Ok(Deleted::new(&id, discarded))
    }

    /// Enables an endpoint: its parked jobs are delivered again (those already due at once).
    pub async fn enable_endpoint(&self, id: &str) -> OpResult<EnableResult> {
        let id = endpoint_id(id)?;
        let resumed = self.store.enable_endpoint(&id).await?;
        Ok(EnableResult::new(&id, resumed))
    }

    /// Disables an endpoint: its jobs wait (parked) until it is enabled.
    pub async fn disable_endpoint(&self, id: &str, input: DisableInput) -> OpResult<DisableResult> {
        let id = endpoint_id(id)?;
        let reason = input
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .unwrap_or(DEFAULT_DISABLE_REASON);
        let changed = self.store.disable_endpoint(&id, reason).await?;
        Ok(DisableResult::new(&id, changed))
    }

    /// Starts signing with a new secret, shown once; the previous ones keep signing for the
    /// grace period.
    pub async fn rotate_secret(&self, id: &str, input: RotateInput) -> OpResult<Rotated> {
        let id = endpoint_id(id)?;
        let grace = duration("grace", input.grace.as_deref().unwrap_or(DEFAULT_GRACE))?;
        let secret = self.store.rotate_secret(&id, grace).await?;
        Ok(Rotated::new(&id, secret, grace))
    }

    /// Sends the endpoint a test event: the documentation's example event, signed, through
    /// the normal queue (parked if the endpoint is disabled).
    pub async fn send_test_event(&self, id: &str) -> OpResult<EnqueuedJob> {
        let id = endpoint_id(id)?;
        Ok(self.producer.send_test_event(&id).await?.into())
    }

    /// The endpoint's latest attempts, newest first.
    pub async fn attempts(&self, id: &str) -> OpResult<AttemptLog> {
        let endpoint = self.endpoint(id).await?;
        Ok(AttemptLog {
            items: endpoint.attempts,
        })
    }
}
