//! How the values of `#[publish_event]` handlers are published (what they return is
//! [`Publishable`](crate::publishable::Publishable)).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::Serialize;

use crate::error::{to_json, PublishError};
use crate::event::Published;
use crate::hub::Hub;
use crate::state::Retain;

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
        self.publish_with(event, category, topic, data, None).await
    }

    /// [`PublishContext::publish`] of a `retain` attribute: kept as the topic's current value,
    /// for `ttl` seconds when given.
    pub async fn publish_retained(
        &self,
        event: &'static str,
        category: Option<&'static str>,
        topic: String,
        data: &Encoded,
        ttl: Option<u64>,
    ) {
        let retain = Retain::of_attribute(String::new(), ttl);
        self.publish_with(event, category, topic, data, Some(retain))
            .await
    }

    async fn publish_with(
        &self,
        event: &'static str,
        category: Option<&'static str>,
        topic: String,
        data: &Encoded,
        retain: Option<Retain>,
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
        match hub
            .publish_json_retained(&topic, event, category, json, retain)
            .await
        {
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
