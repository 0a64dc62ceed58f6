//! The JetStream stream of each partition (one unless `?partitions=N`): created if missing,
//! checked if present. A stream that differs in
//! what livepush relies on is an error naming each difference, never reconfigured: it is the
//! operator's.

use std::time::Duration;

use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};
use async_nats::jetstream::stream::{
    Config, DiscardPolicy, Republish, RetentionPolicy, StorageType,
};
use async_nats::jetstream::Context;
use async_nats::jetstream::ErrorCode;

use super::subject::Names;
use crate::broker::{BrokerError, Cause, DEDUPE_WINDOW};

/// The stream livepush needs for partition `p`.
pub(super) fn wanted(
    names: &Names,
    p: u32,
    storage: StorageType,
    replicas: usize,
    replay: usize,
    ttl: Duration,
) -> Config {
    Config {
        name: names.stream_of(p),
        subjects: vec![names.stored_all(p)],
        // 0 would mean "no limit" to JetStream; with replay off one event per topic is kept
        // (history is not read then)
        max_messages_per_subject: replay.max(1) as i64,
        max_age: ttl,
        storage,
        num_replicas: replicas,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        // `publish_once`: JetStream drops a repeated `Nats-Msg-Id` within this window, which it
        // refuses longer than `max_age` (a stream with a shorter replay TTL was never created)
        duplicate_window: dedupe_window(ttl),
        // history reads use direct gets
        allow_direct: true,
        // live delivery: each stored event goes out again with its sequence in the headers
        republish: Some(Republish {
            source: names.stored_all(p),
            destination: names.live_all(p),
            headers_only: false,
        }),
        ..Default::default()
    }
}

/// [`DEDUPE_WINDOW`], or the replay TTL where that is shorter: JetStream refuses a duplicate
/// window longer than the stream's `max_age` (0: no age limit). A repeat of a `publish_once`
/// after the TTL is not dropped then, but the first copy has left the history by that time too.
fn dedupe_window(ttl: Duration) -> Duration {
    match ttl.is_zero() {
        true => DEDUPE_WINDOW,
        false => DEDUPE_WINDOW.min(ttl),
    }
}

/// The differences of `found` from `want` in what livepush relies on.
pub(super) fn differences(want: &Config, found: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, want: String, found: String| {
        if want != found {
            out.push(format!("{what} is {found}, livepush needs {want}"));
        }
    };
    check(
        "subjects",
        format!("{:?}", want.subjects),
        format!("{:?}", found.subjects),
    );
    check(
        "storage",
        format!("{:?}", want.storage),
        format!("{:?}", found.storage),
    );
    check(
        "replicas",
        want.num_replicas.to_string(),
        found.num_replicas.max(1).to_string(),
    );
    check(
        "max_msgs_per_subject (LIVEPUSH_REPLAY)",
        want.max_messages_per_subject.to_string(),
        found.max_messages_per_subject.to_string(),
    );
    check(
        "max_age (LIVEPUSH_REPLAY_TTL_SECS)",
        format!("{:?}", want.max_age),
        format!("{:?}", found.max_age),
    );
    check(
        "retention",
        format!("{:?}", want.retention),
        format!("{:?}", found.retention),
    );
    check(
        "discard",
        format!("{:?}", want.discard),
        format!("{:?}", found.discard),
    );
    check(
        "duplicate_window",
        format!("{:?}", want.duplicate_window),
        format!("{:?}", found.duplicate_window),
    );
    check(
        "allow_direct",
        want.allow_direct.to_string(),
        found.allow_direct.to_string(),
    );
    check(
        "republish",
        format!("{:?}", want.republish),
        format!("{:?}", found.republish),
    );
    out
}

/// Creates the stream if it is missing, else checks it. Returns its creation time (in Unix
/// nanoseconds), which changes when the stream was recreated (a memory store restarted, an
/// operator deleted it): every sequence before is then meaningless.
pub(super) async fn ensure(js: &Context, want: &Config) -> Result<i128, BrokerError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        BrokerError::Unavailable(Cause::new(format!("NATS JetStream: {e}")))
    };
    match js.get_stream(&want.name).await {
        Ok(mut stream) => {
            let info = stream.info().await.map_err(|e| unavailable(&e))?;
            let differences = differences(want, &info.config);
            if !differences.is_empty() {
                return Err(BrokerError::Protocol(Cause::new(format!(
                    "the NATS stream {:?} exists with another configuration; livepush does not \
                     change an existing stream: delete it or change it yourself ({})",
                    want.name,
                    differences.join("; ")
                ))));
            }
            Ok(info.created.unix_timestamp_nanos())
        }
        Err(e) if is_not_found(&e) => match js.create_stream(want.clone()).await {
            Ok(stream) => Ok(stream.cached_info().created.unix_timestamp_nanos()),
            Err(e) => Err(unavailable(&e)),
        },
        Err(e) => Err(unavailable(&e)),
    }
}

fn is_not_found(e: &GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_that_differs_is_named_difference_by_difference() {
        let names = Names::new("lp", None).unwrap();
        let want = wanted(
            &names,
            0,
            StorageType::File,
            1,
            100,
            Duration::from_secs(3600),
        );
        assert!(differences(&want, &want.clone()).is_empty());
        let mut found = want.clone();
        found.max_messages_per_subject = 5;
        found.storage = StorageType::Memory;
        let d = differences(&want, &found);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("storage"), "{d:?}");
        assert!(d[1].contains("LIVEPUSH_REPLAY"), "{d:?}");
    }
}
