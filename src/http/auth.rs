//! The optional bearer tokens. Compared in constant time so a token cannot be guessed byte by
//! byte from response timing; held in [`Secret`], whose `Debug` never shows it, so a token
//! cannot reach a log line by accident.

use axum::http::{HeaderMap, header};

use super::error::ApiError;

/// A token; `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

/// Accepts the request when no token is configured or it carries
/// `Authorization: Bearer <token>` for one of them. Every token is compared, so the time does
/// not tell which one nearly matched.
pub(super) fn authorize(tokens: &[Secret], headers: &HeaderMap) -> Result<(), ApiError> {
    if tokens.is_empty() {
        return Ok(());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    let matched = tokens.iter().fold(false, |found, token| {
        found | constant_time_eq(token.expose(), given)
    });
    if matched {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Time depends only on the lengths, never on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
    }

    #[test]
    fn any_configured_token_is_accepted() {
        let tokens = [Secret::new("a"), Secret::new("b")];
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer b".parse().unwrap());
        assert!(authorize(&tokens, &headers).is_ok());
        headers.insert(header::AUTHORIZATION, "Bearer c".parse().unwrap());
        assert!(authorize(&tokens, &headers).is_err());
        assert!(authorize(&[], &HeaderMap::new()).is_ok());
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b""));
    }
}
