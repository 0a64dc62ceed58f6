//! The connection task: one per process, owning both connections and the pub/sub subscriptions.
//!
//! It connects (asking the sentinels for the master first, with a Sentinel URL), reconciles
//! subscriptions with the hub's local subscribers (SUBSCRIBE on the first, UNSUBSCRIBE after the
//! last), hands every message to the hub in arrival order (which is id order: ids are assigned
//! in the same script as the PUBLISH), and after a lost connection reconnects with backoff,
//! re-subscribes every watched channel and then either delivers from the streams what was
//! published while it was away, before any newer live message, or, where that cannot be proven
//! complete, tells the streams of the watched topics to reset.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, RedisError, Value};
use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::target::Target;
use super::{decode, describe, Inner};
use crate::broker::Delivery;
use crate::event::EventId;
use crate::topic::Topic;

/// First and longest wait between reconnection attempts: short, so that the broker is ready
/// again well within a second of Redis answering.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Longest wait for a TCP connection, and for any reply.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait for the sentinels to name a master.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// While Redis keeps failing the same way, the cause is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The reason a reset caused by the broker carries.
const GAP: &str = "broker_gap";

/// What the broker asks of the listener. `watch` and `unwatch` only say "look at this topic
/// again": the listener compares the hub's current local subscribers with what is subscribed,
/// so a quick leave-then-join never unsubscribes a channel that is wanted again.
pub(super) enum Command {
    Reconcile(Topic),
}

/// The pub/sub connection and the pushes it delivers.
struct Link {
    sub: MultiplexedConnection,
    pushes: UnboundedReceiver<PushInfo>,
}

pub(super) struct Listener {
    inner: Arc<Inner>,
    target: Target,
    commands: UnboundedReceiver<Command>,
    /// Connected: both connections answered and every watched channel was subscribed.
    link: Option<Link>,
    /// The newest id this process is known to have delivered or reset to; where a catch-up
    /// after a reconnect starts. `None` until the first connection.
    delivered_through: Option<EventId>,
    /// After a catch-up: live messages at or below this id were already delivered from history
    /// (or were part of a gap the streams were told about).
    skip_through: Option<EventId>,
    /// UNSUBSCRIBEs sent whose confirmation push has not arrived yet: any other unsubscribe push
    /// is the server dropping a subscription, a gap.
    unsubscribing: HashMap<Topic, u32>,
    ever_connected: bool,
    backoff: Duration,
    failures: Failures,
}

impl Listener {
    pub(super) fn new(
        inner: Arc<Inner>,
        target: Target,
        commands: UnboundedReceiver<Command>,
    ) -> Self {
        Listener {
            inner,
            target,
            commands,
            link: None,
            delivered_through: None,
            skip_through: None,
            unsubscribing: HashMap::new(),
            ever_connected: false,
            backoff: BACKOFF_MIN,
            failures: Failures::default(),
        }
    }

    /// Runs until the broker is dropped (its command sender closes).
    pub(super) async fn run(mut self, delivery: Delivery) {
        loop {
            if self.link.is_none() {
                self.connect(&delivery).await;
            }
            let retry = jitter(self.backoff);
            tokio::select! {
                biased;
                push = next_push(&mut self.link) => match push {
                    Some(push) => self.on_push(push, &delivery),
                    None => self.lost("the pub/sub connection closed"),
                },
                command = self.commands.recv() => match command {
                    Some(Command::Reconcile(topic)) => self.reconcile(&topic, &delivery).await,
                    None => break,
                },
                () = self.inner.check.notified() => self.check().await,
                () = tokio::time::sleep(retry), if self.link.is_none() => {}
            }
        }
        tracing::debug!("Redis listener stopped");
    }

    fn on_push(&mut self, push: PushInfo, delivery: &Delivery) {
        match push.kind {
            PushKind::Message => self.on_message(push.data, delivery),
            PushKind::Disconnection => self.lost("the pub/sub connection closed"),
            PushKind::Unsubscribe => self.on_unsubscribe(&push.data),
            _ => {}
        }
    }

    fn on_message(&mut self, data: Vec<Value>, delivery: &Delivery) {
        let [Value::BulkString(channel), Value::BulkString(payload)] = data.as_slice() else {
            return;
        };
        let Some(topic) = self.inner.keys.topic_of_channel(channel) else {
            return;
        };
        let Some(envelope) = decode(topic, payload) else {
            tracing::warn!(channel = %String::from_utf8_lossy(channel), "ignoring a message in an unknown format");
            return;
        };
        let id = envelope.id();
        if let Some(skip) = self.skip_through {
            if id <= skip {
                return; // delivered by the catch-up, or inside the gap the streams were reset for
            }
            self.skip_through = None;
        }
        self.delivered_through = Some(self.delivered_through.map_or(id, |d| d.max(id)));
        delivery.deliver(Arc::new(envelope));
    }

