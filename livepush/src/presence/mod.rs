//! The hub's side of presence: members joining and leaving (with the grace period of a
//! reconnect), the join and leave events of the streams that asked for them, and the occupancy
//! hook. What is shared between processes lives in the broker's
//! [`PresenceStore`](crate::broker::PresenceStore); this module keeps what is local.
//!
//! One task per hub drives it: every [`TICK`] it reads the version of each topic that local
//! streams watch for presence (one `MGET` on Redis), re-reads the members of those that changed
//! and sends each watching stream the one event that says what changed ([`diff`]); every
//! [`PresenceStore::maintain_every`] it lets the store keep this process's lease and remove dead
//! processes.

mod diff;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::broker::{BrokerError, Occupancy, Presence, PresenceCount, PresenceStore};
use crate::envelope::Envelope;
use crate::fanout::{Connection, Fanout};
use crate::sse;
use crate::topic::Topic;

use diff::{Diff, Members};

/// How often the members of watched topics are compared: the most diff events a stream gets
/// per topic per second is one per tick.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// The longest a new stream waits for its member's join to be recorded.
const JOIN_WAIT: Duration = Duration::from_secs(2);

/// The occupancy hook of [`HubBuilder::on_occupancy`](crate::HubBuilder::on_occupancy).
pub(crate) type OccupancyHook = Arc<dyn Fn(&Topic, Occupancy) + Send + Sync>;

/// One topic watched for presence by local streams: its members as last read, and the streams.
struct View {
    /// The members, the version they were read at, and when; locked across a read, so that
    /// reads of one topic (and the events they send) are in order.
    state: tokio::sync::Mutex<ViewState>,
    conns: Mutex<Vec<Arc<Connection>>>,
}

/// What a [`View`] last read.
struct ViewState {
    /// `u64::MAX` until the first read.
    version: u64,
    members: Members,
    read_at: Option<Instant>,
}

/// The presence of one hub.
pub(crate) struct Presences {
    store: Arc<dyn PresenceStore>,
    fanout: Arc<Fanout>,
    grace: Duration,
    hook: Option<OccupancyHook>,
    views: Mutex<HashMap<Topic, Arc<View>>>,
    /// Leaves waiting out the grace period, per (topic, key): a join of the same member in the
    /// meantime takes one over instead of joining again.
    pending: Mutex<HashMap<(Topic, String), u32>>,
    /// Occupancy changes of this process, in order (`true`: first local subscriber).
    occupancy: mpsc::UnboundedSender<(Topic, bool)>,
    occupancy_rx: Mutex<Option<mpsc::UnboundedReceiver<(Topic, bool)>>>,
    started: OnceLock<()>,
}

impl Presences {
    pub(crate) fn new(
        store: Arc<dyn PresenceStore>,
        fanout: Arc<Fanout>,
        grace: Duration,
        hook: Option<OccupancyHook>,
    ) -> Arc<Self> {
        let (occupancy, rx) = mpsc::unbounded_channel();
        let presences = Arc::new(Presences {
            store,
            fanout,
            grace,
            hook,
            views: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            occupancy,
            occupancy_rx: Mutex::new(Some(rx)),
            started: OnceLock::new(),
        });
        presences.start();
        presences
    }

    /// Starts the hub's presence tasks, once, when a runtime is there (a hub built outside one
    /// starts them on its first subscription).
    pub(crate) fn start(self: &Arc<Self>) {
        if self.started.get().is_some() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.started.set(()).is_err() {
            return;
        }
        rt.spawn(run(Arc::downgrade(self)));
        rt.spawn(maintain(Arc::downgrade(self)));
        let rx = self
            .occupancy_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(rx) = rx {
            rt.spawn(occupancy_loop(Arc::downgrade(self), rx));
        }
    }

    /// Whether an occupancy hook is set (only then are occupancy changes sent to the store).
    pub(crate) fn tracks_occupancy(&self) -> bool {
        self.hook.is_some()
    }

    /// The first local subscriber of `topic` arrived (`true`) or the last one left (`false`).
    /// Must not block: it runs under the fan-out's lock, which keeps these in order.
    pub(crate) fn locally_occupied(&self, topic: &Topic, occupied: bool) {
        if self.hook.is_some() {
            let _ = self.occupancy.send((topic.clone(), occupied));
        }
    }

    fn fire(&self, topic: &Topic, occupancy: Occupancy) {
        if let Some(hook) = &self.hook {
            tracing::debug!(%topic, ?occupancy, "occupancy hook");
            hook(topic, occupancy);
        }
    }

    /// The members of `topic` across every instance.
    pub(crate) async fn presence(&self, topic: &Topic) -> Result<Presence, BrokerError> {
        self.store.members(topic).await.map(|(_, p)| p)
    }

