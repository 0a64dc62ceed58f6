//! The vocabulary of events: ids and names.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The id of a published event, sent as the SSE `id:` field.
///
/// Ids come from one sequence per hub (in memory) or per key prefix (Redis), so they order events
/// across every topic of a subscription: a client that reconnects with `Last-Event-ID: 41` is
/// owed exactly the retained events with ids above 41.
///
/// ```
/// use livepush::EventId;
///
/// let id: EventId = "42".parse().unwrap();
/// assert_eq!(id.get(), 42);
/// assert!("-1".parse::<EventId>().is_err());
/// assert!("abc".parse::<EventId>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct EventId(u64);

impl EventId {
    /// Wraps a raw sequence number.
    pub const fn new(seq: u64) -> Self {
        EventId(seq)
    }

    /// The raw sequence number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// What a successful publish did: published with an id, or accepted into the retry buffer.
///
/// Both are successes: a handler answers as usual either way.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use livepush::{Hub, Published};
///
/// let hub = Hub::builder().build().unwrap();
/// match hub.publish("comments", "comment_created", &"hi").await {
///     Ok(Published::Now(id)) => println!("published as {id}"),
///     Ok(Published::Buffered) => println!("published once the broker answers"),
///     Ok(_) => {}
///     Err(error) => eprintln!("refused: {error}"),
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Published {
    /// The broker took the event and gave it this id.
    Now(EventId),
    /// The broker could not take the event (down, no answer in time, out of memory…): it waits
    /// in the retry buffer and is published, in order, once the broker answers. If it has to be
    /// given up (the buffer is full or it waited too long), the topic's subscribers get
    /// `livepush.reset`, so nothing is lost silently. It has no id yet.
    Buffered,
}

impl Published {
    /// The event's id, if it is published already.
    pub fn id(&self) -> Option<EventId> {
        match self {
            Published::Now(id) => Some(*id),
            Published::Buffered => None,
        }
    }

    /// Whether the event waits in the retry buffer.
    pub fn is_buffered(&self) -> bool {
        matches!(self, Published::Buffered)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A `Last-Event-ID` that is not an id livepush issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Last-Event-ID must be a decimal event id of at most 20 digits, as sent in `id:` fields")]
pub struct InvalidEventId;

impl FromStr for EventId {
    type Err = InvalidEventId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidEventId);
        }
        s.parse().map(EventId).map_err(|_| InvalidEventId)
    }
}

/// The longest event or category name accepted, in bytes.
pub(crate) const MAX_NAME_LEN: usize = livepush_core::name::MAX_LEN;

/// An event or category name that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {name:?}: use 1 to 128 ASCII letters, digits and _ . : / -")]
pub struct InvalidName {
    /// The refused name.
    pub name: String,
}

/// Checks an event or category name: 1 to [`MAX_NAME_LEN`] bytes of `[A-Za-z0-9_.:/-]`.
///
/// The macros run the same rule at compile time; this is the check of the direct publish API
/// (category names too, which follow the event-name rule).
pub(crate) fn validate_name(name: &str) -> Result<(), InvalidName> {
    if is_valid_name(name.as_bytes()) {
        Ok(())
    } else {
        Err(InvalidName {
            name: name.chars().take(MAX_NAME_LEN + 1).collect(),
        })
    }
}

/// An SSE event name, validated like a [`Topic`](crate::Topic): 1 to [`EventName::MAX_LEN`] bytes of
/// `[A-Za-z0-9_.:/-]`, so never a CR, LF or NUL on the wire.
///
/// Every frame livepush writes takes its name as an `EventName`, whether it came from the
/// macros, [`Hub::publish`](crate::Hub::publish) or a payload read back from a broker.
///
/// ```
/// use livepush::EventName;
///
/// let name = EventName::new("comment_created").unwrap();
/// assert_eq!(name.as_str(), "comment_created");
/// assert!(EventName::new("a\r\nevent: forged").is_err());
/// const RESET: EventName = EventName::from_static("livepush.reset");
/// assert_eq!(RESET, "livepush.reset");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventName(std::borrow::Cow<'static, str>);

