//! Identifiers: job ids (ULIDs, unique and time-ordered), endpoint ids (dashboard ids chosen by
//! the producer), and the stable hash that places an endpoint in one of the shards.

use std::fmt;
use std::str::FromStr;

/// Longest endpoint id accepted. Ids travel in every job record, so they are kept short.
pub const MAX_ENDPOINT_ID_LEN: usize = 128;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    #[error("endpoint id is empty")]
    Empty,
    #[error("endpoint id is longer than {MAX_ENDPOINT_ID_LEN} bytes")]
    TooLong,
    #[error("endpoint id {0:?} may only contain letters, digits and '.', '_', '-', ':'")]
    BadChar(String),
    #[error("job id {0:?} is not a ULID (26 characters of Crockford base32)")]
    BadJobId(String),
}

/// A dashboard's endpoint id: 1 to 128 bytes of `[A-Za-z0-9._:-]`.
///
/// The character set keeps ids safe inside the space-separated job record header and in
/// Redis key names, and readable in logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct EndpointId(String);

impl EndpointId {
    /// Validates and wraps an endpoint id.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidId> {
        let id = id.into();
        if id.is_empty() {
            return Err(InvalidId::Empty);
        }
        if id.len() > MAX_ENDPOINT_ID_LEN {
            return Err(InvalidId::TooLong);
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
        {
            return Err(InvalidId::BadChar(id));
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EndpointId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> serde::Deserialize<'de> for EndpointId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// A job id: a ULID, unique across the deployment and ordered by creation time.
///
/// Receivers see it as the `webhook-id` header, `msg_` + the ULID, identical on every retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(ulid::Ulid);

impl JobId {
    /// A fresh id for a new job.
    pub fn generate() -> Self {
        Self(ulid::Ulid::new())
    }

    /// The `webhook-id` header value for this job.
    pub fn webhook_id(&self) -> String {
        format!("msg_{}", self.0)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for JobId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("msg_").unwrap_or(s);
        ulid::Ulid::from_string(s)
            .map(Self)
            .map_err(|_| InvalidId::BadJobId(s.to_owned()))
    }
}

/// A job id as the store keys it: the `msg_` prefix of the `webhook-id` header, if any, removed
/// (operators copy ids from either place).
pub fn job_id_key(text: &str) -> &str {
    text.strip_prefix("msg_").unwrap_or(text)
}

/// The shard (`0..shards`) that holds an endpoint and all of its jobs.
///
/// FNV-1a (32-bit) of the id's bytes, modulo the shard count. It is part of the wire format
/// (`docs/wire-format.md`): producers in other languages compute the same function.
pub fn shard_of(endpoint: &EndpointId, shards: u16) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in endpoint.as_str().bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % u32::from(shards.max(1))) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_ids_are_validated() {
        assert!(EndpointId::new("dash-42").is_ok());
        assert!(EndpointId::new("org:7.dash_1").is_ok());
        assert_eq!(EndpointId::new(""), Err(InvalidId::Empty));
        assert_eq!(EndpointId::new("a".repeat(129)), Err(InvalidId::TooLong));
        assert!(matches!(EndpointId::new("a b"), Err(InvalidId::BadChar(_))));
        assert!(matches!(
            EndpointId::new("a{b}"),
            Err(InvalidId::BadChar(_))
        ));
    }

    #[test]
    fn shard_is_fnv1a_32() {
        // Reference values of FNV-1a 32: "" = 0x811c9dc5, "a" = 0xe40c292c.
        let a = EndpointId::new("a").unwrap();
        assert_eq!(shard_of(&a, 16), (0xe40c_292c_u32 % 16) as u16);
        let foobar = EndpointId::new("foobar").unwrap();
        assert_eq!(shard_of(&foobar, 1000), (0xbf9c_f968_u32 % 1000) as u16);
    }

    #[test]
    fn job_ids_round_trip_with_and_without_prefix() {
        let id = JobId::generate();
        assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
        assert_eq!(id.webhook_id().parse::<JobId>().unwrap(), id);
        assert!("nope".parse::<JobId>().is_err());
        assert_eq!(job_id_key(&id.webhook_id()), id.to_string());
        assert_eq!(job_id_key("01ABC"), "01ABC");
    }
}
