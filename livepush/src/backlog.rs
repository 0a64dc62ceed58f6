//! The backlog of a new stream on a partitioned broker (Redis Cluster): what it is sent before
//! live events (a reset, replayed history), where it stands in each partition of its topics,
//! and which live events it already has.
//!
//! Each partition is read on its own (its ids say nothing about another's): its history after
//! the client's position in it, or, without `Last-Event-ID`, its current position. Partitions
//! whose history cannot vouch for the client's position get one `livepush.reset` for the whole
//! connection, sent before any replayed event. The `id:` lines are those of
//! [`position`](crate::position).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::broker::{History, Partitioned};
use crate::current;
use crate::envelope::Envelope;
use crate::event::EventId;
use crate::position::{LastEventId, Position};
use crate::topic::Topic;

/// Whether the broker confirmed live delivery of a stream's topics before its backlog is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confirmed {
    /// Live events arrive: history read now overlaps them, nothing falls in between.
    Yes,
    /// The broker could not confirm in time (the stream opened anyway, fail-open): history read
    /// now may miss what is published before the subscription exists, so it is not read and
    /// the client is told to reset.
    No,
}

/// What [`open`] prepared for a stream of a partitioned broker.
pub(crate) struct Opened {
    /// Frames to send first (a reset, replayed history), after the retry hint.
    pub(crate) frames: Vec<Bytes>,
    /// Per topic, the highest id already sent: live events at or below are duplicates.
    pub(crate) seen: Option<HashMap<Topic, EventId>>,
    /// The position the stream keeps writing (connections spanning several partitions).
    pub(crate) position: Option<Position>,
    /// Events replayed (for the metric).
    pub(crate) replayed: usize,
}

/// The topics of one stream, placed in their partitions.
struct Placed {
    count: u32,
    topics: Vec<(Topic, u32)>,
    /// The partitions of `topics`, sorted, once each.
    parts: Vec<u32>,
}

impl Placed {
    fn new(broker: &dyn Partitioned, topics: &[Topic]) -> Self {
        let topics: Vec<(Topic, u32)> = topics
            .iter()
            .map(|t| (t.clone(), broker.partition_of(t)))
            .collect();
        let mut parts: Vec<u32> = topics.iter().map(|(_, p)| *p).collect();
        parts.sort_unstable();
        parts.dedup();
        Placed {
            count: broker.partitions(),
            topics,
            parts,
        }
    }

    /// Every topic in one partition: plain ids, the shared frames, no position to write.
    fn single(&self) -> bool {
        self.parts.len() == 1
    }

    fn topics_of(&self, p: u32) -> Vec<Topic> {
        self.topics
            .iter()
            .filter(|(_, q)| *q == p)
            .map(|(t, _)| t.clone())
            .collect()
    }
}

/// What the reads of every partition of a resuming stream found.
#[derive(Default)]
struct Reads {
    /// Partitions whose history cannot vouch for the client's position, and where they restart.
    reset_to: Vec<(u32, EventId)>,
    /// Per topic, the highest id covered (replayed, or the partition's start).
    marks: HashMap<Topic, EventId>,
    /// Replayed events with their partition.
    events: Vec<(u32, Arc<Envelope>)>,
    /// Per partition, where the stream starts.
    starts: HashMap<u32, EventId>,
    /// Current values of state topics sent after a partition's reset, with their partition.
    values: Vec<(u32, Arc<Envelope>)>,
}

/// Prepares a stream of `topics` on a partitioned broker once the broker confirmed (or could not
/// confirm) live delivery: reads each partition's history after the client's position (or,
/// without `Last-Event-ID`, each partition's current position), and answers the frames to send
/// first. `values` are the current values of its state topics ([`current`]): a new stream gets
/// them all, a resuming one those of the partitions it is reset in.
pub(crate) async fn open(
    broker: &dyn Partitioned,
    topics: &[Topic],
    last: Option<&LastEventId>,
    replay: bool,
    confirmed: Confirmed,
    values: Vec<Arc<Envelope>>,
) -> Opened {
    let placed = Placed::new(broker, topics);
    let Some(last) = last else {
        return fresh(broker, &placed, values).await;
    };
    let mut reads = Reads::default();
    for &p in &placed.parts {
        let after = last.at(placed.count, p);
        let part_topics = placed.topics_of(p);
        let start = if replay {
            replayed_from(broker, p, &part_topics, after, confirmed, &mut reads).await
        } else {
            unreplayable_from(broker, p, after, &mut reads).await
        };
        reads.starts.insert(p, start);
        for t in &part_topics {
            reads.marks.entry(t.clone()).or_insert(start);
        }
    }
    let reset: Vec<u32> = reads.reset_to.iter().map(|(p, _)| *p).collect();
    for value in values {
        let p = broker.partition_of(value.topic());
        if reset.contains(&p) {
            reads.values.push((p, value));
        }
    }
    resumed(&placed, last, reads)
}

