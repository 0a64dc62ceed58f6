//! The hub: what publishers publish to and subscribers subscribe at.
//!
//! Every public method of [`Hub`] is defined in this file; its children hold what they
//! delegate to: the tower layer ([`layer`]), the stream position's type, and the handlers of
//! the operational routes.

mod admin;
mod choice;
pub mod layer;
mod position;
mod routes;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::request::Parts;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Serialize;
use tracing::Instrument;

use crate::broker::{
    Broker, BrokerError, Delivery, LocalPresence, Occupancy, Presence, PresenceCount,
};
use crate::catchup::Catchup;
use crate::config::Config;
use crate::connections::{Admission, Connections, KeySlot, Registration};
use crate::envelope::{Envelope, Publication};
use crate::error::{to_json, BuildError, PublishError, SubscribeError};
use crate::event::{validate_name, EventId, EventName, Published};
use crate::fanout::{Connection, Fanout};
use crate::metrics::Metrics;
use crate::presence::{Membership, OccupancyHook, PresenceWatch, Presences};
use crate::recent::Recent;
use crate::retry::{Limits, RetryBuffer};
use crate::sse_event::SseEvent;
use crate::state::Retain;
use crate::topic::Topic;
use crate::trace::Trace;

use choice::BrokerChoice;
use layer::HubLayer;
pub use position::StreamPosition;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The authorize hook: may the request described by `Parts` subscribe to `Topic`?
pub(crate) type Authorizer = Arc<dyn Fn(Arc<Parts>, Topic) -> BoxFuture<bool> + Send + Sync>;

/// The center of livepush: publishes events and serves subscriptions.
///
/// Cheap to clone (an `Arc`). Build one per process with [`Hub::builder`] or [`Hub::from_env`],
/// add it to the router with [`RouterExt::livepush`](crate::RouterExt::livepush), and
/// publish with the macros or with [`Hub::publish`] / [`Hub::emit`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use livepush::Hub;
///
/// let hub = Hub::builder().heartbeat(std::time::Duration::from_secs(10)).build().unwrap();
/// let published = hub.publish("comments", "comment_created", &serde_json::json!({"id": 1})).await.unwrap();
/// // the in-memory broker always takes it at once
/// assert!(published.id().is_some_and(|id| id.get() > 0));
/// # }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

