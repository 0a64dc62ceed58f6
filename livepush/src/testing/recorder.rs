//! A broker that records what it publishes: the one place every publication passes, whether it
//! came from `#[publish_event]`, `Hub::emit`, `Hub::publish` or the outbox relay.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::broker::{
    Broker, BrokerError, Delivery, History, MemoryBroker, Partitioned, Publication, Slot,
};
use crate::event::EventId;
use crate::hub::{Hub, HubBuilder};
use crate::topic::Topic;

use super::expect::{Expected, Mismatch};
use super::recorded::{listing, Recorded};

/// How long [`Recorder::wait_for`] waits before it fails the test: generous, because it only
/// bounds a test that would otherwise hang.
const WAIT_CEILING: Duration = Duration::from_secs(30);

/// What a [`RecordingBroker`] published, shared with the test that reads it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use livepush::testing::{assert_published, recorded};
/// use livepush::Hub;
///
/// let (hub, published) = recorded(Hub::builder());
/// published.assert_nothing_published();
/// hub.publish("user:7", "renamed", &serde_json::json!({ "name": "Ada" })).await.unwrap();
/// assert_published!(published, topic = "user:7", event = "renamed", data = serde_json::json!({ "name": "Ada" }));
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Every publication in the order the broker took them (id order for one broker).
    log: Mutex<Vec<Recorded>>,
    /// Woken on every new publication, for [`Recorder::wait_for`].
    added: Notify,
}

impl Recorder {
    /// Every publication recorded so far, oldest first.
    pub fn published(&self) -> Vec<Recorded> {
        self.log().clone()
    }

    /// Takes every publication recorded so far, leaving none: what a step of a test published.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.log())
    }

    /// Waits until at least `count` publications are recorded (the outbox relay publishes
    /// after the handler answered), and returns them.
    ///
    /// # Panics
    /// After 30 s (of Tokio time, so at once under `tokio::time::pause` when nothing else runs)
    /// with fewer, listing what was recorded.
    #[track_caller]
    pub fn wait_for(&self, count: usize) -> impl std::future::Future<Output = Vec<Recorded>> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let waited = tokio::time::timeout(WAIT_CEILING, async {
                loop {
                    let added = self.shared.added.notified();
                    let log = self.published();
                    if log.len() >= count {
                        return log;
                    }
                    added.await;
                }
            });
            match waited.await {
                Ok(log) => log,
                Err(_) => panic!(
                    "{caller}: waited {WAIT_CEILING:?} for {count} publication(s); recorded:\n{}",
                    listing(&self.published())
                ),
            }
        }
    }

    /// Fails the test when anything was published.
    ///
    /// # Panics
    /// When a publication was recorded, listing every one.
    #[track_caller]
    pub fn assert_nothing_published(&self) {
        let log = self.published();
        if !log.is_empty() {
            panic!("expected nothing published; recorded:\n{}", listing(&log));
        }
    }

    /// The first recorded publication that is what `expected` describes. What
    /// [`assert_published!`](crate::testing::assert_published) expands to.
    ///
    /// # Panics
    /// When none is, with what was expected, every publication recorded, and a diff of the data
    /// of the closest one.
    #[track_caller]
    pub fn assert_published(&self, expected: Expected) -> Recorded {
        let log = self.published();
        match expected.find(&log) {
            Ok(found) => found.clone(),
            Err(mismatch) => panic!("{}", Mismatch::report(&mismatch, &expected, &log)),
        }
    }

    fn log(&self) -> MutexGuard<'_, Vec<Recorded>> {
        // A test that panicked while holding the lock has failed already; its log still reads.
        self.shared.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, id: EventId, publication: &Publication) {
        let mut log = self.log();
        // `publish_once` answers the first id again for a publication it deduplicated, which
        // subscribers do not see twice: neither does the recorder.
        if log.iter().any(|p| p.id == id) {
            return;
        }
        log.push(Recorded {
            id,
            topic: publication.topic.clone(),
            event: publication.event.clone(),
            category: publication.category.clone(),
            data: publication.data.clone(),
        });
        drop(log);
        self.shared.added.notify_waiters();
    }
}

