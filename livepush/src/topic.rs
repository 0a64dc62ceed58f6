//! Topics: validated names that subscribers listen to and publishers publish on.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// The longest topic name accepted, in bytes.
pub(crate) const MAX_TOPIC_LEN: usize = livepush_core::topic::MAX_LEN;

/// A validated topic name, cheap to clone.
///
/// A topic is 1 to [`Topic::MAX_LEN`] bytes of ASCII letters, digits and `_ - . : / @ # = + ~ *`.
/// Anything else — spaces, commas, CR, LF, NUL, non-ASCII — is refused, so a topic can never break
/// an SSE frame, a query string list or a Redis key.
///
/// ```
/// use livepush::Topic;
///
/// let topic = Topic::new("ticket:42").unwrap();
/// assert_eq!(topic.as_str(), "ticket:42");
/// assert!(Topic::new("bad\ntopic").is_err());
/// assert!(Topic::new("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

/// Why a topic or a list of topics was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic is empty.
    #[error("a topic must not be empty")]
    Empty,
    /// The topic is longer than allowed.
    #[error("topic is {len} bytes long; the limit is {max}")]
    TooLong {
        /// The topic's length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The topic holds a character that is not allowed.
    #[error("topic contains {found:?} at byte {at}; allowed are ASCII letters, digits and _ - . : / @ # = + ~ *{}", space_hint(*.found))]
    InvalidChar {
        /// The offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
    /// A subscription named no topic.
    #[error("no topic given: pass ?topic=a,b")]
    NoTopics,
    /// A subscription named more topics than allowed.
    #[error("{count} topics requested; the limit is {max}")]
    TooMany {
        /// How many topics were asked for.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// The advice that follows a refused space: a query string decodes `+` as a space, so a topic
/// with `+` sent unencoded in `?topic=` arrives with a space where the `+` was.
fn space_hint(found: char) -> &'static str {
    if found == ' ' {
        " (a `+` in a query string means a space: percent-encode a `+` of a topic as %2B, as `encodeURIComponent` does)"
    } else {
        ""
    }
}

impl Topic {
    /// The longest topic accepted, in bytes.
    pub const MAX_LEN: usize = MAX_TOPIC_LEN;

    /// Validates `name` and makes it a topic.
    pub fn new(name: impl AsRef<str>) -> Result<Self, TopicError> {
        let name = name.as_ref();
        Self::validate(name)?;
        Ok(Topic(Arc::from(name)))
    }

    /// Checks `name` against the topic rules without allocating.
    pub fn validate(name: &str) -> Result<(), TopicError> {
        // The rule is livepush-core's, which the macros apply to topic templates too.
        livepush_core::topic::check(name).map_err(|problem| match problem {
            livepush_core::topic::Problem::Empty => TopicError::Empty,
            livepush_core::topic::Problem::TooLong { len } => TopicError::TooLong {
                len,
                max: MAX_TOPIC_LEN,
            },
            livepush_core::topic::Problem::InvalidChar { found, at } => {
                TopicError::InvalidChar { found, at }
            }
        })
    }

    /// The topic as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for Topic {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl TryFrom<&str> for Topic {
    type Error = TopicError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Topic::new(value)
    }
}

impl TryFrom<String> for Topic {
    type Error = TopicError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Topic::new(value)
    }
}

/// The topic that [`Topics::and_broadcast`] adds: events every client should see.
pub(crate) const BROADCAST_TOPIC: &str = "broadcast";

/// The topics of one subscription: what a `#[subscribe_to_events]` handler returns.
///
/// Topic names are checked when the subscription starts: an invalid one answers 400 with a JSON
/// error, so handlers can build topics from strings without validating them first.
///
/// ```
/// use livepush::Topics;
///
/// // the user + broadcast pattern in one line
/// let topics = Topics::one("user:7").and_broadcast();
/// assert_eq!(topics.names(), ["user:7", "broadcast"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topics(Vec<String>);

