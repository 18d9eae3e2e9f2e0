//! Every setting of `herald worker` and `herald serve`, declared once: its TOML key, from which
//! its environment variable (`HERALD_<KEY>`) and its flag (`--<key-with-dashes>`, when it has
//! one) follow, its default as shown to people, what it does, and its bounds. The flags and
//! their `--help`, the variables the loader reads and the bounds it checks
//! ([`crate::settings`]), and the tables of the README and of `docs/api.md` come from here; a
//! test fails when those tables and this list disagree.
//! The defaults themselves are the configurations' own (`WorkerConfig::default()`, checked
//! against the ones shown here by a test).

use std::marker::PhantomData;

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The TOML key.
    pub key: &'static str,
    /// Whether a flag sets it too (otherwise only the file and the environment do).
    pub flag: bool,
    /// The default, as the tables show it (literals in backticks).
    pub default: &'static str,
    /// What it does.
    pub meaning: &'static str,
    /// The values it takes, when the type alone does not say.
    pub bounds: Bounds,
}

/// The values a numeric setting takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bounds {
    /// Any value of its type.
    Any,
    /// From the first to the second, both included.
    Between(f64, f64),
    /// The value or more.
    AtLeast(f64),
}

impl Bounds {
    /// ` (1 to 100000)`, ` (at least 1)`, or nothing: what the tables and `--help` add to the
    /// meaning.
    fn said(&self) -> String {
        match self {
            Bounds::Any => String::new(),
            Bounds::Between(min, max) => format!(" ({min} to {max})"),
            Bounds::AtLeast(min) => format!(" (at least {min})"),
        }
    }
}

impl Setting {
    /// `HERALD_<KEY>`.
    pub fn env(&self) -> String {
        format!("HERALD_{}", self.key.to_uppercase())
    }

    /// The flag's name without its dashes (`request-timeout`), when it has one.
    pub fn flag_name(&self) -> Option<String> {
        self.flag.then(|| self.key.replace('_', "-"))
    }

    /// What it does, with its bounds.
    pub fn described(&self) -> String {
        format!("{}{}", self.meaning, self.bounds.said())
    }

    /// Refuses a value outside its bounds, naming the setting and its variable.
    pub fn check(&self, value: f64) -> Result<(), String> {
        let (inside, needed) = match self.bounds {
            Bounds::Any => (true, String::new()),
            Bounds::Between(min, max) => (
                (min..=max).contains(&value),
                format!("between {min} and {max}"),
            ),
            Bounds::AtLeast(min) => (value >= min, format!("at least {min}")),
        };
        if inside {
            Ok(())
        } else {
            Err(format!(
                "setting {} ({}) must be {needed}",
                self.key,
                self.env()
            ))
        }
    }

    /// Its row in the README's table: key, variable, flag, default, meaning.
    #[cfg(test)]
    pub fn row(&self) -> String {
        let flag = self
            .flag_name()
            .map(|f| format!("`--{f}`"))
            .unwrap_or_default();
        format!(
            "| `{}` | `{}` | {flag} | {} | {} |",
            self.key,
            self.env(),
            self.default,
            self.described()
        )
        .replace("|  |", "| |")
    }

    /// Its text in `--help`.
    fn help(&self) -> String {
        format!(
            "{} [env: {}] [default: {}]",
            self.described(),
            self.env(),
            self.default.replace('`', "")
        )
    }
}

