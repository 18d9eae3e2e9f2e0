//! The status-change event (the webhook payload of SPEC §1.4) and the notification levels that
//! decide which subscribers receive it (SPEC §1.3).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The example event of the product documentation (a Heroku incident), byte for byte.
pub const EXAMPLE: &str = include_str!("example-event.json");

/// A service's or a component's status. Unknown strings are refused when an event is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Up,
    Warn,
    Down,
    Maintenance,
}

/// One component's change, as listed in `component_status_changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentChange {
    /// `null` when the status page does not group its components.
    pub group_name: Option<String>,
    pub name: String,
    pub last_status: Status,
    pub current_status: Status,
}

/// One component's current status, as listed in `component_statuses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentStatus {
    pub group_name: Option<String>,
    pub name: String,
    pub status: Status,
}

/// A monitored service changed status: exactly the JSON object the receivers get, with the
/// fields in the documented order. `occurred_at` keeps the offset it was written with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusEvent {
    pub component_status_changes: Vec<ComponentChange>,
    pub component_statuses: Vec<ComponentStatus>,
    pub current_status: Status,
    pub details: String,
    pub favicon_url: String,
    pub home_page_url: String,
    pub last_status: Status,
    pub message: String,
    /// RFC 3339 with the original offset, e.g. `2022-01-20T10:52:30-04:00`.
    pub occurred_at: chrono::DateTime<chrono::FixedOffset>,
    pub service_name: String,
    pub slug: String,
    pub status_page_url: String,
}

/// Why an event was refused.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not JSON, a missing or unknown field, a wrong type or an unknown status; serde's message
    /// names the field and the position.
    #[error("invalid status-change event: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error("invalid status-change event: slug {0:?} must be 1 to 100 characters of a-z, 0-9, '.', '_', '-'")]
    BadSlug(String),
}

/// Checks a service slug: 1 to 100 characters of `[a-z0-9._-]`.
pub fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 100
        && slug.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// A service slug that [`check_slug`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service slug {0:?} must be 1 to 100 characters of a-z, 0-9, '.', '_', '-'")]
pub struct SlugError(pub String);

/// [`valid_slug`], with the error operators see.
pub fn check_slug(slug: &str) -> Result<&str, SlugError> {
    if valid_slug(slug) {
        Ok(slug)
    } else {
        Err(SlugError(slug.to_owned()))
    }
}

impl StatusEvent {
    /// Reads an event from JSON, refusing missing fields, unknown fields and unknown statuses.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventError> {
        let event: Self = serde_json::from_slice(bytes)?;
        if !valid_slug(&event.slug) {
            return Err(EventError::BadSlug(event.slug));
        }
        Ok(event)
    }

    /// The payload receivers get.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a status event always serialises")
    }
}

/// Which status changes a subscription is notified of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Every change, maintenance included.
    #[default]
    All,
    /// Changes where the previous or the new status is `warn` or `down`.
    Warn,
    /// Changes where the previous or the new status is `down`.
    Down,
    /// Subscribed, never notified.
    None,
}

impl Level {
    /// Whether a change from `last` to `current` is delivered at this level.
    pub fn admits(self, last: Status, current: Status) -> bool {
        let either = |f: fn(Status) -> bool| f(last) || f(current);
        match self {
            Level::All => true,
            Level::Warn => either(|s| matches!(s, Status::Warn | Status::Down)),
            Level::Down => either(|s| s == Status::Down),
            Level::None => false,
        }
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Level::All),
            "warn" => Ok(Level::Warn),
            "down" => Ok(Level::Down),
            "none" => Ok(Level::None),
            other => Err(format!(
                "notification level {other:?} is not one of all, warn, down, none"
            )),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::All => "all",
            Level::Warn => "warn",
            Level::Down => "down",
            Level::None => "none",
        })
    }
}

/// A dashboard's subscription to one service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Subscription {
    pub level: Level,
    /// When not empty, only changes that touch one of these components notify. A component is
    /// named by its `name`, or `group/name` to tell apart equal names in different groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
}

/// The most components one subscription may name.
pub const MAX_COMPONENTS: usize = 100;

/// The longest component name, in characters (`group/name` counted whole).
pub const MAX_COMPONENT_CHARS: usize = 200;

impl Subscription {
    /// Refuses a subscription naming more than [`MAX_COMPONENTS`] components, or one longer
    /// than [`MAX_COMPONENT_CHARS`]: each is stored with the subscription, shown by every
    /// listing and compared with every event published.
    pub fn check(&self) -> Result<(), String> {
        if self.components.len() > MAX_COMPONENTS {
            return Err(format!(
                "a subscription names at most {MAX_COMPONENTS} components, not {}",
                self.components.len()
            ));
        }
        if let Some(long) = self
            .components
            .iter()
            .find(|c| c.chars().count() > MAX_COMPONENT_CHARS)
        {
            return Err(format!(
                "a component name is at most {MAX_COMPONENT_CHARS} characters, not {} ({}...)",
                long.chars().count(),
                long.chars().take(20).collect::<String>()
            ));
        }
        Ok(())
    }