    /// An unsubscribe push: the confirmation of ours, or the server dropping a subscription
    /// (then events may have been missed: resynchronize everything).
    fn on_unsubscribe(&mut self, data: &[Value]) {
        let Some(Value::BulkString(channel)) = data.first() else {
            return;
        };
        let Some(topic) = self.inner.keys.topic_of_channel(channel) else {
            return;
        };
        if let Some(pending) = self.unsubscribing.get_mut(&topic) {
            *pending -= 1;
            if *pending == 0 {
                self.unsubscribing.remove(&topic);
            }
            return;
        }
        let wanted = self
            .inner
            .subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&topic);
        if wanted {
            tracing::warn!(%topic, "Redis dropped a subscription nobody asked to end");
            self.lost("the server dropped a subscription");
        }
    }

    /// Drops both connections; the next turn of the loop connects again at once.
    fn lost(&mut self, why: &str) {
        if self.link.take().is_some() {
            tracing::warn!(server = %self.target.describe(), why, "Redis connection lost; reconnecting");
        }
        *self.inner.conn.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.inner.up.store(false, Ordering::Release);
        self.inner
            .subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.unsubscribing.clear();
        self.backoff = BACKOFF_MIN;
    }

    /// A command failed: see whether both connections still answer, and reconnect if not (or if
    /// the failure said this server must be left).
    async fn check(&mut self) {
        let Some(link) = &mut self.link else {
            return;
        };
        let leave = self.inner.reconnect.swap(false, Ordering::AcqRel);
        let conn = self
            .inner
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let answers = match conn {
            Some(mut conn) => ping(&mut conn).await.is_ok() && ping(&mut link.sub).await.is_ok(),
            None => false,
        };
        if leave || !answers {
            self.lost(if leave {
                "the server refused the connection's commands (read-only or not authenticated)"
            } else {
                "the server stopped answering"
            });
        } else {
            // A slow answer, not a lost connection: nothing was missed on pub/sub.
            self.inner.up.store(true, Ordering::Release);
        }
    }

    /// One connection attempt. On failure the cause is logged (rate-limited) and the next
    /// attempt waits longer, up to [`BACKOFF_MAX`].
    async fn connect(&mut self, delivery: &Delivery) {
        match self.try_connect(delivery).await {
            Ok(()) => {
                self.backoff = BACKOFF_MIN;
                self.failures.recovered(&self.target.describe());
            }
            Err(error) => {
                self.failures.failed(&self.target.describe(), &error);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    async fn try_connect(&mut self, delivery: &Delivery) -> Result<(), RedisError> {
        let client = tokio::time::timeout(RESOLVE_TIMEOUT, self.target.resolve())
            .await
            .map_err(|_| timed_out("the sentinels did not name a master in time"))??;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let (push_tx, pushes) = mpsc::unbounded_channel();
        let mut sub = client
            .get_multiplexed_async_connection_with_config(&config.set_push_sender(push_tx))
            .await?;
        ping(&mut conn).await?;
        ping(&mut sub).await?;
        let topics = delivery.watched_topics();
        if !topics.is_empty() {
            let channels: Vec<String> = topics.iter().map(|t| self.inner.keys.channel(t)).collect();
            sub.subscribe(&channels).await?;
        }
        self.resume(&mut conn, &topics, delivery).await?;
        {
            let mut subscribed = self
                .inner
                .subscribed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            subscribed.clear();
            subscribed.extend(topics.iter().cloned());
        }
        *self.inner.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        self.link = Some(Link { sub, pushes });
        self.inner.reconnect.store(false, Ordering::Release);
        self.inner.ever_up.store(true, Ordering::Release);
        self.inner.up.store(true, Ordering::Release);
        self.inner.subscribed_changed.notify_waiters();
        if self.ever_connected {
            delivery.reconnected();
            tracing::info!(server = %self.target.describe(), channels = topics.len(), "Redis reconnected; channels re-subscribed");
        } else {
            tracing::info!(server = %self.target.describe(), "Redis connected");
            // Publications made before the first connection wait in the hub's retry buffer.
            delivery.connected();
        }
        self.ever_connected = true;
        Ok(())
    }

    /// After (re)subscribing `topics`: delivers from the streams what this process missed on
    /// them, in order, or resets their local streams where nothing proves the catch-up complete
    /// (replay off, history that no longer reaches back, Redis restarted empty, a failover that
    /// lost writes, streams opened before the first connection).
    async fn resume(
        &mut self,
        conn: &mut MultiplexedConnection,
        topics: &[Topic],
        delivery: &Delivery,
    ) -> Result<(), RedisError> {
        let replaying = self.inner.replay > 0 && !topics.is_empty();
        // Streams opened without a confirmed subscription (while Redis was down, or before the
        // first connection) may have missed what others published before it existed.
        let unconfirmed = self.inner.unconfirmed.swap(false, Ordering::AcqRel);
        let history = match self.delivered_through {
            Some(after) if replaying => self.inner.read_history(conn, topics, after).await?,
            // Only the position: nothing can be replayed. After a lost connection that is a gap
            // (replay off); at the first connection only for streams that opened unconfirmed.
            previous => {
                let mut position = self.inner.read_history(conn, &[], EventId::new(0)).await?;
                position.complete = previous.is_none() && !unconfirmed;
                position
            }
        };
        let last = history.last;
        let replayed = history.deliver(delivery, topics, GAP);
        if replayed > 0 {
            tracing::info!(
                replayed,
                "delivered what was published while Redis was unreachable"
            );
        }
        // Live messages at or below the position were published before the read: delivered
        // just now, or inside the gap that was reset.
        let through = self.delivered_through.map_or(last, |d| d.max(last));
        self.delivered_through = Some(through);
        self.skip_through = Some(through);
        Ok(())
    }

    /// Subscribes or unsubscribes `topic` to match whether it has local subscribers now.
    async fn reconcile(&mut self, topic: &Topic, delivery: &Delivery) {
        let Some(link) = &mut self.link else {
            // While disconnected, the reconnect subscribes whatever is watched then.
            return;
        };
        let wanted = delivery.is_watched(topic);
        let have = self
            .inner
            .subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic);
        if wanted == have {
            return;
        }
        let channel = self.inner.keys.channel(topic);
        if wanted {
            match link.sub.subscribe(&channel).await {
                Ok(()) => {
                    self.inner
                        .subscribed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(topic.clone());
                    self.inner.subscribed_changed.notify_waiters();
                }
                Err(error) => {
                    tracing::warn!(error = %describe(&error), %topic, "SUBSCRIBE failed; reconnecting");
                    self.lost("SUBSCRIBE failed");
                }
            }
        } else {
            // Forget it first: a history read for a new subscriber must wait for a fresh SUBSCRIBE.
            self.inner
                .subscribed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(topic);
            *self.unsubscribing.entry(topic.clone()).or_insert(0) += 1;
            if let Err(error) = link.sub.unsubscribe(&channel).await {
                tracing::warn!(error = %describe(&error), %topic, "UNSUBSCRIBE failed; reconnecting");
                self.lost("UNSUBSCRIBE failed");
            }
        }
    }
}

/// The next push of the pub/sub connection; never, while there is none.
async fn next_push(link: &mut Option<Link>) -> Option<PushInfo> {
    match link {
        Some(link) => link.pushes.recv().await,
        None => std::future::pending().await,
    }
}

async fn ping(conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
    redis::cmd("PING").query_async::<()>(conn).await
}

fn timed_out(what: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, what))
}

