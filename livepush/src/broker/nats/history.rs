//! Reading a topic's retained events back, and knowing when they do not reach back far enough.
//!
//! The stream keeps `LIVEPUSH_REPLAY` events per topic (JetStream's per-subject limit, which
//! drops a subject's oldest first) for `LIVEPUSH_REPLAY_TTL_SECS`. The history after id `a` of
//! a topic is complete when nothing of it after `a` was dropped:
//! - the stream's first retained sequence is at most `a + 1`: neither age, nor a purge, nor a
//!   per-subject limit removed anything of any topic above `a` from the front of the stream
//!   (conservative: a quiet topic beside a busy one may be told to reset needlessly);
//! - and, per topic, its oldest retained event is at or below `a + 1`, or it holds fewer events
//!   than the limit: the per-subject limit dropped none of it above `a`.
//!
//! One direct get per retained event (2.9 servers have no batched direct get): a read is
//! O(events retained above `a`) round trips, and the hub's recent-history cache answers the
//! reads of a reconnect storm once per topic.

use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};

use std::sync::Arc;

use super::payload;
use super::subject::Names;
use crate::broker::{BrokerError, Cause, Delivery, History};
use crate::envelope::Envelope;
use crate::event::EventId;
use crate::topic::Topic;

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> BrokerError {
    BrokerError::Unavailable(Cause::with_source(format!("NATS history read: {e}"), e))
}

/// The retained events of `topics` above `after` and up to the stream's last sequence when the
/// read began, in id order; `limit` is the stream's per-subject limit.
pub(super) async fn read(
    stream: &Stream<()>,
    names: &Names,
    topics: &[Topic],
    after: EventId,
    limit: usize,
    delivery: Option<&Delivery>,
) -> Result<History, BrokerError> {
    let state = stream.get_info().await.map_err(unavailable)?.state;
    let after = after.get();
    let mut complete = after <= state.last_sequence && after + 1 >= state.first_sequence;
    let mut events = Vec::new();
    for topic in topics {
        let (topic_events, reaches_back) =
            read_topic(stream, names, topic, after, limit, delivery).await?;
        complete &= reaches_back;
        events.extend(topic_events.into_iter().map(Arc::new));
    }
    // One cut across topics: the topics are read one after the other while publishing goes on,
    // so what came after the stream info (above its last sequence) is left to live delivery,
    // which has it (the topics' subscriptions were confirmed before this read). Without the cut
    // a late topic's newer event would be replayed before an earlier topic's live one.
    let cut = state.last_sequence;
    events.retain(|e| e.id().get() <= cut);
    events.sort_by_key(|e| e.id());
    Ok(History {
        events,
        complete,
        last: EventId::new(cut),
    })
}

/// One topic's retained events above `after`, and whether the per-subject limit dropped none
/// above it.
async fn read_topic(
    stream: &Stream<()>,
    names: &Names,
    topic: &Topic,
    after: u64,
    limit: usize,
    delivery: Option<&Delivery>,
) -> Result<(Vec<Envelope>, bool), BrokerError> {
    let subject = names.stored(topic);
    let mut events = Vec::new();
    let first = match stream.direct_get_first_for_subject(subject.clone()).await {
        Ok(first) => first,
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok((events, true)),
        Err(e) => return Err(unavailable(e)),
    };
    let mut from = after + 1;
    let mut retained_above = 0usize;
    if first.sequence > after {
        from = first.sequence + 1;
        retained_above += 1;
        events.extend(payload::decode(
            topic.clone(),
            first.sequence,
            &first.payload,
            delivery,
        ));
    }
    loop {
        match stream
            .direct_get_next_for_subject(subject.clone(), Some(from))
            .await
        {
            Ok(message) => {
                from = message.sequence + 1;
                retained_above += 1;
                events.extend(payload::decode(
                    topic.clone(),
                    message.sequence,
                    &message.payload,
                    delivery,
                ));
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
            Err(e) => return Err(unavailable(e)),
        }
    }
    // nothing of the topic can lie between `after` and its first retained event when they are
    // neighbours (a client resuming from a reset's id, just below it)
    let reaches_back = first.sequence <= after + 1 || retained_above < limit;
    Ok((events, reaches_back))
}
