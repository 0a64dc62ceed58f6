//! The no-silent-gap rule, checked on a subscriber's stream: each event published after it
//! connected arrives, in order, or a `livepush.reset` that accounts for it arrives after the last
//! event before it and before the next one that does arrive. Late is fine, silent loss never
//! is. A reset accounts only for what its documented data and id say it covers
//! (`docs/replay-and-guarantees.md`, "Guarantees when something fails"): a broker fault or a
//! history that falls short (`broker_gap`, `history_unavailable`) for events the broker took with
//! an id up to the reset's id (published before it); a retry-buffer reset
//! (`retry_buffer_overflow` / `_expired`) for at most `lost` publications the buffer held. The
//! reset's data names no topic: a subscriber checked here watches one topic, so each reset it
//! gets is that topic's. Used by the fault tests of every broker (`redis_faults.rs`, `nats.rs`).

use std::time::Duration;

use livepush::sse::{LAGGED, RESET};
use livepush::{Hub, Published};
use serde_json::Value;

use super::{http, SseClient, TestServer};

/// How long a subscriber may take to receive what a test expects.
pub const DELIVERY_WAIT: Duration = Duration::from_secs(15);

/// A publication a subscriber is owed, and what its publisher learned of it.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The payload as subscribers see it.
    pub data: String,
    /// The id the broker gave it (`hub.publish` answered `Ok`); `None` for a publication that
    /// went to the retry buffer, or through a handler, whose answer does not say.
    pub id: Option<u64>,
}

/// `POST /comments` with `body`; the handler answers 201 whatever the broker does.
pub async fn post_comment(server: &TestServer, body: &Value) -> Sent {
    let response = http()
        .post(server.url("/comments"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        201,
        "a publish the broker cannot take never changes the handler's answer"
    );
    Sent {
        data: body.to_string(),
        id: None,
    }
}

/// Publishes with `hub.publish` and returns the payload as subscribers see it; the broker may
/// have taken it or the hub may keep it in its retry buffer, nothing else.
pub async fn accepted(hub: &Hub, topic: &str, data: &Value) -> Sent {
    match hub.publish(topic, "created", data).await {
        Ok(published) => Sent {
            data: data.to_string(),
            id: published.id().map(|id| id.get()),
        },
        Err(e) => panic!("publish {data} to {topic}: neither published nor buffered: {e}"),
    }
}

/// Publishes with `hub.publish`, which must succeed now (the broker takes it).
pub async fn published(hub: &Hub, topic: &str, data: &Value, why: &str) -> Sent {
    let id = hub
        .publish(topic, "created", data)
        .await
        .unwrap_or_else(|e| panic!("{why}: publish {data} to {topic}: {e}"))
        .id()
        .unwrap_or_else(|| panic!("{why}: publish {data} to {topic} was buffered, not published"));
    Sent {
        data: data.to_string(),
        id: Some(id.get()),
    }
}

/// Publishes while the broker cannot take it: the hub answers `Buffered`.
pub async fn buffered(hub: &Hub, topic: &str, data: &Value) -> Sent {
    let result = hub.publish(topic, "created", data).await;
    assert!(
        matches!(result, Ok(Published::Buffered)),
        "publish {data} to {topic} with the broker unreachable: expected Ok(Buffered), got {result:?}"
    );
    Sent {
        data: data.to_string(),
        id: None,
    }
}

/// One thing a subscriber received.
#[derive(Debug, Clone)]
pub enum Item {
    Event {
        id: u64,
        event: String,
        data: String,
    },
    Reset {
        id: u64,
        reason: String,
        /// Publications the retry buffer gave up (retry-buffer resets only).
        lost: Option<u64>,
        data: String,
    },
}

/// What a subscriber received until the last expected event, checked by
/// [`read_without_silent_gap`].
#[derive(Debug)]
pub struct Transcript {
    pub who: String,
    pub items: Vec<Item>,
    /// The expected payloads that never arrived (each accounted for by a reset).
    pub missing: Vec<String>,
}

impl Transcript {
    /// Positions of the resets, with their reasons.
    pub fn resets(&self) -> Vec<(usize, &str)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(at, item)| match item {
                Item::Reset { reason, .. } => Some((at, reason.as_str())),
                Item::Event { .. } => None,
            })
            .collect()
    }

    /// Where `data` first arrived.
    pub fn position(&self, data: &str) -> Option<usize> {
        self.items
            .iter()
            .position(|item| matches!(item, Item::Event { data: d, .. } if d == data))
    }

    /// Fails unless every expected event arrived and no reset came: what a test expects where
    /// the broker's history (or the retry buffer) recovers everything.
    pub fn assert_complete(&self) {
        assert!(
            self.missing.is_empty() && self.resets().is_empty(),
            "{}: expected every event and no reset (replay recovers everything)\n{}",
            self.who,
            self.dump()
        );
    }

    /// Fails unless every expected event arrived and every reset has one of `reasons` (a
    /// documented reset that costs the client a reload, not an event).
    pub fn assert_nothing_missing(&self, reasons: &[&str]) {
        assert!(
            self.missing.is_empty(),
            "{}: expected every event to arrive, missing {:?}\n{}",
            self.who,
            self.missing,
            self.dump()
        );
        assert!(
            self.resets().iter().all(|(_, r)| reasons.contains(r)),
            "{}: only resets {reasons:?} may come here\n{}",
            self.who,
            self.dump()
        );
    }

    pub fn dump(&self) -> String {
        let lines: Vec<String> = self
            .items
            .iter()
            .enumerate()
            .map(|(at, item)| match item {
                Item::Event { id, event, data } => format!("  {at}: {event} id={id} {data}"),
                Item::Reset { id, data, .. } => format!("  {at}: RESET id={id} {data}"),
            })
            .collect();
        format!("subscriber {}:\n{}", self.who, lines.join("\n"))
    }
}

