//! `ApiError`: every error the API answers, each with its status code and a JSON body
//! `{"error": "...", ...}`. 4xx bodies say exactly what was wrong; 5xx bodies stay generic
//! and the cause goes to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::event::{FieldError, RequestError};
use crate::ingest::IngestError;
use crate::read::ReadError;
use crate::store::StoreError;

/// The most bytes a request's head (request line, headers, blank line) may take.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: body not JSON / wrong shape, or a bad query parameter.
    #[error("{0}")]
    BadRequest(String),
    /// 401: an API token is configured and the request did not carry it.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// 403: the token is known but lacks the scope the route needs.
    #[error("this token lacks the {0} scope")]
    Forbidden(&'static str),
    /// 404: no such route.
    #[error("no such endpoint")]
    NotFound,
    /// 405: the route exists but not with this method.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// 408: the request body did not arrive within the body timeout.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// 413: body over the byte limit or more events than max-batch.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 501: a request feature this service does not implement (a `Transfer-Encoding` other
    /// than `chunked`).
    #[error("{0}")]
    NotImplemented(String),
    /// 409: a stream or page cursor beyond anything the store has given (Guarantee 9), e.g. a
    /// reader resuming against a restored backup; `last` is the store's last position.
    #[error("cursor is ahead of the store")]
    CursorAhead { last: String },
    /// 431: the request head (request line and headers) is over [`MAX_HEAD_BYTES`]. hyper
    /// refuses far larger heads itself; this makes the documented bound exact.
    #[error("the request headers are too large or too many (at most 100 headers, 64 KiB in all)")]
    HeadersTooLarge,
    /// 415: `POST /publish` without `Content-Type: application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: one or more events break the schema; nothing of the request was stored.
    #[error("invalid event")]
    InvalidEvents(Vec<FieldError>),
    /// 503 + `Retry-After`: queues stayed full for the whole enqueue timeout.
    #[error("overloaded: partition queues are full, retry later")]
    Overloaded { retry_after_secs: u64 },
    /// 503 + `Retry-After`: the service is draining for shutdown.
    #[error("the service is shutting down")]
    ShuttingDown,
    /// 503 + `Retry-After`: a partition could not commit. Events of other partitions of the
    /// same request may have been committed; retrying is safe, they come back as duplicates.
    #[error("storage unavailable")]
    StoreUnavailable { partially_committed: bool },
    /// 408: the request body arrived slower than the minimum upload rate.
    #[error("the request body arrived slower than {min_bytes_per_sec} bytes/s")]
    UploadTooSlow { min_bytes_per_sec: u64 },
    /// 503 + `Retry-After`: every connection slot stayed busy.
    #[error("too many connections, retry later")]
    TooManyConnections,
    /// 503 + `Retry-After`: the store could not be read (cause logged).
    #[error("storage unavailable for reads, retry later")]
    ReadUnavailable,
    /// 503 + `Retry-After`: too many `/events` responses are in flight.
    #[error("too many reads in progress, retry later")]
    ReadsBusy,
    /// 503 + `Retry-After`: every reader slot (`--max-readers`) holds a stream or long poll.
    #[error("too many streams and long polls open (--max-readers {0}), retry later")]
    ReadersFull(usize),
    /// 503 + `Retry-After`: the data dir's file system is below `--min-free-disk-mib`.
    #[error("{0}")]
    LowDisk(String),
    /// 503 + `Retry-After`: a partition database is missing or replaced; see the log.
    #[error("a partition database is missing or was replaced; the operator must restore it")]
    PartitionLost,
    /// 500: a bug or an unexpected failure; the cause is logged.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout | Self::UploadTooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidEvents(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::CursorAhead { .. } => StatusCode::CONFLICT,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Overloaded { .. }
            | Self::ShuttingDown
            | Self::StoreUnavailable { .. }
            | Self::TooManyConnections
            | Self::ReadsBusy
            | Self::ReadersFull(_)
            | Self::ReadUnavailable
            | Self::LowDisk(_)
            | Self::PartitionLost => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Overloaded { retry_after_secs } => Some(*retry_after_secs),
            Self::ShuttingDown
            | Self::StoreUnavailable { .. }
            | Self::TooManyConnections
            | Self::ReadsBusy
            | Self::ReadersFull(_)
            | Self::ReadUnavailable
            | Self::PartitionLost => Some(1),
            Self::LowDisk(_) => Some(crate::disk::RETRY_AFTER_SECS),
            _ => None,
        }
    }
}

/// Every error reply's body: what went wrong, and for some errors more.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, in words.
    pub error: String,
    /// 422 only: each bad event by its index in the request, and the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<super::schemas::FieldErrorSchema>>)]
    pub details: Option<Vec<FieldError>>,
    /// 503 "storage unavailable" only: whether events of other partitions of the request
    /// were committed (a retry reports those as duplicates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partially_committed: Option<bool>,
    /// 503 "storage unavailable" only: whether retrying is safe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    /// 409 "cursor is ahead of the store" only: the store's last position (a topic's last
    /// `seq`, or the cursor of the stream of every topic at the store's end); resume from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = ErrorBody {
            error: self.to_string(),
            details: None,
            partially_committed: None,
            retry: None,
            last: None,
        };
        match &self {
            Self::InvalidEvents(details) => body.details = Some(details.clone()),
            Self::CursorAhead { last } => body.last = Some(last.clone()),
            Self::StoreUnavailable {
                partially_committed,
            } => {
                body.partially_committed = Some(*partially_committed);
                body.retry =
                    Some("safe: events already committed are reported as duplicates".into());
            }
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A store read that failed: a damaged row is a 500; anything else (a lost partition file, a
/// database that cannot be opened or reached) is the store being unavailable: 503 +
/// `Retry-After`, as for publishes. The cause goes to the log.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "read failed");
        match e {
            StoreError::CorruptPayload { .. } => Self::Internal,
            _ => Self::ReadUnavailable,
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Store(e) => e.into(),
            ReadError::CursorAhead { last } => Self::CursorAhead { last },
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotJson(_) | RequestError::WrongShape(_) => {
                Self::BadRequest(e.to_string())
            }
            RequestError::TooManyEvents { .. } => Self::PayloadTooLarge(e.to_string()),
            RequestError::Invalid(details) => Self::InvalidEvents(details),
        }
    }
}

impl ApiError {
    pub fn from_ingest(e: IngestError, retry_after_secs: u64) -> Self {
        match e {
            IngestError::Overloaded => Self::Overloaded { retry_after_secs },
            IngestError::ShuttingDown => Self::ShuttingDown,
            IngestError::Unavailable {
                reason,
                committed_elsewhere,
            } => {
                tracing::error!(%reason, committed_elsewhere, "publish failed: storage unavailable");
                Self::StoreUnavailable {
                    partially_committed: committed_elsewhere,
                }
            }
        }
    }
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
