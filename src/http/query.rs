//! Strict query strings: every parameter must be one the endpoint knows, given once, and valid
//! UTF-8 once percent-decoded. (serde_urlencoded ignores unknown names, so `?Topic=x` used to
//! list every topic, and decodes invalid UTF-8 lossily, so `topic=%FF` named another topic.)

use std::collections::HashMap;

use percent_encoding::percent_decode;

use super::error::ApiError;

/// The decoded parameters of `raw`, each one of `known`.
pub(super) fn parse(
    raw: Option<&str>,
    known: &[&'static str],
) -> Result<HashMap<&'static str, String>, ApiError> {
    let mut params = HashMap::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name, "a query parameter name")?;
        let Some(&known_name) = known.iter().find(|k| **k == name) else {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {name:?}; this endpoint takes {}",
                known.join(", ")
            )));
        };
        let value = decode(value, known_name)?;
        if params.insert(known_name, value).is_some() {
            return Err(ApiError::BadRequest(format!(
                "query parameter {known_name} is given more than once"
            )));
        }
    }
    Ok(params)
}

fn decode(raw: &str, what: &str) -> Result<String, ApiError> {
    let plus_as_space = raw.replace('+', " ");
    percent_decode(plus_as_space.as_bytes())
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ApiError::BadRequest(format!("{what} is not valid UTF-8 once percent-decoded"))
        })
}

/// A `seq` parameter named `what` (`after` on a topic): a number >= 0.
pub(super) fn seq(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|s| *s >= 0).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "{what} must be a seq (a number >= 0), got {}",
            shown(raw)
        ))
    })
}

/// A page size (`limit`): a number from 1 to `max`, `max` when absent.
pub(super) fn limit(raw: Option<&str>, max: usize) -> Result<usize, ApiError> {
    let Some(raw) = raw else { return Ok(max) };
    raw.parse::<usize>()
        .ok()
        .filter(|l| (1..=max).contains(l))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "limit must be a number from 1 to {max}, got {}",
                shown(raw)
            ))
        })
}

/// A client's value quoted in an error, cut to 64 characters: a 40 KB `Last-Event-ID` is not
/// echoed whole.
pub(super) fn shown(raw: &str) -> String {
    const MAX_CHARS: usize = 64;
    match raw.char_indices().nth(MAX_CHARS) {
        None => format!("{raw:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &raw[..cut], raw.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_must_be_1_to_max_and_seq_a_number_from_0() {
        assert_eq!(limit(None, 10_000).unwrap(), 10_000);
        assert_eq!(limit(Some("5"), 10_000).unwrap(), 5);
        for bad in ["0", "10001", "-1", "ten"] {
            assert!(limit(Some(bad), 10_000).is_err(), "{bad:?}");
        }
        assert_eq!(seq("0", "after").unwrap(), 0);
        assert_eq!(seq("42", "after").unwrap(), 42);
        for bad in ["-1", "x", "", "1.5"] {
            assert!(seq(bad, "after").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn known_parameters_are_decoded() {
        let params = parse(Some("topic=a%2Fb+c&limit=5&"), &["topic", "limit"]).unwrap();
        assert_eq!(params["topic"], "a/b c");
        assert_eq!(params["limit"], "5");
        assert!(parse(None, &["topic"]).unwrap().is_empty());
    }

    #[test]
    fn unknown_repeated_or_invalid_parameters_are_refused() {
        for bad in ["Topic=x", "topic=%FF", "topic=a&topic=b", "%FF=1"] {
            let err = parse(Some(bad), &["topic"]).unwrap_err();
            assert!(matches!(err, ApiError::BadRequest(_)), "{bad}");
        }
    }
}