impl EventName {
    /// The longest event (or category) name accepted, in bytes.
    pub const MAX_LEN: usize = MAX_NAME_LEN;

    /// Validates `name`: 1 to [`EventName::MAX_LEN`] bytes of `[A-Za-z0-9_.:/-]`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = name.into();
        validate_name(&name)?;
        Ok(EventName(std::borrow::Cow::Owned(name)))
    }

    /// A name known when compiling; panics (at compile time in a `const`) when it is invalid.
    pub const fn from_static(name: &'static str) -> Self {
        assert!(is_valid_name(name.as_bytes()), "invalid SSE event name");
        EventName(std::borrow::Cow::Borrowed(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::ops::Deref for EventName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for EventName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for EventName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EventName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl FromStr for EventName {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventName::new(s)
    }
}

impl TryFrom<&str> for EventName {
    type Error = InvalidName;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        EventName::new(s)
    }
}

impl TryFrom<String> for EventName {
    type Error = InvalidName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        EventName::new(s)
    }
}

impl Serialize for EventName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The Redis broker sends the name as one argument of its publish script.
#[cfg(feature = "redis")]
impl redis::ToRedisArgs for EventName {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        out.write_arg(self.as_str().as_bytes())
    }
}

#[cfg(feature = "redis")]
impl redis::ToSingleRedisArg for EventName {}

/// The rule is livepush-core's, which the macros apply at compile time too.
const fn is_valid_name(name: &[u8]) -> bool {
    livepush_core::name::is_valid(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_refuses_everything_else() {
        assert_eq!("0".parse::<EventId>(), Ok(EventId::new(0)));
        assert_eq!(" 17 ".parse::<EventId>(), Ok(EventId::new(17)));
        for bad in [
            "",
            "-1",
            "1.5",
            "1e3",
            "abc",
            "99999999999999999999999",
            "+1",
            "18446744073709551616",
        ] {
            assert_eq!(bad.parse::<EventId>(), Err(InvalidEventId), "{bad:?}");
        }
        assert_eq!(
            "18446744073709551615".parse::<EventId>(),
            Ok(EventId::new(u64::MAX))
        );
    }

    mod ids {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn an_id_prints_and_parses_back_to_itself(n in any::<u64>()) {
                let id = EventId::new(n);
                prop_assert_eq!(id.to_string().parse::<EventId>(), Ok(id));
                // As a header value: surrounding whitespace is not part of it.
                prop_assert_eq!(format!(" {id}\t").parse::<EventId>(), Ok(id));
            }

            #[test]
            fn parsing_keeps_the_order_of_the_ids(a in any::<u64>(), b in any::<u64>()) {
                let (x, y): (EventId, EventId) =
                    (a.to_string().parse().unwrap(), b.to_string().parse().unwrap());
                prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            }

            #[test]
            fn only_decimal_ids_that_fit_parse(text in "[ \t]?[0-9+a-]{0,22}[ \t]?") {
                let trimmed = text.trim();
                let fits = !trimmed.is_empty()
                    && trimmed.len() <= 20
                    && trimmed.bytes().all(|b| b.is_ascii_digit())
                    && trimmed.parse::<u64>().is_ok();
                match text.parse::<EventId>() {
                    Ok(id) => {
                        prop_assert!(fits, "{:?} parsed", text);
                        prop_assert_eq!(Some(id.get()), trimmed.parse::<u64>().ok());
                    }
                    Err(InvalidEventId) => prop_assert!(!fits, "{:?} refused", text),
                }
            }
        }
    }

    #[test]
    fn validates_names() {
        assert!(validate_name("comment_created").is_ok());
        assert!(validate_name("sync.completed").is_ok());
        for bad in ["", "a b", "a\nb", "a\rb", "é", &"a".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
