//! Subscriptions: what `#[subscribe_to_events]` handlers turn into SSE responses.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::backlog::{self, Confirmed};
use crate::broker::{History, Partitioned};
use crate::current;
use crate::error::SubscribeError;
use crate::event::EventId;
use crate::fanout::Connection;
use crate::hub::Hub;
use crate::position::{LastEventId, Position};
use crate::presence::PresenceWatch;
use crate::registry;
use crate::sse;
use crate::stream::{EventStream, Held};
use crate::topic::{split_list, Topic, Topics};

/// Everything one SSE stream listens to: topics, optional category filter, optional cap key.
///
/// ```
/// use livepush::{Subscription, Topics};
///
/// let sub = Subscription::new(Topics::one("user:7").and_broadcast())
///     .cap_key("user:7")          // at most `max_connections_per_key` streams for this user
///     .categories(["billing"])    // only events of this category
///     .until(std::time::Instant::now() + std::time::Duration::from_secs(900)); // the token's expiry
/// # drop(sub);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Subscription {
    topics: Topics,
    categories: Option<Vec<String>>,
    cap_key: Option<String>,
    until: Option<std::time::Instant>,
    /// The member key and its JSON info (`""` for none).
    member: Option<(String, String)>,
    presence_events: bool,
}

impl Subscription {
    /// A subscription to `topics`.
    pub fn new(topics: impl Into<Topics>) -> Self {
        Subscription {
            topics: topics.into(),
            categories: None,
            cap_key: None,
            until: None,
            member: None,
            presence_events: false,
        }
    }

    /// Ends the stream at `deadline`, when the credentials it was opened with expire (a
    /// token's `exp`): the stream sends [`sse::EXPIRED`](crate::sse::EXPIRED)
    /// (`livepush.expired`, `{"reason":"expired"}`, no `id:`) and ends, so the client
    /// authenticates again and reconnects with its `Last-Event-ID`. A deadline already past
    /// refuses the subscription with 401 ([`SubscribeError::Expired`]).
    ///
    /// For a token that carries its expiry as Unix seconds, see [`Subscription::until_unix`].
    pub fn until(mut self, deadline: std::time::Instant) -> Self {
        self.until = Some(deadline);
        self
    }

    /// [`Subscription::until`] for an expiry in seconds since the Unix epoch (a JWT's `exp`).
    pub fn until_unix(self, exp: u64) -> Self {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(exp);
        let now = std::time::SystemTime::now();
        let left = at.duration_since(now).unwrap_or_default();
        self.until(std::time::Instant::now() + left)
    }

    /// Counts this stream against the per-key cap (`max_connections_per_key`) of `key`, shared by
    /// all instances: a user id, a tenant id, an API key.
    pub fn cap_key(mut self, key: impl Into<String>) -> Self {
        self.cap_key = Some(key.into());
        self
    }

    /// Makes this stream one of member `key`'s on each of its topics, with `info` (a small JSON
    /// value such as a display name; `serde_json::Value::Null` for none): the member is in
    /// [`Hub::presence`](crate::Hub::presence) on every instance while any of its streams is
    /// open, and streams that asked for [`presence_events`](Subscription::presence_events)
    /// see it join once and leave once, however many tabs it opens. Set it after
    /// authentication (the key is whom the handler's extractors proved the user to be).
    /// Without it, a [`cap_key`](Subscription::cap_key) is the member key.
    ///
    /// ```
    /// use livepush::{Subscription, Topics};
    ///
    /// let sub = Subscription::new(Topics::one("room:lobby"))
    ///     .member("user:7", serde_json::json!({"name": "Ann"}))
    ///     .presence_events();
    /// # drop(sub);
    /// ```
    pub fn member(mut self, key: impl Into<String>, info: serde_json::Value) -> Self {
        let info = match info {
            serde_json::Value::Null => String::new(),
            info => info.to_string(),
        };
        self.member = Some((key.into(), info));
        self
    }