impl Topics {
    /// The topic every client may share: [`Topics::and_broadcast`] adds it.
    pub const BROADCAST: &str = BROADCAST_TOPIC;

    /// No topics yet.
    pub fn new() -> Self {
        Topics(Vec::new())
    }

    /// One topic.
    pub fn one(topic: impl Into<String>) -> Self {
        Topics(vec![topic.into()])
    }

    /// Adds a topic (duplicates are ignored).
    pub fn and(mut self, topic: impl Into<String>) -> Self {
        self.push(topic);
        self
    }

    /// Adds the shared [`Topics::BROADCAST`] next to the topics already named.
    pub fn and_broadcast(self) -> Self {
        self.and(BROADCAST_TOPIC)
    }

    /// Adds a topic in place (duplicates are ignored).
    pub fn push(&mut self, topic: impl Into<String>) {
        let topic = topic.into();
        if !self.0.contains(&topic) {
            self.0.push(topic);
        }
    }

    /// Parses a comma-separated list such as the `?topic=a,b` query value. Empty items are skipped.
    pub fn parse_list(list: &str) -> Self {
        split_list(list).fold(Topics::new(), |acc, t| acc.and(t))
    }

    /// The topic names as given.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// Whether no topic is named.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Validates every name and the count against `max`.
    pub fn validate(&self, max: usize) -> Result<Vec<Topic>, TopicError> {
        if self.0.is_empty() {
            return Err(TopicError::NoTopics);
        }
        if self.0.len() > max {
            return Err(TopicError::TooMany {
                count: self.0.len(),
                max,
            });
        }
        self.0.iter().map(Topic::new).collect()
    }
}

impl<S: Into<String>> FromIterator<S> for Topics {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        iter.into_iter().fold(Topics::new(), |acc, t| acc.and(t))
    }
}

impl From<&str> for Topics {
    fn from(value: &str) -> Self {
        Topics::one(value)
    }
}

impl From<String> for Topics {
    fn from(value: String) -> Self {
        Topics::one(value)
    }
}

/// The items of a comma-separated query value (`a, b,,c` → `a`, `b`, `c`): how `?topic=` and
/// `?category=` lists are read.
pub(crate) fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_topic_shapes() {
        for ok in [
            "comments",
            "ticket:42",
            "user:7f3a-b",
            "a.b/c@d#e=f+g~h*",
            "x",
        ] {
            assert!(Topic::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_frame_breaking_and_list_breaking_characters() {
        for bad in ["a b", "a\nb", "a\rb", "a\0b", "a,b", "é", "a\"b", "a%0A"] {
            assert!(
                matches!(Topic::new(bad), Err(TopicError::InvalidChar { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_refused_space_says_to_percent_encode_a_plus() {
        let space = Topic::new("a b").unwrap_err().to_string();
        assert!(
            space.contains("percent-encode a `+` of a topic as %2B"),
            "{space}"
        );
        let newline = Topic::new("a\nb").unwrap_err().to_string();
        assert!(!newline.contains("%2B"), "{newline}");
    }

    #[test]
    fn refuses_empty_and_overlong_topics() {
        assert_eq!(Topic::new(""), Err(TopicError::Empty));
        let long = "a".repeat(MAX_TOPIC_LEN + 1);
        assert!(matches!(Topic::new(&long), Err(TopicError::TooLong { .. })));
        assert!(Topic::new("a".repeat(MAX_TOPIC_LEN)).is_ok());
    }

    #[test]
    fn parses_comma_lists_and_dedups() {
        let t = Topics::parse_list("a, b,,a,c");
        assert_eq!(t.names(), ["a", "b", "c"]);
        assert!(Topics::parse_list(",,").is_empty());
    }

    #[test]
    fn validates_topic_count() {
        let t = Topics::parse_list("a,b,c");
        assert!(matches!(
            t.validate(2),
            Err(TopicError::TooMany { count: 3, max: 2 })
        ));
        assert_eq!(Topics::new().validate(2), Err(TopicError::NoTopics));
        assert_eq!(t.validate(3).unwrap().len(), 3);
    }
}