/// Up to a quarter less than `backoff`, so that instances that lost Redis together do not all
/// knock at once. The clock's nanoseconds are random enough for that.
pub(super) fn jitter(backoff: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    backoff - backoff / 4 * (nanos % 1000) / 1000
}

/// Logs failed connection attempts: each new cause at once, the same cause again at most every
/// [`LOG_EVERY`], with the number of attempts in between.
#[derive(Default)]
pub(super) struct Failures {
    last_cause: Option<String>,
    last_logged: Option<Instant>,
    attempts: u64,
    since: Option<Instant>,
}

impl Failures {
    pub(super) fn failed(&mut self, server: &str, error: &RedisError) {
        let cause = describe(error);
        self.attempts += 1;
        let since = *self.since.get_or_insert_with(Instant::now);
        let new_cause = self.last_cause.as_deref() != Some(cause.as_str());
        let due = self.last_logged.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if new_cause || due {
            tracing::warn!(
                server,
                cause = %cause,
                kind = error.category(),
                attempts = self.attempts,
                down_for = ?since.elapsed(),
                "cannot connect to Redis; retrying"
            );
            self.last_logged = Some(Instant::now());
            self.last_cause = Some(cause);
        } else {
            tracing::debug!(server, cause = %cause, "cannot connect to Redis; retrying");
        }
    }

    pub(super) fn recovered(&mut self, server: &str) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                server,
                attempts = self.attempts,
                down_for = ?since.elapsed(),
                "Redis answers again"
            );
        }
        *self = Failures::default();
    }
}
