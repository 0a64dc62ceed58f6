//! The current values of state topics (retained publications, [`Retain`](crate::Retain)) that a
//! stream is sent before any live event: when it is new, and when it resumes but history cannot
//! cover what it missed (after its `livepush.reset`).
//!
//! The values are read after the broker confirmed live delivery of the stream's topics, so
//! every later publication arrives live; those published before the read and still in the live
//! queue are at or below the marks set here and are skipped. Values go out in id order, merged
//! with replayed history by id, so a client never sees an older value after a newer one.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::broker::Broker;
use crate::envelope::Envelope;
use crate::event::EventId;
use crate::sse;
use crate::topic::Topic;

/// The current values of `topics`, in id order (none when the broker keeps no state), or
/// `None` when the broker could not answer (logged): the stream then starts without them and
/// tells its client with [`unavailable`] where no reset already did.
pub(crate) async fn read(broker: &dyn Broker, topics: &[Topic]) -> Option<Vec<Arc<Envelope>>> {
    if !broker.retains() {
        return Some(Vec::new());
    }
    match broker.retained(topics).await {
        Ok(mut values) => {
            values.sort_by_key(|e| e.id());
            Some(values)
        }
        Err(error) => {
            tracing::warn!(%error, "retained values unavailable; the client is told to reset");
            None
        }
    }
}

/// The `livepush.reset` (`{"reason":"state_unavailable"}`, no `id:`) of a new stream whose
/// current values could not be read: without it the client would show what it had before (a
/// stale value) as if it were current; with it, it reloads as after any reset, and a stream
/// that reconnects without an id reads the values again.
pub(crate) fn unavailable() -> Bytes {
    let data = serde_json::json!({ "reason": "state_unavailable" });
    sse::notice(&sse::RESET, data.to_string().as_bytes())
}

/// The marks of a new stream that is sent `values` first: every topic at the newest value's id,
/// so that no event below it follows (it was published before the stream's response, and ids
/// keep rising on the stream). `None` without values.
pub(crate) fn fresh_marks(
    topics: &[Topic],
    values: &[Arc<Envelope>],
) -> Option<HashMap<Topic, EventId>> {
    let newest = values.iter().map(|e| e.id()).max()?;
    Some(topics.iter().map(|t| (t.clone(), newest)).collect())
}

/// Raises the mark of each value's topic to the value's id: live events of that topic at or
/// below it are older than (or the same as) a value already sent.
pub(crate) fn raise_marks(marks: &mut HashMap<Topic, EventId>, values: &[Arc<Envelope>]) {
    for value in values {
        let mark = marks.entry(value.topic().clone()).or_default();
        *mark = (*mark).max(value.id());
    }
}

/// Adds `values` to replayed `events` (both in id order): the union by id, in id order.
pub(crate) fn merge(events: &mut Vec<Arc<Envelope>>, values: Vec<Arc<Envelope>>) {
    if values.is_empty() {
        return;
    }
    events.extend(values);
    events.sort_by_key(|e| e.id());
    events.dedup_by_key(|e| e.id());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Publication;

    fn event(topic: &str, id: u64) -> Arc<Envelope> {
        Arc::new(Envelope::new(
            EventId::new(id),
            Publication {
                topic: Topic::new(topic).unwrap(),
                event: crate::EventName::from_static("e"),
                category: None,
                data: bytes::Bytes::from_static(b"{}"),
                trace: crate::trace::Trace::NONE,
                retain: None,
            },
        ))
    }

    fn ids(events: &[Arc<Envelope>]) -> Vec<u64> {
        events.iter().map(|e| e.id().get()).collect()
    }

    #[test]
    fn values_merge_into_history_by_id_once_each() {
        let mut events = vec![event("a", 5), event("b", 7), event("a", 9)];
        merge(&mut events, vec![event("a", 3), event("b", 7)]);
        assert_eq!(ids(&events), [3, 5, 7, 9]);
    }

    #[test]
    fn marks_rise_to_the_values_and_a_fresh_stream_starts_at_the_newest() {
        let topics = [Topic::new("a").unwrap(), Topic::new("b").unwrap()];
        assert!(fresh_marks(&topics, &[]).is_none());
        let values = [event("a", 4), event("a", 8)];
        let fresh = fresh_marks(&topics, &values).unwrap();
        assert_eq!(fresh[&topics[1]], EventId::new(8));
        let mut marks = HashMap::from([(topics[0].clone(), EventId::new(6))]);
        raise_marks(&mut marks, &values);
        assert_eq!(marks[&topics[0]], EventId::new(8));
        assert!(!marks.contains_key(&topics[1]));
    }
}
