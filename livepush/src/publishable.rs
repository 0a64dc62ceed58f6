//! What a `#[publish_event]` handler's return value publishes: the [`Publishable`] trait.
//!
//! Vocabulary, not HTTP machinery: the registry's payload schemas name it too, and it needs
//! nothing of the hub.

use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;

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
