//! Layered settings of the worker and of the server: compiled defaults, then the optional TOML
//! file, then `HERALD_*` environment variables, then flags; validated into a [`WorkerConfig`]
//! or an [`ApiConfig`] with messages that name the setting at fault.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Map;
use figment::value::{Dict, Value};
use figment::{Figment, Metadata, Profile, Provider};
use herald_api::auth::Tokens;
use herald_api::{ApiConfig, SecureCookies};
use herald_core::guard::AllowList;
use herald_core::RetrySchedule;
use herald_worker::dns::{parse_servers, DnsSettings};
use herald_worker::http::{read_ca_file, CaCertificate, EgressProxy};
use herald_worker::WorkerConfig;
use serde::{Deserialize, Serialize};

use crate::cli::{ServeArgs, WorkerArgs};
use crate::declarations::{self, SERVE, WORKER};
use crate::failure::Refused;

/// The settings as written by people: durations as text (`15s`), the schedule as a list.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    concurrency: usize,
    claim_batch: usize,
    request_timeout: String,
    connect_timeout: String,
    retry_schedule: String,
    retry_jitter: f64,
    lease: String,
    shutdown_grace: String,
    poll_interval: String,
    dead_max: u64,
    dead_max_age: String,
    metrics_addr: String,
    allow_targets: Targets,
    egress_proxy: String,
    disable_after: u32,
    strike_on: String,
    slow_after: String,
    #[serde(default)]
    slow_concurrency: Option<usize>,
    ca_file: String,
    dns_servers: Targets,
    dns_timeout: String,
}

impl Default for Raw {
    fn default() -> Self {
        let d = WorkerConfig::default();
        let text = |d: Duration| humantime::format_duration(d).to_string();
        Self {
            concurrency: d.concurrency,
            claim_batch: d.claim_batch,
            request_timeout: text(d.request_timeout),
            connect_timeout: text(d.connect_timeout),
            retry_schedule: d.retry.to_string(),
            retry_jitter: d.retry.jitter(),
            lease: text(d.lease),
            shutdown_grace: text(d.shutdown_grace),
            poll_interval: text(d.poll_interval),
            dead_max: d.dead_max,
            dead_max_age: text(d.dead_max_age),
            metrics_addr: d.metrics_addr.map(|a| a.to_string()).unwrap_or_default(),
            allow_targets: Targets::Text(d.allow_targets.to_string()),
            egress_proxy: String::new(),
            disable_after: d.disable_after,
            strike_on: "connection".into(),
            slow_after: text(d.slow_after),
            slow_concurrency: None,
            ca_file: String::new(),
            dns_servers: Targets::Text(String::new()),
            dns_timeout: text(d.dns.timeout),
        }
    }
}

/// CIDRs as one comma-separated string (environment, flag) or a TOML list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Targets {
    Text(String),
    List(Vec<String>),
}

impl Targets {
    fn joined(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::List(items) => items.join(","),
        }
    }
}

/// The flags given, read as the environment's values are (`8` a number, `4s` text), to be
/// layered over the file and the environment; errors name them "the command line's flags".
struct GivenFlags(Dict);

