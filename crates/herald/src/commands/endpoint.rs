//! `herald endpoint`: a dashboard's webhook: URL, secrets, enabled state, and what happened to
//! its latest attempts.

use herald_api::model::{Deleted, DisableResult, EnableResult, EndpointSaved, Rotated};
use herald_core::guard::{AllowList, Guard};
use herald_core::{parse_rate_setting, EndpointId, Rate, Secret};
use herald_producer::Producer;
use herald_store::{EnqueueStatus, FlowChange};

use crate::cli::{EndpointCommand, Global, SetArgs};
use crate::commands::{open_store, print_json, time};
use crate::failure::{produce_error, store_error, Refused};

fn endpoint_id(id: String) -> Result<EndpointId, Refused> {
    EndpointId::new(id).map_err(|e| Refused(e.to_string()))
}

pub async fn run(global: &Global, cmd: EndpointCommand) -> anyhow::Result<()> {
    match cmd {
        EndpointCommand::Set(args) => set(global, args).await,
        EndpointCommand::Get { id } => get(global, endpoint_id(id)?).await,
        EndpointCommand::List => list(global).await,
        EndpointCommand::Enable { id } => enable(global, id).await,
        EndpointCommand::Disable { id, reason } => disable(global, id, reason).await,
        EndpointCommand::Delete { id } => delete(global, id).await,
        EndpointCommand::Test { id } => test(global, id).await,
        EndpointCommand::RotateSecret { id, grace } => rotate_secret(global, id, grace).await,
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
    let id = endpoint_id(id)?;
    let rate = rate
        .map(|r| parse_rate_setting(&r).map_err(|e| Refused(format!("invalid --rate: {e}"))))
        .transpose()?;
    let allow = AllowList::parse(&allow_targets)
        .map_err(|e| Refused(format!("setting allow_targets (HERALD_ALLOW_TARGETS): {e}")))?;
    let url = Guard::new(allow)
        .check_webhook_url(&url)
        .map_err(|e| Refused(e.to_string()))?;
    let secret = secret
        .map(|s| {
            Secret::parse(&s)
                .map(|parsed| parsed.expose())
                .map_err(|e| Refused(format!("invalid --secret: {e}")))
        })
        .transpose()?;
    let store = open_store(global).await?;
    let flow = FlowChange {
        max_in_flight,
        rate,
    };
    let done = store
        .set_endpoint_with(&id, url.as_str(), secret, flow)
        .await
        .map_err(store_error)?;
    if global.json {
        return print_json(&EndpointSaved::new(&id, &done));
    }
    let record = &done.record;
    let verb = if done.created { "created" } else { "updated" };
    outln!("endpoint {id} {verb}: {}", record.url);
    outln!(
        "limits: {}",
        describe_limits(record.max_in_flight(), record.rate)
    );
    if done.resumed > 0 {
        outln!("{} queued jobs are served again", done.resumed);
    }
    Ok(())
}

async fn enable(global: &Global, id: String) -> anyhow::Result<()> {
    let id = endpoint_id(id)?;
    let store = open_store(global).await?;
    let resumed = store.enable_endpoint(&id).await.map_err(store_error)?;
    if global.json {
        return print_json(&EnableResult::new(&id, resumed));
    }
    outln!("endpoint {id} enabled; {resumed} queued jobs are served again");
    Ok(())
}

async fn disable(global: &Global, id: String, reason: String) -> anyhow::Result<()> {
    let id = endpoint_id(id)?;
    let store = open_store(global).await?;
    let changed = store
        .disable_endpoint(&id, &reason)
        .await
        .map_err(store_error)?;
    if global.json {
        return print_json(&DisableResult::new(&id, changed));
    }
    if changed {
        outln!("endpoint {id} disabled; its jobs wait (parked) until it is enabled");
    } else {
        outln!("endpoint {id} was already disabled");
    }
    Ok(())
}

async fn delete(global: &Global, id: String) -> anyhow::Result<()> {
    let id = endpoint_id(id)?;
    let store = open_store(global).await?;
    let discarded = store.delete_endpoint(&id).await.map_err(store_error)?;
    if global.json {
        return print_json(&Deleted::new(&id, discarded));
    }
    outln!(
        "endpoint {id} deleted; {discarded} queued jobs moved to the dead-letter store (jobs in flight follow as they settle)"
    );
    Ok(())
}

async fn test(global: &Global, id: String) -> anyhow::Result<()> {
    let id = endpoint_id(id)?;
    let store = open_store(global).await?;
    let done = Producer::new(store)
        .send_test_event(&id)
        .await
        .map_err(produce_error)?;
    if global.json {
        return print_json(&done);
    }
    outln!("{}", done.job_id);
    if done.status == EnqueueStatus::Parked {
        eprintln!(
            "herald: endpoint {id} is disabled; the test event is parked until it is enabled"
        );
    }
    Ok(())
}

async fn rotate_secret(global: &Global, id: String, grace: String) -> anyhow::Result<()> {
    let id = endpoint_id(id)?;
    let grace = humantime::parse_duration(&grace)
        .map_err(|e| Refused(format!("--grace {grace:?} is not a duration: {e}")))?;
    let store = open_store(global).await?;
    let secret = store.rotate_secret(&id, grace).await.map_err(store_error)?;
    if global.json {
        return print_json(&Rotated::new(&id, secret, grace));
    }
    outln!("{secret}");
    eprintln!(
        "herald: new signing secret for {id} (shown once); the previous ones keep signing for {}",
        humantime::format_duration(grace)
    );
    Ok(())
}

/// `32 in flight, 50/s` or `32 in flight, no rate limit`.
fn describe_limits(max_in_flight: u32, rate: Option<Rate>) -> String {
    match rate {
        Some(rate) => format!("{max_in_flight} in flight, {rate}"),
        None => format!("{max_in_flight} in flight, no rate limit"),
    }
}

async fn get(global: &Global, id: EndpointId) -> anyhow::Result<()> {
    let store = open_store(global).await?;
    let mut conn = store.conn().await.map_err(store_error)?;
    let now = store.now_ms(&mut conn).await.map_err(store_error)?;
    let state = store
        .endpoint_state(&id, now)
        .await
        .map_err(store_error)?
        .ok_or_else(|| Refused(format!("endpoint {id} not found")))?;
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
        describe_limits(l.max_in_flight, l.rate)
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
        for (slug, sub) in &state.subscriptions {
            let components = if sub.components.is_empty() {
                String::new()
            } else {
                format!(" components={}", sub.components.join(","))
            };
            outln!("  {slug} level={}{components}", sub.level);
        }
    }
    outln!("latest attempts (newest first):");
    if state.attempts.is_empty() {
        outln!("  none");
    }
    for a in &state.attempts {
        let field = |k: &str| a.get(k).map(|v| v.to_string()).unwrap_or_default();
        outln!(
            "  {} job={} attempt={} outcome={} status={} latency_ms={}{}",
            a.get("at_ms")
                .and_then(|v| v.as_i64())
                .map(time)
                .unwrap_or_default(),
            a.get("job_id").and_then(|v| v.as_str()).unwrap_or(""),
            field("attempt"),
            a.get("outcome").and_then(|v| v.as_str()).unwrap_or(""),
            field("status"),
            field("latency_ms"),
            a.get("error")
                .and_then(|v| v.as_str())
                .map(|e| format!(" error={e:?}"))
                .unwrap_or_default(),
        );
    }
    Ok(())
}

async fn list(global: &Global) -> anyhow::Result<()> {
    let store = open_store(global).await?;
    let all = store.list_endpoints().await.map_err(store_error)?;
    if global.json {
        return print_json(&all);
    }
    if all.is_empty() {
        outln!("no endpoints");
    }
    for e in all {
        let state = match e.disabled {
            None => "enabled".to_owned(),
            Some(d) => format!("disabled ({})", d.reason),
        };
        outln!("{}\t{}\t{state}\tstrikes={}", e.id, e.url, e.strikes);
    }
    Ok(())
}
