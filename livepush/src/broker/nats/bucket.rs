//! The KV buckets beside the stream (connection slots, state topics' current values, presence):
//! found, or created as `nats kv add` makes them; the one mapping of livepush's keys to KV keys;
//! the compare-and-set loop every bucket's read-modify-write uses; and the scan of a key prefix.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::kv::{self, CreateErrorKind, Entry, Store, UpdateErrorKind};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One bucket of this broker, opened on first use and forgotten after an error (opened again
/// next time).
pub(super) struct Bucket {
    pub(super) name: String,
    description: &'static str,
    storage: StorageType,
    replicas: usize,
    store: tokio::sync::Mutex<Option<Store>>,
}

impl Bucket {
    pub(super) fn new(
        name: String,
        description: &'static str,
        storage: StorageType,
        replicas: usize,
    ) -> Self {
        Bucket {
            name,
            description,
            storage,
            replicas,
            store: tokio::sync::Mutex::new(None),
        }
    }

    /// The bucket, found or created.
    pub(super) async fn store(&self, js: &Context) -> Result<Store, String> {
        let mut store = self.store.lock().await;
        if let Some(store) = &*store {
            return Ok(store.clone());
        }
        let found = open(
            js,
            &self.name,
            self.description,
            self.storage,
            self.replicas,
        )
        .await?;
        *store = Some(found.clone());
        Ok(found)
    }

    /// Forgets the bucket after an error: the next use finds (or creates) it again.
    pub(super) async fn forget(&self) {
        *self.store.lock().await = None;
    }
}

/// Now, in Unix milliseconds: the clock of slot leases and state TTLs, which instances share
/// (they must agree within a fraction of a lease or TTL; NTP does).
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The KV bucket `bucket`, found or created (one value per key: `max_msgs_per_subject` 1).
/// Errors are written for a log line.
async fn open(
    js: &Context,
    bucket: &str,
    description: &str,
    storage: StorageType,
    replicas: usize,
) -> Result<Store, String> {
    if let Ok(found) = js.get_key_value(bucket).await {
        return Ok(found);
    }
    // the bucket's stream as `nats kv add` makes it; async-nats's `create_key_value` first asks
    // for account limits in a form 2.9 servers do not answer
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.to_owned()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    js.get_key_value(bucket).await.map_err(|e| e.to_string())
}

/// A key of ours (a cap key, a topic) as a KV key: `k` then the key, with every byte but ASCII
/// letters, digits, `_`, `-` and `/` written `=XX` (one to one, and always a valid KV key).
pub(super) fn kv_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 1);
    out.push('k');
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// Writes `value` at `key` only if the entry is still `entry` (`None`: if there is none yet), the
/// compare-and-set of [`update`]. Answers the revision written; `Err((true, _))`: another writer
/// came first, read again; `Err((false, why))`: the write failed.
async fn write_if_unchanged(
    store: &Store,
    key: &str,
    entry: Option<&Entry>,
    value: Vec<u8>,
) -> Result<u64, (bool, String)> {
    match entry {
        Some(entry) => store
            .update(key, value.into(), entry.revision)
            .await
            .map_err(|e| {
                (
                    e.kind() == UpdateErrorKind::WrongLastRevision,
                    e.to_string(),
                )
            }),
        None => store
            .create(key, value.into())
            .await
            .map_err(|e| (e.kind() == CreateErrorKind::AlreadyExists, e.to_string())),
    }
}

/// What one round of [`update`] decided.
pub(super) enum Decision<V, T> {
    /// Write this value and answer `T`.
    Write(V, T),
    /// Write nothing and answer `T`.
    Keep(T),
    /// Delete the entry (and its delete marker) and answer `T`.
    Delete(T),
}

/// Reads the JSON value at `key` (`None`: no entry, a deleted one, or one that is not a `V`),
/// lets `decide` change it, and writes the result only if no other writer came in between
/// (else reads again), at most `attempts` times. Errors are written for a log line.
pub(super) async fn update<V: Serialize + DeserializeOwned, T>(
    js: &Context,
    store: &Store,
    key: &str,
    attempts: usize,
    mut decide: impl FnMut(Option<V>) -> Decision<V, T>,
) -> Result<T, String> {
    for _ in 0..attempts {
        let entry = store.entry(key).await.map_err(|e| e.to_string())?;
        let value = entry
            .as_ref()
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| serde_json::from_slice(&e.value).ok());
        let (written, answer) = match decide(value) {
            Decision::Keep(answer) => return Ok(answer),
            Decision::Write(value, answer) => {
                let bytes = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
                let written = write_if_unchanged(store, key, entry.as_ref(), bytes).await;
                (written, answer)
            }
            Decision::Delete(answer) => (remove(js, store, key, entry.as_ref()).await, answer),
        };
        match written {
            Ok(_) => return Ok(answer),
            // another writer came first: read again
            Err((true, _)) => continue,
            Err((false, e)) => return Err(e),
        }
    }
    Err(format!("{attempts} attempts lost to other writers"))
}

