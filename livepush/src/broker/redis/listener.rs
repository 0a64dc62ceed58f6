//! The pub/sub task: one per process, owning the pub/sub connection.
//!
//! It reconciles subscriptions with the hub's local subscribers (SUBSCRIBE on the first,
//! UNSUBSCRIBE after the last), hands every message to the hub in arrival order (which is id
//! order: ids are assigned in the same script as the PUBLISH), and after a lost connection
//! reconnects with backoff, re-subscribes every watched channel and, with replay on, delivers
//! from the streams what was published while it was away, before any newer live message.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{decode, Inner};
use crate::broker::Delivery;
use crate::event::EventId;
use crate::topic::Topic;

/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the broker asks of the listener. `watch` and `unwatch` only say "look at this topic
/// again": the listener compares the hub's current local subscribers with what is subscribed,
/// so a quick leave-then-join never unsubscribes a channel that is wanted again.
pub(super) enum Command {
    Reconcile(Topic),
}

pub(super) struct Listener {
    inner: Arc<Inner>,
    sub: ConnectionManager,
    pushes: UnboundedReceiver<PushInfo>,
    commands: UnboundedReceiver<Command>,
    /// The highest id delivered; where a catch-up after a reconnect starts.
    delivered_through: Option<EventId>,
    /// After a catch-up: live messages at or below this id were already delivered from history.
    skip_through: Option<EventId>,
    connected: bool,
    ever_connected: bool,
    backoff: Duration,
}

impl Listener {
    pub(super) fn new(
        inner: Arc<Inner>,
        sub: ConnectionManager,
        pushes: UnboundedReceiver<PushInfo>,
        commands: UnboundedReceiver<Command>,
    ) -> Self {
        Listener {
            inner,
            sub,
            pushes,
            commands,
            delivered_through: None,
            skip_through: None,
            connected: false,
            ever_connected: false,
            backoff: BACKOFF_MIN,
        }
    }

    /// Runs until the broker is dropped (its command sender closes).
    pub(super) async fn run(mut self, delivery: Delivery) {
        self.connect(&delivery).await;
        loop {
            let retry = if self.connected {
                Duration::from_secs(3600)
            } else {
                self.backoff
            };
            tokio::select! {
                biased;
                push = self.pushes.recv() => match push {
                    Some(push) => self.on_push(push, &delivery),
                    None => break,
                },
                command = self.commands.recv() => match command {
                    Some(Command::Reconcile(topic)) => self.reconcile(&topic, &delivery).await,
                    None => break,
                },
                () = self.inner.check.notified() => self.check(&delivery).await,
                () = tokio::time::sleep(retry) => self.connect(&delivery).await,
            }
        }
        tracing::debug!("Redis listener stopped");
    }

    fn on_push(&mut self, push: PushInfo, delivery: &Delivery) {
        match push.kind {
            PushKind::Message => self.on_message(push.data, delivery),
            PushKind::Disconnection => self.on_disconnect(),
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
                return; // already delivered by the catch-up
            }
            self.skip_through = None;
        }
        self.delivered_through = Some(self.delivered_through.map_or(id, |d| d.max(id)));
        delivery.deliver(Arc::new(envelope));
    }

    fn on_disconnect(&mut self) {
        if self.connected {
            tracing::warn!("Redis pub/sub connection lost; reconnecting");
        }
        self.connected = false;
        self.inner.up.store(false, Ordering::Release);
        self.inner
            .subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.backoff = BACKOFF_MIN;
    }

    /// A command failed on the command connection: see whether both connections still answer.
    async fn check(&mut self, delivery: &Delivery) {
        if !self.connected || !self.ping_both().await {
            self.on_disconnect();
            self.connect(delivery).await;
        }
    }

    async fn ping_both(&mut self) -> bool {
        let mut conn = self.inner.conn.clone();
        let cmd_ok = redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .is_ok();
        cmd_ok
            && redis::cmd("PING")
                .query_async::<()>(&mut self.sub)
                .await
                .is_ok()
    }

    /// One connection attempt: both connections answer, every watched channel is subscribed,
    /// and missed events are delivered. On failure the next attempt waits twice as long.
    async fn connect(&mut self, delivery: &Delivery) {
        if self.connected {
            return;
        }
        if !self.ping_both().await {
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            return;
        }
        let topics = delivery.watched_topics();
        if !topics.is_empty() {
            let channels: Vec<String> = topics.iter().map(|t| self.inner.keys.channel(t)).collect();
            if let Err(error) = self.sub.subscribe(&channels).await {
                tracing::warn!(%error, "re-subscribing after reconnect failed; retrying");
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                return;
            }
        }
        self.mark_subscribed(&topics);
        if self.delivered_through.is_none() && self.inner.replay > 0 {
            // The catch-up after a later reconnect starts from here.
            let mut conn = self.inner.conn.clone();
            let seq: Option<u64> = redis::cmd("GET")
                .arg(self.inner.keys.seq())
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            self.delivered_through = seq.map(EventId::new);
        }
        if self.ever_connected {
            delivery.reconnected();
            tracing::info!(
                channels = topics.len(),
                "Redis reconnected; channels re-subscribed"
            );
            self.catch_up(&topics, delivery).await;
        } else {
            tracing::info!("Redis connected");
        }
        self.connected = true;
        self.ever_connected = true;
        self.backoff = BACKOFF_MIN;
        self.inner.up.store(true, Ordering::Release);
    }

    /// Delivers from the streams what was published on `topics` while the connection was down.
    /// Runs after re-subscribing and before the next live message is handled, so the overlap is
    /// skipped by id and nothing arrives out of order.
    async fn catch_up(&mut self, topics: &[Topic], delivery: &Delivery) {
        let Some(after) = self.delivered_through else {
            return;
        };
        if self.inner.replay == 0 || topics.is_empty() {
            return;
        }
        match self.inner.read_history(topics, after).await {
            Ok(history) => {
                if !history.complete {
                    tracing::warn!(%after, "some events published while Redis was unreachable are no longer retained");
                }
                for envelope in history.events {
                    let id = envelope.id();
                    self.delivered_through = Some(id);
                    self.skip_through = Some(id);
                    delivery.deliver(envelope);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not read what was missed during the outage")
            }
        }
    }

    fn mark_subscribed(&self, topics: &[Topic]) {
        let mut subscribed = self
            .inner
            .subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        subscribed.extend(topics.iter().cloned());
        drop(subscribed);
        self.inner.subscribed_changed.notify_waiters();
    }

    /// Subscribes or unsubscribes `topic` to match whether it has local subscribers now.
    async fn reconcile(&mut self, topic: &Topic, delivery: &Delivery) {
        let wanted = delivery.is_watched(topic);
        let have = self
            .inner
            .subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic);
        if !self.connected || wanted == have {
            // While disconnected, the reconnect subscribes whatever is watched then.
            return;
        }
        let channel = self.inner.keys.channel(topic);
        if wanted {
            match self.sub.subscribe(&channel).await {
                Ok(()) => self.mark_subscribed(std::slice::from_ref(topic)),
                Err(error) => {
                    tracing::warn!(%error, %topic, "SUBSCRIBE failed; retrying after reconnect");
                    self.on_disconnect();
                }
            }
        } else {
            // Forget it first: a history read for a new subscriber must wait for a fresh SUBSCRIBE.
            self.inner
                .subscribed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(topic);
            if let Err(error) = self.sub.unsubscribe(&channel).await {
                tracing::warn!(%error, %topic, "UNSUBSCRIBE failed");
                self.on_disconnect();
            }
        }
    }
}
