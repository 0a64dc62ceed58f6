//! The recorder and the client against a hub and a router of this crate (the macros, `emit`
//! and the outbox relay are proven in `tests/it/testing.rs`, which can use the macros).

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures_util::FutureExt;
use serde_json::{json, Value};

use super::*;
use crate::broker::{Broker, MemoryBroker, Publication};
use crate::hub::Hub;
use crate::routes::RouterExt;
use crate::subscribe::SubscribeContext;

async fn events(context: SubscribeContext) -> Response {
    context.from_query().await
}

fn app(hub: &Hub) -> Client {
    Client::new(Router::new().route("/events", get(events)).livepush(hub))
}

/// The panic message of `f`.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = std::panic::catch_unwind(AssertUnwindSafe(f)).expect_err("it should panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[tokio::test]
async fn the_recorder_sees_what_the_hub_publishes_with_its_id() {
    let (hub, published) = recorded(Hub::builder());
    published.assert_nothing_published();
    let id = hub
        .publish("user:7", "renamed", &json!({"name": "Ada"}))
        .await
        .unwrap()
        .id()
        .expect("published now, not buffered");
    let found = assert_published!(published, topic = "user:7", event = "renamed");
    assert_eq!(found.id, id);
    assert_eq!(found.json::<Value>(), json!({"name": "Ada"}));
    assert_eq!(published.take().len(), 1);
    published.assert_nothing_published();
}

#[tokio::test]
async fn a_publication_deduplicated_by_key_is_recorded_once() {
    let (broker, published) = RecordingBroker::new(MemoryBroker::new(0, Duration::ZERO));
    let publication = Publication {
        trace: crate::trace::Trace::NONE,
        topic: crate::topic::Topic::new("t").unwrap(),
        event: crate::event::EventName::from_static("e"),
        category: None,
        data: bytes::Bytes::from_static(b"{}"),
        retain: None,
    };
    let first = broker.publish_once(&publication, "row:1").await.unwrap();
    let again = broker.publish_once(&publication, "row:1").await.unwrap();
    assert_eq!(first, again);
    broker.publish_once(&publication, "row:2").await.unwrap();
    assert_eq!(published.published().len(), 2);
}

#[tokio::test]
async fn a_failed_assertion_lists_the_record_and_diffs_the_closest_data() {
    let (hub, published) = recorded(Hub::builder());
    hub.publish("news", "story", &json!({"title": "hi", "n": 1}))
        .await
        .unwrap();
    hub.publish("other", "ping", &json!({})).await.unwrap();
    let message = panic_message(|| {
        assert_published!(
            published,
            topic = "news",
            event = "story",
            data = json!({"title": "ho", "n": 1})
        );
    });
    assert!(message.starts_with("no publication matched: expected event `story`, topic `news`, data {\"n\":1,\"title\":\"ho\"}"), "{message}");
    assert!(message.contains("recorded (2):\n  1. `story` on `news`: {\"n\":1,\"title\":\"hi\"}\n  2. `ping` on `other`: {}"), "{message}");
    assert!(message.contains("data of the closest, 1. (- expected, + published):\n   {\n     \"n\": 1,\n  -  \"title\": \"ho\"\n  +  \"title\": \"hi\"\n   }"), "{message}");
    // Typed data compares as JSON, whatever the key order.
    #[derive(serde::Serialize)]
    struct Story {
        title: &'static str,
        n: u32,
    }
    assert_published!(published, data = Story { title: "hi", n: 1 });
}

#[tokio::test]
#[should_panic(
    expected = "expected nothing published; recorded:\n  1. `story` on `news`: {\"title\":\"hi\"}"
)]
async fn asserting_nothing_published_fails_on_a_publication() {
    let (hub, published) = recorded(Hub::builder());
    hub.publish("news", "story", &json!({"title": "hi"}))
        .await
        .unwrap();
    published.assert_nothing_published();
}

