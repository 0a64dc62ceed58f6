//! Every example binary, run as its header says: the contract every example keeps (HOST/PORT,
//! logged URL, routes, invalid settings refused, graceful shutdown on SIGTERM) and what needs the
//! binary itself (its start-up log, several instances on one Redis), read with
//! `livepush::testing::Client::http`. What each app does is tested in-process in its own module
//! (`crm_comments.rs`, `tickets.rs`, `domain_events.rs`).

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use livepush::testing::{read_json, read_text, Client, Frame};
use serde_json::{json, Value};

use crate::support::{
    get_json, http, run_to_exit, Example, NatsServer, RedisServer, SseClient, LIVEPUSH_ROUTES,
};

const EXAMPLES: [&str; 6] = [
    "crm_comments",
    "bench_server",
    "tickets",
    "domain_events",
    "multi_instance",
    "chat",
];

/// A subscription each example accepts without credentials (tickets needs a token).
fn open_subscription(name: &str) -> (&'static str, &'static [(&'static str, &'static str)]) {
    match name {
        "crm_comments" => ("/events?topic=comments", &[]),
        "bench_server" => ("/events?topic=bench", &[]),
        "tickets" => (
            "/events?topic=ticket:1",
            &[("authorization", "Bearer alice-token")],
        ),
        "domain_events" => ("/events?topic=user:1,broadcast", &[]),
        "multi_instance" => ("/events?topic=room:lobby", &[]),
        "chat" => ("/events?topic=room:lobby", &[]),
        other => panic!("unknown example {other}"),
    }
}

#[tokio::test]
async fn every_example_serves_the_contract_routes_and_stops_on_sigterm() {
    for name in EXAMPLES {
        // on a port the test chose: `PORT` is part of the contract
        let mut example = Example::start_on_a_chosen_port(name, &[]);
        let anonymous = Client::http(&example.url(""));
        // tickets serves its admin routes only to an operator (its app.rs); the others openly
        let client = match name {
            "tickets" => anonymous
                .clone()
                .header("authorization", "Bearer ops-token"),
            _ => anonymous.clone(),
        };
        for path in LIVEPUSH_ROUTES {
            let response = client.get(path).await;
            assert_eq!(response.status(), StatusCode::OK, "{name} {path}");
        }
        if name == "tickets" {
            for path in ["/metrics", "/events/catalog"] {
                let response = anonymous.get(path).await;
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name} {path}");
                // a user's token is authentication, not the operator's authorization
                let user = anonymous
                    .clone()
                    .header("authorization", "Bearer alice-token")
                    .get(path)
                    .await;
                assert_eq!(user.status(), StatusCode::FORBIDDEN, "{name} {path}");
                let body: Value = read_json(user).await;
                assert!(
                    body["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("operator")),
                    "{name} {path}: {body}"
                );
            }
            // the authorize hook is the served hub's: another workspace's ticket is refused
            let carol = anonymous
                .clone()
                .header("authorization", "Bearer carol-token");
            let refused = carol.subscribe("/events?topic=ticket:1").await;
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{name}");
        }
        let metrics = read_text(client.get("/metrics").await).await;
        assert!(
            metrics.contains("# TYPE"),
            "{name}: /metrics is Prometheus text"
        );
        let catalog: Value = read_json(client.get("/events/catalog").await).await;
        assert!(
            catalog["subscribe_routes"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
            "{name}: {catalog}"
        );

        let (path, headers) = open_subscription(name);
        let subscriber = headers.iter().fold(anonymous, |client, (name, value)| {
            client.header(*name, *value)
        });
        let stream = subscriber.subscribe(path).await;
        assert_eq!(stream.status(), StatusCode::OK, "{name}");
        assert_eq!(
            stream.headers()["content-type"],
            "text/event-stream",
            "{name}"
        );
        assert_eq!(stream.headers()["x-accel-buffering"], "no", "{name}");

        // An open stream must not hold the shutdown up.
        example.terminate();
        let status = example.wait_exit(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} did not exit cleanly on SIGTERM with a stream open: {status:?}\n{}",
            example.output()
        );
        drop(stream);
    }
}

