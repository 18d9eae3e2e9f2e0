//! `herald stats` and `herald job get`: read-only views of the queue.

use herald_ops::model::Job;

use crate::cli::Global;
use crate::commands::{open_ops, print_json, time};
use crate::failure::op_error;

pub async fn stats(global: &Global) -> anyhow::Result<()> {
    let ops = open_ops(global).await?;
    let stats = ops.stats().await.map_err(op_error)?;
    if global.json {
        return print_json(&stats);
    }
    let t = &stats.jobs;
    outln!("due        {}", t.due);
    outln!("scheduled  {}", t.scheduled);
    outln!("in flight  {}", t.in_flight);
    outln!("parked     {}", t.parked);
    outln!("dead       {}", t.dead);
    outln!("disabled endpoints  {}", stats.disabled_endpoints);
    outln!("held-back endpoints {}", t.held_back_endpoints);
    match t.oldest_due_ms {
        Some(at) => outln!(
            "oldest due job      due for {:.1}s (since {})",
            (stats.now_ms - at).max(0) as f64 / 1000.0,
            time(at)
        ),
        None => outln!("oldest due job      none"),
    }
    if !stats.busiest.is_empty() {
        outln!("holding the most delivery slots:");
        for b in &stats.busiest {
            let slow = if b.slow { "  (judged slow)" } else { "" };
            outln!("  {:<24} {} in flight{slow}", b.id, b.in_flight);
        }
    }
    Ok(())
}

/// Prints a job as text, one field a line.
fn print_job(job: &Job) {
    outln!("id:            {}", job.id);
    outln!(
        "state:         {}",
        serde_json::to_value(job.state)
            .unwrap_or_default()
            .as_str()
            .unwrap_or("?")
    );
    if let Some(e) = &job.endpoint {
        outln!("endpoint:      {e}");
    }
    if let Some(a) = job.attempts {
        outln!("attempts:      {a}");
    }
    if let Some(t) = job.enqueued_at_ms {
        outln!("enqueued at:   {}", time(t));
    }
    if let Some(t) = job.next_attempt_at_ms {
        outln!("next attempt:  {}", time(t));
    }
    if let Some(t) = job.lease_deadline_ms {
        outln!("lease until:   {}", time(t));
    }
    if let Some(t) = job.dead_at_ms {
        outln!("dead since:    {}", time(t));
    }
    if let Some(e) = &job.last_error {
        outln!("last error:    {e}");
    }
    if let Some(raw) = &job.raw_record {
        outln!("raw record:    {raw:?}");
    }
    if let Some(raw) = &job.raw_payload {
        outln!("payload (not JSON): {raw:?}");
    }
}

pub async fn job(global: &Global, id: &str) -> anyhow::Result<()> {
    let ops = open_ops(global).await?;
    let job = ops.job(id).await.map_err(op_error)?;
    if global.json {
        print_json(&job)
    } else {
        print_job(&job);
        Ok(())
    }
}