    /// A subscription at `level` to the components named (trimmed; empty names are dropped).
    pub fn new(level: Level, components: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        Self {
            level,
            components: components
                .into_iter()
                .map(|c| c.as_ref().trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect(),
        }
    }

    fn names(&self, group: Option<&str>, name: &str) -> bool {
        self.components.iter().any(|c| {
            c == name
                || group.is_some_and(|g| {
                    c.len() == g.len() + 1 + name.len() && *c == format!("{g}/{name}")
                })
        })
    }

    /// Whether this subscription is notified of `event`.
    ///
    /// Without components, the level judges the service's own change. With components, at
    /// least one listed component must have changed, and the level judges that component's
    /// change.
    pub fn admits(&self, event: &StatusEvent) -> bool {
        if self.components.is_empty() {
            return self.level.admits(event.last_status, event.current_status);
        }
        event.component_status_changes.iter().any(|c| {
            self.names(c.group_name.as_deref(), &c.name)
                && self.level.admits(c.last_status, c.current_status)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    const SEED: &str = EXAMPLE;

    #[test]
    fn slugs_and_subscriptions_are_checked_as_operators_type_them() {
        assert_eq!(check_slug("heroku"), Ok("heroku"));
        let err = check_slug("Heroku!").unwrap_err().to_string();
        assert!(err.contains("\"Heroku!\"") && err.contains("a-z"), "{err}");
        let sub = Subscription::new(Level::Down, [" Apps ", "", "EU/Database"]);
        assert_eq!(sub.components, ["Apps", "EU/Database"]);
        assert_eq!(sub.level, Level::Down);
    }

    #[test]
    fn subscriptions_name_a_bounded_number_of_bounded_components() {
        let names = |n: usize, chars: usize| -> Vec<String> {
            (0..n).map(|i| format!("{i:0>chars$}")).collect()
        };
        let most = Subscription::new(Level::Down, names(MAX_COMPONENTS, MAX_COMPONENT_CHARS));
        assert_eq!(most.check(), Ok(()));
        let many = Subscription::new(Level::Down, names(MAX_COMPONENTS + 1, 3));
        let err = many.check().unwrap_err();
        assert!(err.contains("at most 100 components"), "{err}");
        let long = Subscription::new(Level::Down, names(1, MAX_COMPONENT_CHARS + 1));
        let err = long.check().unwrap_err();
        assert!(err.contains("at most 200 characters, not 201"), "{err}");
    }

    #[test]
    fn the_documented_example_round_trips() {
        let event = StatusEvent::from_json(SEED.as_bytes()).unwrap();
        assert_eq!(event.occurred_at.to_rfc3339(), "2022-01-20T10:52:30-04:00");
        assert_eq!(event.component_status_changes[0].group_name, None);
        let original: serde_json::Value = serde_json::from_str(SEED).unwrap();
        let again: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(original, again);
    }

    #[test]
    fn unknown_statuses_and_missing_fields_are_refused_by_name() {
        let bad = SEED.replace(
            "\"current_status\" : \"warn\"",
            "\"current_status\" : \"sideways\"",
        );
        let err = StatusEvent::from_json(bad.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("sideways"), "{err}");
        let mut v: serde_json::Value = serde_json::from_str(SEED).unwrap();
        v.as_object_mut().unwrap().remove("message");
        let err = StatusEvent::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("message"), "{err}");
        let mut v: serde_json::Value = serde_json::from_str(SEED).unwrap();
        v["slug"] = "Not A Slug".into();
        assert!(StatusEvent::from_json(v.to_string().as_bytes()).is_err());
    }

    #[test]
    fn levels_follow_the_documentation_for_every_pair() {
        let all = [Up, Warn, Down, Maintenance];
        for last in all {
            for current in all {
                let touches = |s: &[Status]| s.contains(&last) || s.contains(&current);
                assert!(Level::All.admits(last, current));
                assert_eq!(
                    Level::Warn.admits(last, current),
                    touches(&[Warn, Down]),
                    "{last:?}->{current:?}"
                );
                assert_eq!(
                    Level::Down.admits(last, current),
                    touches(&[Down]),
                    "{last:?}->{current:?}"
                );
                assert!(!Level::None.admits(last, current));
            }
        }
    }

    #[test]
    fn component_filters_need_a_listed_component_to_change() {
        let event = StatusEvent::from_json(SEED.as_bytes()).unwrap(); // Apps: up -> warn
        let sub = |level, components: &[&str]| Subscription {
            level,
            components: components.iter().map(|s| s.to_string()).collect(),
        };
        assert!(sub(Level::All, &["Apps"]).admits(&event));
        assert!(sub(Level::Warn, &["Apps", "Data"]).admits(&event));
        assert!(!sub(Level::Down, &["Apps"]).admits(&event));
        assert!(
            !sub(Level::All, &["Data"]).admits(&event),
            "Data did not change"
        );
        let mut grouped = event.clone();
        grouped.component_status_changes[0].group_name = Some("EU".into());
        assert!(sub(Level::All, &["EU/Apps"]).admits(&grouped));
        assert!(!sub(Level::All, &["US/Apps"]).admits(&grouped));
    }
}
