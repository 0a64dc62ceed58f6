//! Names on the NATS server: the stream, the subjects events are stored under and the subjects
//! the stream republishes them to for live delivery, one of each per topic.
//!
//! A topic may hold `.` (NATS's token separator) and `*` (a wildcard), which a subject token
//! cannot; they are written `%2E` and `%2A`. `%` is not a topic character, so the mapping is
//! one to one and two topics never share a subject.

use crate::topic::Topic;

/// The names one broker uses, derived from its prefix (`?prefix=`, default `livepush`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Names {
    prefix: String,
    /// The JetStream stream (`?stream=`, default: the prefix in upper case, `_` for anything
    /// but letters and digits).
    pub(super) stream: String,
}

impl Names {
    pub(super) fn new(prefix: &str, stream: Option<&str>) -> Result<Names, String> {
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !token_ok(prefix) {
            return Err(format!(
                "NATS prefix {prefix:?}: use ASCII letters, digits, _ and - only"
            ));
        }
        let stream = match stream {
            Some(s) if token_ok(s) => s.to_owned(),
            Some(s) => {
                return Err(format!(
                    "NATS stream name {s:?}: use ASCII letters, digits, _ and - only"
                ))
            }
            None => prefix.to_ascii_uppercase().replace('-', "_"),
        };
        Ok(Names {
            prefix: prefix.to_owned(),
            stream,
        })
    }

    /// The subjects the stream stores: every topic's.
    pub(super) fn stored_all(&self) -> String {
        format!("{}.t.>", self.prefix)
    }

    /// Where the stream republishes each stored event, with its sequence in the headers.
    pub(super) fn live_all(&self) -> String {
        format!("{}.live.>", self.prefix)
    }

    /// The subject a topic's events are published to (and stored under).
    pub(super) fn stored(&self, topic: &Topic) -> String {
        format!("{}.t.{}", self.prefix, token(topic))
    }

    /// The subject a topic's events are republished to, which a process with local
    /// subscribers of the topic subscribes.
    pub(super) fn live(&self, topic: &Topic) -> String {
        format!("{}.live.{}", self.prefix, token(topic))
    }
}

/// `topic` as one subject token.
fn token(topic: &Topic) -> String {
    let mut out = String::with_capacity(topic.as_str().len());
    for c in topic.as_str().chars() {
        match c {
            '.' => out.push_str("%2E"),
            '*' => out.push_str("%2A"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_follow_the_prefix() {
        let names = Names::new("app-1", None).unwrap();
        assert_eq!(names.stream, "APP_1");
        let t = Topic::new("orders.42*").unwrap();
        assert_eq!(names.stored(&t), "app-1.t.orders%2E42%2A");
        assert_eq!(names.live(&t), "app-1.live.orders%2E42%2A");
        assert!(Names::new("a.b", None).is_err());
        assert!(Names::new("a", Some("S.1")).is_err());
    }

    proptest! {
        #[test]
        fn every_topic_is_one_valid_token_and_no_two_share_one(
            a in "[A-Za-z0-9_.:/@#=+~*-]{1,40}",
            b in "[A-Za-z0-9_.:/@#=+~*-]{1,40}",
        ) {
            let (ta, tb) = (Topic::new(&a).unwrap(), Topic::new(&b).unwrap());
            let (ka, kb) = (token(&ta), token(&tb));
            prop_assert!(!ka.contains(['.', '*', '>', ' ']));
            prop_assert_eq!(ka == kb, a == b);
        }
    }
}
