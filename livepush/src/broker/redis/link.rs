//! What the connection tasks of both topologies share: the pub/sub link and its pushes, the
//! backoff and the logging of failed attempts, the per-partition delivery mark that a catch-up
//! starts from, and the catch-up itself (`resume`).
//!
//! After a lost connection (one server) or a partition in doubt (a cluster), the channels are
//! subscribed again first, then the streams are read after the last id this process delivered:
//! what was missed is delivered in order before any newer live message, or, where the history
//! cannot prove the catch-up complete, the local streams of those topics get `livepush.reset`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{PushInfo, RedisError};
use tokio::sync::mpsc::UnboundedReceiver;

use super::engine::{Command, Engine, Shard};
use crate::broker::Delivery;
use crate::envelope::Envelope;
use crate::event::EventId;
use crate::topic::Topic;

/// First and longest wait between reconnection attempts: short, so that the broker is ready
/// again well within a second of Redis answering.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// While Redis keeps failing the same way, the cause is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The reason a reset caused by the broker carries.
const GAP: &str = "broker_gap";

/// The pub/sub connection and the pushes it delivers.
pub(super) struct Link<C> {
    pub(super) sub: C,
    pub(super) pushes: UnboundedReceiver<PushInfo>,
}

/// The next push of the pub/sub connection; never, while there is none.
async fn next_push<C>(link: &mut Option<Link<C>>) -> Option<PushInfo> {
    match link {
        Some(link) => link.pushes.recv().await,
        None => std::future::pending().await,
    }
}

/// What wakes a connection task before anything else: a push (`None`: the pub/sub connection
/// closed), then a command (`None`: the broker was dropped).
pub(super) enum Wake {
    Push(Option<PushInfo>),
    Command(Option<Command>),
}

/// The next push or command, pushes first (cancel-safe: both are channel receives).
pub(super) async fn next_wake<C>(
    link: &mut Option<Link<C>>,
    commands: &mut UnboundedReceiver<Command>,
) -> Wake {
    tokio::select! {
        biased;
        push = next_push(link) => Wake::Push(push),
        command = commands.recv() => Wake::Command(command),
    }
}

/// A topology's connection task, as [`handle`] sees it.
pub(super) trait Task {
    /// A push of the pub/sub connection (messages, unsubscribes, disconnections).
    fn on_push(&mut self, push: PushInfo, delivery: &Delivery);
    /// The pub/sub connection closed.
    fn closed(&mut self);
    /// Subscribes or unsubscribes `topic` to match whether it has local subscribers now.
    fn reconcile(&mut self, topic: &Topic, delivery: &Delivery) -> impl Future<Output = ()> + Send;
}

/// Acts on `wake`; `false` once the broker is gone and the task must end.
pub(super) async fn handle<T: Task>(task: &mut T, wake: Wake, delivery: &Delivery) -> bool {
    match wake {
        Wake::Push(Some(push)) => task.on_push(push, delivery),
        Wake::Push(None) => task.closed(),
        Wake::Command(Some(Command::Reconcile(topic))) => task.reconcile(&topic, delivery).await,
        Wake::Command(None) => return false,
    }
    true
}

/// What a connection task holds of its connections.
pub(super) struct Conns<C> {
    /// The pub/sub connection and its pushes, while connected.
    pub(super) link: Option<Link<C>>,
    pub(super) unsubscribing: Unsubscribing,
    pub(super) attempts: Attempts,
}

impl<C> Default for Conns<C> {
    fn default() -> Self {
        Conns {
            link: None,
            unsubscribing: Unsubscribing::default(),
            attempts: Attempts::default(),
        }
    }
}

impl<C> Conns<C> {
    /// The connections were lost: drops the pub/sub link (logging it once, naming `server`)
    /// and what the lost connections held: the engine's command connection and subscriptions,
    /// the unsubscribes in flight, the backoff (the next attempt goes at once).
    pub(super) fn lose<S: Shard>(&mut self, engine: &Engine<S>, server: &str, why: &str) {
        if self.link.take().is_some() {
            tracing::warn!(server, why, "{} connection lost; reconnecting", S::NAME);
        }
        engine.lost();
        self.unsubscribing.clear();
        self.attempts.lost();
    }
}

/// Where a partition's delivery stands in this process (the whole server's, on one Redis).
#[derive(Clone, Copy, Default)]
pub(super) struct Part {
    /// The newest id delivered here (or reset to); where a catch-up starts. `None` until the
    /// first connection.
    pub(super) delivered: Option<EventId>,
    /// After a catch-up: live messages at or below this id were already delivered from history
    /// (or were part of a gap the streams were told about).
    skip: Option<EventId>,
}

impl Part {
    /// Whether a live message of id `id` is new here; notes it as delivered if so.
    fn admit(&mut self, id: EventId) -> bool {
        if let Some(skip) = self.skip {
            if id <= skip {
                return false;
            }
            self.skip = None;
        }
        self.delivered = Some(self.delivered.map_or(id, |d| d.max(id)));
        true
    }

    /// Delivers a live message unless it is not new here (see [`Part::admit`]).
    pub(super) fn deliver(&mut self, envelope: Envelope, delivery: &Delivery) {
        if self.admit(envelope.id()) {
            delivery.deliver(Arc::new(envelope));
        }
    }