    /// Sends this stream the presence of its topics: first a `livepush.presence` snapshot per
    /// topic (`{"topic","count","connections","members"}`), then `livepush.join` /
    /// `livepush.leave` (`{"topic","key","info"}`) as members come and go on any instance, or
    /// one `livepush.presence_diff` when several did within a tick (at most about ten events
    /// per second per topic). These carry no `id:`. See [`sse::PRESENCE`](crate::sse::PRESENCE).
    pub fn presence_events(mut self) -> Self {
        self.presence_events = true;
        self
    }

    /// Only events of these categories reach the stream (default: all). Overrides `?category=`.
    pub fn categories<I, S>(mut self, categories: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.categories = Some(categories.into_iter().map(Into::into).collect());
        self
    }

    /// The topics.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }
}

impl From<Topics> for Subscription {
    fn from(topics: Topics) -> Self {
        Subscription::new(topics)
    }
}

/// What the body of a `#[subscribe_to_events]` handler may return.
///
/// `Topics`, `Subscription`, or `Result<T, E>` of these where `E: IntoResponse` (an `Err` is
/// answered as is, so `Err(StatusCode::FORBIDDEN)` refuses the subscription).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot choose the topics of a #[subscribe_to_events] handler",
    label = "return `Topics`, `Subscription`, or `Result<Topics, E>` where E: IntoResponse",
    note = "or leave the handler body empty to take topics from `?topic=a,b`"
)]
pub trait IntoSubscription {
    /// The subscription, or the response that refuses it.
    // A refusal is rare and answered at once; boxing it would only cost an allocation. axum's own
    // rejections are unboxed `Response`s too.
    #[allow(clippy::result_large_err)]
    fn into_subscription(self) -> Result<Subscription, Response>;
}

impl IntoSubscription for Topics {
    fn into_subscription(self) -> Result<Subscription, Response> {
        Ok(Subscription::new(self))
    }
}

impl IntoSubscription for Subscription {
    fn into_subscription(self) -> Result<Subscription, Response> {
        Ok(self)
    }
}

impl<T: IntoSubscription, E: IntoResponse> IntoSubscription for Result<T, E> {
    fn into_subscription(self) -> Result<Subscription, Response> {
        match self {
            Ok(sub) => sub.into_subscription(),
            Err(refusal) => Err(refusal.into_response()),
        }
    }
}

/// What a subscription request carries besides its topics.
#[derive(Debug, Default)]
struct RequestOptions {
    topics: Topics,
    categories: Option<Vec<String>>,
    last_event_id: Option<LastEventId>,
}

/// Reads `topic`, `category` and `lastEventId` from the query and `Last-Event-ID` from the
/// headers. Repeated parameters and comma lists both work: `?topic=a&topic=b,c`.
fn read_request(parts: &Parts) -> Result<RequestOptions, SubscribeError> {
    let mut options = RequestOptions::default();
    let mut last_event_id = None;
    if let Some(query) = parts.uri.query() {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(SubscribeError::Query)?;
        for (key, value) in pairs {
            match key.as_str() {
                "topic" | "topics" => {
                    for t in Topics::parse_list(&value).names() {
                        options.topics.push(t.clone());
                    }
                }
                "category" | "categories" => {
                    let list = options.categories.get_or_insert_with(Vec::new);
                    list.extend(split_list(&value).map(String::from));
                }
                "lastEventId" | "last_event_id" => last_event_id = Some(value),
                _ => {}
            }
        }
    }
    // The header wins: EventSource sets it on every reconnect, while a query value stays the
    // one the page was first opened with.
    if let Some(value) = parts.headers.get("last-event-id") {
        let value = value
            .to_str()
            .map_err(|_| SubscribeError::LastEventId(crate::event::InvalidEventId))?;
        last_event_id = Some(value.to_owned());
    }
    options.last_event_id = last_event_id
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            LastEventId::parse(&v).ok_or(SubscribeError::LastEventId(crate::event::InvalidEventId))
        })
        .transpose()?;
    Ok(options)
}