/// A stream without `Last-Event-ID`: the current values of its state topics first. Spanning
/// several partitions, it starts at each one's current position.
async fn fresh(broker: &dyn Partitioned, placed: &Placed, values: Vec<Arc<Envelope>>) -> Opened {
    let mut opened = Opened {
        frames: Vec::new(),
        seen: None,
        position: None,
        replayed: 0,
    };
    if placed.single() {
        // One partition, one sequence: as on one server.
        let topics: Vec<Topic> = placed.topics.iter().map(|(t, _)| t.clone()).collect();
        opened.seen = current::fresh_marks(&topics, &values);
        opened.frames = values.iter().map(|e| e.frame().clone()).collect();
        return opened;
    }
    let parts = &placed.parts;
    let now = broker.positions(parts).await.unwrap_or_else(|error| {
        tracing::warn!(%error, "partition positions unavailable; a reconnect resets");
        vec![EventId::new(0); parts.len()]
    });
    let at = |p: u32| {
        parts
            .iter()
            .position(|&q| q == p)
            .and_then(|i| now.get(i).copied())
            .unwrap_or_default()
    };
    // The connection starts at these positions: a live event at or below one was published
    // before it (after the subscription, before the read) and is not sent, or a reconnect
    // from a position that claims it would miss it.
    let mut marks: HashMap<Topic, EventId> = placed
        .topics
        .iter()
        .map(|(t, p)| (t.clone(), at(*p)))
        .collect();
    current::raise_marks(&mut marks, &values);
    let mut position = Position::new(placed.count, &placed.topics, at);
    // A value older than its partition's position does not move the position back: the
    // stream starts at the position, where it would resume.
    opened.frames = values.iter().map(|e| position.frame_forward(e)).collect();
    opened.seen = Some(marks);
    opened.position = Some(position);
    opened
}

/// Reads partition `p`'s history after `after` into `reads`; answers where the stream starts in
/// it (`after`, or the reset's id where the history cannot vouch for `after`).
async fn replayed_from(
    broker: &dyn Partitioned,
    p: u32,
    topics: &[Topic],
    after: EventId,
    confirmed: Confirmed,
    reads: &mut Reads,
) -> EventId {
    let history: History = match confirmed {
        Confirmed::Yes => match broker.partition_history(p, topics, after).await {
            Ok(history) => history,
            Err(error) => {
                tracing::warn!(%error, partition = p, "history unavailable; the client is told to reset");
                reads.reset_to.push((p, after));
                return after;
            }
        },
        Confirmed::No => {
            tracing::warn!(
                partition = p,
                "live delivery not confirmed, history not read; the client is told to reset"
            );
            reads.reset_to.push((p, after));
            return after;
        }
    };
    let start = if history.complete {
        after
    } else {
        let at = history.reset_id();
        reads.reset_to.push((p, at));
        at
    };
    for event in history.events {
        reads.marks.insert(event.topic().clone(), event.id());
        reads.events.push((p, event));
    }
    start
}

/// Without history: a client behind partition `p`'s position is told to reload; answers where
/// the stream starts in it.
async fn unreplayable_from(
    broker: &dyn Partitioned,
    p: u32,
    after: EventId,
    reads: &mut Reads,
) -> EventId {
    match broker.positions(&[p]).await.map(|v| v.first().copied()) {
        Ok(Some(now)) if after >= now => after,
        Ok(Some(now)) => {
            reads.reset_to.push((p, now));
            now
        }
        _ => {
            reads.reset_to.push((p, after));
            after
        }
    }
}

/// The frames of a resuming stream: one reset when any partition needs it, then the replayed
/// events.
fn resumed(placed: &Placed, last: &LastEventId, reads: Reads) -> Opened {
    let Reads {
        reset_to,
        mut marks,
        events,
        starts,
        values,
    } = reads;
    let single = placed.single();
    let mut position = Position::new(placed.count, &placed.topics, |p| {
        starts.get(&p).copied().unwrap_or_default()
    });
    // The current values of the reset partitions' state topics go with their history, by id.
    let values: Vec<(u32, Arc<Envelope>)> = values
        .into_iter()
        .filter(|(p, v)| !events.iter().any(|(q, e)| q == p && e.id() == v.id()))
        .collect();
    let mut frames = Vec::new();
    if let Some(&(_, at)) = reset_to.first() {
        // One partition, plain ids: the reset comes before the oldest value sent after it, so
        // the ids of the stream keep rising.
        let at = match values.iter().map(|(_, v)| v.id()).min() {
            Some(oldest) if single => at.min(EventId::new(oldest.get().saturating_sub(1))),
            _ => at,
        };
        // What the client sent: a number for a plain id (as on one Redis), else the text.
        let asked = match last {
            LastEventId::Plain(id) => serde_json::json!(id),
            _ => serde_json::json!(last.as_sent()),
        };
        let data = serde_json::json!({ "last_event_id": asked, "reason": "history_unavailable" });
        let data = data.to_string();
        frames.push(if single {
            crate::sse::event(at, &crate::sse::RESET, data.as_bytes())
        } else {
            position.reset(data.as_bytes())
        });
    }
    for (_, value) in &values {
        let mark = marks.entry(value.topic().clone()).or_default();
        *mark = (*mark).max(value.id());
    }
    let mut sent: Vec<(u32, Arc<Envelope>, bool)> = events
        .into_iter()
        .map(|(p, e)| (p, e, false))
        .chain(values.into_iter().map(|(p, v)| (p, v, true)))
        .collect();
    // Events of one partition are in id order; across partitions ids are only roughly
    // comparable (clocks of different servers), which is all the order a client may assume.
    sent.sort_by_key(|(p, e, _)| (e.id(), *p));
    let replayed = sent.iter().filter(|(_, _, value)| !value).count();
    for (_, event, value) in &sent {
        frames.push(match (single, value) {
            (true, _) => event.frame().clone(),
            (false, false) => position.frame(event),
            (false, true) => position.frame_forward(event),
        });
    }
    Opened {
        frames,
        seen: Some(marks),
        position: (!single).then_some(position),
        replayed,
    }
}
