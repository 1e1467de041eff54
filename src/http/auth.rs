//! The optional bearer tokens and their scopes. Compared in constant time (`subtle`) so a
//! token cannot be guessed byte by byte from response timing; held in [`Secret`] (a
//! `secrecy::SecretString`, zeroed when dropped), whose `Debug` never shows it, so a token
//! cannot reach a log line by accident.
//!
//! Each token has scopes: `publish` (`POST /publish`) and `read` (`/events`, `/topics`,
//! `/stats`). A missing or unknown token gets 401, a known token without the scope 403.

use axum::http::{HeaderMap, header};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// A token; `Debug` and `Display` print `[redacted]`. A newtype over `SecretString` so the
/// settings can be cloned and parsed by clap.
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    fn expose(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }
}

impl Clone for Secret {
    fn clone(&self) -> Self {
        Self::new(self.0.expose_secret())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.expose(), other.expose())
    }
}

impl Eq for Secret {}

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

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `POST /publish`.
    Publish,
    /// `GET /events`, `/events/stream`, `/topics`, `/stats`.
    Read,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::Publish, Scope::Read];

    pub fn name(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Read => "read",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.name() == s)
            .ok_or_else(|| format!("unknown scope {s:?} (known: publish, read)"))
    }
}

/// An accepted token and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub secret: Secret,
    pub scopes: Vec<Scope>,
}

impl ApiToken {
    /// A token with every scope.
    pub fn all_scopes(secret: Secret) -> Self {
        Self {
            secret,
            scopes: Scope::ALL.to_vec(),
        }
    }

    /// A line of the token file: `<token>` (every scope) or `<token> <scope>[,<scope>]`.
    pub fn parse_line(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace();
        let secret = Secret::new(words.next().ok_or("empty line")?);
        let scopes = match words.next() {
            None => Scope::ALL.to_vec(),
            Some(list) => list
                .split(',')
                .map(|s| s.trim().parse())
                .collect::<Result<Vec<Scope>, String>>()?,
        };
        if words.next().is_some() {
            return Err("expected `<token>` or `<token> <scope>[,<scope>]`".into());
        }
        Ok(Self { secret, scopes })
    }
}

/// Accepts the request when no token is configured or it carries
/// `Authorization: Bearer <token>` for a token with `scope`. Every token is compared, so the
/// time does not tell which one nearly matched.
pub(super) fn authorize(
    tokens: &[ApiToken],
    headers: &HeaderMap,
    scope: Scope,
) -> Result<(), ApiError> {
    if tokens.is_empty() {
        return Ok(());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer_token(v.as_bytes()))
        .unwrap_or_default();
    let matched = tokens.iter().fold(None, |found, token| {
        if constant_time_eq(token.secret.expose(), given) {
            Some(token)
        } else {
            found
        }
    });
    match matched {
        None => Err(ApiError::Unauthorized),
        Some(token) if token.scopes.contains(&scope) => Ok(()),
        Some(_) => Err(ApiError::Forbidden(scope.name())),
    }
}

/// The token of `Bearer <token>`; the scheme word is case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
}

/// Time depends only on the lengths, never on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
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
    fn any_configured_token_is_accepted_for_its_scopes_only() {
        let tokens = [
            ApiToken::all_scopes(Secret::new("a")),
            ApiToken::parse_line("b read").unwrap(),
        ];
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer b".parse().unwrap());
        assert!(authorize(&tokens, &headers, Scope::Read).is_ok());
        assert!(matches!(
            authorize(&tokens, &headers, Scope::Publish),
            Err(ApiError::Forbidden("publish"))
        ));
        headers.insert(header::AUTHORIZATION, "Bearer a".parse().unwrap());
        assert!(authorize(&tokens, &headers, Scope::Publish).is_ok());
        headers.insert(header::AUTHORIZATION, "Bearer c".parse().unwrap());
        assert!(matches!(
            authorize(&tokens, &headers, Scope::Read),
            Err(ApiError::Unauthorized)
        ));
        assert!(authorize(&[], &HeaderMap::new(), Scope::Read).is_ok());
    }

    #[test]
    fn the_bearer_scheme_word_is_case_insensitive() {
        for header in ["Bearer tok", "bearer tok", "BEARER tok", "bEaReR tok"] {
            assert_eq!(
                bearer_token(header.as_bytes()),
                Some(&b"tok"[..]),
                "{header}"
            );
        }
        for header in ["Basic tok", "Bearertok", "Bear", ""] {
            assert_eq!(bearer_token(header.as_bytes()), None, "{header}");
        }
    }

    #[test]
    fn token_file_lines_name_their_scopes() {
        assert_eq!(
            ApiToken::parse_line("t").unwrap().scopes,
            Scope::ALL.to_vec()
        );
        assert_eq!(
            ApiToken::parse_line("t publish").unwrap().scopes,
            vec![Scope::Publish]
        );
        assert_eq!(
            ApiToken::parse_line("t  read,publish").unwrap().scopes,
            vec![Scope::Read, Scope::Publish]
        );
        for bad in ["t admin", "t read extra", "t read,"] {
            assert!(ApiToken::parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret", b""));
    }
}
