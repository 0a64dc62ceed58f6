//! Every error type of livepush, and the one place where they become HTTP answers.
//!
//! Errors are looked up, not typed daily, so they live here rather than at the crate root, as
//! in tokio's `broadcast::error` or axum's `extract::rejection`. The errors of the building
//! blocks are defined next to them ([`TopicError`] with `Topic`, [`BrokerError`] with the
//! broker seam…) and re-exported here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub use crate::broker::BrokerError;
pub use crate::config::ConfigError;
pub use crate::event::{InvalidEventId, InvalidName};
pub use crate::state::InvalidRetain;
pub use crate::topic::TopicError;

/// Why a hub could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker could not be set up (an unparsable `REDIS_URL`, for example).
    #[error("broker setup failed: {0}")]
    Broker(#[source] BrokerError),
}

/// Why a publish did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The topic is not a valid topic name.
    #[error("invalid topic: {0}")]
    Topic(#[from] TopicError),
    /// The event or category name is not valid.
    #[error(transparent)]
    Name(#[from] InvalidName),
    /// The value could not be serialized to JSON.
    #[error("event data could not be serialized to JSON: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The encoded event is larger than `max_event_bytes`.
    #[error("event is {size} bytes; the limit is {max} (LIVEPUSH_MAX_EVENT_BYTES)")]
    TooLarge {
        /// Size of the JSON payload.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The broker failed (only with the retry buffer off: with it on, the event waits in the
    /// buffer and the publish succeeds, see [`Published`](crate::Published)).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The broker did not answer within `publish_timeout`.
    #[error("broker did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The [`Retain`](crate::Retain) of a retained publication is out of bounds.
    #[error(transparent)]
    Retain(#[from] InvalidRetain),
    /// A retained publication on a broker that keeps no state (such as the NATS engine):
    /// nothing was published.
    #[error("the {0} broker does not keep retained values (state topics); use the in-memory or a Redis broker, or publish without retain")]
    RetainUnsupported(&'static str),
}

/// Serializes `value` to compact JSON: the one place a JSON serialization failure becomes an
/// error.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<bytes::Bytes, PublishError> {
    serde_json::to_vec(value)
        .map(bytes::Bytes::from)
        .map_err(PublishError::Serialize)
}

impl PublishError {
    /// A short label for metrics: the one place it is derived.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            PublishError::Topic(_) => "invalid_topic",
            PublishError::Name(_) => "invalid_name",
            PublishError::Serialize(_) => "serialize",
            PublishError::TooLarge { .. } => "too_large",
            PublishError::Broker(_) => "broker",
            PublishError::Timeout(_) => "timeout",
            PublishError::Retain(_) => "invalid_retain",
            PublishError::RetainUnsupported(_) => "retain_unsupported",
        }
    }
}

/// Why a subscription was refused. Each maps to one status and a JSON body
/// `{"error": "<code>", "message": "<what to do>"}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// A topic is invalid, none was given, or too many were (400).
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// `Last-Event-ID` (or `lastEventId`) is malformed (400).
    #[error(transparent)]
    LastEventId(#[from] InvalidEventId),
    /// The query string could not be read (400).
    #[error("invalid query string: {0}")]
    Query(#[source] serde_urlencoded::de::Error),
    /// A `?category=` names no category of a registered event type (400).
    #[error("unknown category {0:?}; known categories are listed at /events/catalog")]
    UnknownCategory(String),
    /// The hub rejects topics no registered template matches, and this one matches none (400).
    #[error("topic {0:?} matches no topic published by this service (see /events/catalog)")]
    UnregisteredTopic(String),
    /// The authorize hook refused a topic (403).
    #[error("not allowed to subscribe to topic {0:?}")]
    Forbidden(String),
    /// The process holds `max_connections` streams (429).
    #[error("too many connections to this server; retry later")]
    TooManyConnections {
        /// Seconds to wait, sent as `Retry-After`.
        retry_after: u64,
    },
    /// The cap key holds its maximum number of streams (429).
    #[error("too many connections for this key; close another stream or retry later")]
    KeyCapReached {
        /// Seconds to wait, sent as `Retry-After`.
        retry_after: u64,
    },
    /// The hub was not added to the router (500).
    #[error("livepush hub missing: call `.livepush(&hub)` (`livepush::RouterExt`) on the router after its last `.route(..)`; a layer added before a route does not wrap it")]
    HubMissing,
    /// The hub is shutting down (503).
    #[error("server is shutting down")]
    ShuttingDown,
    /// The subscription's expiry ([`Subscription::until`](crate::Subscription::until)) has
    /// already passed: the credentials it came from are expired (401).
    #[error("the credentials of this subscription have expired; authenticate again")]
    Expired,
}

impl SubscribeError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            SubscribeError::Topic(TopicError::TooMany { .. }) => {
                (StatusCode::BAD_REQUEST, "too_many_topics")
            }
            SubscribeError::Topic(TopicError::NoTopics) => (StatusCode::BAD_REQUEST, "no_topics"),
            SubscribeError::Topic(_) => (StatusCode::BAD_REQUEST, "invalid_topic"),
            SubscribeError::LastEventId(_) => (StatusCode::BAD_REQUEST, "invalid_last_event_id"),
            SubscribeError::Query(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            SubscribeError::UnknownCategory(_) => (StatusCode::BAD_REQUEST, "unknown_category"),
            SubscribeError::UnregisteredTopic(_) => (StatusCode::BAD_REQUEST, "unregistered_topic"),
            SubscribeError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            SubscribeError::TooManyConnections { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_connections")
            }
            SubscribeError::KeyCapReached { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "key_cap_reached")
            }
            SubscribeError::HubMissing => (StatusCode::INTERNAL_SERVER_ERROR, "hub_missing"),
            SubscribeError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            SubscribeError::Expired => (StatusCode::UNAUTHORIZED, "expired"),
        }
    }

    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The machine-readable code in the JSON body.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }
}

/// The JSON body of every error answer.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

/// A JSON error answer: `{"error": code, "message": message}`.
pub(crate) fn json_error(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::to_vec(&ErrorBody {
        error: code,
        message,
    })
    .unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

impl IntoResponse for SubscribeError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let mut response = json_error(status, code, self.to_string());
        if let SubscribeError::TooManyConnections { retry_after }
        | SubscribeError::KeyCapReached { retry_after } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}