/// Deletes `key` if it is still `entry` (nothing to do when there is none: answers 0), then
/// removes the delete marker too, so that keys that come and go (members, instances) leave
/// nothing behind. Answers the revision of the delete; errors as [`write_if_unchanged`]'s.
pub(super) async fn remove(
    js: &Context,
    store: &Store,
    key: &str,
    entry: Option<&Entry>,
) -> Result<u64, (bool, String)> {
    let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
        return Ok(0);
    };
    // the delete `Store::delete_expect_revision` sends, with its acknowledgement kept
    let subject = format!("{}{key}", store.prefix);
    let mut headers = HeaderMap::new();
    headers.insert("KV-Operation", "DEL");
    headers.insert(
        NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        entry.revision.to_string().as_str(),
    );
    let failed = |e: PublishError| {
        (
            e.kind() == PublishErrorKind::WrongLastSequence,
            e.to_string(),
        )
    };
    let ack = js
        .publish_with_headers(subject.clone(), headers, Default::default())
        .await
        .map_err(failed)?
        .await
        .map_err(failed)?;
    // the marker only: a value written since is above the bound and stays
    let purged = store
        .stream
        .purge()
        .filter(subject)
        .sequence(ack.sequence + 1)
        .await;
    if let Err(error) = purged {
        tracing::debug!(%error, key, "a KV delete marker was left");
    }
    Ok(ack.sequence)
}

/// The current entries (key without the bucket's prefix, value) of every key that starts with
/// `prefix` (which ends with `.`), read through one short-lived pull consumer that is deleted
/// after the read: O(keys) messages and three requests. Keys written during the read are read
/// again, until none is pending: under writes that never stop, it follows them. Errors are
/// written for a log line.
pub(super) async fn scan(store: &Store, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    scan_up_to(store, prefix, u64::MAX)
        .await
        .map(|(entries, _)| entries)
}

/// Like [`scan`], but ends at the first message written after the read began (one request more,
/// for the stream's last sequence): answers the entries and whether they are complete (`false`:
/// some key was written meanwhile, and its last value may be missing). A reader that runs again
/// when a version moves (the presence members) does not chase a stream that is being written.
pub(super) async fn snapshot(
    store: &Store,
    prefix: &str,
) -> Result<(Vec<(String, Vec<u8>)>, bool), String> {
    let info = store.stream.get_info().await.map_err(|e| e.to_string())?;
    scan_up_to(store, prefix, info.state.last_sequence).await
}

/// [`scan`], ending at the first message after stream sequence `last`.
async fn scan_up_to(
    store: &Store,
    prefix: &str,
    last: u64,
) -> Result<(Vec<(String, Vec<u8>)>, bool), String> {
    let consumer: PullConsumer = store
        .stream
        .create_consumer(pull::Config {
            filter_subject: format!("{}{prefix}>", store.prefix),
            // every message, not the last per subject: the bucket keeps one value per key, so
            // this is the same set, and it is read in stream order, so a key rewritten during
            // the read comes at its new sequence. A LastPerSubject consumer created while keys
            // of its filter are rewritten can miss one (nats-server 2.9: the presence reaper's
            // scan missed a member rewritten then, and left a dead instance's share for good)
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            num_replicas: 1,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let info = consumer.cached_info();
    let (name, pending) = (info.name.clone(), info.num_pending);
    let read = read_all(&consumer, &store.prefix, pending, last).await;
    if let Err(error) = store.stream.delete_consumer(&name).await {
        tracing::debug!(%error, "a scan's consumer is left to expire");
    }
    read
}

/// How many empty batches in a row a read takes while its consumer still counts messages
/// pending, before it fails (rather than answer fewer keys than there are).
const EMPTY_ROUNDS: usize = 3;

/// The messages of a fresh `consumer`, `pending` of them at least, up to the one that says none
/// is pending or the first after stream sequence `last` (then answers `false`: incomplete);
/// deleted keys skipped.
async fn read_all(
    consumer: &PullConsumer,
    prefix: &str,
    mut pending: u64,
    last: u64,
) -> Result<(Vec<(String, Vec<u8>)>, bool), String> {
    // a key written again during the read comes again: the last message of each key wins
    let mut out = BTreeMap::new();
    let mut empty = 0;
    while pending > 0 {
        let mut batch = consumer
            .batch()
            .max_messages(pending.min(1000) as usize)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| e.to_string())?;
            got += 1;
            let info = message.info().map_err(|e| e.to_string())?;
            if info.stream_sequence > last {
                return Ok((out.into_iter().collect(), false));
            }
            pending = info.pending;
            let deleted = message
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| op.as_str() != "PUT");
            if let Some(key) = message.subject.strip_prefix(prefix) {
                match deleted {
                    true => out.remove(key),
                    false => out.insert(key.to_owned(), message.payload.to_vec()),
                };
            }
        }
        if got > 0 {
            empty = 0;
        } else {
            // an empty batch: what was counted pending is gone (delete markers purged after
            // the count), or the server did not deliver it in time; the consumer's own count
            // says which, so that a slow server never passes for the end of the keys
            let left = consumer
                .clone()
                .info()
                .await
                .map_err(|e| e.to_string())?
                .num_pending;
            if left == 0 {
                break;
            }
            empty += 1;
            if empty == EMPTY_ROUNDS {
                return Err(format!("{left} entries pending, none delivered"));
            }
            pending = left;
        }
    }
    Ok((out.into_iter().collect(), true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_become_kv_keys() {
        assert_eq!(kv_key("user-7"), "kuser-7");
        assert_eq!(kv_key(""), "k");
        assert_eq!(kv_key("a.b c=é"), "ka=2Eb=20c=3D=C3=A9");
    }

    proptest! {
        #[test]
        fn every_key_is_one_valid_kv_key_and_no_two_share_one(a in ".{0,40}", b in ".{0,40}") {
            let (ka, kb) = (kv_key(&a), kv_key(&b));
            prop_assert!(ka.bytes().all(|c| c.is_ascii_alphanumeric() || b"_-/=".contains(&c)));
            prop_assert!(!ka.starts_with('.') && !ka.ends_with('.'));
            prop_assert_eq!(ka == kb, a == b);
        }
    }
}