/// The request as seen by a `#[subscribe_to_events]` handler; the macro adds it as an extractor.
#[doc(hidden)]
pub struct SubscribeContext {
    hub: Hub,
    /// The request, kept only when an authorize hook needs it.
    parts: Option<Arc<Parts>>,
    options: Result<RequestOptions, SubscribeError>,
}

impl<S: Send + Sync> FromRequestParts<S> for SubscribeContext {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(hub) = parts.extensions.get::<Hub>().cloned() else {
            tracing::error!("#[subscribe_to_events] handler ran without a livepush Hub: add `.livepush(&hub)` to the router after its routes");
            return Err(SubscribeError::HubMissing.into_response());
        };
        let options = read_request(parts);
        // Only the authorize hook needs the request; clone it only then.
        let parts = hub.authorizer().is_some().then(|| Arc::new(parts.clone()));
        Ok(SubscribeContext {
            hub,
            parts,
            options,
        })
    }
}

impl SubscribeContext {
    /// Subscribes to the topics of `?topic=a,b`.
    pub async fn from_query(self) -> Response {
        let options = match self.options {
            Ok(options) => options,
            Err(error) => return refuse(&self.hub, error),
        };
        let sub = Subscription {
            topics: options.topics,
            categories: options.categories,
            ..Subscription::default()
        };
        open(&self.hub, self.parts, sub, options.last_event_id)
            .await
            .unwrap_or_else(|e| refuse(&self.hub, e))
    }

    /// Subscribes to what the handler body chose.
    pub async fn with<T: IntoSubscription>(self, chosen: T) -> Response {
        let mut sub = match chosen.into_subscription() {
            Ok(sub) => sub,
            Err(refusal) => {
                self.hub.metrics().reject("handler");
                return refusal;
            }
        };
        let options = match self.options {
            Ok(options) => options,
            Err(error) => return refuse(&self.hub, error),
        };
        if sub.categories.is_none() {
            sub.categories = options.categories;
        }
        open(&self.hub, self.parts, sub, options.last_event_id)
            .await
            .unwrap_or_else(|e| refuse(&self.hub, e))
    }
}

fn refuse(hub: &Hub, error: SubscribeError) -> Response {
    hub.metrics().reject(error.code());
    tracing::debug!(%error, "subscription refused");
    error.into_response()
}

/// The lifecycle of one subscription: checked, admitted, listening, caught up, streaming.
pub(crate) async fn open(
    hub: &Hub,
    parts: Option<Arc<Parts>>,
    sub: Subscription,
    last: Option<LastEventId>,
) -> Result<Response, SubscribeError> {
    if hub.is_shutting_down() {
        return Err(SubscribeError::ShuttingDown);
    }
    if sub.until.is_some_and(|at| at <= std::time::Instant::now()) {
        return Err(SubscribeError::Expired);
    }
    let topics = check(hub, &sub, parts).await?;
    // From here on, each guard gives back what it took, on every path.
    let admission = hub.admit(&topics)?;
    let member = sub
        .member
        .or_else(|| sub.cap_key.clone().map(|key| (key, String::new())));
    let slot = hub.take_slot(sub.cap_key).await?;
    let conn = Arc::new(Connection::new(
        admission.id(),
        sub.categories.map(Vec::into_boxed_slice),
        hub.config().slow_consumer_policy(),
        hub.config().queue_capacity,
    ));
    // Joined before the stream starts: its own presence snapshot lists the member.
    let membership = match &member {
        Some((key, info)) => Some(hub.join(&topics, key.clone(), info.clone()).await),
        None => None,
    };
    // Live first, history second: nothing published in between is missed, and duplicates of
    // history in the live queue are skipped by id (`seen`).
    let registration = hub.register(topics, &conn);
    // `shutdown` may have run since the check above; it sets the flag before it closes the queues,
    // so either it closed ours or we see the flag here (a stream that missed both would keep
    // graceful shutdown waiting).
    if hub.is_shutting_down() {
        return Err(SubscribeError::ShuttingDown);
    }
    let confirmed = confirm_subscribed(hub, registration.topics(), admission.span()).await;
    let backlog = read_backlog(hub, registration.topics(), last, confirmed).await;
    let mut pending = backlog.pending;
    let presence = match sub.presence_events {
        true => {
            let me = member.as_ref().map(|(k, i)| (k.as_str(), i.as_str()));
            Some(watch_presence(hub, registration.topics(), &conn, me, &mut pending).await)
        }
        false => None,
    };
    hub.metrics().connections_total.inc();
    tracing::debug!(parent: admission.span(), "stream opened");
    let held = Held {
        _presence: presence,
        _member: membership,
        _registration: registration,
        _slot: slot,
        admission,
    };
    let mut stream = EventStream::new(hub, conn, pending, backlog.seen, held);
    if let Some(position) = backlog.position {
        stream.write_positions(position, hub.broker().clone());
    }
    if let Some(at) = sub.until {
        stream.expire_at(tokio::time::Instant::from_std(at));
    }
    Ok(sse_response(Body::new(stream)))
}