    /// The partition stands at `at` at least (its position read when it is watched again).
    pub(super) fn at_least(&mut self, at: EventId) {
        self.delivered = Some(self.delivered.map_or(at, |d| d.max(at)));
    }
}

/// UNSUBSCRIBEs sent whose confirmation push has not arrived yet: any other unsubscribe push is
/// the server dropping a subscription.
#[derive(Default)]
pub(super) struct Unsubscribing(HashMap<Topic, u32>);

impl Unsubscribing {
    pub(super) fn sent(&mut self, topic: &Topic) {
        *self.0.entry(topic.clone()).or_insert(0) += 1;
    }

    /// Whether an unsubscribe push for `topic` confirms one of ours (and counts it off).
    pub(super) fn confirms(&mut self, topic: &Topic) -> bool {
        let Some(pending) = self.0.get_mut(topic) else {
            return false;
        };
        *pending -= 1;
        if *pending == 0 {
            self.0.remove(topic);
        }
        true
    }

    /// The unsubscribe of `topic` failed: no confirmation will come.
    pub(super) fn failed(&mut self, topic: &Topic) {
        self.0.remove(topic);
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

/// Why a catch-up runs, which decides what a missing history means.
#[derive(Clone, Copy)]
pub(super) struct Resume {
    /// The first connection of this process: nothing was delivered yet, so nothing can have
    /// been missed, unless a stream opened unconfirmed.
    pub(super) first: bool,
    /// A stream was opened without a confirmed subscription since the last connection.
    pub(super) unconfirmed: bool,
}

/// After (re)subscribing the channels of `topics` (all in partition `p`): delivers from the
/// streams what this process missed of them, in order, or resets their local streams where
/// nothing proves the catch-up complete (replay off, history that no longer reaches back, Redis
/// restarted empty, a failover that lost writes, streams opened before the first connection).
/// Afterwards, live messages at or below the position read are skipped: delivered just now, or
/// inside the gap that was reset.
pub(super) async fn resume<S: Shard>(
    engine: &Engine<S>,
    conn: &mut S::Conn,
    p: u32,
    topics: &[Topic],
    part: &mut Part,
    delivery: &Delivery,
    why: Resume,
) -> Result<(), RedisError> {
    let replaying = engine.replay > 0 && !topics.is_empty();
    let history = match part.delivered {
        Some(after) if replaying => engine.read_history(conn, p, topics, after).await?,
        previous => {
            let mut position = engine.read_history(conn, p, &[], EventId::new(0)).await?;
            // Nothing can be replayed: after a gap that is a reset; at the first connection
            // only for streams that opened unconfirmed.
            position.complete = previous.is_none() && why.first && !why.unconfirmed;
            position
        }
    };
    let last = history.last;
    let replayed = history.deliver(delivery, topics, GAP);
    if replayed > 0 {
        tracing::info!(
            replayed,
            partition = p,
            "delivered what was published while Redis was unreachable"
        );
    }
    let through = part.delivered.map_or(last, |d| d.max(last));
    *part = Part {
        delivered: Some(through),
        skip: Some(through),
    };
    Ok(())
}

/// The wait between connection attempts (backoff with jitter) and the log of failed ones.
pub(super) struct Attempts {
    backoff: Duration,
    failures: Failures,
}

impl Default for Attempts {
    fn default() -> Self {
        Attempts {
            backoff: BACKOFF_MIN,
            failures: Failures::default(),
        }
    }
}

impl Attempts {
    /// An attempt on `server` failed: logs why (rate-limited) and answers how long to wait
    /// before the next one; the wait after that doubles, up to [`BACKOFF_MAX`].
    pub(super) fn failed(&mut self, server: &str, error: &RedisError) -> Duration {
        self.failures.failed(server, error);
        let wait = jitter(self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        wait
    }

    /// The wait before the next attempt.
    pub(super) fn wait(&self) -> Duration {
        jitter(self.backoff)
    }

    /// An attempt on `server` worked: logs the recovery, if it was down.
    pub(super) fn recovered(&mut self, server: &str) {
        self.backoff = BACKOFF_MIN;
        self.failures.recovered(server);
    }

    /// The connection was lost: the next attempt goes at once, the one after waits the least.
    pub(super) fn lost(&mut self) {
        self.backoff = BACKOFF_MIN;
    }
}

/// Up to a quarter less than `backoff`, so that instances that lost Redis together do not all
/// knock at once. The clock's nanoseconds are random enough for that.
fn jitter(backoff: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    backoff - backoff / 4 * (nanos % 1000) / 1000
}

/// Logs failed connection attempts: each new cause at once, the same cause again at most every
/// [`LOG_EVERY`], with the number of attempts in between.
#[derive(Default)]
struct Failures {
    last_cause: Option<String>,
    last_logged: Option<Instant>,
    attempts: u64,
    since: Option<Instant>,
}

impl Failures {
    fn failed(&mut self, server: &str, error: &RedisError) {
        let cause = error.to_string();
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

    fn recovered(&mut self, server: &str) {
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