/// The parts of a hub; each has one owner, and other modules reach them through `Hub`'s methods.
struct HubInner {
    config: Config,
    broker: Arc<dyn Broker>,
    /// Topic → local connections; fed by the broker through its [`Delivery`].
    fanout: Arc<Fanout>,
    metrics: Arc<Metrics>,
    authorizer: Option<Authorizer>,
    reject_unregistered: bool,
    /// The process cap, connection ids and the closing flag.
    connections: Arc<Connections>,
    /// The heartbeat comment, encoded once.
    heartbeat_frame: Bytes,
    /// Publications the broker could not take yet, in order.
    retry: Arc<RetryBuffer>,
    /// With replay on: the recent-history cache and the reads that resuming streams share.
    recent: Option<Arc<Recent>>,
    catchup: Option<Catchup>,
    /// Members, their join and leave events, and the occupancy hook.
    presences: Arc<Presences>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("broker", &self.inner.broker.kind())
            .field("connections", &self.connection_count())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Hub`]. Every setting has a default; see [`Config`].
#[must_use]
pub struct HubBuilder {
    config: Config,
    /// The broker's settings, used when `broker` is `None`.
    choice: BrokerChoice,
    broker: Option<Arc<dyn Broker>>,
    authorizer: Option<Authorizer>,
    reject_unregistered: bool,
    occupancy: Option<OccupancyHook>,
}

impl HubBuilder {
    /// Starts from `config`: the defaults ([`Hub::builder`]) or the hub's settings from the
    /// environment ([`Config::from_env`]), with the in-memory broker; the builder's methods then
    /// set what code says. To read the broker from the environment too (`REDIS_URL`,
    /// `NATS_URL`), start with [`HubBuilder::from_env`].
    pub fn from_config(config: Config) -> Self {
        HubBuilder {
            config,
            choice: BrokerChoice::default(),
            broker: None,
            authorizer: None,
            reject_unregistered: false,
            occupancy: None,
        }
    }

    /// Heartbeat interval on idle streams (default 15 s).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.config.heartbeat = every;
        self
    }

    /// Most concurrent SSE connections in this process (default 10,000).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = max;
        self
    }

    /// Most concurrent connections per cap key across all instances (default: no cap).
    pub fn max_connections_per_key(mut self, max: u32) -> Self {
        self.config.max_connections_per_key = Some(max);
        self
    }

    /// Events queued per connection (default 256).
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.config.queue_capacity = events;
        self
    }

    /// The longest write-coalescing window of a stream that falls behind (default 16 ms;
    /// `Duration::ZERO` writes every event at once). See [`Config::coalesce`].
    pub fn coalesce(mut self, window: Duration) -> Self {
        self.config.coalesce = window;
        self
    }

    /// Largest event payload in bytes (default 64 KiB).
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.config.max_event_bytes = bytes;
        self
    }

    /// Most topics per subscription (default 32).
    pub fn max_topics_per_subscription(mut self, max: usize) -> Self {
        self.config.max_topics_per_subscription = max;
        self
    }

    /// Retains `events` per topic for `ttl` for `Last-Event-ID` replay (0 turns replay off).
    pub fn replay(mut self, events: usize, ttl: Duration) -> Self {
        self.config.replay = events;
        self.config.replay_ttl = ttl;
        self
    }

    /// What to do with clients that read too slowly (default: by replay, see
    /// [`SlowConsumerPolicy`](crate::SlowConsumerPolicy)).
    pub fn slow_consumer(mut self, policy: crate::config::SlowConsumerPolicy) -> Self {
        self.config.slow_consumer = Some(policy);
        self
    }

    /// Bounds the retry buffer, where publications wait while the broker cannot take them
    /// (default 10,000 publications, 16 MiB of payload, 30 s; `events = 0` turns it off).
    ///
    /// A publish that fails on the broker is kept and published in order once the broker
    /// answers, and later publications queue behind it. What overflows the buffer, or waits
    /// longer than `max_age`, is given up oldest first, and every subscriber of its topic, in
    /// every process, gets `livepush.reset` once the broker is back.
    pub fn retry_buffer(mut self, events: usize, bytes: usize, max_age: Duration) -> Self {
        self.config.retry_buffer_events = events;
        self.config.retry_buffer_bytes = bytes;
        self.config.retry_buffer_age = max_age;
        self
    }

    /// The `Retry-After` sent with 429 answers, in whole seconds (default 5 s; at most a day).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.config.retry_after = wait;
        self
    }

    /// The `retry:` hint sent to clients when they connect: how long an `EventSource` waits
    /// before it reconnects, in whole milliseconds (default 2,000 ms; at most a day).
    pub fn client_retry(mut self, wait: Duration) -> Self {
        self.config.client_retry = wait;
        self
    }

    /// The longest a publish waits for the broker before the event goes to the retry buffer
    /// (or, with the buffer off, the publish fails) (default 2 s; more than zero, at most a day).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.config.publish_timeout = timeout;
        self
    }

    /// How long a member's leave waits after its last stream on a topic ended (default 3 s;
    /// `Duration::ZERO` leaves at once; at most 60 s): a page that reconnects within it makes
    /// no `livepush.leave` and no `livepush.join`. See [`Config::presence_grace`].
    pub fn presence_grace(mut self, grace: Duration) -> Self {
        self.config.presence_grace = grace;
        self
    }

    /// Calls `hook` when a topic gets its first subscriber across every instance sharing the
    /// broker ([`Occupancy::Occupied`]) and when its last one leaves ([`Occupancy::Vacated`]):
    /// once per edge, on the one instance that made it, also when the instance that held the
    /// last subscriber dies (another instance reports it once that instance's lease runs out,
    /// see `docs/presence.md`). Start a producer on `Occupied`, stop it on `Vacated`. The hook
    /// runs on the hub's presence task: keep it short (spawn what takes time).
    ///
    /// ```
    /// use livepush::{broker::Occupancy, Hub};
    ///
    /// let hub = Hub::builder()
    ///     .on_occupancy(|topic, occupancy| match occupancy {
    ///         Occupancy::Occupied => println!("start the ticker of {topic}"),
    ///         Occupancy::Vacated => println!("stop the ticker of {topic}"),
    ///         _ => {}
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # drop(hub);
    /// ```
    pub fn on_occupancy<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Topic, Occupancy) + Send + Sync + 'static,
    {
        self.occupancy = Some(Arc::new(hook));
        self
    }

    /// Uses the Redis broker at `url` (requires the `redis` feature): `redis://`, `rediss://`,
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/<master-name>[?db=N]` to
    /// follow the master that Redis Sentinel names through failovers, or
    /// `redis+cluster://[user:password@]host:port[,host:port...][?partitions=N]` for a Redis
    /// Cluster ([`HubBuilder::redis_cluster`]).
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.choice.redis_url = Some(url.into());
        self
    }

    /// Uses the NATS JetStream broker at `url` (requires the `nats` feature):
    /// `nats://[user:password@]host:port[,host:port...][?options]`, `tls://` for TLS; the
    /// options (stream, prefix, storage, replicas, token, creds, nkey) are in `docs/nats.md`.
    pub fn nats(mut self, url: impl Into<String>) -> Self {
        self.choice.nats_url = Some(url.into());
        self
    }

    /// Uses the Redis broker on the Redis Cluster (Redis ≥ 7) reached through any of `nodes`
    /// (`host:port`), with the default partition count: the same as
    /// `redis("redis+cluster://host:port,host:port")`; put credentials and `?partitions=N` in
    /// such a URL when needed. Topics are spread over partitions, each with its own id
    /// sequence, streams and shard channels (see `docs/multi-instance.md`).
    pub fn redis_cluster<I, S>(self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        self.redis(format!("redis+cluster://{}", nodes.join(",")))
    }

    /// Prefix of every Redis key and channel (default `livepush:`).
    pub fn redis_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.choice.redis_prefix = prefix.into();
        self
    }

    /// The settings so far, for `livepush::testing` to give its recording broker the same
    /// replay settings as the in-memory broker this builder would make.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn settings(&self) -> &Config {
        &self.config
    }

    /// Uses a broker of your own instead of the in-memory or Redis one.
    pub fn broker(mut self, broker: impl Broker) -> Self {
        self.broker = Some(Arc::new(broker));
        self
    }

    /// Refuses subscriptions to topics that match no topic template registered with
    /// `#[publish_event]` or `#[derive(SseEvent)]` (400).
    pub fn reject_unregistered_topics(mut self, reject: bool) -> Self {
        self.reject_unregistered = reject;
        self
    }

    /// Decides, per topic, whether a request may subscribe; a refusal answers 403 and the stream
    /// never starts. The request's parts carry what extractors and middleware put there (headers,
    /// extensions such as an authenticated user).
    ///
    /// ```
    /// use livepush::Hub;
    ///
    /// let hub = Hub::builder()
    ///     .authorize(|req, topic| async move {
    ///         // only clients that present a token see private topics
    ///         !topic.as_str().starts_with("private:") || req.headers.contains_key("authorization")
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # drop(hub);
    /// ```
    pub fn authorize<F, Fut>(mut self, authorize: F) -> Self
    where
        F: Fn(Arc<Parts>, Topic) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.authorizer = Some(Arc::new(move |parts, topic| {
            Box::pin(authorize(parts, topic))
        }));
        self
    }

    /// Builds the hub. With a Redis URL, connects in the background: the hub starts even while
    /// Redis is down (publishing fails open and `/health/ready` answers 503 until it is up).
    /// Must be called inside a Tokio runtime when Redis is used: without one it fails with
    /// [`BuildError::Broker`].
    pub fn build(self) -> Result<Hub, BuildError> {
        self.config.validate()?;
        self.choice.validate()?;
        let config = self.config;
        let broker = match self.broker {
            Some(broker) => broker,
            None => self.choice.make(&config)?,
        };
        let metrics = Arc::new(Metrics::new());
        let fanout = Arc::new(Fanout::new(metrics.clone()));
        let reconnected = Arc::new(tokio::sync::Notify::new());
        // A cache for reconnect storms where history costs a round trip: not for the in-memory
        // broker (its history is this process's memory already), nor a partitioned one (its
        // resumes read per partition, see `broker/partitioned.rs`).
        let cached =
            config.replay > 0 && !broker.history_is_local() && broker.partitioned().is_none();
        let recent = cached.then(|| {
            Arc::new(Recent::new(
                config.replay.min(crate::recent::MAX_EVENTS),
                config.replay_ttl.min(crate::recent::MAX_AGE),
            ))
        });
        broker
            .start(Delivery::new(
                fanout.clone(),
                metrics.clone(),
                reconnected.clone(),
                recent.clone(),
                broker.kind(),
            ))
            .map_err(BuildError::Broker)?;
        let store = broker
            .presence()
            .unwrap_or_else(|| Arc::new(LocalPresence::new()));
        let presences =
            Presences::new(store, fanout.clone(), config.presence_grace, self.occupancy);
        let retry = Arc::new(RetryBuffer::new(
            Limits {
                events: config.retry_buffer_events,
                bytes: config.retry_buffer_bytes,
                age: config.retry_buffer_age,
            },
            metrics.clone(),
            reconnected,
        ));
        Ok(Hub {
            inner: Arc::new(HubInner {
                retry,
                heartbeat_frame: crate::sse::comment("heartbeat"),
                connections: Arc::new(Connections::new(
                    config.max_connections,
                    config.retry_after.as_secs(),
                    metrics.clone(),
                )),
                config,
                broker,
                fanout,
                metrics,
                authorizer: self.authorizer,
                reject_unregistered: self.reject_unregistered,
                catchup: recent.clone().map(Catchup::new),
                recent,
                presences,
            }),
        })
    }
}

