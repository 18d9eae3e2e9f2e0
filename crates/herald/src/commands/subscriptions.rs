//! `herald subscribe`, `unsubscribe`, `subscriptions`: which dashboards hear of which services.

use herald_ops::model::SubscriptionInput;

use crate::cli::{Global, SubscribeArgs, SubscriptionsCommand};
use crate::commands::{open_ops, print_json};
use crate::failure::op_error;

pub async fn subscribe(global: &Global, args: &SubscribeArgs) -> anyhow::Result<()> {
    herald_ops::endpoint_id(&args.id).map_err(op_error)?;
    let input = SubscriptionInput {
        level: Some(args.level.into()),
        components: args.components.clone(),
    };
    let ops = open_ops(global).await?;
    let sub = ops
        .subscribe(&args.id, &args.service, input)
        .await
        .map_err(op_error)?;
    if global.json {
        return print_json(&sub);
    }
    outln!(
        "{} subscribed to {} at level {}",
        args.id,
        sub.service,
        sub.level
    );
    Ok(())
}

pub async fn unsubscribe(global: &Global, id: &str, service: &str) -> anyhow::Result<()> {
    let ops = open_ops(global).await?;
    ops.unsubscribe(id, service).await.map_err(op_error)?;
    if global.json {
        // The API answers 204 without a body; the CLI says what it removed.
        return print_json(&serde_json::json!({ "id": id, "service": service, "removed": true }));
    }
    outln!("{id} unsubscribed from {service}");
    Ok(())
}

pub async fn list(global: &Global, cmd: SubscriptionsCommand) -> anyhow::Result<()> {
    let ops = open_ops(global).await?;
    let rows: Vec<(String, String, Vec<String>)> = match cmd {
        SubscriptionsCommand::Endpoint { id } => {
            let listed = ops.all_subscriptions(&id).await.map_err(op_error)?;
            if global.json {
                return print_json(&listed);
            }
            listed
                .items
                .into_iter()
                .map(|s| (s.service, s.level.to_string(), s.components))
                .collect()
        }
        SubscriptionsCommand::Service { service } => {
            let listed = ops.all_subscribers(&service).await.map_err(op_error)?;
            if global.json {
                return print_json(&listed);
            }
            listed
                .items
                .into_iter()
                .map(|s| (s.endpoint, s.level.to_string(), s.components))
                .collect()
        }
    };
    if rows.is_empty() {
        outln!("no subscriptions");
    }
    for (name, level, components) in rows {
        let components = if components.is_empty() {
            String::new()
        } else {
            format!("\tcomponents={}", components.join(","))
        };
        outln!("{name}\tlevel={level}{components}");
    }
    Ok(())
}
