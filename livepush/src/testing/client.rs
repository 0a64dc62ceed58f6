//! An HTTP and SSE client that calls a `Router` in-process with `tower::ServiceExt::oneshot`
//! (no socket, no port, and under `tokio::time::pause` heartbeats and deadlines take no wall
//! time), or a server over real HTTP ([`Client::http`]): one API and one frame parser for both.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;
use tower::ServiceExt;

use super::frame::{Frame, FrameParser};
use super::http::HttpBase;

/// Calls a `Router` as a server would, without one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use axum::{routing::get, Router};
/// use livepush::testing::{recorded, Client};
/// use livepush::{subscribe_to_events, Hub, RouterExt};
///
/// #[subscribe_to_events]
/// async fn events() {}
///
/// let (hub, _published) = recorded(Hub::builder());
/// let client = Client::new(Router::new().route("/events", get(events)).livepush(&hub));
/// let mut stream = client.subscribe("/events?topic=news").await;
/// assert_eq!(stream.status(), 200);
/// hub.publish("news", "story", &serde_json::json!({ "title": "hi" })).await.unwrap();
/// let frame = stream.next_event().await.unwrap();
/// assert_eq!(frame.event_name(), "story");
/// assert_eq!(frame.json::<serde_json::Value>()["title"], "hi");
///
/// // Reconnect as EventSource does, with `Last-Event-ID`.
/// let stream = stream.resume().await;
/// # drop(stream);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    target: Target,
    /// How many times [`Client::subscribe`] asks before it returns a 429 or 503.
    attempts: u32,
    /// Sent with every request that does not set them itself ([`Client::header`]).
    headers: HeaderMap,
    /// How long one read of a stream waits before it fails the test ([`Client::event_timeout`]).
    event_timeout: Duration,
}

/// How long [`EventStream::next_frame`] and [`EventStream::next_event`] wait by default: long,
/// because it only bounds a test that would otherwise hang (as [`Recorder::wait_for`]).
///
/// [`Recorder::wait_for`]: super::Recorder::wait_for
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a [`Client`]'s requests go.
#[derive(Clone, Debug)]
enum Target {
    Router(Router),
    Http(Arc<HttpBase>),
}

impl Client {
    /// A client of `router` (with `.livepush(&hub)` applied, as the app serves it). A refused
    /// subscription is returned at once (see [`Client::attempts`]).
    pub fn new(router: Router) -> Self {
        Client {
            target: Target::Router(router),
            attempts: 1,
            headers: HeaderMap::new(),
            event_timeout: EVENT_TIMEOUT,
        }
    }

    /// A client of the server at `base_url` (`http://host:port`, optionally with a path
    /// prefix), over real HTTP/1.1: for end-to-end tests and service-to-service use. Request
    /// URIs are paths, as with [`Client::new`]; each request opens its own connection, and
    /// dropping an [`EventStream`] closes its connection. [`Client::subscribe`] asks up to 3
    /// times while the server answers 429 or 503, waiting as its `Retry-After` says.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use axum::{routing::get, Router};
    /// use livepush::testing::Client;
    /// use livepush::{subscribe_to_events, Hub, RouterExt};
    ///
    /// #[subscribe_to_events]
    /// async fn events() {}
    ///
    /// let hub = Hub::builder().build().expect("valid settings");
    /// let app = Router::new().route("/events", get(events)).livepush(&hub);
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let client = Client::http(&format!("http://{}", listener.local_addr()?));
    /// tokio::spawn(std::future::IntoFuture::into_future(livepush::serve(listener, app)));
    ///
    /// let mut stream = client.subscribe("/events?topic=news").await;
    /// assert_eq!(stream.status(), 200);
    /// hub.publish("news", "story", &serde_json::json!({ "title": "hi" })).await.unwrap();
    /// let frame = stream.next_event().await.unwrap();
    /// assert_eq!((frame.event_name(), frame.json::<serde_json::Value>()["title"].as_str()), ("story", Some("hi")));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    /// When `base_url` is not an `http://` URL with a host; later, when a request cannot
    /// connect or gets no HTTP answer (an `https://` server needs another client).
    pub fn http(base_url: &str) -> Self {
        Client {
            target: Target::Http(Arc::new(HttpBase::parse(base_url))),
            attempts: 3,
            headers: HeaderMap::new(),
            event_timeout: EVENT_TIMEOUT,
        }
    }

    /// How many times [`Client::subscribe`] and [`Client::subscribe_after`] ask while the
    /// answer is 429 (a connection cap) or 503 (the server is stopping or not ready), waiting
    /// between asks as the answer's `Retry-After` says (in seconds; 1 s without one). The last
    /// answer is returned whatever it is. At least 1; the default is 1 for [`Client::new`]
    /// (tests of refusals see the first one) and 3 for [`Client::http`].
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// How long [`EventStream::next_frame`] and [`EventStream::next_event`] wait before they
    /// fail the test: 30 s by default, of Tokio time, so under `tokio::time::pause` a read that
    /// nothing will answer fails at once instead of hanging. Raise it for a paused test that
    /// waits longer between events (a heartbeat over 30 s, an hour-long subscription deadline).
    pub fn event_timeout(mut self, limit: Duration) -> Self {
        self.event_timeout = limit;
        self
    }