#[derive(Clone, Copy, PartialEq)]
pub enum Duplicates {
    /// Every event at most once.
    Refused,
    /// At-least-once: a publish that timed out and was retried may arrive twice (each copy with
    /// its own id).
    Allowed,
}

/// Whether a reset with `reason` accounts for a publication the broker took with an id: a
/// broker fault or a history that falls short does; a retry-buffer reset covers only what
/// the buffer gave up, which never got an id.
pub fn covers_published(reason: &str) -> bool {
    !reason.starts_with("retry_buffer")
}

/// Reads one item from `client`, or `None` when [`DELIVERY_WAIT`] from `deadline` is over.
pub async fn read_item(
    client: &mut SseClient,
    who: &str,
    deadline: tokio::time::Instant,
) -> Option<Item> {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let mut event = client.next_within(left).await?;
    // A new stream whose current values could not be read is told so first, with no `id:` (it
    // is no gap in the events, and its reconnect must read the values again): not an item.
    while event.event == RESET.as_str() && event.data.contains("\"state_unavailable\"") {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        event = client.next_within(left).await?;
    }
    if event.event == RESET.as_str() {
        let data: Value = serde_json::from_str(&event.data)
            .unwrap_or_else(|e| panic!("{who}: reset data is not JSON ({e}): {}", event.data));
        let reason = data["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("{who}: a reset without a \"reason\": {}", event.data))
            .to_owned();
        let lost = data["lost"].as_u64();
        assert!(
            covers_published(&reason) || lost.is_some(),
            "{who}: a retry-buffer reset without \"lost\": {}",
            event.data
        );
        let id = event
            .id
            .parse()
            .unwrap_or_else(|_| panic!("{who}: reset id {:?} is not a u64", event.id));
        return Some(Item::Reset {
            id,
            reason,
            lost,
            data: event.data,
        });
    }
    assert_ne!(
        event.event,
        LAGGED.as_str(),
        "{who}: dropped as a slow consumer, which these tests never are"
    );
    let id = event
        .id
        .parse()
        .unwrap_or_else(|_| panic!("{who}: event id {:?} is not a u64", event.id));
    Some(Item::Event {
        id,
        event: event.event,
        data: event.data,
    })
}

/// Reads `client` until the last of `expected` (in publication order) arrived, and fails on
/// any silent gap: an expected event that did not arrive must be accounted for by a
/// `livepush.reset` received after the expected event before it (if any arrived) and before
/// the next expected event that arrived, as the module's rule says. Also fails on an
/// unexpected payload, on events out of publication order, on ids that do not rise (across a
/// reset too: every event after a reset is above its id), on a duplicate unless allowed, on a
/// reset without its own `id:` line or without a `"reason"`, and on a stream that ends.
pub async fn read_without_silent_gap(
    client: &mut SseClient,
    who: &str,
    expected: &[Sent],
    duplicates: Duplicates,
) -> Transcript {
    let last = &expected.last().expect("something is expected").data;
    let mut transcript = Transcript {
        who: who.to_owned(),
        items: Vec::new(),
        missing: Vec::new(),
    };
    let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
    loop {
        let Some(item) = read_item(client, who, deadline).await else {
            let wanted: Vec<&str> = expected.iter().map(|s| s.data.as_str()).collect();
            panic!(
                "{who}: the last expected event {last} did not arrive within {DELIVERY_WAIT:?}; \
                 expected {wanted:?}\n{}",
                transcript.dump()
            );
        };
        let done = matches!(&item, Item::Event { data, .. } if data == last);
        transcript.items.push(item);
        if done {
            break;
        }
    }
    check_resets_have_ids(client, who);
    let first_seen = check_order(&transcript, expected, duplicates);
    transcript.missing = check_missing_accounted_for(&transcript, expected, &first_seen);
    eprintln!(
        "{who}: {} items, resets {:?}, missing {}",
        transcript.items.len(),
        transcript.resets(),
        transcript.missing.len()
    );
    transcript
}

