//! Test helpers for apps that push (feature `testing`; use it from `[dev-dependencies]`):
//! record what a `Router` call published, and read its event streams, without a server or
//! from one over real HTTP.
//!
//! ```toml
//! [dev-dependencies]
//! livepush = { version = "0.1", features = ["testing"] }
//! ```
//!
//! - [`recorded`] builds a hub whose broker records every publication, whichever way it was
//!   made (`#[publish_event]`, [`Hub::emit`](crate::Hub::emit),
//!   [`Hub::publish`](crate::Hub::publish), the outbox relay); [`assert_published!`] and
//!   [`Recorder::assert_nothing_published`] check it, with the whole record and a diff of the
//!   data on failure.
//! - [`Client`] calls the `Router` in-process, or a server over real HTTP ([`Client::http`]);
//!   [`Client::subscribe`] gives an [`EventStream`] of parsed [`Frame`]s that resumes with
//!   `Last-Event-ID`.
//!
//! A handler that publishes, tested:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use axum::{http::StatusCode, routing::post, Json, Router};
//! use livepush::testing::{assert_published, recorded, Client};
//! use livepush::{publish_event, Hub, RouterExt};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Comment { id: u64, text: String }
//!
//! #[publish_event(topic = "comments", event = "comment_created")]
//! async fn create(Json(comment): Json<Comment>) -> (StatusCode, Json<Comment>) {
//!     (StatusCode::CREATED, Json(comment))
//! }
//!
//! let (hub, published) = recorded(Hub::builder());
//! let client = Client::new(Router::new().route("/comments", post(create)).livepush(&hub));
//! let comment = Comment { id: 1, text: "hi".into() };
//! let response = client.post_json("/comments", &comment).await;
//! assert_eq!(response.status(), StatusCode::CREATED);
//! assert_published!(published, topic = "comments", event = "comment_created", data = comment);
//! # }
//! ```

mod client;
mod expect;
mod frame;
mod http;
mod recorded;
mod recorder;

pub use self::client::{read_json, read_text, Client, EventStream};
pub use self::expect::Expected;
pub use self::frame::{Frame, FrameParser};
pub use self::recorded::Recorded;
pub use self::recorder::{recorded, Recorder, RecordingBroker};

/// Asserts that a [`Recorder`] holds a publication with every field given, and returns it
/// ([`Recorded`]). Keys: `topic`, `event`, `category`, `data` (a typed value or a
/// `serde_json::json!`, compared as JSON). On failure the message lists every publication
/// recorded and diffs the data of the closest one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use livepush::testing::{assert_published, recorded};
/// use livepush::Hub;
/// use serde_json::json;
///
/// let (hub, published) = recorded(Hub::builder());
/// hub.publish("user:7", "renamed", &json!({ "name": "Ada" })).await.unwrap();
/// let event = assert_published!(published, topic = "user:7", event = "renamed");
/// assert_eq!(event.value(), json!({ "name": "Ada" }));
/// assert_published!(published, data = json!({ "name": "Ada" }));
/// # }
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! __livepush_assert_published {
    ($recorder:expr $(, $key:ident = $value:expr)* $(,)?) => {
        $recorder.assert_published($crate::testing::Expected::new()$(.$key(&$value))*)
    };
}

#[doc(inline)]
pub use crate::__livepush_assert_published as assert_published;

#[cfg(test)]
mod tests;
