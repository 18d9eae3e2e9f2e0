//! The subcommands. Each module runs one family; this one opens the store and dispatches.

mod check;
mod dead;
mod dev;
mod endpoint;
mod enqueue;
mod inspect;
mod publish;
mod serve;
mod subscriptions;
mod token;
mod worker;

use std::io::Read;
use std::time::Duration;

use anyhow::Context as _;
use herald_core::guard::Guard;
use herald_ops::Ops;
use herald_store::{Namespace, Store, StoreConfig, StoreError};

use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, Global};
use crate::failure::{store_error, Refused};

/// Removes the Redis URL's password, as written and percent-decoded, from a message: Redis
/// errors do not repeat the URL, and this makes sure no future one shows the password either.
pub fn redact(text: &str, redis_url: &str) -> String {
    let mut out = text.to_owned();
    // Each seed node of a cluster may carry the password.
    for url in redis_url.split(',') {
        let Some(password) = url_password(url.trim()) else {
            continue;
        };
        for form in [percent_decode(password), password.to_owned()] {
            if !form.is_empty() {
                out = out.replace(&form, "***");
            }
        }
    }
    out
}

/// The password of `scheme://user:password@host...`, as written.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    userinfo.split_once(':').map(|(_, password)| password)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens the deployment's store and checks that Redis answers with a matching layout.
pub async fn open_store(global: &Global) -> anyhow::Result<Store> {
    let ns = Namespace::new(&global.namespace).map_err(Refused)?;
    let mut cfg = StoreConfig::new(&global.redis_url, ns, global.shards);
    cfg.cluster = global.redis_cluster;
    cfg.enqueue_wait = Some((global.enqueue_wait_replicas, global.enqueue_wait_timeout));
    let store = Store::open(cfg).map_err(|e| match e {
        StoreError::Config(msg) => anyhow::Error::new(Refused(msg)),
        e => store_error(e),
    })?;
    store.check().await.map_err(store_error)?;
    Ok(store)
}

/// [`open_store`] for a long-running command: Redis may not be up yet (a fresh deployment), so
/// it keeps trying with backoff, but refuses bad settings at once. `None` when `shutdown` came
/// first.
pub async fn open_store_waiting(
    global: &Global,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Store>> {
    let mut delay = Duration::from_millis(100);
    loop {
        match open_store(global).await {
            Ok(store) => return Ok(Some(store)),
            Err(e) if e.downcast_ref::<Refused>().is_some() => return Err(e),
            Err(e) => {
                let error = redact(&format!("{e:#}"), &global.redis_url);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "waiting for Redis");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Cancels `shutdown` at the first SIGTERM or SIGINT, and logs it with `then` (what the
/// command does next).
pub fn spawn_signal_handler(shutdown: CancellationToken, then: &'static str) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        // Cancel first: logging may fail (stderr closed) and must not keep the process running.
        shutdown.cancel();
        tracing::info!("{name} received; {then}");
    });
    Ok(())
}

/// Reads a file, or standard input for `-`.
pub fn read_input(file: &str) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| anyhow::anyhow!("reading standard input: {e}"))?;
    } else {
        buf = std::fs::read(file).map_err(|e| Refused(format!("cannot read {file}: {e}")))?;
    }
    Ok(buf)
}

/// The operations over the configured store, vetting webhook URLs with `guard`.
pub async fn open_ops_with(global: &Global, guard: Guard) -> anyhow::Result<Ops> {
    Ok(Ops::new(open_store(global).await?, guard))
}

/// The operations over the configured store (for those that set no webhook URL).
pub async fn open_ops(global: &Global) -> anyhow::Result<Ops> {
    open_ops_with(global, Guard::default()).await
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).context("serialising output")?
    );
    Ok(())
}

/// Formats a Redis-clock time in ms as RFC 3339 (UTC).
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Worker(args) => worker::run(g, &args).await,
        Command::Endpoint(cmd) => endpoint::run(g, cmd).await,
        Command::Enqueue(args) => enqueue::run(g, &args).await,
        Command::Subscribe(args) => subscriptions::subscribe(g, &args).await,
        Command::Unsubscribe { id, service } => subscriptions::unsubscribe(g, &id, &service).await,
        Command::Subscriptions(cmd) => subscriptions::list(g, cmd).await,
        Command::Publish {
            file,
            idempotency_key,
        } => publish::run(g, &file, idempotency_key.as_deref()).await,
        Command::Dev(args) => dev::run(g, &args).await,
        Command::Stats => inspect::stats(g).await,
        Command::Check(args) => check::run(g, &args).await,
        Command::Job(crate::cli::JobCommand::Get { job_id }) => inspect::job(g, &job_id).await,
        Command::Dead(cmd) => dead::run(g, cmd).await,
        Command::Serve(args) => serve::run(g, &args).await,
        Command::Token(crate::cli::TokenCommand::New { scope }) => token::new(g, scope),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_the_redis_password_in_both_forms() {
        let url = "rediss://herald:p%40ss-w0rd@redis.internal:6380/0";
        assert_eq!(url_password(url), Some("p%40ss-w0rd"));
        assert_eq!(
            redact(
                "AUTH p@ss-w0rd failed for rediss://herald:p%40ss-w0rd@redis",
                url
            ),
            "AUTH *** failed for rediss://herald:***@redis"
        );
        assert_eq!(url_password("redis://127.0.0.1:6379"), None);
        assert_eq!(url_password("redis://user@host/"), None);
        assert_eq!(url_password("redis://:pw@host"), Some("pw"));
        assert_eq!(
            redact("nothing to hide", "redis://127.0.0.1"),
            "nothing to hide"
        );
    }
}
