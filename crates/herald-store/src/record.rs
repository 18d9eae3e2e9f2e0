//! The job record as stored in the shard's `jobs` hash:
//! `1 <attempts> <enqueued_ms> <endpoint id>\n<payload>`.
//!
//! The scripts write and rewrite it; Rust only reads it: the claim hands it out whole, and
//! `herald job get` and the dead-letter listing show it.

/// A parsed job record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Attempts made before the current lease, if any (a lease carries the number of the attempt
    /// it was issued for: this count + 1).
    pub attempts: u32,
    /// When the job was first enqueued (ms since the Unix epoch, Redis clock).
    pub enqueued_ms: i64,
    pub endpoint: String,
    pub payload: Vec<u8>,
}

impl JobRecord {
    /// Parses a stored record; `None` when it is not a format-1 record.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let (header, nl) = Header::parse(raw)?;
        Some(header.with_payload(raw[nl + 1..].to_vec()))
    }

    /// The endpoint a stored record names, without copying its payload.
    pub fn endpoint_of(raw: &[u8]) -> Option<String> {
        Header::parse(raw).map(|(header, _)| header.endpoint)
    }

    /// Like [`JobRecord::parse`], keeping the record's buffer as the payload (no copy of it).
    pub fn from_vec(mut raw: Vec<u8>) -> Option<Self> {
        let (header, nl) = Header::parse(&raw)?;
        raw.drain(..=nl);
        Some(header.with_payload(raw))
    }
}

struct Header {
    attempts: u32,
    enqueued_ms: i64,
    endpoint: String,
}

impl Header {
    /// The header and the position of the newline that ends it.
    fn parse(raw: &[u8]) -> Option<(Self, usize)> {
        let nl = raw.iter().position(|b| *b == b'\n')?;
        let header = std::str::from_utf8(&raw[..nl]).ok()?;
        let mut parts = header.split(' ');
        if parts.next()? != "1" {
            return None;
        }
        let attempts = parts.next()?.parse().ok()?;
        let enqueued_ms = parts.next()?.parse().ok()?;
        let endpoint = parts.next()?.to_owned();
        if endpoint.is_empty() || parts.next().is_some() {
            return None;
        }
        Some((
            Self {
                attempts,
                enqueued_ms,
                endpoint,
            },
            nl,
        ))
    }

    fn with_payload(self, payload: Vec<u8>) -> JobRecord {
        JobRecord {
            attempts: self.attempts,
            enqueued_ms: self.enqueued_ms,
            endpoint: self.endpoint,
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_refuses_garbage() {
        let r = JobRecord::parse(b"1 3 1700000000000 dash-1\n{\"a\":1}").unwrap();
        assert_eq!(r.attempts, 3);
        assert_eq!(r.enqueued_ms, 1_700_000_000_000);
        assert_eq!(r.endpoint, "dash-1");
        assert_eq!(r.payload, b"{\"a\":1}");
        assert_eq!(JobRecord::parse(b"garbage"), None);
        assert_eq!(JobRecord::parse(b"2 0 1 e\n{}"), None);
        assert_eq!(JobRecord::parse(b"1 x 1 e\n{}"), None);
        assert_eq!(JobRecord::parse(b"1 0 1 e extra\n{}"), None);
        let raw = b"1 3 1700000000000 dash-1\n{\"a\":1}".to_vec();
        assert_eq!(JobRecord::from_vec(raw), Some(r));
        assert_eq!(JobRecord::from_vec(b"1 0 1 e".to_vec()), None);
    }
}
