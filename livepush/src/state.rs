//! State topics: a publication kept by the broker as the current value of its topic (or of one
//! key inside its topic), which every new subscriber gets first ([`Retain`]).
//!
//! The guide is `docs/state.md`.

use std::fmt;
use std::time::Duration;

/// The longest key of a per-key retained value, in bytes.
pub(crate) const MAX_RETAIN_KEY_BYTES: usize = 256;

/// The longest time-to-live of a retained value (a year): longer is "forever", say so with no
/// TTL.
pub(crate) const MAX_RETAIN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Marks a publication as *state*: the broker keeps it as the current value of its topic (or of
/// `key` inside its topic) until a newer one replaces it, or until its TTL runs out.
///
/// Every new subscriber of the topic, and every resuming one whose history cannot cover what it
/// missed (the `livepush.reset` path), receives the current values first, each with its own id,
/// before any live event. Ids keep their order: a client never sees an older value after a
/// newer one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use livepush::{Hub, Retain};
///
/// let hub = Hub::builder().build().unwrap();
/// // the topic's one current value: a dashboard tile, a room's topic line
/// hub.publish_retained("room:lobby", "room_topic", &serde_json::json!({"text": "hi"}), Retain::latest())
///     .await
///     .unwrap();
/// // one current value per key inside the topic, forgotten after a minute without update
/// let progress = Retain::key("job-17").ttl(Duration::from_secs(60));
/// hub.publish_retained("jobs", "job_progress", &serde_json::json!({"done": 40}), progress)
///     .await
///     .unwrap();
/// let topic = livepush::Topic::new("jobs").unwrap();
/// assert_eq!(hub.retained(&topic).await.unwrap().len(), 1);
/// # }
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Retain {
    key: String,
    ttl: Option<Duration>,
}

impl Retain {
    /// The topic's one current value: each retained publication replaces the previous one.
    pub fn latest() -> Self {
        Retain::default()
    }

    /// One current value per `key` inside the topic (a user id, a job id, a tile name): a
    /// publication replaces only the value of its own key. At most 256 bytes, no control
    /// characters (checked when published).
    pub fn key(key: impl Into<String>) -> Self {
        Retain {
            key: key.into(),
            ttl: None,
        }
    }

    /// Forgets the value `ttl` after it was published, unless a newer one replaced it first
    /// (default: kept until replaced). At least a millisecond, at most 365 days (checked
    /// when published).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The key inside the topic (`""` for the topic's one value).
    pub fn key_str(&self) -> &str {
        &self.key
    }

    /// The time-to-live, if any.
    pub fn time_to_live(&self) -> Option<Duration> {
        self.ttl
    }

    /// The retain of a macro attribute: `key` ("" for the topic's one value), kept `ttl`
    /// seconds when given.
    pub(crate) fn of_attribute(key: String, ttl_secs: Option<u64>) -> Self {
        Retain {
            key,
            ttl: ttl_secs.map(Duration::from_secs),
        }
    }

    /// Checks the key and the TTL.
    pub(crate) fn validate(&self) -> Result<(), InvalidRetain> {
        if self.key.len() > MAX_RETAIN_KEY_BYTES || self.key.chars().any(char::is_control) {
            return Err(InvalidRetain(format!(
                "a retain key is at most {MAX_RETAIN_KEY_BYTES} bytes without control characters"
            )));
        }
        if let Some(ttl) = self.ttl {
            if ttl < Duration::from_millis(1) || ttl > MAX_RETAIN_TTL {
                return Err(InvalidRetain(
                    "a retain TTL is between 1 ms and 365 days; leave it out to keep the value until it is replaced"
                        .to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// The TTL in whole milliseconds (0: none), as the Redis publish script takes it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn ttl_millis(&self) -> u64 {
        self.ttl
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1))
            .unwrap_or(0)
    }
}

impl fmt::Debug for Retain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retain")
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A [`Retain`] whose key or TTL is out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retain: {0}")]
pub struct InvalidRetain(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ttls_are_bounded() {
        assert!(Retain::latest().validate().is_ok());
        assert!(Retain::key("user:7")
            .ttl(Duration::from_secs(5))
            .validate()
            .is_ok());
        assert!(Retain::key("a\nb").validate().is_err());
        assert!(Retain::key("k".repeat(MAX_RETAIN_KEY_BYTES + 1))
            .validate()
            .is_err());
        assert!(Retain::latest().ttl(Duration::ZERO).validate().is_err());
        assert!(Retain::latest()
            .ttl(MAX_RETAIN_TTL + Duration::from_secs(1))
            .validate()
            .is_err());
        assert_eq!(
            Retain::latest()
                .ttl(Duration::from_micros(1500))
                .ttl_millis(),
            1
        );
        assert_eq!(Retain::latest().ttl_millis(), 0);
    }
}
