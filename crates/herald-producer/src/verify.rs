//! Verification of herald's webhooks, for receivers written in Rust.
//!
//! herald signs every delivery to an endpoint that has a secret the Standard Webhooks way:
//! `webhook-id`, `webhook-timestamp` (Unix seconds of the attempt) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, several space-separated during a secret
//! rotation). A receiver accepts a request when one of the signatures matches one of its
//! secrets and the timestamp is within the tolerance of its own clock (5 minutes), which
//! bounds replays; it de-duplicates on `webhook-id`.
//!
//! ```
//! use herald_producer::verify::Verifier;
//!
//! let verifier = Verifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! # let headers = std::collections::HashMap::from([
//! #     ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
//! #     ("webhook-timestamp", "1614265330"),
//! #     ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
//! # ]);
//! # let body = br#"{"test": 2432232314}"#;
//! # let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1614265330);
//! // With an `http::HeaderMap`: `|name| headers.get(name).and_then(|v| v.to_str().ok())`.
//! let header = |name: &str| headers.get(name).copied();
//! verifier.verify_at(header, body, now).expect("a genuine delivery");
//! // In a receiver, `verifier.verify(header, body)` checks against the system clock.
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_core::signing::{decode_v1, Secret, SecretError};

/// How far the `webhook-timestamp` may be from the receiver's clock, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The header names of a signed delivery.
pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// Why a request was not accepted as a genuine delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the webhook-timestamp header is not a Unix time in seconds")]
    BadTimestamp,
    #[error("the webhook-timestamp is {0} s away from now; more than the tolerance")]
    OutsideTolerance(i64),
    #[error("no signature in webhook-signature matches a secret")]
    NoMatch,
}

/// Checks deliveries against one or several secrets (several while a rotation is under way).
#[derive(Debug, Clone)]
pub struct Verifier {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Verifier {
    /// A verifier for one secret in its `whsec_…` form.
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        Ok(Self::with_secrets(vec![Secret::parse(secret)?]))
    }

    /// A verifier accepting a signature by any of `secrets`.
    pub fn with_secrets(secrets: Vec<Secret>) -> Self {
        Self {
            secrets,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Sets how far the timestamp may be from the clock (default 5 minutes).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Verifies a request against the system clock. `header` looks a header up by its
    /// lower-case name; `body` is the raw body, exactly as received (before any JSON parsing).
    pub fn verify<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        self.verify_at(header, body, SystemTime::now())
    }

    /// [`verify`](Self::verify) with the clock given.
    pub fn verify_at<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let id = header(ID_HEADER).ok_or(VerifyError::MissingHeader(ID_HEADER))?;
        let timestamp =
            header(TIMESTAMP_HEADER).ok_or(VerifyError::MissingHeader(TIMESTAMP_HEADER))?;
        let signatures =
            header(SIGNATURE_HEADER).ok_or(VerifyError::MissingHeader(SIGNATURE_HEADER))?;
        self.verify_parts(id, timestamp, signatures, body, now)
    }

    /// Verifies from the three header values.
    pub fn verify_parts(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::BadTimestamp)?;
        let now_s = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        let skew = now_s.saturating_sub(ts);
        if skew.unsigned_abs() > self.tolerance.as_secs() {
            return Err(VerifyError::OutsideTolerance(skew));
        }
        // Every signature is checked against every secret; the comparisons themselves are
        // constant-time, so a mismatch says nothing about how close it came.
        let matched = signatures
            .split_whitespace()
            .filter_map(decode_v1)
            .any(|tag| self.secrets.iter().any(|s| s.verify(id, ts, body, &tag)));
        if matched {
            Ok(())
        } else {
            Err(VerifyError::NoMatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::signing::sign;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(ts: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(ts as u64)
    }

    fn headers<'a>(sig: &'a str, ts: &'a str) -> impl Fn(&str) -> Option<&'a str> {
        move |name| match name {
            ID_HEADER => Some(ID),
            TIMESTAMP_HEADER => Some(ts),
            SIGNATURE_HEADER => Some(sig),
            _ => None,
        }
    }

    #[test]
    fn accepts_the_published_vectors() {
        let v = Verifier::new(SECRET).unwrap();
        assert_eq!(
            v.verify_at(headers(SIG, "1614265330"), BODY, at(TS)),
            Ok(())
        );
        let v2 = Verifier::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            v2.verify_parts(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                "1649367553",
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
                br#"{"email":"test@example.com","username":"test_user"}"#,
                at(1649367553),
            ),
            Ok(())
        );
    }

    #[test]
    fn refuses_a_changed_body_id_or_timestamp() {
        let v = Verifier::new(SECRET).unwrap();
        let changed = br#"{"test": 2432232315}"#;
        assert_eq!(
            v.verify_at(headers(SIG, "1614265330"), changed, at(TS)),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            v.verify_at(headers(SIG, "1614265331"), BODY, at(TS)),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            v.verify_parts("msg_other", "1614265330", SIG, BODY, at(TS)),
            Err(VerifyError::NoMatch)
        );
        let other = Verifier::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            other.verify_at(headers(SIG, "1614265330"), BODY, at(TS)),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn five_minute_tolerance_both_ways() {
        let v = Verifier::new(SECRET).unwrap();
        let h = headers(SIG, "1614265330");
        assert_eq!(v.verify_at(&h, BODY, at(TS + 300)), Ok(()));
        assert_eq!(v.verify_at(&h, BODY, at(TS - 300)), Ok(()));
        assert_eq!(
            v.verify_at(&h, BODY, at(TS + 301)),
            Err(VerifyError::OutsideTolerance(301))
        );
        assert_eq!(
            v.verify_at(&h, BODY, at(TS - 301)),
            Err(VerifyError::OutsideTolerance(-301))
        );
        let strict = Verifier::new(SECRET)
            .unwrap()
            .tolerance(Duration::from_secs(10));
        assert!(strict.verify_at(&h, BODY, at(TS + 11)).is_err());
    }

    #[test]
    fn any_of_several_signatures_and_secrets_matches() {
        let old = Secret::parse(SECRET).unwrap();
        let new = Secret::generate();
        // herald during a rotation: both secrets sign.
        let header = sign([&new, &old], ID, TS, BODY).unwrap();
        assert_eq!(header.split(' ').count(), 2);
        let ts = TS.to_string();
        // A receiver that still only knows the old secret, one that knows the new one, and one
        // with both: all accept.
        for secrets in [vec![old.clone()], vec![new.clone()], vec![new.clone(), old]] {
            let v = Verifier::with_secrets(secrets);
            assert_eq!(v.verify_at(headers(&header, &ts), BODY, at(TS)), Ok(()));
        }
        // Unknown schemes and garbage next to a good signature are skipped.
        let noisy = format!("v2,abc garbage v1,@@ {SIG}");
        let v = Verifier::new(SECRET).unwrap();
        assert_eq!(v.verify_at(headers(&noisy, &ts), BODY, at(TS)), Ok(()));
    }

    #[test]
    fn missing_or_malformed_headers_are_named() {
        let v = Verifier::new(SECRET).unwrap();
        assert_eq!(
            v.verify_at(|_| None, BODY, at(TS)),
            Err(VerifyError::MissingHeader(ID_HEADER))
        );
        let no_sig = |name: &str| (name != SIGNATURE_HEADER).then_some("1614265330");
        assert_eq!(
            v.verify_at(no_sig, BODY, at(TS)),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        assert_eq!(
            v.verify_at(headers(SIG, "yesterday"), BODY, at(TS)),
            Err(VerifyError::BadTimestamp)
        );
    }
}
