//! `herald endpoint`: a dashboard's webhook: URL, secrets, enabled state, and what happened to
//! its latest attempts.

use herald_core::guard::{AllowList, Guard};
use herald_ops::model::{
    DisableInput, EndpointInput, EndpointListQuery, EnqueueOutcome, RotateInput,
};

use crate::cli::{EndpointCommand, Global, SetArgs};
use crate::commands::{open_ops, open_ops_with, print_json, time};
use crate::failure::{op_error, Refused};

pub async fn run(global: &Global, cmd: EndpointCommand) -> anyhow::Result<()> {
    match cmd {
        EndpointCommand::Set(args) => set(global, args).await,
        EndpointCommand::Get { id } => get(global, &id).await,
        EndpointCommand::List => list(global).await,
        EndpointCommand::Enable { id } => enable(global, &id).await,
        EndpointCommand::Disable { id, reason } => disable(global, &id, reason).await,
        EndpointCommand::Delete { id } => delete(global, &id).await,
        EndpointCommand::Test { id } => test(global, &id).await,
        EndpointCommand::RotateSecret { id, grace } => rotate_secret(global, &id, grace).await,
    }
}

/// `endpoint set`: checks everything given before Redis is asked.
async fn set(global: &Global, args: SetArgs) -> anyhow::Result<()> {
    let SetArgs {
        id,
        url,
        secret,
        allow_targets,
        max_in_flight,
        rate,
    } = args;
    herald_ops::endpoint_id(&id).map_err(op_error)?;
    let allow = AllowList::parse(&allow_targets)
        .map_err(|e| Refused(format!("setting allow_targets (HERALD_ALLOW_TARGETS): {e}")))?;
    let input = EndpointInput {
        url,
        secret,
        max_in_flight: max_in_flight.map(u64::from),
        rate,
    };
    let ops = open_ops_with(global, Guard::new(allow)).await?;
    let saved = ops.set_endpoint(&id, input).await.map_err(op_error)?;
    if global.json {
        return print_json(&saved);
    }
    let verb = if saved.created { "created" } else { "updated" };
    outln!("endpoint {id} {verb}: {}", saved.url);
    outln!(
        "limits: {}",
        describe_limits(saved.max_in_flight, saved.rate.as_deref())
    );
    if saved.resumed_jobs > 0 {
        outln!("{} queued jobs are served again", saved.resumed_jobs);
    }
    Ok(())
}

async fn enable(global: &Global, id: &str) -> anyhow::Result<()> {
    let ops = open_ops(global).await?;
    let done = ops.enable_endpoint(id).await.map_err(op_error)?;
    if global.json {
        return print_json(&done);
    }
    outln!(
        "endpoint {id} enabled; {} queued jobs are served again",
        done.resumed_jobs
    );
    Ok(())
}

async fn disable(global: &Global, id: &str, reason: String) -> anyhow::Result<()> {
    let ops = open_ops(global).await?;
    let input = DisableInput {
        reason: Some(reason),
    };
    let done = ops.disable_endpoint(id, input).await.map_err(op_error)?;
    if global.json {
        return print_json(&done);
    }
    if done.changed {
        outln!("endpoint {id} disabled; its jobs wait (parked) until it is enabled");
    } else {
        outln!("endpoint {id} was already disabled");
    }
    Ok(())
}

async fn delete(global: &Global, id: &str) -> anyhow::Result<()> {
    let ops = open_ops(global).await?;
    let done = ops.delete_endpoint(id).await.map_err(op_error)?;
    if global.json {
        return print_json(&done);
    }
    outln!(
        "endpoint {id} deleted; {} queued jobs moved to the dead-letter store (jobs in flight follow as they settle)",
        done.queued_jobs_discarded
    );
    Ok(())
}

async fn test(global: &Global, id: &str) -> anyhow::Result<()> {
    let ops = open_ops(global).await?;
    let done = ops.send_test_event(id).await.map_err(op_error)?;
    if global.json {
        return print_json(&done);
    }
    outln!("{}", done.job_id);
    if matches!(done.status, EnqueueOutcome::Parked) {
        eprintln!(
            "herald: endpoint {id} is disabled; the test event is parked until it is enabled"
        );
    }
    Ok(())
}

