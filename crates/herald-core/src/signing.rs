//! Standard Webhooks signatures: the `whsec_` secrets endpoints sign with, and the
//! `webhook-signature` header value (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`).
//!
//! The receiver gets the secret once, when it is set or generated; from then on it only ever
//! travels inside Redis. [`Secret`] keeps it out of logs: its `Debug` and `Display` are redacted,
//! and the text form comes out only through the explicitly named [`Secret::expose`].

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;

/// The prefix of every secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";

/// Fewest key bytes a secret may hold (Standard Webhooks: 24 to 64).
pub const MIN_KEY_LEN: usize = 24;

/// Most key bytes a secret may hold.
pub const MAX_KEY_LEN: usize = 64;

/// Key bytes of a generated secret.
pub const GENERATED_KEY_LEN: usize = 32;

/// The signature scheme herald emits: HMAC-SHA256, symmetric.
pub const SCHEME: &str = "v1";

/// Standard base64, padding optional when reading (some tools strip the `=`).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type HmacSha256 = Hmac<Sha256>;

/// Why a secret was refused. The messages never repeat the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a signing secret starts with \"whsec_\" followed by base64")]
    MissingPrefix,
    #[error("the part of the signing secret after \"whsec_\" is not standard base64 (A-Z, a-z, 0-9, +, /, optional = padding)")]
    NotBase64,
    #[error(
        "the signing secret holds {0} bytes; between {MIN_KEY_LEN} and {MAX_KEY_LEN} are accepted"
    )]
    Length(usize),
}

/// An endpoint's signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl Secret {
    /// Reads a secret in its text form, `whsec_` + base64 of 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = LENIENT
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        Self::from_bytes(key)
    }

    /// Wraps raw key bytes (24 to 64 of them).
    pub fn from_bytes(key: Vec<u8>) -> Result<Self, SecretError> {
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Self { key })
    }

    /// A fresh secret of [`GENERATED_KEY_LEN`] random bytes from the OS-seeded generator.
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        Self { key }
    }

    /// The text form, `whsec_…`, for storing it and for showing it once to whoever set it up.
    /// Never log it.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The signature of one message: `v1,<base64 of HMAC-SHA256(key, "id.timestamp.body")>`.
    pub fn signature(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(msg_id, timestamp, body).finalize().into_bytes();
        format!("{SCHEME},{}", STANDARD.encode(tag))
    }

    /// Whether `tag` (the decoded bytes after `v1,`) is this secret's HMAC of the message,
    /// compared in constant time.
    pub fn verify(&self, msg_id: &str, timestamp: i64, body: &[u8], tag: &[u8]) -> bool {
        self.mac(msg_id, timestamp, body).verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(whsec_<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("whsec_<redacted>")
    }
}

/// The `webhook-signature` header value for a message signed by every secret in `secrets`:
/// one `v1,<base64>` per secret, space-separated (several during a rotation). `None` when
/// there is no secret, in which case the header is left out.
pub fn sign<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Option<String> {
    let signatures: Vec<String> = secrets
        .into_iter()
        .map(|s| s.signature(msg_id, timestamp, body))
        .collect();
    (!signatures.is_empty()).then(|| signatures.join(" "))
}

/// Decodes the base64 part of one `v1,<base64>` signature; `None` for other schemes or bad
/// base64. For verifiers.
pub fn decode_v1(signature: &str) -> Option<Vec<u8>> {
    let (scheme, encoded) = signature.split_once(',')?;
    if scheme != SCHEME {
        return None;
    }
    LENIENT.decode(encoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two published vectors of the Standard Webhooks specification.
    const VECTORS: [(&str, &str, i64, &str, &str); 2] = [
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        (
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ),
    ];

    #[test]
    fn published_vectors() {
        for (secret, id, ts, body, expected) in VECTORS {
            let secret = Secret::parse(secret).unwrap();
            assert_eq!(secret.signature(id, ts, body.as_bytes()), expected);
            let tag = decode_v1(expected).unwrap();
            assert!(secret.verify(id, ts, body.as_bytes(), &tag));
            assert!(!secret.verify(id, ts + 1, body.as_bytes(), &tag));
        }
    }

    #[test]
    fn several_secrets_sign_space_separated() {
        let a = Secret::parse(VECTORS[0].0).unwrap();
        let b = Secret::parse(VECTORS[1].0).unwrap();
        let (_, id, ts, body, expected) = VECTORS[0];
        let header = sign([&a, &b], id, ts, body.as_bytes()).unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], expected);
        assert_eq!(parts[1], b.signature(id, ts, body.as_bytes()));
        assert_eq!(sign([], id, ts, body.as_bytes()), None);
    }

    #[test]
    fn parse_refuses_with_clear_errors_that_do_not_repeat_the_secret() {
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        );
        let bad = Secret::parse("whsec_not base64!!").unwrap_err();
        assert_eq!(bad, SecretError::NotBase64);
        assert!(!bad.to_string().contains("not base64!!"));
        // 16 bytes: too short; 65 bytes: too long.
        let short = format!("whsec_{}", STANDARD.encode([7u8; 16]));
        assert_eq!(Secret::parse(&short), Err(SecretError::Length(16)));
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        assert_eq!(Secret::parse(&long), Err(SecretError::Length(65)));
        for n in [24, 32, 64] {
            let ok = format!("whsec_{}", STANDARD.encode(vec![7u8; n]));
            assert!(Secret::parse(&ok).is_ok(), "{n} bytes");
        }
        // Padding is optional when reading.
        let padded = format!("whsec_{}", STANDARD.encode([9u8; 32]));
        assert!(padded.ends_with('='));
        assert_eq!(
            Secret::parse(padded.trim_end_matches('=')).unwrap(),
            Secret::parse(&padded).unwrap()
        );
    }

    #[test]
    fn generated_secrets_round_trip_and_differ() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a, b);
        let text = a.expose();
        assert!(text.starts_with(SECRET_PREFIX));
        assert_eq!(Secret::parse(&text).unwrap(), a);
        assert_eq!(a.key.len(), GENERATED_KEY_LEN);
    }

    #[test]
    fn debug_and_display_never_show_the_key() {
        let s = Secret::parse(VECTORS[0].0).unwrap();
        let encoded = VECTORS[0].0.trim_start_matches(SECRET_PREFIX);
        for shown in [format!("{s:?}"), format!("{s}"), format!("{:?}", Some(&s))] {
            assert!(!shown.contains(encoded), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
    }

    #[test]
    fn decode_v1_ignores_other_schemes() {
        assert!(decode_v1("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=").is_some());
        assert_eq!(decode_v1("v1a,g0hM9SsE"), None);
        assert_eq!(decode_v1("v1,@@@"), None);
        assert_eq!(decode_v1("garbage"), None);
    }
}