/// The history a new stream starts with: after the client's position on a partitioned broker,
/// after its plain id on a broker of one sequence.
async fn read_backlog(
    hub: &Hub,
    topics: &[Topic],
    last: Option<LastEventId>,
    confirmed: Confirmed,
) -> Backlog {
    match hub.broker().partitioned() {
        Some(partitioned) => {
            Backlog::read_partitioned(hub, partitioned, topics, last, confirmed).await
        }
        // One sequence: the plain id (a position vector means nothing here: 0, reset once).
        None => {
            let after = last.as_ref().map(LastEventId::plain);
            Backlog::read(hub, topics, after, confirmed).await
        }
    }
}

/// Starts watching the members of `topics` for this stream, and puts their snapshots right
/// after the retry hint in `pending`: the first events of the stream.
async fn watch_presence(
    hub: &Hub,
    topics: &[Topic],
    conn: &Arc<Connection>,
    me: Option<(&str, &str)>,
    pending: &mut VecDeque<Bytes>,
) -> PresenceWatch {
    let (snapshots, watch) = hub.watch_presence(topics, conn, me).await;
    for (i, frame) in snapshots.into_iter().enumerate() {
        pending.insert(1 + i, frame);
    }
    watch
}

/// Validates the topics and categories, then asks the authorize hook about every topic.
async fn check(
    hub: &Hub,
    sub: &Subscription,
    parts: Option<Arc<Parts>>,
) -> Result<Vec<Topic>, SubscribeError> {
    let topics = sub
        .topics
        .validate(hub.config().max_topics_per_subscription)?;
    if let Some(categories) = &sub.categories {
        let known = registry::categories();
        if let Some(unknown) = categories.iter().find(|c| !known.contains(c.as_str())) {
            return Err(SubscribeError::UnknownCategory(unknown.clone()));
        }
    }
    if hub.rejects_unregistered_topics() {
        if let Some(t) = topics
            .iter()
            .find(|t| !registry::is_registered_topic(t.as_str()))
        {
            return Err(SubscribeError::UnregisteredTopic(t.to_string()));
        }
    }
    if let (Some(authorize), Some(parts)) = (hub.authorizer(), &parts) {
        for topic in &topics {
            if !authorize(parts.clone(), topic.clone()).await {
                return Err(SubscribeError::Forbidden(topic.to_string()));
            }
        }
    }
    Ok(topics)
}

/// Waits until the broker delivers `topics` here (Redis: SUBSCRIBE confirmed), so a client that
/// publishes right after it sees the response gets its own event. Fail-open: a broker that
/// cannot confirm in time does not keep the client out; its events start when the subscription
/// does.
async fn confirm_subscribed(hub: &Hub, topics: &[Topic], span: &tracing::Span) -> Confirmed {
    match hub.broker().subscribed(topics).await {
        Ok(()) => Confirmed::Yes,
        Err(error) => {
            tracing::warn!(parent: span, %error, "broker subscription not confirmed; the stream starts without waiting");
            Confirmed::No
        }
    }
}

