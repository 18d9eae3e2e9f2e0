//! API tokens: how they are made (`herald token new`), the hashed form the server keeps
//! (`HERALD_API_TOKENS`), and how a presented token is checked: hashed, then compared with
//! every configured hash in constant time. Tokens themselves are never stored or logged.
//!
//! A token is `herald_` followed by 43 characters of base64url (32 random bytes). Its hashed
//! form is `<scope>:sha256:<64 hex digits>`, the scope being `read` (every `GET`) or `admin`
//! (everything).

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every token, so that secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "herald_";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every read: `GET` routes of the API, every console page, no console button.
    Read,
    /// Everything.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(TokenError::Scope(other.to_owned())),
        }
    }
}

/// Why a token setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("scope {0:?} is not one of read, admin")]
    Scope(String),
    #[error("entry {0} of HERALD_API_TOKENS is not a hashed token (<scope>:sha256:<64 hex digits>, as `herald token new` prints); tokens themselves are never configured")]
    Entry(usize),
    #[error("HERALD_API_TOKENS lists no token; create one with `herald token new --scope admin`")]
    Empty,
}

/// A token just made: shown once, then only its hashed form is kept.
#[derive(Clone, Serialize)]
pub struct NewToken {
    pub token: String,
    pub hashed: String,
    pub scope: Scope,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &"herald_<redacted>")
            .field("hashed", &self.hashed)
            .field("scope", &self.scope)
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hashed form of `token` with `scope`, as `HERALD_API_TOKENS` lists it.
pub fn hashed_form(token: &str, scope: Scope) -> String {
    format!("{scope}:sha256:{}", hex(&digest(token)))
}

/// Makes a token of `scope` from 32 bytes of the OS-seeded generator.
pub fn new_token(scope: Scope) -> NewToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    NewToken {
        hashed: hashed_form(&token, scope),
        token,
        scope,
    }
}

/// One configured token: its scope and the SHA-256 of the token.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    scope: Scope,
    digest: [u8; 32],
}

/// A token that checked out: its scope, and its hashed form (which names it in sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub scope: Scope,
    pub hashed: String,
}

/// The configured tokens, hashed (`HERALD_API_TOKENS`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tokens(Vec<Entry>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scopes: Vec<Scope> = self.0.iter().map(|e| e.scope).collect();
        f.debug_tuple("Tokens").field(&scopes).finish()
    }
}