    /// This client, sending `name: value` with every request, its streams' reconnections
    /// included, unless a request sets `name` itself: a user's bearer token or session
    /// cookie, as a browser sends it. Called again with the same `name`, it replaces the value.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum::{http::HeaderMap, routing::get, Router};
    /// use livepush::testing::{read_text, Client};
    ///
    /// async fn whoami(headers: HeaderMap) -> String {
    ///     headers.get("authorization").map_or("anonymous", |v| v.to_str().unwrap()).to_owned()
    /// }
    ///
    /// let anonymous = Client::new(Router::new().route("/me", get(whoami)));
    /// let alice = anonymous.clone().header("authorization", "Bearer alice-token");
    /// assert_eq!(read_text(alice.get("/me").await).await, "Bearer alice-token");
    /// assert_eq!(read_text(anonymous.get("/me").await).await, "anonymous");
    /// # }
    /// ```
    ///
    /// # Panics
    /// When `name` is not a header name or `value` not a header value.
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: std::fmt::Display,
        V: TryInto<HeaderValue>,
        V::Error: std::fmt::Display,
    {
        let name = name
            .try_into()
            .unwrap_or_else(|error| panic!("not a header name: {error}"));
        let value = value
            .try_into()
            .unwrap_or_else(|error| panic!("not a value of header {name}: {error}"));
        self.headers.insert(name, value);
        self
    }

    /// Sends `request` and returns the response, its body not read yet. It is sent once,
    /// whatever the answer, with the client's [headers](Client::header) it does not set itself.
    pub async fn send(&self, mut request: Request<Body>) -> Response {
        for (name, value) in &self.headers {
            if !request.headers().contains_key(name) {
                request.headers_mut().insert(name, value.clone());
            }
        }
        match &self.target {
            Target::Router(router) => match router.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
            Target::Http(base) => base.send(request).await,
        }
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str) -> Response {
        self.send(request("GET", uri, Body::empty())).await
    }

    /// `POST uri` without a body: an action that takes none.
    pub async fn post(&self, uri: &str) -> Response {
        self.send(request("POST", uri, Body::empty())).await
    }

    /// `POST uri` with `body` as JSON.
    ///
    /// # Panics
    /// When `body` does not serialize to JSON.
    pub async fn post_json<T: Serialize + ?Sized>(&self, uri: &str, body: &T) -> Response {
        self.send(json_request("POST", uri, body)).await
    }

    /// `PUT uri` with `body` as JSON.
    ///
    /// # Panics
    /// When `body` does not serialize to JSON.
    pub async fn put_json<T: Serialize + ?Sized>(&self, uri: &str, body: &T) -> Response {
        self.send(json_request("PUT", uri, body)).await
    }

    /// `PATCH uri` with `body` as JSON.
    ///
    /// # Panics
    /// When `body` does not serialize to JSON.
    pub async fn patch_json<T: Serialize + ?Sized>(&self, uri: &str, body: &T) -> Response {
        self.send(json_request("PATCH", uri, body)).await
    }

    /// `DELETE uri`.
    pub async fn delete(&self, uri: &str) -> Response {
        self.send(request("DELETE", uri, Body::empty())).await
    }

    /// Opens an event stream: `GET uri` with `Accept: text/event-stream`. A refused
    /// subscription is a stream too: check [`EventStream::status`], read [`EventStream::text`].
    pub async fn subscribe(&self, uri: &str) -> EventStream {
        self.open(uri, None).await
    }

    /// Opens an event stream that resumes after `last_event_id` (the `Last-Event-ID` header).
    pub async fn subscribe_after(&self, uri: &str, last_event_id: &str) -> EventStream {
        self.open(uri, Some(last_event_id.to_owned())).await
    }

    async fn open(&self, uri: &str, last_event_id: Option<String>) -> EventStream {
        let mut attempt = 1;
        let response = loop {
            let response = self
                .send(stream_request(uri, last_event_id.as_deref()))
                .await;
            match retry_after(&response) {
                Some(wait) if attempt < self.attempts => {
                    attempt += 1;
                    drop(response);
                    tokio::time::sleep(wait).await;
                }
                _ => break response,
            }
        };
        let (parts, body) = response.into_parts();
        EventStream {
            client: self.clone(),
            uri: uri.to_owned(),
            status: parts.status,
            headers: parts.headers,
            body: body.into_data_stream(),
            parser: FrameParser::default(),
            ready: VecDeque::new(),
            last_event_id,
        }
    }
}