#[tokio::test]
async fn waiting_for_a_publication_returns_once_it_is_made() {
    let (hub, published) = recorded(Hub::builder());
    let publisher = tokio::spawn(async move {
        tokio::task::yield_now().await;
        hub.publish("late", "e", &1).await.unwrap();
    });
    assert_eq!(published.wait_for(1).await[0].topic.as_str(), "late");
    publisher.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_publication_that_never_comes_fails_with_the_record() {
    let (_hub, published) = recorded(Hub::builder());
    let message = AssertUnwindSafe(published.wait_for(1))
        .catch_unwind()
        .await
        .expect_err("nothing is published");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("waited 30s for 1 publication(s); recorded:\n  (nothing)"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_reads_events_and_heartbeats_in_paused_time() {
    let hub = Hub::builder()
        .heartbeat(Duration::from_secs(15))
        .build()
        .unwrap();
    let client = app(&hub);
    let mut stream = client.subscribe("/events?topic=news").await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    hub.publish("news", "story", &json!({"title": "hi"}))
        .await
        .unwrap();
    let frame = stream.next_event().await.unwrap();
    assert_eq!(
        (frame.event_name(), frame.json::<Value>()),
        ("story", json!({"title": "hi"}))
    );
    // Nothing else is published: the next frame is a heartbeat, 15 s of paused time later.
    let started = tokio::time::Instant::now();
    let beat = stream.next_frame().await.unwrap();
    assert!(!beat.is_event() && !beat.comments.is_empty(), "{beat:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(14),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_resumed_stream_gets_what_it_missed() {
    let (hub, published) = recorded(Hub::builder().replay(100, Duration::from_secs(60)));
    let client = app(&hub);
    let mut stream = client.subscribe("/events?topic=news").await;
    hub.publish("news", "story", &1).await.unwrap();
    let first = stream.next_event().await.unwrap();
    assert_eq!(stream.last_event_id(), first.id.as_deref());
    // Missed while away: published with no stream open.
    let stream_id = stream.last_event_id().map(str::to_owned);
    drop(stream);
    hub.publish("news", "story", &2).await.unwrap();
    let mut stream = client
        .subscribe_after("/events?topic=news", stream_id.as_deref().unwrap())
        .await;
    assert_eq!(stream.next_event().await.unwrap().json::<u32>(), 2);
    // `resume` does the same with the stream's own last id: 4, published before it and never
    // read, comes back first (without `Last-Event-ID` the new stream would start at 5).
    hub.publish("news", "story", &3).await.unwrap();
    assert_eq!(stream.next_event().await.unwrap().json::<u32>(), 3);
    hub.publish("news", "story", &4).await.unwrap();
    let mut stream = stream.resume().await;
    hub.publish("news", "story", &5).await.unwrap();
    assert_eq!(stream.next_event().await.unwrap().json::<u32>(), 4);
    assert_eq!(stream.next_event().await.unwrap().json::<u32>(), 5);
    assert_eq!(published.published().len(), 5);
}

#[tokio::test]
async fn a_refused_subscription_reads_as_its_status_and_json_error() {
    let hub = Hub::builder().build().unwrap();
    let stream = app(&hub).subscribe("/events?topic=a%20b").await;
    assert_eq!(stream.status(), 400);
    let error: Value = serde_json::from_str(&stream.text().await).unwrap();
    assert!(error.is_object(), "{error}");
}

#[tokio::test]
async fn a_client_header_goes_with_every_request_and_reconnection_unless_one_sets_it() {
    async fn whoami(headers: axum::http::HeaderMap) -> String {
        let user = headers
            .get("x-user")
            .map(|v| v.to_str().unwrap().to_owned());
        user.unwrap_or_else(|| "anonymous".to_owned())
    }
    let hub = Hub::builder()
        .authorize(|request, _topic| async move { request.headers.contains_key("x-user") })
        .build()
        .unwrap();
    let router = Router::new().route("/me", get(whoami));
    let anonymous = Client::new(router.route("/events", get(events)).livepush(&hub));
    let ada = anonymous.clone().header("x-user", "ada");
    assert_eq!(read_text(ada.get("/me").await).await, "ada");
    assert_eq!(read_text(anonymous.get("/me").await).await, "anonymous");
    // The request's own header wins; a second call replaces the client's value.
    let own = axum::http::Request::get("/me")
        .header("x-user", "bob")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(read_text(ada.send(own).await).await, "bob");
    let cy = ada.clone().header("x-user", "cy");
    assert_eq!(read_text(cy.get("/me").await).await, "cy");
    // A stream reconnects with it too, as a browser sends its cookie again.
    assert_eq!(
        anonymous.subscribe("/events?topic=news").await.status(),
        403
    );
    let stream = ada.subscribe("/events?topic=news").await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.resume().await.status(), 200);
}

#[tokio::test]
async fn post_and_patch_json_send_their_method_and_body() {
    async fn echo(
        method: axum::http::Method,
        headers: axum::http::HeaderMap,
        body: String,
    ) -> String {
        let content_type = headers.get("content-type").map(|v| v.to_str().unwrap());
        format!("{method} {content_type:?} {body}")
    }
    let client = Client::new(Router::new().route("/things/1", axum::routing::any(echo)));
    assert_eq!(
        read_text(client.post("/things/1").await).await,
        "POST None "
    );
    let response = client
        .patch_json("/things/1", &json!({"status": "closed"}))
        .await;
    assert_eq!(
        read_text(response).await,
        r#"PATCH Some("application/json") {"status":"closed"}"#
    );
}

#[tokio::test(start_paused = true)]
async fn a_read_that_nothing_answers_fails_after_the_event_timeout_heartbeats_or_not() {
    let hub = Hub::builder()
        .heartbeat(Duration::from_secs(15))
        .build()
        .unwrap();
    let mut stream = app(&hub).subscribe("/events?topic=news").await;
    let started = tokio::time::Instant::now();
    let failed = AssertUnwindSafe(stream.next_event()).catch_unwind().await;
    let payload = failed.expect_err("no event comes");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("no event came on /events?topic=news within 30s"),
        "{message}"
    );
    // Heartbeats came meanwhile; the limit is the call's, in paused time.
    assert!(
        started.elapsed() >= Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // A longer limit lets a paused test wait for a slow heartbeat.
    let slow = Hub::builder()
        .heartbeat(Duration::from_secs(45))
        .build()
        .unwrap();
    let client = app(&slow).event_timeout(Duration::from_secs(60));
    let mut stream = client.subscribe("/events?topic=news").await;
    assert!(!stream.next_frame().await.unwrap().is_event());
}

#[tokio::test(start_paused = true)]
async fn a_503_is_asked_again_after_its_retry_after_as_many_times_as_told() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    // Not ready twice (a server starting, or stopping behind a load balancer), then a stream.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let route = get(move || {
        let calls = counted.clone();
        async move {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "5")],
                    "not ready",
                )
                    .into_response(),
                _ => ([("content-type", "text/event-stream")], "data: 1\n\n").into_response(),
            }
        }
    });
    let client = Client::new(Router::new().route("/events", route));

    // The in-process client asks once by default: a test of the refusal sees it.
    let refused = client.subscribe("/events").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.text().await, "not ready");
    let started = tokio::time::Instant::now();
    let mut stream = client.attempts(3).subscribe("/events").await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.next_event().await.unwrap().json::<u32>(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