/// A hub built by `builder` whose broker records every publication: the in-memory broker with
/// the builder's replay settings (a Redis URL or broker set on the builder is replaced), behind
/// a [`RecordingBroker`].
///
/// # Panics
/// When the builder's settings are invalid (as [`HubBuilder::build`] would fail).
#[track_caller]
pub fn recorded(builder: HubBuilder) -> (Hub, Recorder) {
    let config = builder.settings();
    let inner = MemoryBroker::new(config.replay, config.replay_ttl);
    let (broker, recorder) = RecordingBroker::new(inner);
    match builder.broker(broker).build() {
        Ok(hub) => (hub, recorder),
        Err(error) => panic!("the hub does not build: {error}"),
    }
}

/// A [`Broker`] that records what `inner` publishes in a [`Recorder`] and otherwise is `inner`:
/// for a test of an app with a broker of its own, give it to [`HubBuilder::broker`].
///
/// ```
/// use livepush::broker::MemoryBroker;
/// use livepush::testing::RecordingBroker;
/// use livepush::Hub;
///
/// let (broker, published) = RecordingBroker::new(MemoryBroker::new(0, std::time::Duration::ZERO));
/// let hub = Hub::builder().broker(broker).build().unwrap();
/// # drop((hub, published));
/// ```
#[derive(Debug)]
pub struct RecordingBroker<B> {
    inner: B,
    recorder: Recorder,
}

impl<B: Broker> RecordingBroker<B> {
    /// Wraps `inner`; the recorder reads what it publishes.
    pub fn new(inner: B) -> (Self, Recorder) {
        let recorder = Recorder::default();
        let broker = RecordingBroker {
            inner,
            recorder: recorder.clone(),
        };
        (broker, recorder)
    }
}

#[async_trait]
impl<B: Broker> Broker for RecordingBroker<B> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn start(&self, delivery: Delivery) -> Result<(), BrokerError> {
        self.inner.start(delivery)
    }

    async fn publish(&self, publication: &Publication) -> Result<EventId, BrokerError> {
        let id = self.inner.publish(publication).await?;
        self.recorder.record(id, publication);
        Ok(id)
    }

    async fn publish_once(
        &self,
        publication: &Publication,
        key: &str,
    ) -> Result<EventId, BrokerError> {
        let id = self.inner.publish_once(publication, key).await?;
        self.recorder.record(id, publication);
        Ok(id)
    }

    fn watch(&self, topic: &Topic) {
        self.inner.watch(topic)
    }

    fn unwatch(&self, topic: &Topic) {
        self.inner.unwatch(topic)
    }

    async fn subscribed(&self, topics: &[Topic]) -> Result<(), BrokerError> {
        self.inner.subscribed(topics).await
    }

    async fn history(&self, topics: &[Topic], after: EventId) -> Result<History, BrokerError> {
        self.inner.history(topics, after).await
    }

    async fn position(&self) -> Result<EventId, BrokerError> {
        self.inner.position().await
    }

    async fn watching_processes(&self, topics: &[Topic]) -> Option<Vec<u64>> {
        self.inner.watching_processes(topics).await
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        self.inner.ready().await
    }

    fn partitioned(&self) -> Option<&dyn Partitioned> {
        self.inner.partitioned()
    }

    fn history_is_local(&self) -> bool {
        self.inner.history_is_local()
    }

    fn retains(&self) -> bool {
        self.inner.retains()
    }

    async fn retained(
        &self,
        topics: &[Topic],
    ) -> Result<Vec<Arc<crate::envelope::Envelope>>, BrokerError> {
        self.inner.retained(topics).await
    }

    async fn acquire_slot(&self, key: &str, limit: u32) -> Result<Slot, BrokerError> {
        self.inner.acquire_slot(key, limit).await
    }

    async fn release_slot(&self, key: &str) {
        self.inner.release_slot(key).await
    }
}
