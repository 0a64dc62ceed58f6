//! The connection task: one NATS connection per process, the live subjects of the topics with
//! local subscribers, and every gap turned into a catch-up or a `livepush.reset`.
//!
//! Live events come from the stream's republish, each with its stream sequence
//! (`Nats-Sequence`) and the previous sequence of its subject (`Nats-Last-Sequence`). The task
//! keeps, per watched topic, the last sequence it delivered (or, before the first, the stream's
//! position when the subscription was confirmed). Then:
//! - a sequence at or below it was delivered already (by a catch-up): dropped;
//! - a previous sequence above it means events of the topic were missed (the connection was
//!   slow or away): the topic is caught up from the stream first;
//! - a reconnect or an async-nats `SlowConsumer` event catches every watched topic up;
//! - a stream created anew (a memory store restarted, the stream deleted) resets every watched
//!   topic of its partition to 0, since its sequences start over, and delivers what the new
//!   stream holds.
//!
//! A catch-up reads the stream after the last delivered sequence and hands the events over in
//! order, with a `livepush.reset` first where the stream no longer reaches back.
//!
//! Order across topics: the server sends the republished events of every subscribed subject on
//! the one connection in stream order, and async-nats hands each to its subscription's channel
//! in that order. The task reads all the subscriptions itself (no task per subscription, whose
//! scheduling would reorder topics): it takes every message ready in any of them, then sorts
//! that batch by sequence before delivering it, so a subscriber of several topics sees ids rise.
//! (With partitions the sort keeps each partition's order; ids of two partitions are not
//! compared by anyone.)

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::{NATS_LAST_SEQUENCE, NATS_SEQUENCE};
use async_nats::{Client, ConnectOptions, Event, Message};
use futures_util::stream::{AbortHandle, Abortable, BoxStream, SelectAll};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::address::Address;
use super::{history, payload, stream, Shared};
use crate::broker::{BrokerError, Cause, Delivery};
use crate::event::EventId;
use crate::topic::Topic;

/// The reason a reset caused by the broker carries.
const GAP: &str = "broker_gap";

/// Live messages the task takes at most before delivering them (sorted by sequence). When it
/// falls behind, the subscriptions' buffers fill and async-nats reports a slow consumer, which
/// becomes a catch-up.
const MAX_BATCH: usize = 4096;

/// One topic's live subscription, as the task reads it.
type Live = Abortable<BoxStream<'static, (Topic, Message)>>;

/// How long the task waits before trying a failed stream check again.
const RETRY: Duration = Duration::from_millis(500);

/// A numeric header of a republished message (`Nats-Sequence`, `Nats-Last-Sequence`).
fn header(message: &Message, name: async_nats::header::HeaderName) -> Option<u64> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .and_then(|v| v.as_str().parse::<u64>().ok())
}

/// What the broker hands the task when it is started.
pub(super) struct Setup {
    pub(super) address: Address,
    pub(super) inputs: mpsc::UnboundedReceiver<Input>,
}

/// What wakes the task, besides live messages.
pub(super) enum Input {
    /// A topic gained its first or lost its last local subscriber.
    Reconcile(Topic),
    /// A connection event of async-nats.
    Event(Event),
    /// The server confirmed the live subscription of a topic; the stream stood at this
    /// sequence then.
    Confirmed(Topic, u64),
}

struct Task {
    shared: Arc<Shared>,
    delivery: Delivery,
    client: Client,
    /// Every subscribed topic's live messages.
    live: SelectAll<Live>,
    /// The handle of each subscribed topic's stream in `live` (aborting it ends the stream,
    /// which drops, so unsubscribes, the subscription).
    subs: HashMap<Topic, AbortHandle>,
    /// The last sequence delivered (or confirmed) per subscribed topic.
    last: HashMap<Topic, u64>,
    /// Each partition's stream's creation time when last checked.
    created: Vec<Option<i128>>,
    /// The connection was lost since the last catch-up.
    gap: bool,
    ever_up: bool,
    retry_at: Option<Instant>,
}