/// Checks ids, publication order and duplicates; answers where each expected event first
/// arrived.
pub fn check_order(
    transcript: &Transcript,
    expected: &[Sent],
    duplicates: Duplicates,
) -> Vec<Option<usize>> {
    let who = &transcript.who;
    let mut first_seen: Vec<Option<usize>> = vec![None; expected.len()];
    let mut highest: Option<usize> = None;
    let mut previous_id: Option<u64> = None;
    for (at, item) in transcript.items.iter().enumerate() {
        let (id, data) = match item {
            // the reset's id is where the client resumes: every later event is above it
            Item::Reset { id, .. } => {
                previous_id = Some(*id);
                continue;
            }
            Item::Event { id, data, .. } => (*id, data),
        };
        let Some(index) = expected.iter().position(|e| e.data == *data) else {
            panic!(
                "{who}: unexpected event {data} (expected {expected:?})\n{}",
                transcript.dump()
            );
        };
        if let Some(before) = previous_id {
            assert!(
                id > before,
                "{who}: event ids must rise: {id} after {before} at {at}\n{}",
                transcript.dump()
            );
        }
        previous_id = Some(id);
        if first_seen[index].is_some() {
            assert!(
                duplicates == Duplicates::Allowed,
                "{who}: {data} delivered twice\n{}",
                transcript.dump()
            );
            continue;
        }
        assert!(
            highest.is_none_or(|h| index > h),
            "{who}: {data} arrived after a later event: out of publication order\n{}",
            transcript.dump()
        );
        highest = Some(index);
        first_seen[index] = Some(at);
    }
    first_seen
}

/// Fails unless each expected event that never arrived is accounted for by a reset between
/// its received neighbours: one for published events whose id it covers (`id <=` the
/// reset's), or a retry-buffer reset, each for at most its `lost`, for publications the test
/// saw no id of. Answers the missing payloads.
pub fn check_missing_accounted_for(
    transcript: &Transcript,
    expected: &[Sent],
    first_seen: &[Option<usize>],
) -> Vec<String> {
    let who = &transcript.who;
    // how many given-up publications each retry-buffer reset (by position) has left to cover
    let mut budget: std::collections::HashMap<usize, u64> = transcript
        .items
        .iter()
        .enumerate()
        .filter_map(|(at, item)| match item {
            Item::Reset { lost: Some(n), .. } => Some((at, *n)),
            _ => None,
        })
        .collect();
    let mut missing = Vec::new();
    for (index, seen) in first_seen.iter().enumerate() {
        if seen.is_some() {
            continue;
        }
        let sent = &expected[index];
        let after = first_seen[..index].iter().rev().find_map(|s| *s);
        let before = first_seen[index + 1..]
            .iter()
            .find_map(|s| *s)
            .expect("the last expected event arrived");
        let window = after.map_or(0, |a| a + 1)..before;
        let covering = window.clone().find(|&at| match &transcript.items[at] {
            Item::Reset { id, reason, .. } => match sent.id {
                Some(published) => covers_published(reason) && published <= *id,
                None => !covers_published(reason) && budget.get(&at).is_some_and(|&n| n > 0),
            },
            Item::Event { .. } => false,
        });
        let Some(at) = covering else {
            panic!(
                "{who}: SILENT GAP: {} (id {:?}) never arrived and no livepush.reset that covers \
                 it came between {} and position {before}\n{}",
                sent.data,
                sent.id,
                after.map_or("the start".to_owned(), |a| format!("position {a}")),
                transcript.dump()
            );
        };
        if let Some(n) = budget.get_mut(&at) {
            if sent.id.is_none() {
                *n -= 1;
            }
        }
        missing.push(sent.data.clone());
    }
    missing
}

/// Every `livepush.reset` frame the client received so far has its own `id:` line with a
/// decimal id (the parsed event would show the previous event's id instead), except the
/// `state_unavailable` one of a new stream, which has none.
pub fn check_resets_have_ids(client: &SseClient, who: &str) {
    let raw = client.raw_text().replace("\r\n", "\n");
    for frame in raw.split("\n\n") {
        let lines: Vec<&str> = frame.lines().collect();
        let is_reset = lines.iter().any(|l| {
            l.strip_prefix("event:")
                .is_some_and(|name| name.trim() == RESET.as_str())
        });
        // the state_unavailable reset of a new stream has no `id:` by design (see read_item)
        if !is_reset || frame.contains("\"state_unavailable\"") {
            continue;
        }
        let id = lines.iter().find_map(|l| l.strip_prefix("id:"));
        assert!(
            id.is_some_and(|id| id.trim().parse::<u64>().is_ok()),
            "{who}: a livepush.reset frame without a decimal `id:` line:\n{frame}"
        );
    }
}