fn flags(given: &[(&'static str, String)]) -> GivenFlags {
    GivenFlags(
        given
            .iter()
            .map(|(key, text)| {
                let value = text
                    .parse::<Value>()
                    .unwrap_or_else(|_| Value::from(text.clone()));
                ((*key).to_owned(), value)
            })
            .collect(),
    )
}

impl Provider for GivenFlags {
    fn metadata(&self) -> Metadata {
        Metadata::named("the command line's flags")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

fn duration(key: &str, text: &str) -> Result<Duration, Refused> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        Refused(format!(
            "setting {key} (HERALD_{}): {text:?} is not a duration such as 500ms, 15s, 2m: {e}",
            key.to_uppercase()
        ))
    })?;
    if d.is_zero() {
        return Err(Refused(format!("setting {key} must be greater than zero")));
    }
    Ok(d)
}

/// Reads and validates the worker's settings.
pub fn worker_config(args: &WorkerArgs) -> Result<WorkerConfig, Refused> {
    let mut figment = Figment::from(Serialized::defaults(Raw::default()));
    if let Some(path) = &args.config {
        if !path.exists() {
            return Err(Refused(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment
        .merge(Env::prefixed("HERALD_").only(&declarations::keys(WORKER)))
        .merge(flags(args.settings.given()));
    let raw: Raw = figment
        .extract()
        .map_err(|e| Refused(format!("invalid worker settings: {e}")))?;

    let slow_concurrency = raw
        .slow_concurrency
        .unwrap_or_else(|| WorkerConfig::slow_lane_for(raw.concurrency));
    for (key, value) in [
        ("concurrency", raw.concurrency as f64),
        ("slow_concurrency", slow_concurrency as f64),
        ("claim_batch", raw.claim_batch as f64),
        ("retry_jitter", raw.retry_jitter),
        ("disable_after", f64::from(raw.disable_after)),
    ] {
        declarations::check(WORKER, key, value).map_err(Refused)?;
    }
    let strike_on = raw
        .strike_on
        .parse()
        .map_err(|e| Refused(format!("setting strike_on (HERALD_STRIKE_ON): {e}")))?;
    let retry: RetrySchedule = raw.retry_schedule.parse().map_err(|e| {
        Refused(format!(
            "setting retry_schedule (HERALD_RETRY_SCHEDULE): {e}"
        ))
    })?;
    let allow_targets = AllowList::parse(&raw.allow_targets.joined())
        .map_err(|e| Refused(format!("setting allow_targets (HERALD_ALLOW_TARGETS): {e}")))?;
    let egress_proxy = match raw.egress_proxy.trim() {
        "" => None,
        url => Some(
            EgressProxy::parse(url)
                .map_err(|e| Refused(format!("setting egress_proxy (HERALD_EGRESS_PROXY): {e}")))?,
        ),
    };
    let metrics_addr = match raw.metrics_addr.trim() {
        "" => None,
        addr => Some(addr.parse::<SocketAddr>().map_err(|e| {
            Refused(format!(
                "setting metrics_addr (HERALD_METRICS_ADDR): {addr:?} is not an address such as 0.0.0.0:9464: {e}"
            ))
        })?),
    };
    let extra_roots = ca_certificates(raw.ca_file.trim())?;
    let dns = DnsSettings {
        servers: parse_servers(&raw.dns_servers.joined())
            .map_err(|e| Refused(format!("setting dns_servers (HERALD_DNS_SERVERS): {e}")))?,
        timeout: duration("dns_timeout", &raw.dns_timeout)?,
    };
    Ok(WorkerConfig {
        concurrency: raw.concurrency,
        claim_batch: raw.claim_batch,
        request_timeout: duration("request_timeout", &raw.request_timeout)?,
        connect_timeout: duration("connect_timeout", &raw.connect_timeout)?,
        retry: retry.with_jitter(raw.retry_jitter),
        lease: duration("lease", &raw.lease)?,
        shutdown_grace: duration("shutdown_grace", &raw.shutdown_grace)?,
        poll_interval: duration("poll_interval", &raw.poll_interval)?,
        dead_max: raw.dead_max,
        dead_max_age: duration("dead_max_age", &raw.dead_max_age)?,
        metrics_addr,
        allow_targets,
        egress_proxy,
        disable_after: raw.disable_after,
        strike_on,
        slow_after: duration("slow_after", &raw.slow_after)?,
        slow_concurrency,
        slow_overflow: WorkerConfig::overflow_for(raw.concurrency),
        extra_roots,
        dns,
    })
}

/// The certificates of `HERALD_CA_FILE` (none when it is empty).
fn ca_certificates(path: &str) -> Result<Vec<CaCertificate>, Refused> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    read_ca_file(Path::new(path))
        .map_err(|e| Refused(format!("setting ca_file (HERALD_CA_FILE): {e}")))
}

/// The server's settings as written by people.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    api_addr: String,
    api_tokens: Targets,
    allow_targets: Targets,
    api_secure_cookies: String,
    api_session_ttl: String,
}

impl Default for RawServe {
    fn default() -> Self {
        let d = ApiConfig::new(Tokens::default());
        Self {
            api_addr: DEFAULT_API_ADDR.into(),
            api_tokens: Targets::Text(String::new()),
            allow_targets: Targets::Text(String::new()),
            api_secure_cookies: "auto".into(),
            api_session_ttl: humantime::format_duration(d.session_ttl).to_string(),
        }
    }
}

/// Where `herald serve` listens by default: loopback only, until an operator decides otherwise.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:8080";

/// Reads and validates the server's settings: the address to listen on, and the rest.
pub fn serve_config(args: &ServeArgs) -> Result<(SocketAddr, ApiConfig), Refused> {
    let mut figment = Figment::from(Serialized::defaults(RawServe::default()));
    if let Some(path) = &args.config {
        if !path.exists() {
            return Err(Refused(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment
        .merge(Env::prefixed("HERALD_").only(&declarations::keys(SERVE)))
        .merge(flags(args.settings.given()));
    let raw: RawServe = figment
        .extract()
        .map_err(|e| Refused(format!("invalid server settings: {e}")))?;
    let addr = raw.api_addr.trim().parse::<SocketAddr>().map_err(|e| {
        Refused(format!(
            "setting api_addr (HERALD_API_ADDR): {:?} is not an address such as 127.0.0.1:8080: {e}",
            raw.api_addr
        ))
    })?;
    let tokens = Tokens::parse(&raw.api_tokens.joined())
        .map_err(|e| Refused(format!("setting api_tokens (HERALD_API_TOKENS): {e}")))?;
    let allow_targets = AllowList::parse(&raw.allow_targets.joined())
        .map_err(|e| Refused(format!("setting allow_targets (HERALD_ALLOW_TARGETS): {e}")))?;
    let secure_cookies = match raw.api_secure_cookies.trim() {
        "auto" => SecureCookies::Auto,
        "always" => SecureCookies::Always,
        other => {
            return Err(Refused(format!(
                "setting api_secure_cookies (HERALD_API_SECURE_COOKIES): {other:?} is not one of auto, always"
            )))
        }
    };
    Ok((
        addr,
        ApiConfig {
            tokens,
            allow_targets,
            secure_cookies,
            session_ttl: duration("api_session_ttl", &raw.api_session_ttl)?,
        },
    ))
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail closures return figment::Error
mod tests {
    use super::*;
    use crate::declarations::Flags;

    #[test]
    fn flags_are_read_like_the_environment_and_named_when_wrong() {
        figment::Jail::expect_with(|_| {
            let mut a = args();
            a.settings.set("concurrency", "9");
            a.settings.set("metrics_addr", "[::1]:9464");
            let cfg = worker_config(&a).unwrap();
            assert_eq!(cfg.concurrency, 9);
            assert_eq!(cfg.metrics_addr.unwrap().to_string(), "[::1]:9464");
            a.settings.set("concurrency", "lots");
            let err = worker_config(&a).unwrap_err().to_string();
            assert!(
                err.contains("concurrency") && err.contains("command line's flags"),
                "{err}"
            );
            Ok(())
        });
    }

    /// Each default the tables show as a literal is the one the loader starts from.
    #[test]
    fn the_declared_defaults_are_the_loaders() {
        fn check(list: &[declarations::Setting], defaults: serde_json::Value) {
            for s in list {
                let actual = &defaults[s.key];
                let shown = match s.default {
                    "empty" => "",
                    d if d.len() > 2 && d.starts_with('`') && d.ends_with('`') => {
                        &d[1..d.len() - 1]
                    }
                    // Described, not a value ("half of `concurrency`"): tested elsewhere.
                    _ => continue,
                };
                let same = match actual {
                    serde_json::Value::String(text) => match (
                        humantime::parse_duration(text),
                        humantime::parse_duration(shown),
                    ) {
                        (Ok(a), Ok(b)) => a == b,
                        _ => text == shown,
                    },
                    serde_json::Value::Number(n) => n.as_f64() == shown.parse::<f64>().ok(),
                    other => panic!("{}: {other}", s.key),
                };
                assert!(
                    same,
                    "{} shows {shown:?}, the loader starts from {actual}",
                    s.key
                );
            }
        }
        check(WORKER, serde_json::to_value(Raw::default()).unwrap());
        check(SERVE, serde_json::to_value(RawServe::default()).unwrap());
        assert_eq!(WorkerConfig::slow_lane_for(200), 100);
        assert_eq!(WorkerConfig::default().retry.retries(), 20);
    }

    fn args() -> WorkerArgs {
        WorkerArgs {
            config: None,
            settings: Flags::default(),
        }
    }

    #[test]
    fn ca_file_and_dns() {
        figment::Jail::expect_with(|jail| {
            let cfg = worker_config(&args()).unwrap();
            assert!(cfg.extra_roots.is_empty());
            assert_eq!(cfg.dns, DnsSettings::default());

            let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
            jail.create_file("ca.pem", &ca.cert.pem())?;
            jail.set_env("HERALD_CA_FILE", "ca.pem");
            jail.set_env("HERALD_DNS_SERVERS", "127.0.0.1:5353, 10.0.0.2");
            jail.set_env("HERALD_DNS_TIMEOUT", "800ms");
            let cfg = worker_config(&args()).unwrap();
            assert_eq!(cfg.extra_roots.len(), 1);
            assert_eq!(
                cfg.dns.servers,
                vec![
                    "127.0.0.1:5353".parse().unwrap(),
                    "10.0.0.2:53".parse().unwrap()
                ]
            );
            assert_eq!(cfg.dns.timeout, Duration::from_millis(800));

            for (key, value, named) in [
                ("HERALD_CA_FILE", "missing.pem", "cannot read missing.pem"),
                ("HERALD_CA_FILE", "w.txt", "holds no certificate"),
                ("HERALD_DNS_SERVERS", "dns.example", "dns.example"),
                ("HERALD_DNS_TIMEOUT", "soon", "soon"),
            ] {
                jail.create_file("w.txt", "not a certificate")?;
                jail.set_env(key, value);
                let err = worker_config(&args()).unwrap_err().0;
                assert!(err.contains(key) && err.contains(named), "{key}: {err}");
                jail.set_env(key, "");
                if key == "HERALD_DNS_TIMEOUT" {
                    jail.set_env(key, "5s");
                }
            }
            Ok(())
        });
    }

    #[test]
    fn defaults_round_trip_through_text() {
        figment::Jail::expect_with(|_| {
            let cfg = worker_config(&args()).unwrap();
            let d = WorkerConfig::default();
            assert_eq!(cfg.retry, d.retry);
            assert_eq!(cfg.request_timeout, d.request_timeout);
            assert_eq!(cfg.metrics_addr, d.metrics_addr);
            assert_eq!(cfg.slow_after, d.slow_after);
            assert_eq!(cfg.slow_concurrency, d.slow_concurrency);
            Ok(())
        });
    }

    #[test]
    fn the_slow_lane_is_half_the_main_one_unless_set() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HERALD_CONCURRENCY", "40");
            assert_eq!(worker_config(&args()).unwrap().slow_concurrency, 20);
            jail.set_env("HERALD_SLOW_CONCURRENCY", "7");
            jail.set_env("HERALD_SLOW_AFTER", "2s");
            let cfg = worker_config(&args()).unwrap();
            assert_eq!(cfg.slow_concurrency, 7);
            assert_eq!(cfg.slow_after, Duration::from_secs(2));
            jail.set_env("HERALD_SLOW_CONCURRENCY", "0");
            let err = worker_config(&args()).unwrap_err().0;
            assert!(err.contains("HERALD_SLOW_CONCURRENCY"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn file_then_environment_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "w.toml",
                "concurrency = 7\nlease = \"9s\"\nrequest_timeout = \"3s\"",
            )?;
            jail.set_env("HERALD_CONCURRENCY", "8");
            jail.set_env("HERALD_RETRY_SCHEDULE", "50ms,1s");
            let mut a = args();
            a.config = Some("w.toml".into());
            a.settings.set("request_timeout", "4s");
            let cfg = worker_config(&a).unwrap();
            assert_eq!(cfg.concurrency, 8);
            assert_eq!(cfg.lease, Duration::from_secs(9));
            assert_eq!(cfg.request_timeout, Duration::from_secs(4));
            assert_eq!(cfg.retry.retries(), 2);
            Ok(())
        });
    }

    #[test]
    fn allow_targets_and_egress_proxy() {
        figment::Jail::expect_with(|jail| {
            let cfg = worker_config(&args()).unwrap();
            assert!(cfg.allow_targets.is_empty());
            assert_eq!(cfg.egress_proxy, None);

            jail.create_file("w.toml", "allow_targets = [\"10.1.0.0/16\", \"fd00::/8\"]")?;
            let mut a = args();
            a.config = Some("w.toml".into());
            let cfg = worker_config(&a).unwrap();
            assert_eq!(cfg.allow_targets.to_string(), "10.1.0.0/16,fd00::/8");

            jail.set_env("HERALD_ALLOW_TARGETS", "127.0.0.0/8");
            jail.set_env("HERALD_EGRESS_PROXY", "http://u:p@smokescreen:4750");
            let cfg = worker_config(&a).unwrap();
            assert_eq!(cfg.allow_targets.to_string(), "127.0.0.0/8");
            assert_eq!(
                cfg.egress_proxy.unwrap().to_string(),
                "http://smokescreen:4750"
            );

            a.settings.set("allow_targets", "192.168.0.0/16");
            let cfg = worker_config(&a).unwrap();
            assert_eq!(cfg.allow_targets.to_string(), "192.168.0.0/16");

            a.settings.set("allow_targets", "127.0.0.0/8,not-a-cidr");
            let err = worker_config(&a).unwrap_err().to_string();
            assert!(
                err.contains("allow_targets") && err.contains("HERALD_ALLOW_TARGETS"),
                "{err}"
            );
            assert!(err.contains("not-a-cidr"), "{err}");
            a.settings.unset("allow_targets");

            jail.set_env("HERALD_EGRESS_PROXY", "socks5://u:secret@proxy:1080");
            let err = worker_config(&a).unwrap_err().to_string();
            assert!(err.contains("HERALD_EGRESS_PROXY"), "{err}");
            assert!(!err.contains("secret"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_setting() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HERALD_REQUEST_TIMEOUT", "soon");
            let err = worker_config(&args()).unwrap_err().to_string();
            assert!(err.contains("request_timeout"), "{err}");
            jail.set_env("HERALD_REQUEST_TIMEOUT", "1s");
            jail.set_env("HERALD_RETRY_SCHEDULE", "1s,x");
            let err = worker_config(&args()).unwrap_err().to_string();
            assert!(err.contains("HERALD_RETRY_SCHEDULE"), "{err}");
            jail.set_env("HERALD_RETRY_SCHEDULE", "1s");
            jail.set_env("HERALD_CONCURRENCY", "many");
            let err = worker_config(&args()).unwrap_err().to_string();
            assert!(
                err.contains("CONCURRENCY") && err.contains("HERALD_"),
                "{err}"
            );
            Ok(())
        });
    }

    fn serve_args() -> ServeArgs {
        ServeArgs {
            config: None,
            settings: Flags::default(),
        }
    }

    #[test]
    fn server_settings_need_a_token_and_layer_like_the_worker_s() {
        figment::Jail::expect_with(|jail| {
            let err = serve_config(&serve_args()).unwrap_err().to_string();
            assert!(
                err.contains("HERALD_API_TOKENS") && err.contains("token new"),
                "{err}"
            );

            let admin = herald_api::auth::new_token(herald_api::auth::Scope::Admin).hashed;
            let read = herald_api::auth::new_token(herald_api::auth::Scope::Read).hashed;
            jail.set_env("HERALD_API_TOKENS", format!("{admin}, {read}"));
            let (addr, cfg) = serve_config(&serve_args()).unwrap();
            assert_eq!(addr.to_string(), DEFAULT_API_ADDR);
            assert_eq!(cfg.secure_cookies, SecureCookies::Auto);
            assert_eq!(cfg.session_ttl, Duration::from_secs(12 * 3600));
            assert!(cfg.tokens.scope_of(&read).is_some());

            jail.create_file(
                "api.toml",
                "api_addr = \"0.0.0.0:9000\"\napi_secure_cookies = \"always\"\nallow_targets = [\"10.0.0.0/8\"]",
            )?;
            let mut a = serve_args();
            a.config = Some("api.toml".into());
            let (addr, cfg) = serve_config(&a).unwrap();
            assert_eq!(addr.to_string(), "0.0.0.0:9000");
            assert_eq!(cfg.secure_cookies, SecureCookies::Always);
            assert_eq!(cfg.allow_targets.to_string(), "10.0.0.0/8");

            jail.set_env("HERALD_API_ADDR", "127.0.0.1:9001");
            assert_eq!(serve_config(&a).unwrap().0.to_string(), "127.0.0.1:9001");
            a.settings.set("api_addr", "127.0.0.1:9002");
            assert_eq!(serve_config(&a).unwrap().0.to_string(), "127.0.0.1:9002");

            a.settings.set("api_addr", "localhost");
            let err = serve_config(&a).unwrap_err().to_string();
            assert!(err.contains("HERALD_API_ADDR"), "{err}");
            a.settings.unset("api_addr");
            a.settings.set("api_secure_cookies", "sometimes");
            let err = serve_config(&a).unwrap_err().to_string();
            assert!(err.contains("HERALD_API_SECURE_COOKIES"), "{err}");
            a.settings.unset("api_secure_cookies");
            jail.set_env("HERALD_API_TOKENS", "herald_plaintext");
            let err = serve_config(&a).unwrap_err().to_string();
            assert!(
                err.contains("HERALD_API_TOKENS") && err.contains("entry 1"),
                "{err}"
            );
            Ok(())
        });
    }
}