/// Connects with `address`'s servers and credentials; connection events go to `events`.
async fn connect(
    address: &Address,
    events: mpsc::UnboundedSender<Input>,
) -> Result<Client, BrokerError> {
    let mut options = ConnectOptions::new();
    if let Some(creds) = &address.auth.creds {
        options = options.credentials_file(creds).await.map_err(|e| {
            BrokerError::InvalidAddress(Cause::with_source("NATS credentials file", e))
        })?;
    }
    if let Some(token) = &address.auth.token {
        options = options.token(token.clone());
    }
    if let Some(seed) = &address.auth.nkey {
        options = options.nkey(seed.clone());
    }
    if let Some(pending) = address.pending {
        options = options.subscription_capacity(pending);
    }
    options
        .name("livepush")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(move |event| {
            let events = events.clone();
            async move {
                let _ = events.send(Input::Event(event));
            }
        })
        .connect(address.servers.clone())
        .await
        .map_err(|e| BrokerError::Unavailable(Cause::with_source("NATS connect", e)))
}

/// The stream of `topic`'s partition (set before the task runs).
fn stream_of<'a>(
    shared: &'a Shared,
    topic: &Topic,
) -> &'a async_nats::jetstream::stream::Stream<()> {
    let streams = &shared.js.get().expect("set before the task runs").2;
    &streams[shared.names.partition_of(topic) as usize]
}

/// The connection task: connects, checks the stream, then follows inputs until the broker is
/// dropped.
pub(super) async fn run(shared: Arc<Shared>, setup: Setup, delivery: Delivery) {
    let Setup {
        address,
        mut inputs,
    } = setup;
    let client = match connect(&address, shared.commands.clone()).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "the NATS broker cannot start");
            shared.set_down(e.to_string());
            return;
        }
    };
    let js = async_nats::jetstream::new(client.clone());
    let mut streams = Vec::new();
    for config in &shared.stream_configs {
        match js.get_stream_no_info(&config.name).await {
            Ok(stream) => streams.push(stream),
            Err(e) => return shared.set_down(format!("NATS stream name: {e}")),
        }
    }
    let _ = shared.js.set((client.clone(), js, streams));
    let shared_partitions = shared.stream_configs.len();
    let mut task = Task {
        shared,
        delivery,
        client,
        live: SelectAll::new(),
        subs: HashMap::new(),
        last: HashMap::new(),
        created: vec![None; shared_partitions],
        gap: false,
        ever_up: false,
        retry_at: None,
    };
    task.bring_up().await;
    loop {
        let retry_at = task.retry_at;
        tokio::select! {
            input = inputs.recv() => match input {
                Some(input) => task.handle(input).await,
                None => return,
            },
            Some(first) = task.live.next() => task.on_messages(first).await,
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                task.bring_up().await
            }
        }
    }
}

