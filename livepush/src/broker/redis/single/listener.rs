//! The connection task of one server: one per process, owning both connections and the pub/sub
//! subscriptions.
//!
//! It connects (asking the sentinels for the master first, with a Sentinel URL), reconciles
//! subscriptions with the hub's local subscribers (SUBSCRIBE on the first, UNSUBSCRIBE after the
//! last), hands every message to the hub in arrival order (which is id order: ids are assigned
//! in the same script as the PUBLISH), and after a lost connection reconnects with backoff,
//! re-subscribes every watched channel and catches up (`link::resume`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, RedisError, Value};
use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::Keys;
use crate::broker::redis::engine::{Command, Engine, Shard};
use crate::broker::redis::link::{self, Conns, Link, Part, Resume, Task};
use crate::broker::redis::payload::decode_live;
use crate::broker::redis::target::{self, Target};
use crate::broker::redis::version;
use crate::broker::Delivery;
use crate::topic::Topic;

pub(super) struct Listener {
    engine: Arc<Engine<Keys>>,
    target: Target,
    commands: UnboundedReceiver<Command>,
    /// The pub/sub link (while connected), unsubscribes in flight, the backoff.
    conns: Conns<MultiplexedConnection>,
    /// What this process delivered of the one sequence.
    part: Part,
    ever_connected: bool,
}

impl Listener {
    pub(super) fn new(
        engine: Arc<Engine<Keys>>,
        target: Target,
        commands: UnboundedReceiver<Command>,
    ) -> Self {
        Listener {
            engine,
            target,
            commands,
            conns: Conns::default(),
            part: Part::default(),
            ever_connected: false,
        }
    }

    /// Runs until the broker is dropped (its command sender closes).
    pub(super) async fn run(mut self, delivery: Delivery) {
        loop {
            if self.conns.link.is_none() {
                self.connect(&delivery).await;
            }
            tokio::select! {
                biased;
                wake = link::next_wake(&mut self.conns.link, &mut self.commands) => {
                    if !link::handle(&mut self, wake, &delivery).await {
                        break;
                    }
                }
                () = self.engine.check.notified() => self.check().await,
                () = tokio::time::sleep(self.conns.attempts.wait()), if self.conns.link.is_none() => {}
            }
        }
        tracing::debug!("Redis listener stopped");
    }

    fn on_message(&mut self, data: Vec<Value>, delivery: &Delivery) {
        let [Value::BulkString(channel), Value::BulkString(payload)] = data.as_slice() else {
            return;
        };
        let Some(topic) = self.engine.shard.topic_of_channel(channel) else {
            return;
        };
        let Some(envelope) = decode_live(topic, channel, payload, delivery) else {
            return;
        };
        self.part.deliver(envelope, delivery);
    }

    /// An unsubscribe push: the confirmation of ours, or the server dropping a subscription
    /// (then events may have been missed: resynchronize everything).
    fn on_unsubscribe(&mut self, data: &[Value]) {
        let Some(Value::BulkString(channel)) = data.first() else {
            return;
        };
        let Some(topic) = self.engine.shard.topic_of_channel(channel) else {
            return;
        };
        if self.conns.unsubscribing.confirms(&topic) {
            return;
        }
        if self.engine.subscribed().contains(&topic) {
            tracing::warn!(%topic, "Redis dropped a subscription nobody asked to end");
            self.lost("the server dropped a subscription");
        }
    }

    /// Drops both connections; the next turn of the loop connects again at once.
    fn lost(&mut self, why: &str) {
        self.conns.lose(&self.engine, &self.target.describe(), why);
    }

    /// A command failed: see whether both connections still answer, and reconnect if not (or if
    /// the failure said this server must be left).
    async fn check(&mut self) {
        let Some(link) = &mut self.conns.link else {
            return;
        };
        let leave = self.engine.reconnect.swap(false, Ordering::AcqRel);
        let answers = match self.engine.current_conn() {
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
            self.engine.answers();
        }
    }

    /// One connection attempt. On failure the cause is logged (rate-limited) and the next
    /// attempt waits longer.
    async fn connect(&mut self, delivery: &Delivery) {
        let server = self.target.describe();
        match self.try_connect(delivery).await {
            Ok(()) => self.conns.attempts.recovered(&server),
            Err(error) => drop(self.conns.attempts.failed(&server, &error)),
        }
    }

    async fn try_connect(&mut self, delivery: &Delivery) -> Result<(), RedisError> {
        let client = self.target.resolve_in_time().await?;
        let config = target::timeouts();
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let (push_tx, pushes) = mpsc::unbounded_channel();
        let mut sub = client
            .get_multiplexed_async_connection_with_config(&config.set_push_sender(push_tx))
            .await?;
        ping(&mut conn).await?;
        ping(&mut sub).await?;
        version::check_server(&mut conn).await?;
        let topics = delivery.watched_topics();
        if !topics.is_empty() {
            let channels: Vec<String> = topics
                .iter()
                .map(|t| self.engine.shard.channel(0, t))
                .collect();
            sub.subscribe(&channels).await?;
        }
        // Streams opened without a confirmed subscription (while Redis was down, or before the
        // first connection) may have missed what others published before it existed.
        let why = Resume {
            first: !self.ever_connected,
            unconfirmed: self.engine.unconfirmed.swap(false, Ordering::AcqRel),
        };
        let engine = &*self.engine;
        link::resume(engine, &mut conn, 0, &topics, &mut self.part, delivery, why).await?;
        self.engine.established(conn, topics.iter().cloned());
        self.conns.link = Some(Link { sub, pushes });
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
}

impl Task for Listener {
    fn on_push(&mut self, push: PushInfo, delivery: &Delivery) {
        match push.kind {
            PushKind::Message => self.on_message(push.data, delivery),
            PushKind::Disconnection => self.lost("the pub/sub connection closed"),
            PushKind::Unsubscribe => self.on_unsubscribe(&push.data),
            _ => {}
        }
    }

    fn closed(&mut self) {
        self.lost("the pub/sub connection closed");
    }

    async fn reconcile(&mut self, topic: &Topic, delivery: &Delivery) {
        let Some(link) = &mut self.conns.link else {
            // While disconnected, the reconnect subscribes whatever is watched then.
            return;
        };
        let wanted = delivery.is_watched(topic);
        if wanted == self.engine.subscribed().contains(topic) {
            return;
        }
        let channel = self.engine.shard.channel(0, topic);
        if wanted {
            match link.sub.subscribe(&channel).await {
                Ok(()) => self.engine.confirm([topic.clone()]),
                Err(error) => {
                    tracing::warn!(%error, %topic, "SUBSCRIBE failed; reconnecting");
                    self.lost("SUBSCRIBE failed");
                }
            }
        } else {
            // Forget it first: a history read for a new subscriber must wait for a fresh SUBSCRIBE.
            self.engine.subscribed().remove(topic);
            self.conns.unsubscribing.sent(topic);
            if let Err(error) = link.sub.unsubscribe(&channel).await {
                tracing::warn!(%error, %topic, "UNSUBSCRIBE failed; reconnecting");
                self.lost("UNSUBSCRIBE failed");
            }
        }
    }
}

async fn ping(conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
    redis::cmd("PING").query_async::<()>(conn).await
}
