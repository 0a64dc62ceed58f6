//! The AsyncAPI document of crm_comments: its payload schemas come from the published Rust
//! types, and a snapshot catches every change of them (`UPDATE_SNAPSHOTS=1` rewrites it). The
//! official parser validates the documents of every example in `clients/typescript` (npm test).
//!
//! A test binary of its own, not a module of `tests/it`: the snapshot is the document of the
//! whole link-time registry, which must hold crm_comments' handlers and events only.

// The shared helpers of `tests/it`; this binary uses a part of them, the rest is not dead code
// there (hence the allow, on this binary's copy only).
#[path = "it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

#[path = "../examples/common/mod.rs"]
mod common;

#[path = "../examples/crm_comments/app.rs"]
mod app;

use livepush::registry;
use livepush::Hub;
use serde_json::{json, Value};
use support::{get_json, Sqlite, TestServer};

const SNAPSHOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/snapshots/crm_comments.asyncapi.json"
);

#[test]
fn the_document_matches_its_snapshot_so_a_changed_type_shows_in_review() {
    let document = registry::asyncapi();
    let text = serde_json::to_string_pretty(&document).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &text).unwrap();
    }
    let snapshot = std::fs::read_to_string(SNAPSHOT)
        .unwrap_or_else(|e| panic!("{SNAPSHOT}: {e}; run with UPDATE_SNAPSHOTS=1 to write it"));
    assert!(
        snapshot == text,
        "the AsyncAPI document of crm_comments changed: review the diff of {SNAPSHOT} after \
         running this test with UPDATE_SNAPSHOTS=1\nnow:\n{text}"
    );
}

#[test]
fn the_comment_schema_is_the_published_struct() {
    let document = registry::asyncapi();
    let message = &document["components"]["messages"]["comment_created"];
    assert_eq!(
        message["payload"],
        json!({ "$ref": "#/components/schemas/Comment" })
    );
    let comment = &document["components"]["schemas"]["Comment"];
    let mut required: Vec<&str> = comment["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    // `updated_at` is skipped while unset, so it is optional on the wire.
    assert_eq!(required, ["author", "created_at", "id", "text"]);
    assert!(comment["properties"]["updated_at"].is_object());
    assert_eq!(comment["properties"]["id"]["type"], "integer");
}

#[test]
fn one_channel_per_topic_with_every_event_and_the_notices() {
    let document = registry::asyncapi();
    let channel = &document["channels"]["comments"];
    assert_eq!(channel["address"], "comments");
    let mut names: Vec<&String> = channel["messages"].as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "comment_created",
            "comment_deleted",
            "comment_updated",
            "livepush.lagged",
            "livepush.reset"
        ]
    );
    assert_eq!(
        document["operations"]["receive_comments"]["action"],
        "receive"
    );
}

#[tokio::test]
async fn the_served_document_names_the_host_it_was_asked_on() {
    let hub = Hub::builder().build().unwrap();
    let file = Sqlite::create();
    let db = app::Db::open(&file.url).await.unwrap();
    let server = TestServer::start(app::router(&hub, db)).await;
    let document: Value = get_json(&server.url("/events/asyncapi.json")).await;
    let host = server.url("").trim_start_matches("http://").to_owned();
    assert_eq!(document["servers"]["sse"]["host"], host.as_str());
    assert_eq!(document["servers"]["sse"]["pathname"], "/events");
    assert_eq!(
        document["channels"]["comments"]["servers"][0]["$ref"],
        "#/servers/sse"
    );
}