impl Task {
    /// The stream of `topic`'s partition.
    fn stream(&self, topic: &Topic) -> &async_nats::jetstream::stream::Stream<()> {
        stream_of(&self.shared, topic)
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Reconcile(topic) => self.reconcile(topic).await,
            Input::Confirmed(topic, at) => {
                if self.subs.contains_key(&topic) {
                    self.last.entry(topic.clone()).or_insert(at);
                    let blind = self
                        .shared
                        .opened_blind
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&topic);
                    if blind {
                        // live delivery starts at `at`; before it the stream may have missed some
                        self.delivery
                            .reset(std::slice::from_ref(&topic), EventId::new(at), GAP);
                    }
                    self.shared.confirm(topic);
                }
            }
            Input::Event(Event::Disconnected) => {
                tracing::warn!("NATS connection lost; reconnecting");
                self.gap = true;
                self.shared
                    .set_down("NATS is not connected (reconnecting)".to_owned());
            }
            Input::Event(Event::Connected) => {
                if self.gap || !self.shared.up.load(Ordering::Acquire) {
                    self.bring_up().await;
                }
            }
            Input::Event(Event::SlowConsumer(sid)) => {
                tracing::warn!(
                    sid,
                    "NATS dropped live messages (slow consumer); catching up"
                );
                self.catch_up_all(&[]).await;
            }
            Input::Event(event) => tracing::debug!(%event, "NATS connection event"),
        }
    }

    /// Subscribes or unsubscribes `topic`'s live subject, as its local subscribers say now.
    async fn reconcile(&mut self, topic: Topic) {
        let watched = self.delivery.is_watched(&topic);
        match (watched, self.subs.contains_key(&topic)) {
            (true, false) => self.subscribe(topic).await,
            (false, true) => {
                if let Some(forwarder) = self.subs.remove(&topic) {
                    forwarder.abort();
                }
                self.last.remove(&topic);
                self.shared.subscribed().remove(&topic);
            }
            _ => {}
        }
    }

    async fn subscribe(&mut self, topic: Topic) {
        let subject = self.shared.names.live(&topic);
        let subscriber = match self.client.subscribe(subject).await {
            Ok(subscriber) => subscriber,
            Err(e) => {
                // only when the client is closed: the topic stays unsubscribed and not ready
                tracing::error!(error = %e, %topic, "NATS subscribe failed");
                return;
            }
        };
        let (handle, registration) = AbortHandle::new_pair();
        let named = topic.clone();
        let stream = subscriber
            .map(move |message| (named.clone(), message))
            .boxed();
        self.live.push(Abortable::new(stream, registration));
        self.subs.insert(topic.clone(), handle);
        self.confirm_later(topic);
    }

    /// Confirms `topic`'s subscription in the background. Confirmed once the server has it:
    /// async-nats's flush only writes, so the proof is a request answered on the same
    /// connection after the SUB (the server handles a connection's operations in order). Its
    /// answer, where the stream stood then, is where this topic's live delivery begins. No
    /// answer (the connection is down): the topic stays unconfirmed until the next
    /// [`Task::bring_up`] tries again.
    fn confirm_later(&self, topic: Topic) {
        let client = self.client.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if client.flush().await.is_err() {
                return;
            }
            if let Ok(info) = stream_of(&shared, &topic).get_info().await {
                let at = info.state.last_sequence;
                let _ = shared.commands.send(Input::Confirmed(topic, at));
            }
        });
    }

    /// Takes `first` and every live message ready after it, and handles them in sequence order.
    async fn on_messages(&mut self, first: (Topic, Message)) {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match self.live.next().now_or_never() {
                Some(Some(more)) => batch.push(more),
                _ => break,
            }
        }
        batch.sort_by_key(|(_, message)| header(message, NATS_SEQUENCE));
        for (topic, message) in batch {
            self.on_message(topic, message).await;
        }
    }

    async fn on_message(&mut self, topic: Topic, message: Message) {
        if !self.subs.contains_key(&topic) {
            return;
        }
        let header = |name| header(&message, name);
        let Some(seq) = header(NATS_SEQUENCE) else {
            self.delivery.malformed_payload();
            tracing::warn!(subject = %message.subject, "ignoring a NATS message without a stream sequence");
            return;
        };
        let previous = header(NATS_LAST_SEQUENCE).unwrap_or(0);
        if let Some(&last) = self.last.get(&topic) {
            if previous > last {
                tracing::warn!(%topic, last, previous, "NATS live events were missed; catching up");
                self.catch_up(&topic, last).await;
            }
            if seq <= self.last.get(&topic).copied().unwrap_or(0) {
                return;
            }
        }
        self.last.insert(topic.clone(), seq);
        if let Some(envelope) = payload::decode(topic, seq, &message.payload, Some(&self.delivery))
        {
            self.delivery.deliver(Arc::new(envelope));
        }
    }

    /// Checks (or creates) the streams; up on success, else tried again after [`RETRY`].
    async fn bring_up(&mut self) {
        self.retry_at = None;
        let mut created = Vec::new();
        for config in &self.shared.stream_configs {
            match stream::ensure(self.stream_context(), config).await {
                Ok(at) => created.push(Some(at)),
                Err(e) => {
                    match &e {
                        BrokerError::Protocol(_) => {
                            tracing::error!(error = %e, "NATS stream refused")
                        }
                        _ => tracing::warn!(error = %e, "NATS stream not available"),
                    }
                    self.shared.set_down(e.to_string());
                    self.retry_at = Some(Instant::now() + RETRY);
                    return;
                }
            }
        }
        self.shared.up.store(true, Ordering::Release);
        let before = std::mem::replace(&mut self.created, created);
        let anew: Vec<u32> = (0..before.len())
            .filter(|&p| before[p].is_some() && before[p] != self.created[p])
            .map(|p| p as u32)
            .collect();
        for &p in &anew {
            self.restart_partition(p).await;
        }
        if self.gap {
            self.catch_up_all(&anew).await;
        }
        self.gap = false;
        let unconfirmed: Vec<Topic> = {
            let subscribed = self.shared.subscribed();
            self.subs
                .keys()
                .filter(|t| !subscribed.contains(*t))
                .cloned()
                .collect()
        };
        for topic in unconfirmed {
            self.confirm_later(topic);
        }
        if std::mem::replace(&mut self.ever_up, true) {
            self.delivery.reconnected();
        } else {
            self.delivery.connected();
        }
    }

    fn stream_context(&self) -> &async_nats::jetstream::Context {
        &self.shared.js.get().expect("set before the task runs").1
    }

    /// Every watched topic of partition `p` gets a reset at its stream's position, which is
    /// where its live delivery continues.
    async fn reset_partition(&mut self, p: u32, why: &str) {
        let names = &self.shared.names;
        let topics: Vec<Topic> = (self.subs.keys())
            .filter(|t| names.partition_of(t) == p)
            .cloned()
            .collect();
        let Some(first) = topics.first() else {
            return;
        };
        let at = (self.stream(first).get_info().await).map_or(0, |i| i.state.last_sequence);
        tracing::warn!(at, partition = p, "{why}: resetting its watched topics");
        self.delivery.reset(&topics, EventId::new(at), GAP);
        for topic in topics {
            self.last.insert(topic, at);
        }
    }

    /// Partition `p`'s stream was created anew (a server restarted without its store, the
    /// stream deleted): its sequence started again, so its watched topics get a reset at 0, the
    /// new stream's beginning, and then what the new stream already holds (publications the
    /// retry buffers sent while this process was away): those are new to every client, and a
    /// reset at the stream's last sequence would skip them.
    async fn restart_partition(&mut self, p: u32) {
        let names = &self.shared.names;
        let topics: Vec<Topic> = (self.subs.keys())
            .filter(|t| names.partition_of(t) == p)
            .cloned()
            .collect();
        if topics.is_empty() {
            return;
        }
        if self.shared.replay == 0 {
            return self
                .reset_partition(p, "the NATS stream was created anew")
                .await;
        }
        tracing::warn!(
            partition = p,
            "the NATS stream was created anew: resetting its watched topics to its start"
        );
        self.delivery.reset(&topics, EventId::new(0), GAP);
        for topic in &topics {
            self.last.insert(topic.clone(), 0);
        }
        for topic in topics {
            self.catch_up(&topic, 0).await;
        }
    }

    /// Catches every watched topic up, but those of the partitions in `skip` (just reset).
    async fn catch_up_all(&mut self, skip: &[u32]) {
        if self.shared.replay == 0 {
            for p in (0..self.shared.names.partitions()).filter(|p| !skip.contains(p)) {
                let why = "NATS live events may be missing (replay off)";
                self.reset_partition(p, why).await;
            }
            return;
        }
        let names = &self.shared.names;
        let topics: Vec<(Topic, u64)> = (self.last.iter())
            .filter(|(t, _)| !skip.contains(&names.partition_of(t)))
            .map(|(t, l)| (t.clone(), *l))
            .collect();
        for (topic, last) in topics {
            self.catch_up(&topic, last).await;
        }
    }

    /// Delivers `topic`'s events after `last` from the stream (a reset first where it does not
    /// reach back; a reset alone where it cannot be read).
    async fn catch_up(&mut self, topic: &Topic, last: u64) {
        let topics = std::slice::from_ref(topic);
        let names = &self.shared.names;
        let limit = self.shared.replay.max(1);
        match history::read(
            self.stream(topic),
            names,
            topics,
            EventId::new(last),
            limit,
            Some(&self.delivery),
        )
        .await
        {
            Ok(history) => {
                let newest = history.events.last().map_or(last, |e| e.id().get());
                let resumes = if history.complete {
                    last
                } else {
                    history.reset_id().get()
                };
                history.deliver(&self.delivery, topics, GAP);
                self.last
                    .insert(topic.clone(), newest.max(resumes).max(last));
            }
            Err(e) => {
                tracing::warn!(error = %e, %topic, "NATS catch-up failed; resetting the topic");
                self.delivery.reset(topics, EventId::new(last), GAP);
            }
        }
    }
}