impl Tokens {
    /// Reads comma-separated hashed forms; whitespace and empty entries are skipped. At least
    /// one is required.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let mut entries = Vec::new();
        for (n, item) in text
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .enumerate()
        {
            let bad = || TokenError::Entry(n + 1);
            let (scope, rest) = item.split_once(':').ok_or_else(bad)?;
            let scope: Scope = scope.parse()?;
            let hex = rest.strip_prefix("sha256:").ok_or_else(bad)?;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            let mut digest = [0u8; 32];
            for (i, byte) in digest.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
            }
            entries.push(Entry { scope, digest });
        }
        if entries.is_empty() {
            return Err(TokenError::Empty);
        }
        Ok(Self(entries))
    }

    /// Checks a presented token: its hash is compared with every configured one, each in
    /// constant time, and all of them whatever matches.
    pub fn verify(&self, token: &str) -> Option<Verified> {
        let presented = digest(token);
        let mut found = None;
        for entry in &self.0 {
            if bool::from(entry.digest.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        found.map(|e| Verified {
            scope: e.scope,
            hashed: format!("{}:sha256:{}", e.scope, hex(&e.digest)),
        })
    }

    /// The key that signs the login form's tokens ([`login_form_token`]): derived from every
    /// configured token's hash, so every server of a deployment shares it, none shows it, and
    /// changing the tokens changes it.
    pub fn form_key(&self) -> [u8; 32] {
        let mut key = Sha256::new();
        key.update(b"herald login form\0");
        for entry in &self.0 {
            key.update(entry.scope.as_str().as_bytes());
            key.update(entry.digest);
        }
        key.finalize().into()
    }

    /// The scope of a configured token named by its hashed form (as a session keeps it), if it
    /// is still configured.
    pub fn scope_of(&self, hashed: &str) -> Option<Scope> {
        let wanted = Tokens::parse(hashed).ok()?;
        let wanted = wanted.0.first()?;
        let mut found = None;
        for entry in &self.0 {
            if bool::from(entry.digest.ct_eq(&wanted.digest)) && entry.scope == wanted.scope {
                found = Some(entry.scope);
            }
        }
        found
    }
}

/// The SHA-256 (hex) of a session id: what names the session in Redis.
pub fn session_key(id: &str) -> String {
    hex(&digest(id))
}

/// A random value for a session id or a form token: 32 bytes, base64url.
pub fn random_value() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh token for the login form (and its cookie): a random value and its HMAC-SHA256 under
/// `key` ([`Tokens::form_key`]), so that only a form this server gave out logs in, never a
/// pair of values a third party chose.
pub fn login_form_token(key: &[u8; 32]) -> String {
    let nonce = random_value();
    format!("{nonce}.{}", URL_SAFE_NO_PAD.encode(form_mac(key, &nonce)))
}

/// Whether `token` is one [`login_form_token`] made under `key`.
pub fn is_login_form_token(key: &[u8; 32], token: &str) -> bool {
    let Some((nonce, mac)) = token.split_once('.') else {
        return false;
    };
    let Ok(mac) = URL_SAFE_NO_PAD.decode(mac) else {
        return false;
    };
    !nonce.is_empty() && bool::from(form_mac(key, nonce).as_slice().ct_eq(&mac))
}

fn form_mac(key: &[u8; 32], nonce: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(nonce.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Compares two secrets (form tokens) in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_login_form_tokens_made_under_the_key_pass() {
        let tokens = Tokens::parse(&new_token(Scope::Admin).hashed).unwrap();
        let key = tokens.form_key();
        let token = login_form_token(&key);
        assert!(is_login_form_token(&key, &token));
        assert_ne!(login_form_token(&key), token);
        let other = Tokens::parse(&new_token(Scope::Admin).hashed)
            .unwrap()
            .form_key();
        assert!(!is_login_form_token(&other, &token));
        let (nonce, _) = token.split_once('.').unwrap();
        for forged in [
            "",
            ".",
            "x",
            "x.y",
            &format!("{nonce}."),
            &format!("{nonce}.AAAA"),
            nonce,
        ] {
            assert!(!is_login_form_token(&key, forged), "{forged:?}");
        }
    }

    use super::*;

    #[test]
    fn a_new_token_verifies_against_its_hashed_form_only() {
        let t = new_token(Scope::Admin);
        assert!(t.token.starts_with(TOKEN_PREFIX));
        assert_eq!(t.token.len(), TOKEN_PREFIX.len() + 43);
        assert!(t.hashed.starts_with("admin:sha256:"));
        assert!(!t.hashed.contains(&t.token[TOKEN_PREFIX.len()..]));
        let r = new_token(Scope::Read);
        let tokens = Tokens::parse(&format!(" {} ,{},", t.hashed, r.hashed)).unwrap();
        let v = tokens.verify(&t.token).unwrap();
        assert_eq!(v.scope, Scope::Admin);
        assert_eq!(v.hashed, t.hashed);
        assert_eq!(tokens.verify(&r.token).unwrap().scope, Scope::Read);
        assert_eq!(tokens.verify("herald_nope"), None);
        assert_eq!(tokens.verify(&t.hashed), None);
        assert_eq!(tokens.scope_of(&t.hashed), Some(Scope::Admin));
        assert_eq!(tokens.scope_of(&new_token(Scope::Admin).hashed), None);
        // The same digest with another scope is another token.
        let promoted = r.hashed.replacen("read:", "admin:", 1);
        assert_eq!(tokens.scope_of(&promoted), None);
        assert!(!format!("{t:?}").contains(&t.token));
    }

    #[test]
    fn configured_entries_are_checked() {
        assert_eq!(Tokens::parse(" , "), Err(TokenError::Empty));
        let good = new_token(Scope::Read).hashed;
        assert_eq!(
            Tokens::parse(&format!("{good},herald_rawtoken")),
            Err(TokenError::Entry(2))
        );
        assert!(matches!(
            Tokens::parse(&good.replacen("read", "write", 1)),
            Err(TokenError::Scope(_))
        ));
        assert_eq!(
            Tokens::parse(&good.replacen("sha256", "md5", 1)),
            Err(TokenError::Entry(1))
        );
        assert_eq!(
            Tokens::parse(&good[..good.len() - 1]),
            Err(TokenError::Entry(1))
        );
        let non_hex = format!("read:sha256:{}", "zz".repeat(32));
        assert_eq!(Tokens::parse(&non_hex), Err(TokenError::Entry(1)));
        let multibyte = format!("read:sha256:{}é", "a".repeat(62));
        assert_eq!(Tokens::parse(&multibyte), Err(TokenError::Entry(1)));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert_eq!(session_key("x").len(), 64);
        assert_ne!(random_value(), random_value());
    }
}
