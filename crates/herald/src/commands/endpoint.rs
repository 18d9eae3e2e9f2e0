//! `herald endpoint`: a dashboard's webhook URL.

use herald_core::{validate_webhook_url, EndpointId};

use crate::cli::{EndpointCommand, Global};
use crate::commands::{open_store, print_json, store_error, time, Refused};

pub async fn run(global: &Global, cmd: EndpointCommand) -> anyhow::Result<()> {
    match cmd {
        EndpointCommand::Set { id, url } => {
            let id = EndpointId::new(id).map_err(|e| Refused(e.to_string()))?;
            let url = validate_webhook_url(&url)
                .map_err(|e| Refused(format!("invalid webhook URL: {e}")))?;
            let store = open_store(global).await?;
            let record = store
                .set_endpoint(&id, url.as_str())
                .await
                .map_err(store_error)?;
            if global.json {
                print_json(&serde_json::json!({ "id": id, "endpoint": record }))
            } else {
                println!("endpoint {id} -> {}", record.url);
                Ok(())
            }
        }
        EndpointCommand::Get { id } => {
            let id = EndpointId::new(id).map_err(|e| Refused(e.to_string()))?;
            let store = open_store(global).await?;
            let record = store
                .endpoint(&id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| Refused(format!("endpoint {id} not found")))?;
            if global.json {
                print_json(&serde_json::json!({ "id": id, "endpoint": record }))
            } else {
                println!("id:         {id}");
                println!("url:        {}", record.url);
                println!("created at: {}", time(record.created_at_ms));
                println!("updated at: {}", time(record.updated_at_ms));
                Ok(())
            }
        }
    }
}