    /// The totals of `topic`, in O(1).
    pub(crate) async fn count(&self, topic: &Topic) -> Result<PresenceCount, BrokerError> {
        self.store.count(topic).await
    }

    /// One more stream of member `key` on each of `topics`. A leave of the same member still in
    /// its grace period is taken over instead (a reconnect: no leave, no join). Fail-open: a
    /// store that cannot take it is logged, and the stream goes on.
    pub(crate) async fn join(
        self: &Arc<Self>,
        topics: &[Topic],
        key: String,
        info: String,
    ) -> Membership {
        self.start();
        for topic in topics {
            let resumed = {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                match pending.get_mut(&(topic.clone(), key.clone())) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        if *n == 0 {
                            pending.remove(&(topic.clone(), key.clone()));
                        }
                        true
                    }
                    _ => false,
                }
            };
            if resumed {
                continue;
            }
            // In a task of its own, waited for at most JOIN_WAIT: a broker that hangs delays a
            // new stream by that much at most, and the join still completes (or the store
            // resyncs) behind it, so the counts stay exact.
            let store = self.store.clone();
            let (t, k, i) = (topic.clone(), key.clone(), info.clone());
            let joined = tokio::spawn(async move { store.join(&t, &k, &i).await });
            match tokio::time::timeout(JOIN_WAIT, joined).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => {
                    tracing::warn!(%error, %topic, "presence join not recorded (fail-open)")
                }
                Ok(Err(error)) => tracing::warn!(%error, %topic, "presence join failed"),
                Err(_) => {
                    tracing::warn!(%topic, "presence join still waiting for the broker; the stream opens without waiting")
                }
            }
        }
        Membership {
            presences: self.clone(),
            topics: topics.to_vec(),
            key,
        }
    }

    /// The leave of member `key` on `topics`, after the grace period unless a join took it over.
    fn leave_later(self: &Arc<Self>, topics: Vec<Topic>, key: String) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for topic in &topics {
                *pending.entry((topic.clone(), key.clone())).or_default() += 1;
            }
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                key,
                "no runtime to record a presence leave; it goes with this instance's lease"
            );
            return;
        };
        let presences = self.clone();
        let grace = self.grace;
        rt.spawn(async move {
            if !grace.is_zero() {
                tokio::time::sleep(grace).await;
            }
            for topic in topics {
                let due = {
                    let mut pending = presences.pending.lock().unwrap_or_else(|p| p.into_inner());
                    let slot = (topic, key.clone());
                    match pending.get_mut(&slot) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            if *n == 0 {
                                pending.remove(&slot);
                            }
                            Some(slot.0)
                        }
                        _ => None,
                    }
                };
                if let Some(topic) = due {
                    if let Err(error) = presences.store.leave(&topic, &key).await {
                        tracing::warn!(%error, %topic, "presence leave not recorded; the store resyncs");
                    }
                }
            }
        });
    }

    /// Lists `conn` for the presence events of `topics` and returns the `livepush.presence`
    /// snapshot frame of each, read now: the events the stream gets later are what changed
    /// after its snapshot.
    ///
    /// `me` is the stream's own member (key, JSON info or `""`), if any: a snapshot served from a
    /// read younger than a tick may predate its join, so it is added to that snapshot (the
    /// stream may then also get its own join with the next tick's event).
    pub(crate) async fn attach(
        self: &Arc<Self>,
        topics: &[Topic],
        conn: &Arc<Connection>,
        me: Option<(&str, &str)>,
    ) -> (Vec<Bytes>, PresenceWatch) {
        self.start();
        let mut frames = Vec::with_capacity(topics.len());
        for topic in topics {
            let mut members = loop {
                let view = {
                    let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
                    views
                        .entry(topic.clone())
                        .or_insert_with(|| {
                            Arc::new(View {
                                state: tokio::sync::Mutex::new(ViewState {
                                    version: u64::MAX,
                                    members: Members::new(),
                                    read_at: None,
                                }),
                                conns: Mutex::new(Vec::new()),
                            })
                        })
                        .clone()
                };
                let mut state = view.state.lock().await;
                // A read younger than a tick serves the new stream too: a storm of new streams
                // costs one read per tick, not one per stream (what changed since comes as the
                // next tick's event).
                if state.read_at.is_none_or(|at| at.elapsed() >= TICK) {
                    self.refresh(topic, &view, &mut state).await;
                }
                view.conns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn.clone());
                // A view dropped by its last stream in the meantime is no longer read: start
                // over with the one that replaced it.
                let current = {
                    let views = self.views.lock().unwrap_or_else(|p| p.into_inner());
                    views.get(topic).is_some_and(|v| Arc::ptr_eq(v, &view))
                };
                if current {
                    break state.members.clone();
                }
                remove_conn(&view, conn.id);
            };
            if let Some((key, info)) = me {
                members.entry(key.to_owned()).or_insert_with(|| {
                    let info = serde_json::from_str(info).ok();
                    crate::broker::Member::new(key, 1, info)
                });
            }
            frames.push(sse::notice(
                &sse::PRESENCE,
                &diff::snapshot(topic, &members),
            ));
        }
        let watch = PresenceWatch {
            presences: self.clone(),
            topics: topics.to_vec(),
            conn: conn.id,
        };
        (frames, watch)
    }

    fn detach(&self, topics: &[Topic], conn: u64) {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        for topic in topics {
            let empty = views.get(topic).is_some_and(|view| remove_conn(view, conn));
            if empty {
                views.remove(topic);
            }
        }
    }

    /// Reads the members of `topic` and sends the watching streams what changed.
    async fn refresh(&self, topic: &Topic, view: &View, state: &mut ViewState) {
        let (version, presence) = match self.store.members(topic).await {
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(%error, %topic, "presence not read; trying again next tick");
                return;
            }
        };
        let members = diff::members_of(presence);
        if state.version != u64::MAX {
            if let Some((event, data)) = Diff::between(&state.members, &members).event(topic) {
                let envelope = Arc::new(Envelope::notice(topic.clone(), event, data));
                let conns = view.conns.lock().unwrap_or_else(|p| p.into_inner());
                self.fanout.push_to(conns.iter(), &envelope);
            }
        }
        *state = ViewState {
            version,
            members,
            read_at: Some(Instant::now()),
        };
    }

    /// One tick: re-reads the topics whose version moved.
    async fn poll(&self) {
        let views: Vec<(Topic, Arc<View>)> = {
            let views = self.views.lock().unwrap_or_else(|p| p.into_inner());
            views.iter().map(|(t, v)| (t.clone(), v.clone())).collect()
        };
        if views.is_empty() {
            return;
        }
        let topics: Vec<Topic> = views.iter().map(|(t, _)| t.clone()).collect();
        let versions = match self.store.versions(&topics).await {
            Ok(versions) => versions,
            Err(error) => {
                tracing::debug!(%error, "presence versions not read; trying again next tick");
                return;
            }
        };
        for ((topic, view), version) in views.iter().zip(versions) {
            let mut state = view.state.lock().await;
            if state.version != version {
                self.refresh(topic, view, &mut state).await;
            }
        }
    }
}

