//! What a publish body is, by its headers: the content type (JSON or NDJSON), the content
//! encoding (identity, gzip, zstd) and the transfer encoding.

use axum::http::{HeaderMap, header};

use super::super::AppState;
use super::super::error::ApiError;
use crate::budget::Charge;

/// How the events are written in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// One event object or an array of them.
    Json,
    /// One event object per line.
    Ndjson,
}

/// How the body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

const ACCEPTED_TYPES: &str = "application/json, application/x-ndjson or application/jsonl";
const ACCEPTED_ENCODINGS: &str = "identity, gzip, zstd";

/// `Content-Type`: JSON, NDJSON or JSON Lines, with no `charset` or `charset=utf-8`.
pub(super) fn body_format(headers: &HeaderMap) -> Result<Format, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let mut parts = content_type.unwrap_or("").split(';').map(str::trim);
    let essence = parts.next().unwrap_or("").to_ascii_lowercase();
    let format = match essence.as_str() {
        "application/json" => Format::Json,
        "application/x-ndjson" | "application/jsonl" => Format::Ndjson,
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type must be {ACCEPTED_TYPES}, got {}",
                content_type.unwrap_or("none")
            )));
        }
    };
    for parameter in parts {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        if name.trim().eq_ignore_ascii_case("charset")
            && !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the only accepted charset is utf-8, got {}",
                value.trim()
            )));
        }
    }
    Ok(format)
}

/// `Transfer-Encoding` may only be `chunked` (hyper frames the body by it): a transfer coding
/// such as `gzip, chunked` would otherwise reach the parser still compressed (RFC 9112 §6.1:
/// 501 for a transfer coding the server does not understand).
pub(super) fn check_transfer_encoding(headers: &HeaderMap) -> Result<(), ApiError> {
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let text = value.to_str().unwrap_or("(not text)");
        if let Some(coding) = text
            .split(',')
            .map(|c| c.trim())
            .find(|c| !c.eq_ignore_ascii_case("chunked"))
        {
            return Err(ApiError::NotImplemented(format!(
                "Transfer-Encoding {:?} is not supported (only chunked); send compressed bodies \
                 with Content-Encoding: gzip or zstd",
                coding.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// `Content-Encoding`: none, `identity`, `gzip` or `zstd` (one coding; stacked codings are
/// refused).
pub(super) fn body_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let mut codings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding is not text; accepted: {ACCEPTED_ENCODINGS}"
            )));
        };
        codings.extend(
            text.split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty() && c != "identity"),
        );
    }
    match codings.as_slice() {
        [] => Ok(Encoding::Identity),
        [one] if one == "gzip" || one == "x-gzip" => Ok(Encoding::Gzip),
        [one] if one == "zstd" => Ok(Encoding::Zstd),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding {} is not supported; accepted: {ACCEPTED_ENCODINGS}",
            codings.join(", ")
        ))),
    }
}

/// Decompresses `compressed` chunk by chunk, charging each chunk on the in-flight budget and
/// holding the decompressed size to the body limit (a gzip bomb stops there with 413).
pub(super) async fn decompress(
    state: &AppState,
    encoding: Encoding,
    compressed: &[u8],
    charge: &mut Charge,
) -> Result<Vec<u8>, ApiError> {
    use std::io::Read;
    const CHUNK: usize = 64 * 1024;
    let limit = state.limits.max_body_bytes;
    let mut reader: Box<dyn Read + Send + '_> = match encoding {
        Encoding::Identity => Box::new(compressed),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        Encoding::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(compressed)
                .map_err(|e| ApiError::BadRequest(format!("corrupt zstd body: {e}")))?,
        ),
    };
    let name = match encoding {
        Encoding::Identity => "identity",
        Encoding::Gzip => "gzip",
        Encoding::Zstd => "zstd",
    };
    let mut out = Vec::new();
    loop {
        let start = out.len();
        out.resize(start + CHUNK, 0);
        let read = reader
            .read(&mut out[start..])
            .map_err(|e| ApiError::BadRequest(format!("corrupt {name} body: {e}")))?;
        out.truncate(start + read);
        if read == 0 {
            return Ok(out);
        }
        if out.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "request body is larger than {limit} bytes once decompressed"
            )));
        }
        charge
            .grow_to(compressed.len() + out.len(), state.limits.enqueue_timeout)
            .await
            .map_err(|_| ApiError::Overloaded {
                retry_after_secs: state.limits.retry_after_secs,
            })?;
    }
}
