//! The KV buckets beside the stream (connection slots, state topics' current values): found, or
//! created as `nats kv add` makes them, and the one mapping of livepush's keys to KV keys.

use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{CreateErrorKind, Entry, Store, UpdateErrorKind};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::Context;

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
/// compare-and-set both buckets' read-modify-write loops use. `Err((true, _))`: another writer
/// came first, read again; `Err((false, why))`: the write failed.
pub(super) async fn write_if_unchanged(
    store: &Store,
    key: &str,
    entry: Option<&Entry>,
    value: Vec<u8>,
) -> Result<(), (bool, String)> {
    match entry {
        Some(entry) => store
            .update(key, value.into(), entry.revision)
            .await
            .map(drop)
            .map_err(|e| {
                (
                    e.kind() == UpdateErrorKind::WrongLastRevision,
                    e.to_string(),
                )
            }),
        None => store
            .create(key, value.into())
            .await
            .map(drop)
            .map_err(|e| (e.kind() == CreateErrorKind::AlreadyExists, e.to_string())),
    }
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