/// A publication whose topic and names are valid and whose payload is at most `max` bytes,
/// carrying `trace`.
#[cfg_attr(
    not(any(feature = "outbox-postgres", feature = "outbox-sqlite")),
    allow(dead_code)
)]
pub(crate) fn checked_publication(
    topic: &str,
    event: &str,
    category: Option<&str>,
    data: Bytes,
    max: usize,
    trace: Trace,
) -> Result<Publication, PublishError> {
    checked_retained(topic, event, category, data, max, None, trace)
}

/// [`checked_publication`] of a publication that may be retained (state), with its [`Retain`]
/// checked too, carrying `trace`.
pub(crate) fn checked_retained(
    topic: &str,
    event: &str,
    category: Option<&str>,
    data: Bytes,
    max: usize,
    retain: Option<Retain>,
    trace: Trace,
) -> Result<Publication, PublishError> {
    if let Some(retain) = &retain {
        retain.validate()?;
    }
    let topic = Topic::new(topic)?;
    let event = EventName::new(event)?;
    if let Some(category) = category {
        validate_name(category)?;
    }
    if data.len() > max {
        return Err(PublishError::TooLarge {
            size: data.len(),
            max,
        });
    }
    Ok(Publication {
        topic,
        event,
        category: category.map(str::to_owned),
        data,
        trace,
        retain,
    })
}

