//! `herald publish`: one status-change event, fanned out to the subscribed endpoints.

use herald_core::StatusEvent;

use crate::cli::Global;
use crate::commands::{open_ops, print_json, read_input};
use crate::failure::{op_error, Refused};

pub async fn run(global: &Global, file: &str, idempotency_key: Option<&str>) -> anyhow::Result<()> {
    let input = read_input(file)?;
    let event = StatusEvent::from_json(&input).map_err(|e| Refused(format!("{file}: {e}")))?;
    let ops = open_ops(global).await?;
    let report = ops
        .publish(&event, idempotency_key)
        .await
        .map_err(op_error)?;
    if global.json {
        return print_json(&report);
    }
    outln!(
        "{}: {} -> {}: {} jobs enqueued, {} parked (endpoint disabled), {}{} skipped by level, {} skipped (endpoint gone)",
        event.slug,
        serde_json::to_value(event.last_status)?.as_str().unwrap_or(""),
        serde_json::to_value(event.current_status)?.as_str().unwrap_or(""),
        report.enqueued,
        report.parked,
        if report.duplicates > 0 {
            format!(
                "{} already published with this idempotency key, ",
                report.duplicates
            )
        } else {
            String::new()
        },
        report.skipped_by_level,
        report.skipped_unknown_endpoint
    );
    Ok(())
}
