//! The hub: what publishers publish to and subscribers subscribe at.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::request::Parts;
use bytes::Bytes;
use serde::Serialize;
use tracing::Instrument;

use crate::broker::{Broker, BrokerError, Delivery, MemoryBroker};
use crate::config::{Config, ConfigError};
use crate::error::PublishError;
use crate::event::{validate_name, EventId, EventName, Publication};
use crate::fanout::Fanout;
use crate::metrics::Metrics;
use crate::retry::{Limits, RetryBuffer};
use crate::sse_event::SseEvent;
use crate::topic::Topic;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The authorize hook: may the request described by `Parts` subscribe to `Topic`?
pub(crate) type Authorizer = Arc<dyn Fn(Arc<Parts>, Topic) -> BoxFuture<bool> + Send + Sync>;

/// The center of livepush: publishes events and serves subscriptions.
///
/// Cheap to clone (an `Arc`). Build one per process with [`Hub::builder`] or [`Hub::from_env`],
/// add it to the router with [`LivepushRouter::livepush`](crate::LivepushRouter::livepush), and
/// publish with the macros or with [`Hub::publish`] / [`Hub::emit`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use livepush::Hub;
///
/// let hub = Hub::builder().heartbeat(std::time::Duration::from_secs(10)).build().unwrap();
/// let id = hub.publish("comments", "comment_created", &serde_json::json!({"id": 1})).await.unwrap();
/// assert!(id.get() > 0);
/// # }
/// ```
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

pub(crate) struct HubInner {
    pub(crate) config: Config,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) fanout: Arc<Fanout>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) authorizer: Option<Authorizer>,
    pub(crate) reject_unregistered: bool,
    pub(crate) connections: AtomicUsize,
    pub(crate) next_conn: AtomicU64,
    pub(crate) closing: AtomicBool,
    pub(crate) heartbeat_frame: Bytes,
    /// Publications the broker could not take yet, in order.
    pub(crate) retry: Arc<RetryBuffer>,
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
    broker: Option<Arc<dyn Broker>>,
    authorizer: Option<Authorizer>,
    reject_unregistered: bool,
}

/// Why a hub could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker could not be set up (an unparsable `REDIS_URL`, for example).
    #[error("broker setup failed: {0}")]
    Broker(String),
}

impl HubBuilder {
    /// Starts from `config`.
    pub fn from_config(config: Config) -> Self {
        HubBuilder {
            config,
            broker: None,
            authorizer: None,
            reject_unregistered: false,
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
    pub fn slow_consumer(mut self, policy: crate::SlowConsumerPolicy) -> Self {
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

    /// Uses the Redis broker at `url` (requires the `redis` feature): `redis://`, `rediss://`,
    /// or `redis+sentinel://[user:password@]host:port[,host:port...]/<master-name>[?db=N]` to
    /// follow the master that Redis Sentinel names through failovers.
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.config.redis_url = Some(url.into());
        self
    }

    /// Prefix of every Redis key and channel (default `livepush:`).
    pub fn redis_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.redis_prefix = prefix.into();
        self
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
    /// Must be called inside a Tokio runtime when Redis is used.
    pub fn build(self) -> Result<Hub, BuildError> {
        self.config.validate()?;
        let config = self.config;
        let broker: Arc<dyn Broker> = match (self.broker, &config.redis_url) {
            (Some(broker), _) => broker,
            (None, None) => Arc::new(MemoryBroker::new(config.replay, config.replay_ttl)),
            #[cfg(feature = "redis")]
            (None, Some(url)) => Arc::new(
                crate::broker::redis::RedisBroker::new(url, &config)
                    .map_err(|e| BuildError::Broker(e.to_string()))?,
            ),
            #[cfg(not(feature = "redis"))]
            (None, Some(_)) => return Err(ConfigError::RedisFeatureOff.into()),
        };
        let metrics = Arc::new(Metrics::new());
        let fanout = Arc::new(Fanout::new(metrics.clone()));
        let reconnected = Arc::new(tokio::sync::Notify::new());
        broker.start(Delivery {
            fanout: fanout.clone(),
            metrics: metrics.clone(),
            reconnected: reconnected.clone(),
        });
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
                heartbeat_frame: crate::frame::comment("heartbeat"),
                config,
                broker,
                fanout,
                metrics,
                authorizer: self.authorizer,
                reject_unregistered: self.reject_unregistered,
                connections: AtomicUsize::new(0),
                next_conn: AtomicU64::new(1),
                closing: AtomicBool::new(false),
            }),
        })
    }
}