impl Hub {
    /// A builder with default settings (in-memory broker).
    pub fn builder() -> HubBuilder {
        HubBuilder::from_config(Config::default())
    }

    /// A hub configured from the environment ([`HubBuilder::from_env`]): in-memory unless
    /// `REDIS_URL` or `NATS_URL` is set.
    pub fn from_env() -> Result<Hub, BuildError> {
        HubBuilder::from_env()?.build()
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The broker's kind: `"memory"` or `"redis"`.
    pub fn broker_kind(&self) -> &'static str {
        self.inner.broker.kind()
    }

    /// Serializes `data` to JSON once and publishes it as event `event` on `topic`.
    ///
    /// Returns [`Published::Now`] with the event id. Errors when the topic or name is invalid,
    /// the data does not serialize, or is larger than `max_event_bytes`. When the broker cannot
    /// take the event (down, no answer in time, out of memory…), it waits in the retry buffer
    /// and is published in order once the broker answers: that is [`Published::Buffered`], a
    /// success (see [`HubBuilder::retry_buffer`]). With the retry buffer off, it is the
    /// broker's error.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: impl AsRef<str>,
        event: &str,
        data: &T,
    ) -> Result<Published, PublishError> {
        let data = to_json(data)?;
        self.publish_json(topic, event, None, data).await
    }

    /// Publishes a domain event to the topic its `#[sse(topic = …)]` template names.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use livepush::{Hub, SseEvent};
    /// use serde::Serialize;
    ///
    /// #[derive(Serialize, SseEvent)]
    /// #[sse(event = "sync.completed", topic = "user:{user_id}", category = "data_sync")]
    /// struct SyncCompleted { user_id: u64, accounts: u32 }
    ///
    /// let hub = Hub::builder().build().unwrap();
    /// hub.emit(&SyncCompleted { user_id: 7, accounts: 3 }).await.unwrap();
    /// # }
    /// ```
    pub async fn emit<E: SseEvent + Serialize>(
        &self,
        event: &E,
    ) -> Result<Published, PublishError> {
        let data = to_json(event)?;
        self.publish_json_retained(event.topic(), E::EVENT, E::CATEGORY, data, event.retain())
            .await
    }

    /// Publishes `data` as event `event` on `topic` and keeps it as the topic's current value
    /// (or the value of a key inside the topic, see [`Retain`]): every new subscriber of the
    /// topic gets the current values first, each with its id, before any live event. Otherwise
    /// as [`Hub::publish`]. Errors with [`PublishError::RetainUnsupported`] on a broker that
    /// keeps no state (the NATS engine), and nothing is published.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use livepush::{Hub, Retain, Topic};
    ///
    /// let hub = Hub::builder().build().unwrap();
    /// hub.publish_retained("tile:cpu", "load", &0.42, Retain::latest()).await.unwrap();
    /// hub.publish_retained("tile:cpu", "load", &0.57, Retain::latest()).await.unwrap();
    /// let current = hub.retained(&Topic::new("tile:cpu").unwrap()).await.unwrap();
    /// assert_eq!(current[0].data().as_ref(), b"0.57");
    /// # }
    /// ```
    pub async fn publish_retained<T: Serialize + ?Sized>(
        &self,
        topic: impl AsRef<str>,
        event: &str,
        data: &T,
        retain: Retain,
    ) -> Result<Published, PublishError> {
        let data = to_json(data)?;
        self.publish_json_retained(topic, event, None, data, Some(retain))
            .await
    }

    /// The current retained values of `topic` (one per retain key), in id order: what a new
    /// subscriber of it gets first. Empty on a broker that keeps no state.
    pub async fn retained(&self, topic: &Topic) -> Result<Vec<Arc<Envelope>>, BrokerError> {
        self.inner
            .broker
            .retained(std::slice::from_ref(topic))
            .await
    }

    /// Publishes an already encoded JSON payload (no re-serialization).
    pub async fn publish_json(
        &self,
        topic: impl AsRef<str>,
        event: &str,
        category: Option<&str>,
        json: Bytes,
    ) -> Result<Published, PublishError> {
        self.publish_json_retained(topic, event, category, json, None)
            .await
    }

    /// [`Hub::publish_json`], retained as state when `retain` is given (see
    /// [`Hub::publish_retained`]).
    pub async fn publish_json_retained(
        &self,
        topic: impl AsRef<str>,
        event: &str,
        category: Option<&str>,
        json: Bytes,
        retain: Option<Retain>,
    ) -> Result<Published, PublishError> {
        let topic = topic.as_ref();
        // Disabled (no allocation, fields not evaluated) unless debug spans of livepush are on.
        #[cfg(not(feature = "otel"))]
        let span = tracing::debug_span!("livepush.publish", topic, event);
        #[cfg(not(feature = "otel"))]
        let trace = None;
        // The span every delivery of this event links to (its context travels in the envelope);
        // none under an unsampled trace, whose context travels as it is, nor outside any trace
        // (see `Trace`).
        #[cfg(feature = "otel")]
        let (span, trace) = match Trace::unrecorded_current() {
            // nothing of it would be recorded: the debug span of a build without the feature
            Some(trace) => (
                tracing::debug_span!("livepush.publish", topic, event),
                Some(trace),
            ),
            None => (
                tracing::info_span!(
                    "livepush.publish",
                    topic,
                    event,
                    otel.kind = "producer",
                    messaging.system = "livepush",
                    messaging.operation.type = "send",
                    messaging.destination.name = topic,
                    livepush.broker = self.broker_kind(),
                ),
                None,
            ),
        };
        let result = self
            .try_publish(topic, event, category, json, retain, trace)
            .instrument(span)
            .await;
        match &result {
            Err(error) => self.count_failure(error),
            // Counted with the failures, under its own label, as before it was a success type:
            // dashboards watch `publish_errors_total{reason="buffered"}` for outages.
            Ok(Published::Buffered) => self.inner.metrics.publish_error("buffered"),
            Ok(_) => {}
        }
        result
    }

    /// Counts a publish that failed, under its [`PublishError`]'s label.
    pub(crate) fn count_failure(&self, error: &PublishError) {
        self.inner.metrics.publish_error(error.reason());
    }

    async fn try_publish(
        &self,
        topic: &str,
        event: &str,
        category: Option<&str>,
        data: Bytes,
        retain: Option<Retain>,
        trace: Option<Trace>,
    ) -> Result<Published, PublishError> {
        let publication = checked_retained(
            topic,
            event,
            category,
            data,
            self.inner.config.max_event_bytes,
            retain,
            // inside the publish span, or the caller's unsampled context
            trace.unwrap_or_else(Trace::current),
        )?;
        let inner = &self.inner;
        if publication.retain.is_some() && !inner.broker.retains() {
            return Err(PublishError::RetainUnsupported(inner.broker.kind()));
        }
        let retry = &inner.retry;
        let publication = if retry.enabled() {
            match retry.queue_if_waiting(publication, &inner.broker) {
                Some(publication) => publication,
                None => return Ok(Published::Buffered),
            }
        } else {
            publication
        };
        let started = Instant::now();
        let timeout = inner.config.publish_timeout;
        let error = match tokio::time::timeout(timeout, inner.broker.publish(&publication)).await {
            Ok(Ok(id)) => {
                inner
                    .metrics
                    .publish_latency
                    .observe(started.elapsed().as_secs_f64());
                inner.metrics.published.inc();
                return Ok(Published::Now(id));
            }
            Ok(Err(error)) => error,
            // The outcome is unknown: the broker may still run it. Publishing it again later is
            // at least once, which a client tolerates (a duplicate); not publishing could lose it.
            Err(_) => BrokerError::Unavailable(format!("no answer within {timeout:?}").into()),
        };
        if !retry.enabled() {
            return Err(PublishError::Broker(error));
        }
        retry.push(publication, &error, &inner.broker);
        Ok(Published::Buffered)
    }

    /// Publishes a validated publication once per `key` (see [`Broker::publish_once`]), without
    /// the retry buffer: the outbox relay owns its rows and retries them itself, marking a row
    /// only after the broker acknowledged it, so it needs the broker's error, not a buffering.
    #[cfg_attr(
        not(any(feature = "outbox-postgres", feature = "outbox-sqlite")),
        allow(dead_code)
    )]
    pub(crate) async fn publish_relayed(
        &self,
        publication: &Publication,
        key: &str,
    ) -> Result<EventId, BrokerError> {
        let inner = &self.inner;
        let started = Instant::now();
        let timeout = inner.config.publish_timeout;
        match tokio::time::timeout(timeout, inner.broker.publish_once(publication, key)).await {
            Ok(Ok(id)) => {
                inner
                    .metrics
                    .publish_latency
                    .observe(started.elapsed().as_secs_f64());
                inner.metrics.published.inc();
                Ok(id)
            }
            Ok(Err(error)) => Err(error),
            // Unknown outcome: the relay publishes the row again, and the key dedupes it.
            Err(_) => Err(BrokerError::Unavailable(
                format!("no answer within {timeout:?}").into(),
            )),
        }
    }

    /// Open SSE connections of this process.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.count()
    }

    /// Topics with local subscribers, and how many each has.
    pub fn subscriber_counts(&self) -> Vec<(Topic, usize)> {
        self.inner.fanout.counts()
    }

    /// The members of `topic` across every instance sharing the broker, with their connection
    /// counts and info, ordered by key: who is here. A member is the key a subscription gave
    /// with [`Subscription::member`](crate::Subscription::member) (or its
    /// [`cap_key`](crate::Subscription::cap_key)); each of its streams counts once in
    /// `connections`, and the member once in `count`. See `docs/presence.md`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use livepush::{Hub, Topic};
    ///
    /// let hub = Hub::builder().build().unwrap();
    /// let presence = hub.presence(&Topic::new("room:lobby").unwrap()).await.unwrap();
    /// assert_eq!(presence.count, 0); // nobody subscribed yet
    /// # }
    /// ```
    pub async fn presence(&self, topic: &Topic) -> Result<Presence, BrokerError> {
        self.inner.presences.presence(topic).await
    }

    /// The totals of [`Hub::presence`] (distinct members, their streams), read in O(1)
    /// whatever the number of members.
    pub async fn presence_count(&self, topic: &Topic) -> Result<PresenceCount, BrokerError> {
        self.inner.presences.count(topic).await
    }

    /// Whether publishing works now (`/health/ready`): the broker can publish and delivers every
    /// watched topic to this process, and nothing waits in the retry buffer.
    pub async fn ready(&self) -> Result<(), BrokerError> {
        self.inner.broker.ready().await?;
        match self.inner.retry.len() {
            0 => Ok(()),
            waiting => Err(BrokerError::Unavailable(
                format!("{waiting} publications wait in the retry buffer").into(),
            )),
        }
    }

    /// The hub's metrics in the OpenMetrics text format (what `/metrics` serves).
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// Ends every open stream and refuses new ones (503). Call it when the server begins its
    /// graceful shutdown, or use [`Hub::shutdown_on`].
    pub fn shutdown(&self) {
        if self.inner.connections.close() {
            tracing::info!(
                connections = self.connection_count(),
                "livepush shutting down: closing every stream"
            );
        }
        for topic in self.inner.fanout.close_all() {
            self.inner.broker.unwatch(&topic);
        }
    }

    /// Whether [`Hub::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.connections.is_closing()
    }

    /// Wraps a shutdown signal for `axum::serve(..).with_graceful_shutdown(..)`: when `signal`
    /// completes, every stream ends, so the server can finish instead of waiting on open streams.
    ///
    /// ```no_run
    /// # async fn run(app: axum::Router, hub: livepush::Hub) {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
    /// livepush::serve(listener, app) // or axum::serve
    ///     .with_graceful_shutdown(hub.shutdown_on(async {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///     }))
    ///     .await
    ///     .unwrap();
    /// # }
    /// ```
    pub fn shutdown_on<F>(&self, signal: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let hub = self.clone();
        async move {
            signal.await;
            hub.shutdown();
        }
    }

    // The stream position (see `crate::cursor`).

    /// The newest event id the broker has issued: subscribing with it as `Last-Event-ID`
    /// yields exactly the events published afterwards (with replay on). See [`Cursor`](crate::cursor::Cursor).
    ///
    /// A broker with one sequence per partition (Redis Cluster, NATS with `?partitions=N`) has
    /// no single newest id: there this answers [`BrokerError::Unavailable`] naming
    /// [`Hub::stream_position`], which gives its position in every partition.
    pub async fn position(&self) -> Result<EventId, BrokerError> {
        if self.broker().partitioned().is_some() {
            return Err(BrokerError::Unavailable(
                "a partitioned broker (Redis Cluster, NATS with partitions) has one position per \
                 partition, not one id: use Hub::stream_position"
                    .into(),
            ));
        }
        self.broker().position().await
    }

    /// Where the stream stands now, as a client sends it back in `Last-Event-ID`: the newest id
    /// (one sequence: memory, one Redis), or on a partitioned broker (Redis Cluster, NATS with
    /// partitions) the newest id of every partition as a position vector `{P}.{p}-{seq}...` (the encoding of
    /// `docs/multi-instance.md`; one history read per partition, concurrently). Subscribing with
    /// it yields exactly what was published afterwards, on any topics. See [`Cursor`](crate::cursor::Cursor).
    pub async fn stream_position(&self) -> Result<StreamPosition, BrokerError> {
        let broker = self.broker();
        match broker.partitioned() {
            Some(partitioned) => {
                let count = partitioned.partitions();
                let all: Vec<u32> = (0..count).collect();
                let ids = partitioned.positions(&all).await?;
                Ok(StreamPosition::Partitions(crate::position::encode_vector(
                    count,
                    all.into_iter().zip(ids),
                )))
            }
            None => broker.position().await.map(StreamPosition::Id),
        }
    }

    // Routers: the hub as a layer, and its operational routes.

    /// The layer that makes the hub reachable from livepush handlers; [`RouterExt::livepush`](crate::RouterExt::livepush)
    /// adds it with the health routes.
    pub fn layer(&self) -> HubLayer {
        HubLayer::new(self.clone())
    }

    /// `/health`, `/health/live` and `/health/ready`: what load balancers and orchestrators
    /// probe. [`RouterExt::livepush`](crate::RouterExt::livepush) adds them.
    pub fn health_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/health", get(routes::health))
            .route("/health/live", get(routes::live))
            .route("/health/ready", get(routes::ready))
            .layer(self.layer())
    }

    /// `/metrics` (OpenMetrics text), `/events/catalog` (the JSON
    /// [`Catalog`](crate::registry::Catalog): every publishing and subscribing handler with
    /// its module, source file and line, every event type) and `/events/asyncapi.json` (the
    /// [AsyncAPI 3.0 document](crate::registry::asyncapi), with the request's host as its
    /// server), and the live admin page: `/admin` (one self-contained HTML page with small live
    /// charts of connections, publish and delivery rates, latency, retry buffer and outbox lag,
    /// the topics with their subscriber counts, the broker's state and its last gaps),
    /// `/admin/stats` (the page's SSE stream, a `stats` snapshot a second) and
    /// `/admin/tail?topic=NAME` (SSE: that topic's events as this instance delivers them, each a
    /// `tail` event `{"id","event","topic","category","data"}`). For operators and client teams, not the public:
    /// serve it on a listener only they reach, or behind your authentication.
    ///
    /// ```
    /// use axum::{http::{HeaderMap, StatusCode}, middleware::{self, Next}, extract::Request, response::Response, Router};
    /// use livepush::{Hub, RouterExt};
    ///
    /// async fn operators_only(headers: HeaderMap, request: Request, next: Next) -> Result<Response, StatusCode> {
    ///     match headers.get("authorization").and_then(|v| v.to_str().ok()) {
    ///         Some("Bearer ops-secret") => Ok(next.run(request).await),
    ///         _ => Err(StatusCode::UNAUTHORIZED),
    ///     }
    /// }
    ///
    /// let hub = Hub::builder().build().unwrap();
    /// let app: Router = Router::new()
    ///     .livepush(&hub)
    ///     .merge(hub.admin_routes().route_layer(middleware::from_fn(operators_only)));
    /// # drop(app);
    /// ```
    pub fn admin_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/metrics", get(routes::metrics))
            .route("/events/catalog", get(routes::catalog))
            .route("/events/asyncapi.json", get(routes::asyncapi))
            .route("/admin", get(admin::page))
            .route("/admin/stats", get(admin::stats))
            .route("/admin/tail", get(admin::tail))
            .layer(self.layer())
    }
}

