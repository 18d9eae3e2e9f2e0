//! Validation of a dashboard's webhook URL (SPEC §1.2): a valid HTTP or HTTPS URL is required to
//! save and to activate an endpoint, and each refusal says which rule failed.

use url::Url;

/// Longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Why a webhook URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the URL is empty")]
    Empty,
    #[error("the URL is {0} bytes long; at most {MAX_URL_LEN} are accepted")]
    TooLong(usize),
    #[error("the URL contains whitespace or control characters")]
    Whitespace,
    #[error("the URL does not parse: {0}")]
    Parse(String),
    #[error("the URL scheme is {0:?}; only http and https are accepted")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL contains credentials (user or password); put secrets elsewhere")]
    Credentials,
    #[error("the URL has a fragment (#...), which is never sent to the server")]
    Fragment,
    #[error("the URL's port is 0, which no server listens on")]
    PortZero,
}

/// Checks a webhook URL and returns it parsed.
pub fn validate_webhook_url(input: &str) -> Result<Url, UrlError> {
    if input.is_empty() {
        return Err(UrlError::Empty);
    }
    if input.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong(input.len()));
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlError::Whitespace);
    }
    let url = Url::parse(input).map_err(|e| UrlError::Parse(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    match url.host_str() {
        None | Some("") => return Err(UrlError::NoHost),
        Some(_) => {}
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    if url.fragment().is_some() {
        return Err(UrlError::Fragment);
    }
    if url.port() == Some(0) {
        return Err(UrlError::PortZero);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https() {
        assert!(validate_webhook_url("https://hooks.example.com/status?x=1").is_ok());
        assert!(validate_webhook_url("http://127.0.0.1:8080/").is_ok());
        assert!(validate_webhook_url("https://[2001:db8::1]/h").is_ok());
    }

    #[test]
    fn refuses_each_rule_by_name() {
        assert_eq!(validate_webhook_url(""), Err(UrlError::Empty));
        assert_eq!(
            validate_webhook_url("ftp://example.com/"),
            Err(UrlError::Scheme("ftp".into()))
        );
        assert_eq!(
            validate_webhook_url("https://u:p@example.com/"),
            Err(UrlError::Credentials)
        );
        assert_eq!(
            validate_webhook_url("https://user@example.com/"),
            Err(UrlError::Credentials)
        );
        assert_eq!(
            validate_webhook_url("https://example.com/ x"),
            Err(UrlError::Whitespace)
        );
        assert_eq!(
            validate_webhook_url(" https://example.com/"),
            Err(UrlError::Whitespace)
        );
        assert!(matches!(
            validate_webhook_url("example.com"),
            Err(UrlError::Parse(_))
        ));
        assert!(matches!(
            validate_webhook_url("https://"),
            Err(UrlError::Parse(_) | UrlError::NoHost)
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(
            validate_webhook_url(&long),
            Err(UrlError::TooLong(_))
        ));
        assert_eq!(
            validate_webhook_url("https://example.com/#x"),
            Err(UrlError::Fragment)
        );
        assert!(validate_webhook_url("javascript:alert(1)").is_err());
        assert_eq!(
            validate_webhook_url("http://example.com:0/"),
            Err(UrlError::PortZero)
        );
        assert_eq!(
            validate_webhook_url("https://example.com:00/"),
            Err(UrlError::PortZero)
        );
        assert!(validate_webhook_url("https://example.com:1/").is_ok());
    }
}