/// What a stream sends before live events: the retry hint, a reset notice, replayed history;
/// and, after a replay or a reset, per topic the highest id already covered.
struct Backlog {
    pending: VecDeque<Bytes>,
    seen: Option<HashMap<Topic, EventId>>,
    /// A partitioned broker and topics in several partitions: the position the stream keeps
    /// writing as its `id:` line.
    position: Option<Position>,
}

impl Backlog {
    /// The backlog of a stream that resumes after `after` (a reconnect's `Last-Event-ID`, a
    /// list's cursor). History is read only once live events arrive (`confirmed`); without a
    /// confirmed subscription that order cannot be kept, and the client is told to reset.
    async fn read(
        hub: &Hub,
        topics: &[Topic],
        after: Option<EventId>,
        confirmed: Confirmed,
    ) -> Backlog {
        let mut backlog = Backlog {
            pending: VecDeque::from([sse::retry(hub.config().client_retry.as_millis() as u64)]),
            seen: None,
            position: None,
        };
        let broker = hub.broker();
        let Some(after) = after else {
            // A new stream: the current values of its state topics first.
            let Some(values) = current::read(broker.as_ref(), topics).await else {
                backlog.pending.push_back(current::unavailable());
                return backlog;
            };
            backlog.seen = current::fresh_marks(topics, &values);
            backlog
                .pending
                .extend(values.iter().map(|e| e.frame().clone()));
            return backlog;
        };
        if hub.config().replay == 0 {
            // No history to replay: a client that asks for events after an id it is behind on
            // (a list's cursor, a reconnect) is told to reload instead of silently missing them.
            backlog.seen = unreplayable(&mut backlog.pending, broker.as_ref(), topics, after).await;
            if backlog.pending.len() > 1 {
                backlog.after_reset(broker.as_ref(), topics).await;
            }
            return backlog;
        }
        if confirmed == Confirmed::No {
            tracing::warn!(
                "live delivery not confirmed, history not read; the client is told to reset"
            );
            backlog.pending.push_back(reset_frame(after, after));
            backlog.after_reset(broker.as_ref(), topics).await;
            return backlog;
        }
        match hub.history(topics, after).await {
            Ok(mut history) => {
                hub.metrics().replayed.inc_by(history.events.len() as u64);
                if !history.complete {
                    // The reset path: the current values, merged into what is replayed by id.
                    // (the replay starts with a reset: one the values miss changes nothing)
                    let values = current::read(broker.as_ref(), topics).await;
                    current::merge(&mut history.events, values.unwrap_or_default());
                }
                backlog.seen = Some(replay(&mut backlog.pending, topics, after, history));
            }
            Err(error) => {
                tracing::warn!(%error, "history unavailable; the client is told to reset");
                backlog.pending.push_back(reset_frame(after, after));
                backlog.after_reset(broker.as_ref(), topics).await;
            }
        }
        backlog
    }

    /// After a reset with nothing replayed: the current values of the state topics, and marks
    /// that skip live events they already cover (every other live event goes out).
    async fn after_reset(&mut self, broker: &dyn crate::broker::Broker, topics: &[Topic]) {
        // a reset went out already: values the broker cannot give change nothing
        let values = current::read(broker, topics).await.unwrap_or_default();
        if values.is_empty() {
            return;
        }
        current::raise_marks(self.seen.get_or_insert_with(HashMap::new), &values);
        self.pending
            .extend(values.iter().map(|e| e.frame().clone()));
    }

