//! State topics on NATS: the current retained values, one KV entry per topic in the bucket
//! `<stream>_state` (the KV key is the topic, written as [`kv_key`]).
//!
//! A retained publication is published like any other (its id is the stream sequence, live
//! delivery and history are unchanged), with two headers: `Livepush-Retain` (its retain key,
//! written as [`kv_key`]) and `Livepush-Retain-Until` (when its TTL runs out, Unix ms; 0: none).
//! Once the publish is acknowledged, the publisher writes it into the topic's entry, a JSON
//! object of retain key → `{id, until, payload}`, with a compare-and-set write (the entry's
//! revision) that keeps the higher id: two publishers racing store the newer value, whatever
//! order their writes land in.
//!
//! JetStream cannot store the event and the value in one step, so a value reaches the bucket
//! one round trip after its event was stored and delivered live. A reader closes that gap for
//! the newest event of the topic: it also reads the topic's last stored message (a direct get),
//! and a retained one newer than the bucket's value of its key wins. Left open: a retained
//! event followed, within that round trip, by another event of the same topic, while a new
//! subscriber confirms its subscription between the two; that subscriber starts on the previous
//! value (never an older one after a newer) and gets the next value live.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{DirectGetErrorKind, StorageType, Stream};
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use serde::{Deserialize, Serialize};

use super::bucket::{self, kv_key, now_ms, Bucket, Decision};
use super::payload;
use super::subject::Names;
use crate::broker::{BrokerError, Cause, Delivery};
use crate::envelope::Envelope;
use crate::state::Retain;
use crate::topic::Topic;

/// The header with a retained publication's key (as [`kv_key`] writes it).
const RETAIN_KEY: &str = "Livepush-Retain";
/// The header with the time a retained publication's TTL runs out (Unix ms; 0: none).
const RETAIN_UNTIL: &str = "Livepush-Retain-Until";

/// How often a compare-and-set write is tried again when another publisher wrote first.
const ATTEMPTS: usize = 32;

/// One current value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Value {
    id: u64,
    /// Unix ms; 0: no TTL.
    until: u64,
    /// The stored event's payload ([`payload::encode`]).
    payload: String,
}

impl Value {
    fn alive(&self, now: u64) -> bool {
        self.until == 0 || self.until > now
    }
}

/// A topic's current values: retain key (as [`kv_key`] writes it) → value.
type Values = BTreeMap<String, Value>;

fn unavailable(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(Cause::new(format!("NATS state ({what}): {e}")))
}

/// The state bucket of one broker.
pub(super) struct State {
    bucket: Bucket,
}

/// What a retained publication carries to the bucket: its key and the end of its TTL.
pub(super) struct Marked {
    key: String,
    until: u64,
}

impl Marked {
    /// The key and TTL end of `retain`, published now, added to `headers`.
    pub(super) fn new(retain: &Retain, headers: &mut HeaderMap) -> Self {
        let key = kv_key(retain.key_str());
        let until = match retain.ttl_millis() {
            0 => 0,
            ttl => now_ms().saturating_add(ttl),
        };
        headers.insert(RETAIN_KEY, key.as_str());
        headers.insert(RETAIN_UNTIL, until.to_string().as_str());
        Marked { key, until }
    }
}

impl State {
    pub(super) fn new(stream: &str, storage: StorageType, replicas: usize) -> Self {
        State {
            bucket: Bucket::new(
                format!("{stream}_state"),
                "livepush current values of state topics",
                storage,
                replicas,
            ),
        }
    }

    /// Writes the value of the retained event `id` (published with `marked`) into its topic's
    /// entry, unless the entry holds a newer one of its key.
    pub(super) async fn keep(
        &self,
        js: &Context,
        topic: &Topic,
        marked: Marked,
        id: u64,
        payload: &[u8],
    ) -> Result<(), BrokerError> {
        let payload = std::str::from_utf8(payload)
            .map_err(|e| unavailable("a payload that is not UTF-8", e))?
            .to_owned();
        let value = Value {
            id,
            until: marked.until,
            payload,
        };
        let store = self
            .bucket
            .store(js)
            .await
            .map_err(|e| unavailable("bucket", e))?;
        let kept = bucket::update(js, &store, &kv_key(topic.as_str()), ATTEMPTS, |values| {
            let mut values: Values = values.unwrap_or_default();
            if values.get(&marked.key).is_some_and(|v| v.id >= id) {
                return Decision::Keep(());
            }
            let now = now_ms();
            values.retain(|_, v| v.alive(now));
            values.insert(marked.key.clone(), value.clone());
            Decision::Write(values, ())
        })
        .await;
        if kept.is_err() {
            self.bucket.forget().await;
        }
        kept.map_err(|e| unavailable("write", e))
    }

    /// The current values of `topics` (any order).
    pub(super) async fn read(
        &self,
        js: &Context,
        streams: &[Stream<()>],
        names: &Names,
        topics: &[Topic],
        delivery: Option<&Delivery>,
    ) -> Result<Vec<Arc<Envelope>>, BrokerError> {
        let store = self
            .bucket
            .store(js)
            .await
            .map_err(|e| unavailable("bucket", e))?;
        let mut out = Vec::new();
        for topic in topics {
            let entry = match store.entry(kv_key(topic.as_str())).await {
                Ok(entry) => entry,
                Err(e) => {
                    self.bucket.forget().await;
                    return Err(unavailable("read", e));
                }
            };
            let mut values = entry
                .filter(|e| e.operation == kv::Operation::Put)
                .and_then(|e| serde_json::from_slice::<Values>(&e.value).ok())
                .unwrap_or_default();
            let stream = &streams[names.partition_of(topic) as usize];
            if let Some((key, value)) = in_flight(stream, names, topic).await? {
                if values.get(&key).is_none_or(|v| v.id < value.id) {
                    values.insert(key, value);
                }
            }
            let now = now_ms();
            out.extend(
                values
                    .into_values()
                    .filter(|v| v.alive(now))
                    .filter_map(|v| {
                        payload::decode(topic.clone(), v.id, v.payload.as_bytes(), delivery)
                    })
                    .map(Arc::new),
            );
        }
        Ok(out)
    }
}

/// The topic's last stored event when it is retained: its value may not be in the bucket yet.
async fn in_flight(
    stream: &Stream<()>,
    names: &Names,
    topic: &Topic,
) -> Result<Option<(String, Value)>, BrokerError> {
    let message = match stream
        .direct_get_last_for_subject(names.stored(topic))
        .await
    {
        Ok(message) => message,
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unavailable("last event", e)),
    };
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
    let (Some(key), Some(until)) = (header(RETAIN_KEY), header(RETAIN_UNTIL)) else {
        return Ok(None);
    };
    let (Ok(until), Ok(payload)) = (until.parse(), String::from_utf8(message.payload.to_vec()))
    else {
        return Ok(None);
    };
    Ok(Some((
        key,
        Value {
            id: message.sequence,
            until,
            payload,
        },
    )))
}