/// A publication whose topic and names are valid and whose payload is at most `max` bytes.
pub(crate) fn checked_publication(
    topic: &str,
    event: &str,
    category: Option<&str>,
    data: Bytes,
    max: usize,
) -> Result<Publication, PublishError> {
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
    })
}

impl Hub {
    /// A builder with default settings (in-memory broker).
    pub fn builder() -> HubBuilder {
        HubBuilder::from_config(Config::default())
    }

    /// A hub configured from the environment ([`Config::from_env`]): in-memory unless `REDIS_URL`
    /// is set.
    pub fn from_env() -> Result<Hub, BuildError> {
        HubBuilder::from_config(Config::from_env()?).build()
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
    /// Returns the event id. Errors when the topic or name is invalid, the data does not
    /// serialize, or is larger than `max_event_bytes`. When the broker cannot take the event
    /// (down, no answer in time, out of memory…), it waits in the retry buffer and is published
    /// in order once the broker answers: that is [`PublishError::Buffered`], not a loss (see
    /// [`HubBuilder::retry_buffer`]). With the retry buffer off, it is the broker's error.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: impl AsRef<str>,
        event: &str,
        data: &T,
    ) -> Result<EventId, PublishError> {
        let data = serde_json::to_vec(data).map_err(|e| PublishError::Serialize(e.to_string()))?;
        self.publish_json(topic, event, None, Bytes::from(data))
            .await
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
    pub async fn emit<E: SseEvent + Serialize>(&self, event: &E) -> Result<EventId, PublishError> {
        let data = serde_json::to_vec(event).map_err(|e| PublishError::Serialize(e.to_string()))?;
        self.publish_json(event.topic(), E::EVENT, E::CATEGORY, Bytes::from(data))
            .await
    }

    /// Publishes an already encoded JSON payload (no re-serialization).
    pub async fn publish_json(
        &self,
        topic: impl AsRef<str>,
        event: &str,
        category: Option<&str>,
        json: Bytes,
    ) -> Result<EventId, PublishError> {
        let topic = topic.as_ref();
        // Disabled (no allocation, fields not evaluated) unless debug spans of livepush are on.
        let span = tracing::debug_span!("livepush.publish", topic, event);
        let result = self
            .try_publish(topic, event, category, json)
            .instrument(span)
            .await;
        if let Err(error) = &result {
            self.inner.metrics.publish_error(error.reason());
        }
        result
    }

    async fn try_publish(
        &self,
        topic: &str,
        event: &str,
        category: Option<&str>,
        data: Bytes,
    ) -> Result<EventId, PublishError> {
        let publication = checked_publication(
            topic,
            event,
            category,
            data,
            self.inner.config.max_event_bytes,
        )?;
        let inner = &self.inner;
        let retry = &inner.retry;
        let publication = if retry.enabled() {
            match retry.queue_if_waiting(publication, &inner.broker) {
                Some(publication) => publication,
                None => return Err(PublishError::Buffered),
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
                return Ok(id);
            }
            Ok(Err(error)) => error,
            // The outcome is unknown: the broker may still run it. Publishing it again later is
            // at least once, which a client tolerates (a duplicate); not publishing could lose it.
            Err(_) => BrokerError::Unavailable(format!("no answer within {timeout:?}")),
        };
        if !retry.enabled() {
            return Err(PublishError::Broker(error));
        }
        retry.push(publication, &error, &inner.broker);
        Err(PublishError::Buffered)
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
            Err(_) => Err(BrokerError::Unavailable(format!(
                "no answer within {timeout:?}"
            ))),
        }
    }

    /// Open SSE connections of this process.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Topics with local subscribers, and how many each has.
    pub fn subscriber_counts(&self) -> Vec<(Topic, usize)> {
        self.inner.fanout.counts()
    }

    /// Whether publishing works now (`/health/ready`): the broker can publish and delivers every
    /// watched topic to this process, and nothing waits in the retry buffer.
    pub async fn ready(&self) -> Result<(), BrokerError> {
        self.inner.broker.ready().await?;
        match self.inner.retry.len() {
            0 => Ok(()),
            waiting => Err(BrokerError::Unavailable(format!(
                "{waiting} publications wait in the retry buffer"
            ))),
        }
    }

    /// The hub's metrics in the Prometheus text format (what `/metrics` serves).
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// Ends every open stream and refuses new ones (503). Call it when the server begins its
    /// graceful shutdown, or use [`Hub::shutdown_on`].
    pub fn shutdown(&self) {
        if !self.inner.closing.swap(true, Ordering::SeqCst) {
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
        self.inner.closing.load(Ordering::SeqCst)
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
}
