//! Every bad input through real HTTP: a clear 4xx (a JSON error body wherever livepush answers;
//! hyper's and axum's own refusals where they answer first), and the server works afterwards.

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use livepush::{publish_event, subscribe_to_events, Hub, RouterExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::support::{http, metric, raw_get, raw_request, SseClient, TestServer};

#[subscribe_to_events]
async fn events() {}

#[derive(Serialize, Deserialize)]
struct Note {
    text: String,
}

#[publish_event(topic = "notes", event = "note_created")]
async fn create_note(Json(note): Json<Note>) -> (StatusCode, Json<Note>) {
    (StatusCode::CREATED, Json(note))
}

async fn start() -> (Hub, TestServer) {
    let hub = Hub::builder()
        .replay(100, std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/events", get(events))
        .route("/notes", post(create_note))
        .livepush(&hub);
    let server = TestServer::start(app).await;
    (hub, server)
}

/// The status and JSON error code of a refused subscription sent as raw bytes.
async fn refusal(server: &TestServer, target: &[u8], headers: &[(&str, &[u8])]) -> (u16, Value) {
    let mut response = raw_get(server.addr, target, headers).await;
    response.read_to_end().await;
    let head = response.head.to_ascii_lowercase();
    let body = response.body_text();
    assert!(
        head.contains("content-type: application/json"),
        "{head}\n{body}"
    );
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    (response.status, json)
}

/// The server still serves a subscription and its events.
async fn still_works(hub: &Hub, server: &TestServer) {
    let mut client = SseClient::connect(&server.url("/events?topic=health-check")).await;
    hub.publish("health-check", "ping", &1).await.unwrap();
    assert_eq!(client.next().await.event, "ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_that_could_break_a_frame_are_refused_with_400() {
    let (hub, server) = start().await;
    for (target, what) in [
        ("/events?topic=a%0Db", "CR"),
        ("/events?topic=a%0Ab", "LF"),
        ("/events?topic=a%0D%0Aevent:%20x", "CRLF injection"),
        ("/events?topic=a%00b", "NUL"),
        ("/events?topic=a%20b", "space"),
        ("/events?topic=a+b", "plus as space"),
        ("/events?topic=%C3%A9", "non-ASCII"),
        ("/events?topic=%FF%FE", "invalid UTF-8, percent-encoded"),
        ("/events?topic=a%22b", "quote"),
    ] {
        let (status, json) = refusal(&server, target.as_bytes(), &[]).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (400, Some("invalid_topic")),
            "{what}: {json}"
        );
    }
    let long = format!("/events?topic={}", "a".repeat(livepush::Topic::MAX_LEN + 1));
    let (status, json) = refusal(&server, long.as_bytes(), &[]).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("invalid_topic"))
    );
    still_works(&hub, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plus_sent_unencoded_is_refused_with_how_to_encode_it() {
    let (hub, server) = start().await;
    // A query string decodes `+` as a space, so `a+b` arrives as the invalid topic "a b".
    let (status, json) = refusal(&server, b"/events?topic=a+b", &[]).await;
    assert_eq!(status, 400, "{json}");
    let message = json["message"].as_str().unwrap();
    assert!(message.contains("' '"), "{message}");
    assert!(message.contains("%2B"), "{message}");
    // Encoded as the message says, the same topic subscribes and receives.
    let mut client = SseClient::connect(&server.url("/events?topic=a%2Bb")).await;
    hub.publish("a+b", "sum", &1).await.unwrap();
    assert_eq!(client.next().await.event, "sum");
}

#[tokio::test]
async fn a_router_without_the_hub_answers_500_saying_to_call_livepush_after_the_routes() {
    let hub = Hub::builder().build().unwrap();
    // `.livepush(&hub)` before the route: the layer does not wrap `/events`.
    let app = Router::new().livepush(&hub).route("/events", get(events));
    let stream = livepush::testing::Client::new(app)
        .subscribe("/events?topic=a")
        .await;
    assert_eq!(stream.status(), 500);
    let json: Value = serde_json::from_str(&stream.text().await).unwrap();
    assert_eq!(json["error"], "hub_missing", "{json}");
    let message = json["message"].as_str().unwrap();
    assert!(
        message.contains("`.livepush(&hub)`") && message.contains("after"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_oversized_topic_lists_are_refused_with_400() {
    let (hub, server) = start().await;
    for target in [
        "/events",
        "/events?",
        "/events?topic=",
        "/events?topic=,,,",
        "/events?topic=%20",
        "/events?other=1",
    ] {
        let (status, json) = refusal(&server, target.as_bytes(), &[]).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (400, Some("no_topics")),
            "{target}: {json}"
        );
    }
    // thousands of topics (a ~40 KB query): refused by count, not by parsing them all into streams
    let many: Vec<String> = (0..5000).map(|i| format!("t{i}")).collect();
    let target = format!("/events?topic={}", many.join(","));
    let (status, json) = refusal(&server, target.as_bytes(), &[]).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("too_many_topics")),
        "{json}"
    );
    // the same as repeated parameters
    let target = format!(
        "/events?{}",
        many.iter()
            .map(|t| format!("topic={t}"))
            .collect::<Vec<_>>()
            .join("&")
    );
    let (status, json) = refusal(&server, target.as_bytes(), &[]).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("too_many_topics"))
    );
    assert_eq!(hub.connection_count(), 0);
    still_works(&hub, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_hyper_refuses_before_livepush_sees_them_get_its_4xx() {
    let (hub, server) = start().await;
    // Raw bytes that are not allowed in a request target: hyper answers 400 itself (no body).
    for target in [
        &b"/events?topic=a\xffb"[..],
        b"/events?topic=a\x00b",
        b"/events?topic=a\"b",
    ] {
        let response = raw_get(server.addr, target, &[]).await;
        assert_eq!(
            response.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(target),
            response.head
        );
    }
    // A space ends the target early, and the request line is then malformed.
    let response = raw_request(
        server.addr,
        b"GET /events?topic=a b HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 400);
    // A 100 KB query: longer than a URI may be (the http crate's limit is 65,534 bytes).
    let target = format!("/events?topic={}", "a,".repeat(50_000));
    let response = raw_get(server.addr, target.as_bytes(), &[]).await;
    eprintln!(
        "100 KB query: {}",
        response.head.lines().next().unwrap_or_default()
    );
    assert!(
        matches!(response.status, 400 | 414 | 431),
        "{}",
        response.head
    );
    still_works(&hub, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_last_event_ids_are_refused_with_400() {
    let (hub, server) = start().await;
    let huge = "9".repeat(10_000);
    let values: [&[u8]; 9] = [
        b"abc",
        b"-1",
        b"1.5",
        b"1e3",
        b"+7",
        b"18446744073709551616", // u64::MAX + 1
        huge.as_bytes(),
        b"\xff\xfe", // not UTF-8 (obs-text, allowed by HTTP)
        b"12 34",
    ];
    for value in values {
        let (status, json) =
            refusal(&server, b"/events?topic=a", &[("Last-Event-ID", value)]).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (400, Some("invalid_last_event_id")),
            "{:?}: {json}",
            String::from_utf8_lossy(value)
        );
    }
    // the query form too
    for target in [
        "/events?topic=a&lastEventId=-1",
        "/events?topic=a&lastEventId=x",
    ] {
        let (status, json) = refusal(&server, target.as_bytes(), &[]).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (400, Some("invalid_last_event_id"))
        );
    }
    // an empty one means none
    let ok =
        SseClient::connect_with(&server.url("/events?topic=a"), &[("last-event-id", "")]).await;
    assert_eq!(ok.status, 200);
    // an id this server never issued is answered with `livepush.reset`, not an error
    let mut reset =
        SseClient::connect_with(&server.url("/events?topic=a"), &[("last-event-id", "1")]).await;
    assert_eq!(reset.next().await.event, livepush::sse::RESET.as_str());
    let m = hub.metrics_text();
    assert_eq!(
        metric(
            &m,
            "livepush_connections_rejected_total{reason=\"invalid_last_event_id\"}"
        ),
        (values.len() + 2) as f64
    );
    still_works(&hub, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_to_a_publishing_route_get_axums_4xx_and_publish_nothing() {
    let (hub, server) = start().await;
    let url = server.url("/notes");
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            http()
                .post(&url)
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            "syntax error",
        ),
        (
            http()
                .post(&url)
                .header("content-type", "application/json")
                .body(""),
            400,
            "empty body",
        ),
        (
            http()
                .post(&url)
                .header("content-type", "application/json")
                .body(r#"{"text": 5}"#),
            422,
            "wrong shape",
        ),
        (
            http()
                .post(&url)
                .header("content-type", "text/plain")
                .body(r#"{"text":"a"}"#),
            415,
            "not JSON content type",
        ),
        (
            http().post(&url).body(r#"{"text":"a"}"#),
            415,
            "no content type",
        ),
        (
            http()
                .post(&url)
                .header("content-type", "application/json")
                .body(vec![b' '; 3 << 20]),
            413,
            "over the 2 MB body limit",
        ),
        (
            http()
                .post(&url)
                .header("content-type", "application/json")
                .body(b"{\"text\":\"\xff\"}".to_vec()),
            400,
            "invalid UTF-8 in JSON",
        ),
    ];
    for (request, status, what) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            status,
            "{what}: {:?}",
            response.text().await
        );
    }
    assert_eq!(
        metric(&hub.metrics_text(), "livepush_events_published_total"),
        0.0
    );
    let response = http()
        .post(&url)
        .json(&serde_json::json!({"text": "fine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(
        metric(&hub.metrics_text(), "livepush_events_published_total"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_that_could_break_framing_arrives_exactly() {
    let (hub, server) = start().await;
    let mut client = SseClient::connect(&server.url("/events?topic=notes")).await;
    // Through the macro: JSON escapes line ends, so the text arrives byte for byte.
    let nasty =
        "line1\nline2\r\nline3\rdata: injected\n\nevent: evil\nid: 999\n\n: comment\u{0}\u{2028}é";
    let response = http()
        .post(server.url("/notes"))
        .json(&serde_json::json!({"text": nasty}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let event = client.next().await;
    assert_eq!(event.event, "note_created");
    let note: Note = serde_json::from_str(&event.data).unwrap();
    assert_eq!(note.text, nasty);

    // Pre-encoded multi-line JSON: one `data:` line per line; the client joins them with `\n`.
    let pretty = "{\n  \"a\": 1,\r\n  \"b\": \"x\"\r}";
    let id = hub
        .publish_json("notes", "pretty", None, bytes::Bytes::from(pretty))
        .await
        .unwrap()
        .id()
        .unwrap();
    let event = client.next().await;
    assert_eq!(event.event, "pretty");
    assert_eq!(event.id, id.to_string());
    assert_eq!(event.data, "{\n  \"a\": 1,\n  \"b\": \"x\"\n}");
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap(),
        serde_json::json!({"a": 1, "b": "x"})
    );

    // Names that would break a frame never get that far.
    assert!(hub.publish("notes", "a\nb", &1).await.is_err());
    assert!(hub.publish("notes", "a\rid: 1", &1).await.is_err());
    assert!(hub.publish("notes\r\nevent: x", "e", &1).await.is_err());
    hub.publish("notes", "after", &1).await.unwrap();
    assert_eq!(
        client.next().await.event,
        "after",
        "nothing else was sent in between"
    );
}

/// The JSON error of each refused subscription, on the routes of `subscribe.rs`.
mod subscriptions {
    use axum::http::StatusCode;
    use livepush::Hub;

    use crate::subscribe::{error_of, start};
    use crate::support::SseClient;

    #[tokio::test]
    async fn bad_subscriptions_get_400_with_a_json_error() {
        let hub = Hub::builder()
            .max_topics_per_subscription(3)
            .build()
            .unwrap();
        let server = start(&hub).await;
        for (query, code) in [
            ("/events", "no_topics"),
            ("/events?topic=", "no_topics"),
            ("/events?topic=a%0Ab", "invalid_topic"),
            ("/events?topic=a%0Db", "invalid_topic"),
            ("/events?topic=a%00b", "invalid_topic"),
            ("/events?topic=a%20b", "invalid_topic"),
            ("/events?topic=%FF%FE", "invalid_topic"),
            ("/events?topic=a,b,c,d", "too_many_topics"),
            ("/events?topic=a&lastEventId=-1", "invalid_last_event_id"),
            ("/events?topic=a&category=nope", "unknown_category"),
        ] {
            let (status, body) = error_of(SseClient::request(&server.url(query), &[]).await).await;
            assert_eq!(status, 400, "{query}");
            assert_eq!(body["error"], code, "{query}: {body}");
            assert!(!body["message"].as_str().unwrap().is_empty());
        }
        let long = "a".repeat(livepush::Topic::MAX_LEN + 1);
        let (status, body) =
            error_of(SseClient::request(&server.url(&format!("/events?topic={long}")), &[]).await)
                .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_topic"))
        );
        let (status, _) = error_of(
            SseClient::request(&server.url("/events?topic=a"), &[("last-event-id", "abc")]).await,
        )
        .await;
        assert_eq!(status, 400);
        // the server is still fine
        SseClient::connect(&server.url("/events?topic=a")).await;
        assert_eq!(hub.connection_count(), 1);
    }
}