/// What the other modules of the crate reach a hub's parts through.
impl Hub {
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub(crate) fn broker(&self) -> &Arc<dyn Broker> {
        &self.inner.broker
    }

    /// The authorize hook, if one was set.
    pub(crate) fn authorizer(&self) -> Option<&Authorizer> {
        self.inner.authorizer.as_ref()
    }

    /// Whether subscriptions to topics no registered template matches are refused.
    pub(crate) fn rejects_unregistered_topics(&self) -> bool {
        self.inner.reject_unregistered
    }

    /// The heartbeat comment, encoded once.
    pub(crate) fn heartbeat_frame(&self) -> &Bytes {
        &self.inner.heartbeat_frame
    }

    /// Takes one of the process's connections for a stream of `topics` (429 when none is left).
    pub(crate) fn admit(&self, topics: &[Topic]) -> Result<Admission, SubscribeError> {
        self.inner.connections.admit(topics)
    }

    /// Takes a connection slot of `key` when a per-key cap is set; `None` without a key, without
    /// a cap, or when the broker cannot say (fail-open).
    pub(crate) async fn take_slot(
        &self,
        key: Option<String>,
    ) -> Result<Option<KeySlot>, SubscribeError> {
        match (key, self.inner.config.max_connections_per_key) {
            (Some(key), Some(limit)) => {
                let retry_after = self.inner.connections.retry_after();
                KeySlot::acquire(&self.inner.broker, key, limit, retry_after).await
            }
            _ => Ok(None),
        }
    }

