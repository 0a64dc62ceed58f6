//! What `#[publish_event]` handlers return, and how their values are published.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use serde::Serialize;

use crate::error::{to_json, PublishError};
use crate::event::Published;
use crate::hub::Hub;

/// A handler return value that `#[publish_event]` can publish.
///
/// [`published`](Publishable::published) answers the value to send to subscribers, or `None` when
/// the handler did not succeed (a non-2xx status, an `Err`): then nothing is published.
///
/// Implemented for `Json<T>`, `(StatusCode, Json<T>)`, `(StatusCode, HeaderMap, Json<T>)`,
/// `(HeaderMap, Json<T>)`, `(StatusCode, [(K, V); N], Json<T>)`, `([(K, V); N], Json<T>)` and
/// `Result<T, E>` of any of these. Implement it for your own response types:
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use livepush::Publishable;
/// use serde::Serialize;
///
/// #[derive(Serialize)]
/// struct Order { id: u64 }
///
/// enum Created { New(Order), Existing(Order) }
///
/// impl IntoResponse for Created {
///     fn into_response(self) -> Response {
///         match self {
///             Created::New(o) => (axum::http::StatusCode::CREATED, axum::Json(o)).into_response(),
///             Created::Existing(o) => axum::Json(o).into_response(),
///         }
///     }
/// }
///
/// impl Publishable for Created {
///     type Data = Order;
///     fn published(&self) -> Option<&Order> {
///         match self {
///             Created::New(order) => Some(order), // only new orders are pushed
///             Created::Existing(_) => None,
///         }
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be published by #[publish_event]",
    label = "livepush cannot find the value to publish in this return type",
    note = "return `Json<T>`, `(StatusCode, Json<T>)`, or a `Result` of these, where T: Serialize",
    note = "or implement `livepush::Publishable` for your response type"
)]
pub trait Publishable {
    /// The value sent to subscribers, serialized as JSON.
    type Data: Serialize + ?Sized;
    /// The value to publish, or `None` when the handler did not succeed.
    fn published(&self) -> Option<&Self::Data>;
}

impl<T: Serialize> Publishable for Json<T> {
    type Data = T;
    fn published(&self) -> Option<&T> {
        Some(&self.0)
    }
}

impl<T: Serialize> Publishable for (StatusCode, Json<T>) {
    type Data = T;
    fn published(&self) -> Option<&T> {
        self.0.is_success().then_some(&self.1 .0)
    }
}

impl<T: Serialize> Publishable for (StatusCode, HeaderMap, Json<T>) {
    type Data = T;
    fn published(&self) -> Option<&T> {
        self.0.is_success().then_some(&self.2 .0)
    }
}

impl<T: Serialize> Publishable for (HeaderMap, Json<T>) {
    type Data = T;
    fn published(&self) -> Option<&T> {
        Some(&self.1 .0)
    }
}

impl<T: Serialize, K, V, const N: usize> Publishable for (StatusCode, [(K, V); N], Json<T>) {
    type Data = T;
    fn published(&self) -> Option<&T> {
        self.0.is_success().then_some(&self.2 .0)
    }
}

impl<T: Serialize, K, V, const N: usize> Publishable for ([(K, V); N], Json<T>) {
    type Data = T;
    fn published(&self) -> Option<&T> {
        Some(&self.1 .0)
    }
}

impl<T: Publishable, E> Publishable for Result<T, E> {
    type Data = T::Data;
    fn published(&self) -> Option<&T::Data> {
        self.as_ref().ok().and_then(Publishable::published)
    }
}

/// A value encoded to JSON once, for all the `#[publish_event]` attributes of a handler.
#[doc(hidden)]
pub struct Encoded(Result<Bytes, PublishError>);

/// Serializes `value` to compact JSON. Errors are kept and reported (fail-open) at publish time.
#[doc(hidden)]
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Encoded {
    Encoded(to_json(value))
}

/// The hub as seen by a `#[publish_event]` handler; the macro adds it as an extractor.
#[doc(hidden)]
pub struct PublishContext {
    hub: Option<Hub>,
}

impl<S: Send + Sync> FromRequestParts<S> for PublishContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(PublishContext {
            hub: parts.extensions.get::<Hub>().cloned(),
        })
    }
}

static WARNED_MISSING_HUB: AtomicBool = AtomicBool::new(false);

impl PublishContext {
    /// Publishes `data` and never fails: a failure is logged and counted, and the handler's
    /// response goes out unchanged.
    pub async fn publish(
        &self,
        event: &'static str,
        category: Option<&'static str>,
        topic: String,
        data: &Encoded,
    ) {
        let Some(hub) = &self.hub else {
            if !WARNED_MISSING_HUB.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    event,
                    topic,
                    "#[publish_event] handler ran without a livepush Hub: add `.livepush(&hub)` to the router after its routes; nothing was published"
                );
            }
            return;
        };
        let json = match &data.0 {
            Ok(json) => json.clone(),
            Err(error) => {
                hub.count_failure(error);
                tracing::error!(event, topic, %error, "event data could not be serialized; nothing was published");
                return;
            }
        };
        let size = json.len();
        match hub.publish_json(&topic, event, category, json).await {
            Ok(Published::Now(_)) => {}
            // The retry buffer logs the outage once; it is not a loss.
            Ok(_) => {
                tracing::debug!(
                    event,
                    topic,
                    size,
                    "publish buffered until the broker answers"
                )
            }
            Err(error) => {
                tracing::warn!(event, topic, size, %error, "publish failed; the handler's response is unchanged")
            }
        }
    }
}