/// The settings of `herald worker`, in the order of the README's table.
pub const WORKER: &[Setting] = &[
    Setting {
        key: "concurrency",
        flag: true,
        default: "`200`",
        meaning: "most deliveries in flight at once in this worker's main lane, for endpoints in good standing",
        bounds: Bounds::Between(1.0, 100_000.0),
    },
    Setting {
        key: "slow_concurrency",
        flag: true,
        default: "half of `concurrency`",
        meaning: "most deliveries in flight at once in this worker's slow lane, for endpoints judged slow",
        bounds: Bounds::Between(1.0, 100_000.0),
    },
    Setting {
        key: "slow_after",
        flag: true,
        default: "`250ms`",
        meaning: "a delivery unanswered after this long judges its endpoint slow: it leaves the main lane, and the endpoint is served from slow lanes until a delivery to it comes back sooner",
        bounds: Bounds::Any,
    },
    Setting {
        key: "claim_batch",
        flag: false,
        default: "`100`",
        meaning: "most jobs taken from a shard in one claim",
        bounds: Bounds::Between(1.0, 10_000.0),
    },
    Setting {
        key: "request_timeout",
        flag: true,
        default: "`15s`",
        meaning: "total time of one attempt, from connecting to the last byte of the answer",
        bounds: Bounds::Any,
    },
    Setting {
        key: "connect_timeout",
        flag: false,
        default: "`5s`",
        meaning: "time to establish the TCP (and TLS) connection",
        bounds: Bounds::Any,
    },
    Setting {
        key: "retry_schedule",
        flag: true,
        default: "20 delays over 24 days",
        meaning: "comma-separated delays between attempts, e.g. `50ms,1s,2m`; its length is the number of retries; empty means none",
        bounds: Bounds::Any,
    },
    Setting {
        key: "retry_jitter",
        flag: false,
        default: "`0.1`",
        meaning: "the jitter: each delay is drawn from delay × (1 ± jitter)",
        bounds: Bounds::Between(0.0, 0.5),
    },
    Setting {
        key: "lease",
        flag: true,
        default: "`60s`",
        meaning: "how long a claimed job belongs to this worker before any worker may take it back; a warning is logged if it is not longer than connect + request timeout",
        bounds: Bounds::Any,
    },
    Setting {
        key: "shutdown_grace",
        flag: true,
        default: "`20s`",
        meaning: "how long in-flight deliveries may finish after SIGINT or SIGTERM",
        bounds: Bounds::Any,
    },
    Setting {
        key: "poll_interval",
        flag: true,
        default: "`30s`",
        meaning: "safety-net scan of every shard for work no wake-up hint announced, jittered ±20 %",
        bounds: Bounds::Any,
    },
    Setting {
        key: "dead_max",
        flag: false,
        default: "`100000`",
        meaning: "most dead-letter entries over all shards (enforced per shard, as an equal share)",
        bounds: Bounds::Any,
    },
    Setting {
        key: "dead_max_age",
        flag: false,
        default: "`30days`",
        meaning: "oldest dead-letter entry kept (both bounds are enforced by every worker at start and then every 5 minutes, down to the bound in one round)",
        bounds: Bounds::Any,
    },
    Setting {
        key: "disable_after",
        flag: true,
        default: "`5`",
        meaning: "consecutive strikes that disable an endpoint",
        bounds: Bounds::AtLeast(1.0),
    },
    Setting {
        key: "strike_on",
        flag: true,
        default: "`connection`",
        meaning: "which failed attempts strike: `connection` (the receiver could not be reached: DNS, refused, unreachable, TLS, connect timeout or other connection failure, blocked by the SSRF guard) or `all`",
        bounds: Bounds::Any,
    },
    Setting {
        key: "allow_targets",
        flag: true,
        default: "empty",
        meaning: "CIDRs the SSRF guard lets through, comma-separated (a TOML list also works), e.g. `10.20.0.0/16`; by default loopback, private, link-local (cloud metadata), multicast, documentation and other special ranges are refused",
        bounds: Bounds::Any,
    },
    Setting {
        key: "egress_proxy",
        flag: true,
        default: "empty",
        meaning: "`http://` or `https://` URL of a proxy (such as smokescreen) that every delivery goes through; the proxy then resolves and must vet receivers' names, herald checks only literal addresses",
        bounds: Bounds::Any,
    },
    Setting {
        key: "ca_file",
        flag: true,
        default: "empty",
        meaning: "PEM file of CA certificates that receivers' certificates may also chain to (receivers behind a private CA), trusted besides the public web roots",
        bounds: Bounds::Any,
    },
    Setting {
        key: "dns_servers",
        flag: true,
        default: "empty",
        meaning: "name servers to ask, comma-separated `address` or `address:port`, e.g. `10.0.0.2,10.0.0.3:53`; empty: the system's (`/etc/resolv.conf` with its search domains, after `/etc/hosts`)",
        bounds: Bounds::Any,
    },
    Setting {
        key: "dns_timeout",
        flag: true,
        default: "`5s`",
        meaning: "longest one lookup may take, retries included; answers are cached for their TTL, negative answers for theirs (at most 60 s), a lookup that timed out or failed at the server for 10 s",
        bounds: Bounds::Any,
    },
    Setting {
        key: "metrics_addr",
        flag: true,
        default: "`0.0.0.0:9464`",
        meaning: "address of `/metrics`, `/healthz`, `/readyz`; empty disables the server",
        bounds: Bounds::Any,
    },
];

