//! Subscriptions: the services an endpoint subscribes to (list, set, remove), and the
//! endpoints subscribed to a service.

use herald_core::{check_slug, Level, Subscription};

use crate::model::{
    PageQuery, ServiceSubscription, Subscriber, SubscriberList, SubscriptionInput, SubscriptionList,
};
use crate::{endpoint_id, limit, OpError, OpResult, Ops};

fn slug(text: &str) -> OpResult<&str> {
    check_slug(text).map_err(|e| OpError::Invalid(e.to_string()))
}

fn scan_cursor(text: Option<&str>) -> OpResult<Option<u64>> {
    text.map(|c| {
        c.parse::<u64>()
            .map_err(|_| OpError::Invalid(format!("cursor {c:?} is not one this listing gave")))
    })
    .transpose()
}

/// Reads every page of a listing, each asked with the cursor the previous one gave, keeps the
/// first of items that a later page repeats (`HSCAN` may), and sorts them by `key`.
async fn every_page<T, F, Fut>(mut page: F, key: impl Fn(&T) -> &str) -> OpResult<Vec<T>>
where
    F: FnMut(PageQuery) -> Fut,
    Fut: std::future::Future<Output = OpResult<(Vec<T>, Option<String>)>>,
{
    let mut items: Vec<T> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut query = PageQuery {
        limit: Some(herald_store::MAX_PAGE),
        cursor: None,
    };
    loop {
        let (got, next) = page(query.clone()).await?;
        for item in got {
            if seen.insert(key(&item).to_owned()) {
                items.push(item);
            }
        }
        match next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    items.sort_by(|a, b| key(a).cmp(key(b)));
    Ok(items)
}

impl Ops {
    /// A page of the services an endpoint subscribes to.
    pub async fn subscriptions(&self, id: &str, q: &PageQuery) -> OpResult<SubscriptionList> {
        let id = endpoint_id(id)?;
        let after = scan_cursor(q.cursor.as_deref())?;
        if after.is_none() && self.store.endpoint(&id).await?.is_none() {
            return Err(OpError::UnknownEndpoint(id));
        }
        let page = self
            .store
            .subscription_page(&id, after, limit(q.limit))
            .await?;
        Ok(SubscriptionList {
            items: page
                .items
                .into_iter()
                .map(|(service, sub)| ServiceSubscription::new(service, sub))
                .collect(),
            next_cursor: page.next.map(|c| c.to_string()),
        })
    }

    /// Every service an endpoint subscribes to: the list with no `next_cursor`.
    pub async fn all_subscriptions(&self, id: &str) -> OpResult<SubscriptionList> {
        let items = every_page(
            |q| async move {
                let page = self.subscriptions(id, &q).await?;
                Ok((page.items, page.next_cursor))
            },
            |s: &ServiceSubscription| s.service.as_str(),
        )
        .await?;
        Ok(SubscriptionList {
            items,
            next_cursor: None,
        })
    }

    /// Subscribes an endpoint to a service (or changes its subscription).
    pub async fn subscribe(
        &self,
        id: &str,
        service: &str,
        input: SubscriptionInput,
    ) -> OpResult<ServiceSubscription> {
        let id = endpoint_id(id)?;
        let service = slug(service)?;
        let level = input.level.map_or(Level::All, Into::into);
        let sub = Subscription::new(level, &input.components);
        self.store.subscribe(&id, service, &sub).await?;
        Ok(ServiceSubscription::new(service.to_owned(), sub))
    }

    /// Removes an endpoint's subscription to a service.
    pub async fn unsubscribe(&self, id: &str, service: &str) -> OpResult<()> {
        let id = endpoint_id(id)?;
        let service = slug(service)?;
        if !self.store.unsubscribe(&id, service).await? {
            return Err(OpError::NotFound(format!(
                "{id} is not subscribed to {service}"
            )));
        }
        Ok(())
    }

    /// A page of the endpoints subscribed to a service.
    pub async fn subscribers(&self, service: &str, q: &PageQuery) -> OpResult<SubscriberList> {
        let service = slug(service)?;
        let after = scan_cursor(q.cursor.as_deref())?;
        let page = self
            .store
            .subscriber_page(service, after, limit(q.limit))
            .await?;
        Ok(SubscriberList {
            items: page
                .items
                .into_iter()
                .map(|(endpoint, sub)| Subscriber {
                    endpoint,
                    level: sub.level.into(),
                    components: sub.components,
                })
                .collect(),
            next_cursor: page.next.map(|c| c.to_string()),
        })
    }

    /// Every endpoint subscribed to a service: the list with no `next_cursor`.
    pub async fn all_subscribers(&self, service: &str) -> OpResult<SubscriberList> {
        let items = every_page(
            |q| async move {
                let page = self.subscribers(service, &q).await?;
                Ok((page.items, page.next_cursor))
            },
            |s: &Subscriber| s.endpoint.as_str(),
        )
        .await?;
        Ok(SubscriberList {
            items,
            next_cursor: None,
        })
    }
}
