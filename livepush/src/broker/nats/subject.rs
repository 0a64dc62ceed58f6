//! Names on the NATS server: the stream(s), the subjects events are stored under and the
//! subjects a stream republishes them to for live delivery, one of each per topic.
//!
//! With one partition (the default) there is one stream, `<STREAM>`, storing `<prefix>.t.>` and
//! republishing to `<prefix>.live.>`. With `?partitions=N` (N > 1) partition `p` (the topic's
//! [`partition_of`](crate::broker::partitioned::partition_of), the Redis Cluster engine's hash)
//! is its own stream `<STREAM>_p<p>`, storing `<prefix>.p<p>.t.>` and republishing to
//! `<prefix>.p<p>.live.>`: its own sequence and its own Raft group.
//!
//! A topic may hold `.` (NATS's token separator) and `*` (a wildcard), which a subject token
//! cannot; they are written `%2E` and `%2A`. `%` is not a topic character, so the mapping is
//! one to one and two topics never share a subject.

use crate::broker::partitioned::{partition_of, MAX_PARTITIONS};
use crate::topic::Topic;

/// The names one broker uses, derived from its prefix (`?prefix=`, default `livepush`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Names {
    prefix: String,
    /// The JetStream stream (`?stream=`, default: the prefix in upper case, `_` for anything
    /// but letters and digits); with partitions, the stem of each partition's stream name. The
    /// KV buckets are named after it.
    pub(super) stream: String,
    /// `?partitions=` (1: one stream, today's names).
    partitions: u32,
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
            partitions: 1,
        })
    }

    /// These names with `count` partitions (1 to [`MAX_PARTITIONS`]).
    pub(super) fn partitioned(self, count: u32) -> Result<Names, String> {
        if !(1..=MAX_PARTITIONS).contains(&count) {
            return Err(format!("partitions must be 1 to {MAX_PARTITIONS}"));
        }
        Ok(Names {
            partitions: count,
            ..self
        })
    }

    /// The number of partitions (streams).
    pub(super) fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partition (stream) of `topic`.
    pub(super) fn partition_of(&self, topic: &Topic) -> u32 {
        partition_of(topic, self.partitions)
    }

    /// The stream of partition `p`.
    pub(super) fn stream_of(&self, p: u32) -> String {
        match self.partitions {
            1 => self.stream.clone(),
            _ => format!("{}_p{p}", self.stream),
        }
    }

    /// The first tokens of partition `p`'s subjects.
    fn base(&self, p: u32) -> String {
        match self.partitions {
            1 => self.prefix.clone(),
            _ => format!("{}.p{p}", self.prefix),
        }
    }

    /// The subjects partition `p`'s stream stores: every topic's of the partition.
    pub(super) fn stored_all(&self, p: u32) -> String {
        format!("{}.t.>", self.base(p))
    }

    /// Where partition `p`'s stream republishes each stored event, with its sequence in the
    /// headers.
    pub(super) fn live_all(&self, p: u32) -> String {
        format!("{}.live.>", self.base(p))
    }

    /// The subject a topic's events are published to (and stored under).
    pub(super) fn stored(&self, topic: &Topic) -> String {
        let base = self.base(self.partition_of(topic));
        format!("{base}.t.{}", token(topic))
    }

    /// The subject a topic's events are republished to, which a process with local
    /// subscribers of the topic subscribes.
    pub(super) fn live(&self, topic: &Topic) -> String {
        let base = self.base(self.partition_of(topic));
        format!("{base}.live.{}", token(topic))
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
        assert_eq!(names.stored_all(0), "app-1.t.>");
        assert_eq!(names.stream_of(0), "APP_1");
        assert!(Names::new("a.b", None).is_err());
        assert!(Names::new("a", Some("S.1")).is_err());
    }

    #[test]
    fn each_partition_has_its_stream_and_subjects() {
        let names = Names::new("lp", None).unwrap().partitioned(4).unwrap();
        let t = Topic::new("orders:42").unwrap();
        let p = names.partition_of(&t);
        assert_eq!(p, partition_of(&t, 4));
        assert_eq!(names.stream_of(p), format!("LP_p{p}"));
        assert_eq!(names.stored(&t), format!("lp.p{p}.t.orders:42"));
        assert_eq!(names.live(&t), format!("lp.p{p}.live.orders:42"));
        assert_eq!(names.stored_all(3), "lp.p3.t.>");
        assert_eq!(names.live_all(3), "lp.p3.live.>");
        assert!(Names::new("lp", None).unwrap().partitioned(0).is_err());
        assert!(Names::new("lp", None).unwrap().partitioned(1297).is_err());
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