    /// The backlog of a stream on a partitioned broker (Redis Cluster): a position per
    /// partition, read and replayed by [`backlog::open`] once live events arrive
    /// (`confirmed`), behind the retry hint.
    async fn read_partitioned(
        hub: &Hub,
        broker: &dyn Partitioned,
        topics: &[Topic],
        last: Option<LastEventId>,
        confirmed: Confirmed,
    ) -> Backlog {
        let replay = hub.config().replay > 0;
        // Read up front (one more round trip per stream): the partitions that need them are
        // known only once their histories are read.
        let values = current::read(hub.broker().as_ref(), topics).await;
        // a new stream is told when they are missing; a resumed one that needs them was reset
        let unavailable = values.is_none() && last.is_none();
        let values = values.unwrap_or_default();
        let opened = backlog::open(broker, topics, last.as_ref(), replay, confirmed, values).await;
        hub.metrics().replayed.inc_by(opened.replayed as u64);
        let mut pending =
            VecDeque::from([sse::retry(hub.config().client_retry.as_millis() as u64)]);
        if unavailable {
            pending.push_back(current::unavailable());
        }
        pending.extend(opened.frames);
        Backlog {
            pending,
            seen: opened.seen,
            position: opened.position,
        }
    }
}

/// Without replay: a reset at the broker's position when `after` is behind it (or the position
/// is unknown), and marks that skip live events at or below that position, which the client's
/// reload covers.
async fn unreplayable(
    pending: &mut VecDeque<Bytes>,
    broker: &dyn crate::broker::Broker,
    topics: &[Topic],
    after: EventId,
) -> Option<HashMap<Topic, EventId>> {
    match broker.position().await {
        Ok(position) if after >= position => None,
        Ok(position) => {
            pending.push_back(reset_frame(position, after));
            Some(topics.iter().map(|t| (t.clone(), position)).collect())
        }
        Err(error) => {
            tracing::warn!(%error, "stream position unavailable; the client is told to reset");
            pending.push_back(reset_frame(after, after));
            None
        }
    }
}

/// Queues the replayed `history` (after a reset when it is incomplete) and returns, per topic,
/// the highest id sent: live events at or below are duplicates. After a reset that is the
/// reset's id, never the client's, so an id the broker never issued does not mute the live
/// events that follow.
fn replay(
    pending: &mut VecDeque<Bytes>,
    topics: &[Topic],
    after: EventId,
    history: History,
) -> HashMap<Topic, EventId> {
    let start = if history.complete {
        after
    } else {
        let at = history.reset_id();
        pending.push_back(reset_frame(at, after));
        at
    };
    let mut marks: HashMap<Topic, EventId> = topics.iter().map(|t| (t.clone(), start)).collect();
    for event in &history.events {
        marks.insert(event.topic().clone(), event.id());
        pending.push_back(event.frame().clone());
    }
    marks
}

/// `livepush.reset` for a client that asked for what came after `asked`; it resumes from `at`.
fn reset_frame(at: EventId, asked: EventId) -> Bytes {
    let data = serde_json::json!({ "last_event_id": asked, "reason": "history_unavailable" });
    sse::event(at, &sse::RESET, data.to_string().as_bytes())
}

/// An SSE response with the headers proxies need to pass it through unbuffered.
pub(crate) fn sse_response(body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, last_event_id: Option<&str>) -> Parts {
        let mut req = http::Request::builder().uri(uri);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn reads_topics_categories_and_ids() {
        let o = read_request(&parts(
            "/events?topic=a,b&topic=c&category=x&lastEventId=5",
            None,
        ))
        .unwrap();
        assert_eq!(o.topics.names(), ["a", "b", "c"]);
        assert_eq!(o.categories, Some(vec!["x".to_owned()]));
        assert_eq!(o.last_event_id, Some(LastEventId::Plain(EventId::new(5))));
        let o = read_request(&parts("/events?topic=a&lastEventId=5", Some("9"))).unwrap();
        assert_eq!(o.last_event_id, Some(LastEventId::Plain(EventId::new(9))));
    }

    #[test]
    fn refuses_malformed_ids() {
        assert!(matches!(
            read_request(&parts("/events?topic=a", Some("-3"))),
            Err(SubscribeError::LastEventId(_))
        ));
        assert!(matches!(
            read_request(&parts("/events?topic=a&lastEventId=x", None)),
            Err(SubscribeError::LastEventId(_))
        ));
    }
}