async fn rotate_secret(global: &Global, id: &str, grace: String) -> anyhow::Result<()> {
    let ops = open_ops(global).await?;
    let input = RotateInput { grace: Some(grace) };
    let done = ops.rotate_secret(id, input).await.map_err(op_error)?;
    if global.json {
        return print_json(&done);
    }
    outln!("{}", done.secret);
    eprintln!(
        "herald: new signing secret for {id} (shown once); the previous ones keep signing for {}",
        humantime::format_duration(std::time::Duration::from_secs(done.old_secrets_expire_in_s))
    );
    Ok(())
}

/// `32 in flight, 50/s` or `32 in flight, no rate limit`.
fn describe_limits(max_in_flight: u32, rate: Option<&str>) -> String {
    match rate {
        Some(rate) => format!("{max_in_flight} in flight, {rate}"),
        None => format!("{max_in_flight} in flight, no rate limit"),
    }
}

async fn get(global: &Global, id: &str) -> anyhow::Result<()> {
    let ops = open_ops(global).await?;
    let state = ops.endpoint(id).await.map_err(op_error)?;
    if global.json {
        return print_json(&state);
    }
    outln!("id:             {}", state.id);
    outln!("url:            {}", state.url);
    match &state.disabled {
        None => outln!("state:          enabled"),
        Some(d) => {
            outln!("state:          disabled since {}", time(d.at_ms));
            outln!("reason:         {}", d.reason);
        }
    }
    outln!("strikes:        {}", state.strikes);
    let l = &state.limits;
    outln!(
        "limits:         {}",
        describe_limits(l.max_in_flight, l.rate.as_deref())
    );
    let adaptive = if l.current_limit < l.max_in_flight {
        " (lowered: the receiver struggled lately)"
    } else {
        ""
    };
    outln!("limit now:      {} in flight{adaptive}", l.current_limit);
    outln!("in flight:      {}", l.in_flight);
    if let Some(until) = l.paused_until_ms {
        outln!("paused until:   {} (Retry-After)", time(until));
    }
    if l.slow {
        outln!("speed:          slow (served from the workers' slow lanes until a delivery comes back quicker than HERALD_SLOW_AFTER)");
    }
    outln!("queued jobs:    {}", state.queued);
    outln!("parked jobs:    {}", state.parked);
    outln!("signing:        {} active secret(s)", state.active_secrets);
    outln!("created at:     {}", time(state.created_at_ms));
    outln!("updated at:     {}", time(state.updated_at_ms));
    if let Some(changed) = state.changed_at_ms {
        // Attempts claimed until then no longer strike, disable, cut or pause it.
        outln!("changed at:     {}", time(changed));
    }
    if state.subscriptions.is_empty() {
        outln!("subscriptions:  none");
    } else {
        outln!("subscriptions:");
        for sub in &state.subscriptions {
            let components = if sub.components.is_empty() {
                String::new()
            } else {
                format!(" components={}", sub.components.join(","))
            };
            outln!("  {} level={}{components}", sub.service, sub.level);
        }
    }
    outln!("latest attempts (newest first):");
    if state.attempts.is_empty() {
        outln!("  none");
    }
    for a in &state.attempts {
        let or_empty = |v: Option<String>| v.unwrap_or_default();
        outln!(
            "  {} job={} attempt={} outcome={} status={} latency_ms={}{}",
            time(a.at_ms),
            a.job_id,
            a.attempt,
            a.outcome,
            or_empty(a.status.map(|s| s.to_string())),
            a.latency_ms,
            or_empty(a.error.as_ref().map(|e| format!(" error={e:?}"))),
        );
    }
    Ok(())
}

async fn list(global: &Global) -> anyhow::Result<()> {
    let ops = open_ops(global).await?;
    let all = ops
        .list_all_endpoints(&EndpointListQuery::default())
        .await
        .map_err(op_error)?;
    if global.json {
        return print_json(&all);
    }
    if all.items.is_empty() {
        outln!("no endpoints");
    }
    for e in all.items {
        let state = match e.disabled {
            None => "enabled".to_owned(),
            Some(d) => format!("disabled ({})", d.reason),
        };
        outln!("{}\t{}\t{state}\tstrikes={}", e.id, e.url, e.strikes);
    }
    Ok(())
}