    /// Lists `connection` in the fan-out under each of `topics` until the registration drops.
    pub(crate) fn register(
        &self,
        topics: Vec<Topic>,
        connection: &Arc<Connection>,
    ) -> Registration {
        let inner = &self.inner;
        let occupancy = inner
            .presences
            .tracks_occupancy()
            .then_some(&inner.presences);
        Registration::new(
            &inner.fanout,
            &inner.broker,
            &inner.metrics,
            topics,
            connection,
            inner.recent.as_ref(),
            occupancy,
        )
    }

    /// One more stream of member `key` (with its JSON `info`, `""` for none) on `topics`,
    /// until the returned guard drops (then a leave, after the grace period).
    pub(crate) async fn join(&self, topics: &[Topic], key: String, info: String) -> Membership {
        self.inner.presences.join(topics, key, info).await
    }

    /// Lists `connection` (of member `me`, if any) for the presence events of `topics`; returns
    /// the snapshot frames.
    pub(crate) async fn watch_presence(
        &self,
        topics: &[Topic],
        connection: &Arc<Connection>,
        me: Option<(&str, &str)>,
    ) -> (Vec<Bytes>, PresenceWatch) {
        self.inner.presences.attach(topics, connection, me).await
    }

    /// Retained events of `topics` after `after` for a resuming stream registered on them
    /// ([`Broker::history`]'s contract): from the recent-history cache when it covers them,
    /// else from the broker, one read for identical concurrent requests.
    pub(crate) async fn history(
        &self,
        topics: &[Topic],
        after: EventId,
    ) -> Result<crate::broker::History, BrokerError> {
        let broker = self.inner.broker.as_ref();
        match &self.inner.catchup {
            Some(catchup) => catchup.history(broker, topics, after).await,
            None => broker.history(topics, after).await,
        }
    }
}