/// The settings of `herald serve`, in the order of the table in `docs/api.md`.
pub const SERVE: &[Setting] = &[
    Setting {
        key: "api_addr",
        flag: true,
        default: "`127.0.0.1:8080`",
        meaning: "address to listen on; loopback only by default",
        bounds: Bounds::Any,
    },
    Setting {
        key: "api_tokens",
        flag: false,
        default: "none (required)",
        meaning: "hashed forms of the tokens allowed in, comma-separated (a TOML list also works)",
        bounds: Bounds::Any,
    },
    Setting {
        key: "allow_targets",
        flag: true,
        default: "empty",
        meaning: "CIDRs whose literal addresses a webhook URL may name, as for `herald endpoint set`",
        bounds: Bounds::Any,
    },
    Setting {
        key: "api_secure_cookies",
        flag: true,
        default: "`auto`",
        meaning: "when the console's cookies are marked `Secure`: `auto` (when the request came over HTTPS, as a TLS-terminating proxy says with `X-Forwarded-Proto: https`) or `always`",
        bounds: Bounds::Any,
    },
    Setting {
        key: "api_session_ttl",
        flag: true,
        default: "`12h`",
        meaning: "how long a console session lasts",
        bounds: Bounds::Any,
    },
];

/// The settings of one command.
pub trait List {
    const SETTINGS: &'static [Setting];
}

/// [`WORKER`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Worker;

impl List for Worker {
    const SETTINGS: &'static [Setting] = WORKER;
}

/// [`SERVE`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Serve;

impl List for Serve {
    const SETTINGS: &'static [Setting] = SERVE;
}

/// The keys the environment may set, as `HERALD_<KEY>`.
pub fn keys(list: &[Setting]) -> Vec<&'static str> {
    list.iter().map(|s| s.key).collect()
}

/// The declaration of `key` in `list`.
///
/// # Panics
/// When `key` is not declared there: a defect, caught by every test that loads settings.
pub fn setting(list: &[Setting], key: &str) -> Setting {
    *list
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("setting {key} is not declared"))
}

/// Refuses a value of `key` outside its declared bounds.
pub fn check(list: &[Setting], key: &str, value: f64) -> Result<(), String> {
    setting(list, key).check(value)
}

/// The flags of a command's settings that were given, as text, by key. Flattened into the
/// command's arguments: one flag per setting of `L` that has one, with its `--help` from the
/// declaration; the settings without a flag are listed after the options.
#[derive(Debug, Clone)]
pub struct Flags<L> {
    given: Vec<(&'static str, String)>,
    list: PhantomData<L>,
}

impl<L> Default for Flags<L> {
    fn default() -> Self {
        Self {
            given: Vec::new(),
            list: PhantomData,
        }
    }
}

impl<L: List> Flags<L> {
    /// The flags given, as (key, text).
    pub fn given(&self) -> &[(&'static str, String)] {
        &self.given
    }

    /// Sets a flag as if given on the command line.
    #[cfg(test)]
    pub fn set(&mut self, key: &'static str, text: &str) {
        assert!(
            L::SETTINGS.iter().any(|s| s.key == key && s.flag),
            "{key} has no flag"
        );
        self.given.retain(|(k, _)| *k != key);
        self.given.push((key, text.to_owned()));
    }

    /// Takes a flag back.
    #[cfg(test)]
    pub fn unset(&mut self, key: &str) {
        self.given.retain(|(k, _)| *k != key);
    }
}

impl<L: List> Args for Flags<L> {
    fn augment_args(mut cmd: Command) -> Command {
        let mut unflagged = Vec::new();
        for s in L::SETTINGS {
            match s.flag_name() {
                Some(name) => {
                    cmd = cmd.arg(
                        Arg::new(s.key)
                            .long(name)
                            .value_name(s.key.to_uppercase())
                            .help(s.help()),
                    );
                }
                None => unflagged.push(format!(
                    "  {} ({}): {} [default: {}]",
                    s.env(),
                    s.key,
                    s.meaning,
                    s.default.replace('`', "")
                )),
            }
        }
        if !unflagged.is_empty() {
            cmd = cmd.after_help(format!(
                "Also read from the environment or the TOML file (no flag):\n{}",
                unflagged.join("\n")
            ));
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl<L: List> FromArgMatches for Flags<L> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Self::default();
        flags.update_from_arg_matches(m)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for s in L::SETTINGS.iter().filter(|s| s.flag) {
            if let Some(text) = m.get_one::<String>(s.key) {
                self.given.retain(|(k, _)| *k != s.key);
                self.given.push((s.key, text.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows of the table under `| TOML key | environment | flag | default | meaning |`.
    fn table(doc: &str) -> Vec<&str> {
        let start = doc
            .find("| TOML key | environment | flag | default | meaning |")
            .expect("the settings table");
        doc[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect()
    }

    #[test]
    fn the_readme_and_the_api_doc_list_the_settings_as_declared() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
        let api = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md"));
        for (doc, list, name) in [(readme, WORKER, "README.md"), (api, SERVE, "docs/api.md")] {
            let rows: Vec<String> = list.iter().map(Setting::row).collect();
            assert_eq!(
                table(doc),
                rows,
                "{name}'s table and the declarations disagree"
            );
        }
    }
}