/// Removes connection `id` from `view`; true when no stream is left.
fn remove_conn(view: &View, id: u64) -> bool {
    let mut conns = view.conns.lock().unwrap_or_else(|p| p.into_inner());
    conns.retain(|c| c.id != id);
    conns.is_empty()
}

/// The presence loop of a hub, until the hub is dropped: the diffs of watched topics.
async fn run(presences: Weak<Presences>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(p) = presences.upgrade() else {
            return;
        };
        p.poll().await;
    }
}

/// The store's maintenance (this instance's lease, reaping dead ones), in a task of its own: a
/// slow read of a large topic's members never delays the lease.
async fn maintain(presences: Weak<Presences>) {
    let every = match presences.upgrade() {
        Some(p) => p.store.maintain_every(),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(p) = presences.upgrade() else {
            return;
        };
        match p.store.maintain().await {
            Ok(edges) => {
                for (topic, edge) in edges {
                    p.fire(&topic, edge);
                }
            }
            Err(error) => tracing::debug!(%error, "presence lease not kept this time"),
        }
    }
}

/// Records this process's occupancy changes in the store, in order, and fires the hook on the
/// edges this process made.
async fn occupancy_loop(
    presences: Weak<Presences>,
    mut rx: mpsc::UnboundedReceiver<(Topic, bool)>,
) {
    while let Some((topic, occupied)) = rx.recv().await {
        let Some(p) = presences.upgrade() else {
            return;
        };
        let edge = if occupied {
            p.store.occupy(&topic).await
        } else {
            p.store.vacate(&topic).await
        };
        match edge {
            Ok(true) if occupied => p.fire(&topic, Occupancy::Occupied),
            Ok(true) => p.fire(&topic, Occupancy::Vacated),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, %topic, occupied, "occupancy not recorded; the store resyncs")
            }
        }
    }
}

/// A member's streams on some topics: leaves (after the grace period) when dropped.
pub(crate) struct Membership {
    presences: Arc<Presences>,
    topics: Vec<Topic>,
    key: String,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let topics = std::mem::take(&mut self.topics);
        let key = std::mem::take(&mut self.key);
        self.presences.leave_later(topics, key);
    }
}

/// A stream listed for presence events: no longer listed when dropped.
pub(crate) struct PresenceWatch {
    presences: Arc<Presences>,
    topics: Vec<Topic>,
    conn: u64,
}

impl Drop for PresenceWatch {
    fn drop(&mut self) {
        self.presences.detach(&self.topics, self.conn);
    }
}
