//! What the OpenAPI document says the endpoints take: the publish body and the query
//! parameters, as schemas. The handlers read their queries strictly themselves ([`super::query`]);
//! these types only describe them, and sit below both the handlers and the document.

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::schemas::EventSchema;

/// The body of `POST /publish`: one event, or an array of 1 to max-events-per-request
/// (default 1000) events.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // A schema only: the handler parses the body itself.
pub(super) enum PublishBody {
    One(EventSchema),
    Many(Vec<EventSchema>),
}

/// The query of `GET /events`; unknown parameters are refused (400).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Parameters only: the handler reads the query strictly itself.
pub(super) struct EventsQuery {
    /// Only this topic's events, in `seq` order.
    topic: Option<String>,
    /// With `topic`: a seq (≥ 0), events after it. Without: the cursor from the previous
    /// page's `Link` header.
    after: Option<String>,
    /// Events per page, 1 to 10000 (default 10000); a page also ends at its byte bound.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// Long poll (needs `topic`): when no event follows `after` yet, wait up to this many
    /// seconds (0 to 30) for one to be committed; then `[]`.
    #[param(minimum = 0, maximum = 30)]
    wait: Option<u32>,
}

/// The query of `GET /events/stream`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Parameters only: the handler reads the query strictly itself.
pub(super) struct StreamQuery {
    /// The topic to follow; without it, every topic.
    topic: Option<String>,
    /// Where the stream starts (after it); overrides `Last-Event-ID`. With `topic`: a seq
    /// (≥ 0). Without: an `id` this stream sent, or `now`.
    after: Option<String>,
}

/// The query of `GET /topics`; unknown parameters are refused (400).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Parameters only: the handler reads the query strictly itself.
pub(super) struct TopicsQuery {
    /// Topics after this one (byte order).
    after: Option<String>,
    /// Topics per page, 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}