#[test]
fn every_example_refuses_invalid_settings_with_a_clear_message() {
    for name in EXAMPLES {
        for (var, value) in [
            ("LIVEPUSH_HEARTBEAT_SECS", "fast"),
            ("LIVEPUSH_QUEUE_CAPACITY", "0"),
            ("PORT", "http"),
            // TLS needs both files: a certificate alone, or a file that is not there, is refused
            ("LIVEPUSH_TLS_CERT", "/nonexistent/cert.pem"),
        ] {
            let (status, stderr) = run_to_exit(name, &[(var, value)]);
            assert!(!status.success(), "{name} started with {var}={value}");
            assert!(
                stderr.contains(var),
                "{name} with {var}={value}: stderr does not name it: {stderr}"
            );
        }
    }
}

#[tokio::test]
async fn bench_server_retains_what_is_posted_to_state_for_later_subscribers() {
    let example = Example::start("bench_server", &[]);
    let client = http();
    for n in 1..=2 {
        let response = client
            .post(example.url("/state?topic=tile"))
            .json(&json!({ "n": n }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut sub = SseClient::connect(&example.url("/events?topic=tile")).await;
    let event = sub.next().await;
    assert_eq!(event.event, "state");
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap(),
        json!({ "n": 2 })
    );
}

#[tokio::test]
async fn bench_server_echoes_and_publishes_objects_only() {
    let example = Example::start("bench_server", &[]);
    let client = Client::http(&example.url(""));
    let mut sub = client.subscribe("/events?topic=bench").await;
    for not_an_object in ["[1]", "\"tick\"", "42", "{"] {
        let request = Request::post("/publish")
            .header("content-type", "application/json")
            .body(Body::from(not_an_object))
            .unwrap();
        let status = client.send(request).await.status();
        assert!(status.is_client_error(), "{not_an_object}: {status}");
    }
    let sent = json!({"seq": 1, "sent_ns": 123, "pad": "xx"});
    let response = client.post_json("/publish", &sent).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_json::<Value>(response).await, sent);
    let event = sub.next_event().await.unwrap();
    assert_eq!(
        (event.event_name(), event.json::<Value>()),
        ("tick", sent.clone())
    );

    // `?topic=T` publishes on T (the bench rows with many topics); an invalid topic is a 400
    let mut room = client.subscribe("/events?topic=room:7").await;
    let bad = client.post_json("/publish?topic=a%20b", &sent).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let to_room = json!({"seq": 2});
    let response = client.post_json("/publish?topic=room:7", &to_room).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(room.next_event().await.unwrap().json::<Value>(), to_room);
    // Not on bench: the next event there is the next one published on bench.
    let marker = json!({"seq": 3});
    assert_eq!(
        client.post_json("/publish", &marker).await.status(),
        StatusCode::OK
    );
    assert_eq!(sub.next_event().await.unwrap().json::<Value>(), marker);
}

#[test]
fn domain_events_logs_the_event_types_it_pushes_at_start_up() {
    let example = Example::start("domain_events", &[]);
    let log = example.output();
    for line in ["SyncCompleted", "InvoicePaid", "MaintenanceScheduled"] {
        assert!(log.contains(line), "start-up log lists {line}:\n{log}");
    }
}

#[tokio::test]
async fn multi_instance_delivers_across_instances_and_replays_after_switching() {
    let redis = RedisServer::start();
    multi_instance_delivers_and_replays(("REDIS_URL", redis.url())).await;
}

#[tokio::test]
async fn multi_instance_on_nats_delivers_across_instances_and_replays_after_switching() {
    let nats = NatsServer::start();
    multi_instance_delivers_and_replays(("NATS_URL", nats.url())).await;
}

/// Two `multi_instance` processes on the broker `broker` (its variable and URL) names.
async fn multi_instance_delivers_and_replays(broker: (&str, String)) {
    let env = [broker, ("LIVEPUSH_REPLAY", "100".to_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // chosen ports: each instance names itself `HOST:PORT` in what it publishes
    let a = Example::start_on_a_chosen_port("multi_instance", &env);
    let b = Example::start_on_a_chosen_port("multi_instance", &env);
    let (on_a, on_b) = (Client::http(&a.url("")), Client::http(&b.url("")));
    let post = |text: &str| {
        let (client, message) = (&on_a, json!({"author": "ann", "text": text}));
        async move { client.post_json("/rooms/lobby/messages", &message).await }
    };
    let text = |event: &Frame| event.json::<Value>()["text"].clone();

    // As a load balancer would: traffic only once each instance is ready. A stream opened on B
    // before B's broker connection first connected would get a `livepush.reset` (broker_gap).
    a.wait_ready().await;
    b.wait_ready().await;
    // The response head is the signal that the stream is live: B answers only once the broker
    // confirmed its subscription of the topic (fail-open after a bound, which a ready B does not
    // reach), so one message posted on A from then on reaches it, first and alone.
    let mut stream = on_b.subscribe("/events?topic=room:lobby").await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(post("hello").await.status(), StatusCode::CREATED);
    let first = stream.next_event().await.unwrap();
    assert_eq!(first.event_name(), "message_posted", "{first:?}");
    assert_eq!(text(&first), "hello", "{first:?}");
    assert_eq!(
        first.json::<Value>()["instance"],
        format!("127.0.0.1:{}", a.port),
        "published by A"
    );
    // One post, one event: the next one B delivers is the next one posted.
    assert_eq!(post("once").await.status(), StatusCode::CREATED);
    assert_eq!(text(&stream.next_event().await.unwrap()), "once");
    let last_id = stream.last_event_id().unwrap().to_owned();
    drop(stream);

    for missed in ["missed 1", "missed 2"] {
        assert_eq!(post(missed).await.status(), StatusCode::CREATED);
    }
    // Reconnected to the other instance, as a load balancer may send it, with its last id.
    let mut resumed = on_a
        .subscribe_after("/events?topic=room:lobby", &last_id)
        .await;
    for missed in ["missed 1", "missed 2"] {
        let event = resumed.next_event().await.unwrap();
        assert_eq!(
            (event.event_name(), text(&event)),
            ("message_posted", json!(missed))
        );
    }
    assert_eq!(post("live").await.status(), StatusCode::CREATED);
    assert_eq!(text(&resumed.next_event().await.unwrap()), "live");
}

#[tokio::test]
async fn bench_server_on_nats_publishes_through_jetstream() {
    let nats = NatsServer::start();
    let example = Example::start("bench_server", &[("NATS_URL", nats.url().as_str())]);
    example.wait_ready().await;
    let client = Client::http(&example.url(""));
    let mut stream = client.subscribe("/events?topic=bench").await;
    assert_eq!(stream.status(), StatusCode::OK);
    let response = client.post_json("/publish", &json!({"seq": 1})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let event = stream.next_event().await.unwrap();
    assert_eq!(
        (event.event_name(), event.data.as_deref()),
        ("tick", Some(r#"{"seq":1}"#))
    );
    let health: Value = read_json(client.get("/health").await).await;
    assert_eq!(health["broker"], "nats", "{health}");
}

#[tokio::test]
async fn chat_keeps_its_http_contract_and_refuses_bad_input_without_pushing() {
    let example = Example::start("chat", &[]);
    let client = http();
    let mut ann = SseClient::connect(&example.url("/rooms/lobby/events?user=ann")).await;
    let first = ann.next().await;
    assert_eq!(first.event, "livepush.presence");
    let snapshot: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(
        snapshot["members"],
        json!([{"key": "ann", "connections": 1, "info": {"name": "ann"}}])
    );

    let posted = client
        .post(example.url("/rooms/lobby/messages"))
        .json(&json!({"user": "ann", "text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::CREATED);
    let message: Value = posted.json().await.unwrap();
    assert_eq!(
        (message["user"].as_str(), message["text"].as_str()),
        (Some("ann"), Some("hello"))
    );
    assert!(
        message["id"].is_string() && message["at"].is_string(),
        "{message}"
    );
    let pushed = ann.next().await;
    assert_eq!(pushed.event, "message");
    assert_eq!(
        serde_json::from_str::<Value>(&pushed.data).unwrap(),
        message
    );

    let put = client
        .put(example.url("/rooms/lobby/topic"))
        .json(&json!({"text": "Friday release"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let pushed = ann.next().await;
    assert_eq!(pushed.event, "room_topic");
    assert_eq!(
        serde_json::from_str::<Value>(&pushed.data).unwrap(),
        json!({"text": "Friday release"})
    );

    let presence = get_json(&example.url("/rooms/lobby/presence")).await;
    assert_eq!(
        presence,
        json!({"count": 1, "connections": 1, "members": [{"key": "ann", "connections": 1, "info": {"name": "ann"}}]})
    );

    // The room topic is state: a later member gets the snapshot, then the current topic line
    // (with its id), before any live event.
    let mut bob = SseClient::connect(&example.url("/rooms/lobby/events?user=bob")).await;
    assert_eq!(bob.next().await.event, "livepush.presence");
    let current = bob.next().await;
    assert_eq!(current.event, "room_topic", "{current:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&current.data).unwrap(),
        json!({"text": "Friday release"})
    );
    assert!(!current.id.is_empty(), "the current value carries its id");
    // ann sees bob join; bob stays until the end (his leave would come after the grace)
    let joined = ann.next().await;
    assert_eq!(joined.event, "livepush.join", "{joined:?}");

    // `presence=off`: a member (ann sees it join, it is counted) whose stream gets no member list
    let mut bot =
        SseClient::connect(&example.url("/rooms/lobby/events?user=bot&presence=off")).await;
    let current = bot.next().await;
    assert_eq!(
        current.event, "room_topic",
        "no snapshot first: {current:?}"
    );
    let joined = ann.next().await;
    assert_eq!(joined.event, "livepush.join", "{joined:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&joined.data).unwrap()["key"],
        "bot"
    );
    let presence = get_json(&example.url("/rooms/lobby/presence")).await;
    assert_eq!(presence["count"], 3, "{presence}");

    // bad input: 4xx with a JSON message, nothing pushed
    let long = "x".repeat(2001);
    let refusals = [
        (
            "POST",
            "/rooms/lobby/messages",
            json!({"user": "", "text": "hi"}),
        ),
        (
            "POST",
            "/rooms/lobby/messages",
            json!({"user": "ann", "text": long}),
        ),
        ("POST", "/rooms/lobby/messages", json!({"user": "ann"})),
        (
            "POST",
            "/rooms/bad%20room/messages",
            json!({"user": "ann", "text": "hi"}),
        ),
        ("PUT", "/rooms/lobby/topic", json!({"text": long})),
        ("PUT", "/rooms/bad%0Aroom/topic", json!({"text": "t"})),
    ];
    for (method, path, body) in refusals {
        let request = match method {
            "POST" => client.post(example.url(path)),
            _ => client.put(example.url(path)),
        };
        let response = request.json(&body).send().await.unwrap();
        assert!(
            response.status().is_client_error(),
            "{method} {path}: {}",
            response.status()
        );
        let error: Value = response.json().await.unwrap();
        assert!(error["message"].is_string(), "{method} {path}: {error}");
    }
    for path in [
        "/rooms/lobby/events?user=",
        "/rooms/lobby/events",
        "/rooms/lobby/events?user=ann&presence=maybe",
        "/rooms/bad%20room/events?user=ann",
    ] {
        let response = client.get(example.url(path)).send().await.unwrap();
        assert!(
            response.status().is_client_error(),
            "GET {path}: {}",
            response.status()
        );
        let error: Value = response.json().await.unwrap();
        assert!(error["message"].is_string(), "GET {path}: {error}");
    }
    ann.assert_quiet(
        Duration::from_millis(500),
        "a refused request pushed something",
    )
    .await;
    bot.assert_quiet(
        Duration::from_millis(100),
        "a presence=off stream got presence events",
    )
    .await;
    drop((bob, bot));
}
