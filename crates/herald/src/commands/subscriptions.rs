//! `herald subscribe`, `unsubscribe`, `subscriptions`: which dashboards hear of which services.

use herald_core::{check_slug, EndpointId, Subscription};

use crate::cli::{Global, SubscribeArgs, SubscriptionsCommand};
use crate::commands::{open_store, print_json};
use crate::failure::{store_error, Refused};

fn slug(s: &str) -> Result<&str, Refused> {
    check_slug(s).map_err(|e| Refused(e.to_string()))
}

pub async fn subscribe(global: &Global, args: &SubscribeArgs) -> anyhow::Result<()> {
    let id = EndpointId::new(args.id.clone()).map_err(|e| Refused(e.to_string()))?;
    let service = slug(&args.service)?;
    let sub = Subscription::new(args.level, &args.components);
    let store = open_store(global).await?;
    store
        .subscribe(&id, service, &sub)
        .await
        .map_err(store_error)?;
    if global.json {
        return print_json(
            &serde_json::json!({ "id": id, "service": service, "subscription": sub }),
        );
    }
    outln!("{id} subscribed to {service} at level {}", sub.level);
    Ok(())
}

pub async fn unsubscribe(global: &Global, id: &str, service: &str) -> anyhow::Result<()> {
    let id = EndpointId::new(id).map_err(|e| Refused(e.to_string()))?;
    let service = slug(service)?;
    let store = open_store(global).await?;
    let removed = store.unsubscribe(&id, service).await.map_err(store_error)?;
    if !removed {
        return Err(Refused(format!("{id} is not subscribed to {service}")).into());
    }
    if global.json {
        return print_json(&serde_json::json!({ "id": id, "service": service, "removed": true }));
    }
    outln!("{id} unsubscribed from {service}");
    Ok(())
}

pub async fn list(global: &Global, cmd: SubscriptionsCommand) -> anyhow::Result<()> {
    let store = open_store(global).await?;
    let rows = match cmd {
        SubscriptionsCommand::Endpoint { id } => {
            let id = EndpointId::new(id).map_err(|e| Refused(e.to_string()))?;
            let mut conn = store.conn().await.map_err(store_error)?;
            let now = store.now_ms(&mut conn).await.map_err(store_error)?;
            store
                .endpoint_state(&id, now)
                .await
                .map_err(store_error)?
                .ok_or_else(|| Refused(format!("endpoint {id} not found")))?
                .subscriptions
        }
        SubscriptionsCommand::Service { service } => store
            .subscribers(slug(&service)?)
            .await
            .map_err(store_error)?,
    };
    if global.json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        outln!("no subscriptions");
    }
    for (name, sub) in rows {
        let components = if sub.components.is_empty() {
            String::new()
        } else {
            format!("\tcomponents={}", sub.components.join(","))
        };
        outln!("{name}\tlevel={}{components}", sub.level);
    }
    Ok(())
}