/// `GET uri` as `EventSource` sends it, with `Last-Event-ID` when resuming.
fn stream_request(uri: &str, last_event_id: Option<&str>) -> Request<Body> {
    let mut request = request("GET", uri, Body::empty());
    let headers = request.headers_mut();
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    if let Some(id) = last_event_id.filter(|id| !id.is_empty()) {
        match HeaderValue::from_str(id) {
            Ok(value) => headers.insert("last-event-id", value),
            Err(_) => panic!("a Last-Event-ID must be a valid header value: {id:?}"),
        };
    }
    request
}

/// How long to wait before asking again, when `response` is a refusal worth retrying: a 429
/// (over a connection cap) or a 503 (stopping, not ready). `Retry-After` in seconds; 1 s when
/// it is absent or a date.
fn retry_after(response: &Response) -> Option<Duration> {
    if !matches!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return None;
    }
    let seconds = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(1);
    Some(Duration::from_secs(seconds))
}

/// The body of `response` read as JSON into `T`.
///
/// # Panics
/// When the body cannot be read or is not a `T`, with the body in the message.
pub async fn read_json<T: DeserializeOwned>(response: Response) -> T {
    let text = read_text(response).await;
    serde_json::from_str(&text).unwrap_or_else(|error| {
        panic!(
            "the body is not a {}: {error}\n  body: {text}",
            std::any::type_name::<T>()
        )
    })
}

/// The body of `response` as text (lossy UTF-8).
///
/// # Panics
/// When the body cannot be read.
pub async fn read_text(response: Response) -> String {
    match axum::body::to_bytes(response.into_body(), usize::MAX).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => panic!("the body could not be read: {error}"),
    }
}

fn request(method: &str, uri: &str, body: Body) -> Request<Body> {
    match Request::builder().method(method).uri(uri).body(body) {
        Ok(request) => request,
        Err(error) => panic!("not a valid request: {method} {uri}: {error}"),
    }
}

fn json_request<T: Serialize + ?Sized>(method: &str, uri: &str, body: &T) -> Request<Body> {
    let json = match serde_json::to_vec(body) {
        Ok(json) => json,
        Err(error) => panic!("the request body does not serialize to JSON: {error}"),
    };
    let mut request = request(method, uri, Body::from(json));
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    request
}

/// An open event stream, read frame by frame as `EventSource` reads it.
#[derive(Debug)]
pub struct EventStream {
    client: Client,
    uri: String,
    status: StatusCode,
    headers: HeaderMap,
    body: BodyDataStream,
    parser: FrameParser,
    /// Frames parsed from a chunk and not yet returned.
    ready: VecDeque<Frame>,
    /// What `EventSource` would send as `Last-Event-ID` on reconnecting.
    last_event_id: Option<String>,
}

impl EventStream {
    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The next frame, events and heartbeats alike; `None` once the stream ended cleanly.
    ///
    /// # Panics
    /// When the body fails (a stream cut by an error is not one that ended), or when no frame
    /// comes within the client's [`event_timeout`](Client::event_timeout).
    pub async fn next_frame(&mut self) -> Option<Frame> {
        let deadline = Instant::now() + self.client.event_timeout;
        self.next_frame_before(deadline, "frame").await
    }

    /// The next event (a frame with data), skipping heartbeats; `None` once the stream ended.
    ///
    /// # Panics
    /// As [`EventStream::next_frame`]: when no event comes within the client's
    /// [`event_timeout`](Client::event_timeout), however many heartbeats do.
    pub async fn next_event(&mut self) -> Option<Frame> {
        let deadline = Instant::now() + self.client.event_timeout;
        while let Some(frame) = self.next_frame_before(deadline, "event").await {
            if frame.is_event() {
                return Some(frame);
            }
        }
        None
    }

    async fn next_frame_before(&mut self, deadline: Instant, what: &str) -> Option<Frame> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                if let Some(id) = &frame.id {
                    self.last_event_id = Some(id.clone());
                }
                return Some(frame);
            }
            let Ok(chunk) = tokio::time::timeout_at(deadline, self.body.next()).await else {
                panic!(
                    "no {what} came on {} within {:?} (Client::event_timeout)",
                    self.uri, self.client.event_timeout
                );
            };
            match chunk? {
                Ok(chunk) => self.ready.extend(self.parser.feed(&chunk)),
                Err(error) => panic!("the event stream of {} failed: {error}", self.uri),
            }
        }
    }

    /// The id `EventSource` would resume from: the last `id:` read, if any.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Closes this stream and opens it again with its `Last-Event-ID`, as `EventSource` does
    /// after a disconnect.
    pub async fn resume(self) -> EventStream {
        let EventStream {
            client,
            uri,
            last_event_id,
            ..
        } = self;
        client.open(&uri, last_event_id).await
    }

    /// The rest of the body as text (lossy UTF-8): the JSON error of a refused subscription.
    ///
    /// # Panics
    /// When the body fails.
    pub async fn text(mut self) -> String {
        let mut bytes = Vec::new();
        while let Some(chunk) = self.body.next().await {
            match chunk {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(error) => panic!("the body of {} failed: {error}", self.uri),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
