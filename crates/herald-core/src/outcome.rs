//! What one delivery attempt came to, and the classification of failures.
//!
//! The class decides what happens next: every failure is retried by the schedule, and the
//! connection-level classes (the receiver could not be reached at all) are the ones that count
//! towards disabling an endpoint.

use std::fmt;
use std::time::Duration;

/// Why an attempt failed. The names are stable: they appear in metrics labels, logs, the
/// attempt log and the dead-letter store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The host name did not resolve.
    Dns,
    /// The receiver's host refused the TCP connection.
    Refused,
    /// No route to the receiver's host or network.
    Unreachable,
    /// The TLS handshake failed (bad certificate, protocol error).
    Tls,
    /// The TCP or TLS connection was not established within the connect timeout.
    ConnectTimeout,
    /// Another connection-level failure (reset during connect, ...).
    Connect,
    /// The target address is refused by the SSRF guard.
    Blocked,
    /// The receiver answered with a status other than 2xx.
    HttpStatus,
    /// The receiver did not answer within the request timeout.
    Timeout,
    /// The connection broke while sending the request or reading the answer.
    Body,
    /// A worker claimed the job and did not settle it before its lease ran out (crash, hang).
    LeaseExpired,
}

impl FailureClass {
    /// Every class, for exhaustive metrics and tests.
    pub const ALL: [FailureClass; 11] = [
        Self::Dns,
        Self::Refused,
        Self::Unreachable,
        Self::Tls,
        Self::ConnectTimeout,
        Self::Connect,
        Self::Blocked,
        Self::HttpStatus,
        Self::Timeout,
        Self::Body,
        Self::LeaseExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Refused => "refused",
            Self::Unreachable => "unreachable",
            Self::Tls => "tls",
            Self::ConnectTimeout => "connect_timeout",
            Self::Connect => "connect",
            Self::Blocked => "blocked",
            Self::HttpStatus => "http_status",
            Self::Timeout => "timeout",
            Self::Body => "body",
            Self::LeaseExpired => "lease_expired",
        }
    }

    /// True when the receiver could not be reached at all: DNS, refused, unreachable, TLS,
    /// connect timeout, any other failure to connect, or a target the SSRF guard refuses.
    /// These are the failures that count as strikes by default.
    pub fn is_connection_level(self) -> bool {
        matches!(
            self,
            Self::Dns
                | Self::Refused
                | Self::Unreachable
                | Self::Tls
                | Self::ConnectTimeout
                | Self::Connect
                | Self::Blocked
        )
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one attempt, as the worker hands it to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// The attempt failed; `detail` is a short human-readable explanation.
    Failed {
        class: FailureClass,
        status: Option<u16>,
        detail: String,
        /// A later time the receiver asked for (`Retry-After` on 429/503).
        retry_after: Option<Duration>,
    },
}

impl Outcome {
    /// The label used for metrics: `delivered` or the failure class.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "delivered",
            Self::Failed { class, .. } => class.as_str(),
        }
    }

    /// The one-line error recorded with the job: `class: detail` (with the status if any).
    pub fn error_line(&self) -> Option<String> {
        match self {
            Self::Delivered { .. } => None,
            Self::Failed {
                class,
                status: Some(status),
                detail,
                ..
            } => Some(format!("{class} {status}: {detail}")),
            Self::Failed { class, detail, .. } => Some(format!("{class}: {detail}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_level_classes_are_the_unreachable_ones() {
        let strikes: Vec<_> = FailureClass::ALL
            .into_iter()
            .filter(|c| c.is_connection_level())
            .map(FailureClass::as_str)
            .collect();
        assert_eq!(
            strikes,
            [
                "dns",
                "refused",
                "unreachable",
                "tls",
                "connect_timeout",
                "connect",
                "blocked"
            ]
        );
    }

    #[test]
    fn error_line_names_class_and_status() {
        let o = Outcome::Failed {
            class: FailureClass::HttpStatus,
            status: Some(500),
            detail: "Internal Server Error".into(),
            retry_after: None,
        };
        assert_eq!(
            o.error_line().unwrap(),
            "http_status 500: Internal Server Error"
        );
        assert_eq!(Outcome::Delivered { status: 200 }.error_line(), None);
    }
}
