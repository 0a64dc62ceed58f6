//! Every example binary, run as its header says: the contract every example keeps (HOST/PORT,
//! logged URL, routes, invalid settings refused, graceful shutdown on SIGTERM) and what each shows.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{
    get_json, http, run_to_exit, Example, RedisServer, SseClient, LIVEPUSH_ROUTES,
};

const EXAMPLES: [&str; 5] = [
    "crm_comments",
    "bench_server",
    "tickets",
    "domain_events",
    "multi_instance",
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
        other => panic!("unknown example {other}"),
    }
}

#[tokio::test]
async fn every_example_serves_the_contract_routes_and_stops_on_sigterm() {
    for name in EXAMPLES {
        // on a port the test chose: `PORT` is part of the contract
        let mut example = Example::start_on_a_chosen_port(name, &[]);
        let client = http();
        // tickets serves its admin routes only with its token (its main.rs); the others openly
        let token = (name == "tickets").then_some("Bearer alice-token");
        let get = |path: &str| {
            let request = client.get(example.url(path));
            match token {
                Some(token) => request.header("authorization", token),
                None => request,
            }
        };
        for path in LIVEPUSH_ROUTES {
            let response = get(path).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{name} {path}");
        }
        if token.is_some() {
            for path in ["/metrics", "/events/catalog"] {
                let anonymous = client.get(example.url(path)).send().await.unwrap();
                assert_eq!(
                    anonymous.status(),
                    StatusCode::UNAUTHORIZED,
                    "{name} {path}"
                );
            }
        }
        let metrics = get("/metrics").send().await.unwrap().text().await.unwrap();
        assert!(
            metrics.contains("# TYPE"),
            "{name}: /metrics is Prometheus text"
        );
        let catalog: Value = get("/events/catalog")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            catalog["subscribe_routes"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
            "{name}: {catalog}"
        );

        let (path, headers) = open_subscription(name);
        let stream = SseClient::connect_with(&example.url(path), headers).await;
        assert_eq!(
            stream.headers["content-type"], "text/event-stream",
            "{name}"
        );
        assert_eq!(stream.headers["x-accel-buffering"], "no", "{name}");

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
    let mut sub = SseClient::connect(&example.url("/events?topic=bench")).await;
    let client = http();
    for not_an_object in ["[1]", "\"tick\"", "42", "{"] {
        let response = client
            .post(example.url("/publish"))
            .header("content-type", "application/json")
            .body(not_an_object)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_client_error(),
            "{not_an_object}: {}",
            response.status()
        );
    }
    let sent = json!({"seq": 1, "sent_ns": 123, "pad": "xx"});
    let response = client
        .post(example.url("/publish"))
        .json(&sent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), sent);
    let event = sub.next().await;
    assert_eq!(event.event, "tick");
    assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap(), sent);

    // `?topic=T` publishes on T (the bench rows with many topics); an invalid topic is a 400
    let mut room = SseClient::connect(&example.url("/events?topic=room:7")).await;
    let bad = client
        .post(example.url("/publish?topic=a%20b"))
        .json(&sent)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let to_room = json!({"seq": 2});
    let response = client
        .post(example.url("/publish?topic=room:7"))
        .json(&to_room)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let event = room.next().await;
    assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap(), to_room);
    sub.assert_quiet(Duration::from_millis(200), "not on bench")
        .await;
}

#[tokio::test]
async fn tickets_answers_401_and_403_and_pushes_to_authorized_watchers() {
    let example = Example::start("tickets", &[]);
    let events = |topics: &str| example.url(&format!("/events?topic={topics}"));

    let anonymous = SseClient::request(&events("ticket:1"), &[]).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert!(anonymous.json::<Value>().await.unwrap()["error"].is_string());
    let bad_token =
        SseClient::request(&events("ticket:1"), &[("authorization", "Bearer nope")]).await;
    assert_eq!(bad_token.status(), StatusCode::UNAUTHORIZED);
    for topics in [
        "ticket:1",
        "workspace:acme",
        "ticket:3,ticket:1",
        "ticket:999",
        "comments",
    ] {
        let other =
            SseClient::request(&events(topics), &[("authorization", "Bearer carol-token")]).await;
        assert_eq!(other.status(), StatusCode::FORBIDDEN, "carol on {topics}");
        assert_eq!(other.json::<Value>().await.unwrap()["error"], "forbidden");
    }

    let mut alice = SseClient::connect_with(
        &events("ticket:1,workspace:acme"),
        &[("authorization", "Bearer alice-token")],
    )
    .await;
    let mut carol = SseClient::connect_with(
        &events("ticket:3"),
        &[("authorization", "Bearer carol-token")],
    )
    .await;
    let client = http();
    let bob = |req: reqwest::RequestBuilder| req.header("authorization", "Bearer bob-token");

    // Carol cannot reach alice's ticket through the API either (404, nothing published).
    let response = client
        .post(example.url("/tickets/1/comments"))
        .header("authorization", "Bearer carol-token")
        .json(&json!({"text": "let me in"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let response = bob(client.post(example.url("/tickets/1/comments")))
        .json(&json!({"text": "on it"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let comment: Value = response.json().await.unwrap();
    let event = alice.next().await;
    assert_eq!(event.event, "comment_added");
    assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap(), comment);

    let response = bob(client.patch(example.url("/tickets/1")))
        .json(&json!({"status": "closed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ticket: Value = response.json().await.unwrap();
    // Stacked attributes: once on ticket:1, once on workspace:acme; alice listens to both.
    for _ in 0..2 {
        let event = alice.next().await;
        assert_eq!(event.event, "ticket_updated");
        assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap(), ticket);
    }
    carol
        .assert_quiet(
            Duration::from_millis(300),
            "carol must not see acme's tickets",
        )
        .await;
}

#[tokio::test]
async fn domain_events_reach_user_and_broadcast_channels_filtered_by_category() {
    let example = Example::start("domain_events", &[]);
    let log = example.output();
    for line in ["SyncCompleted", "InvoicePaid", "MaintenanceScheduled"] {
        assert!(log.contains(line), "start-up log lists {line}:\n{log}");
    }
    let mut billing = SseClient::connect(&example.url("/users/7/events?category=billing")).await;
    let mut everything = SseClient::connect(&example.url("/users/7/events")).await;
    let mut other_user = SseClient::connect(&example.url("/users/8/events")).await;
    let client = http();

    let response = client
        .post(example.url("/users/7/sync"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = client
        .post(example.url("/users/7/invoices"))
        .json(&json!({"amount_cents": 1200}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let invoice: Value = response.json().await.unwrap();
    let response = client
        .post(example.url("/maintenance"))
        .json(&json!({"minutes": 15}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let seen: Vec<String> = [
        everything.next().await,
        everything.next().await,
        everything.next().await,
    ]
    .into_iter()
    .map(|e| e.event)
    .collect();
    assert_eq!(
        seen,
        ["sync.completed", "invoice.paid", "maintenance.scheduled"]
    );
    let event = billing.next().await;
    assert_eq!(
        event.event, "invoice.paid",
        "the category filter skips sync.completed"
    );
    assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap(), invoice);
    assert_eq!(
        other_user.next().await.event,
        "maintenance.scheduled",
        "broadcast reaches everyone"
    );

    let unknown = SseClient::request(&example.url("/users/7/events?category=nope"), &[]).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let catalog = get_json(&example.url("/events/catalog")).await;
    let types: Vec<&str> = catalog["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["event"].as_str())
        .collect();
    for event in ["sync.completed", "invoice.paid", "maintenance.scheduled"] {
        assert!(types.contains(&event), "{event} missing from {catalog}");
    }
}

#[tokio::test]
async fn multi_instance_delivers_across_instances_and_replays_after_switching() {
    let redis = RedisServer::start();
    let env = [
        ("REDIS_URL", redis.url()),
        ("LIVEPUSH_REPLAY", "100".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // chosen ports: each instance names itself `HOST:PORT` in what it publishes
    let a = Example::start_on_a_chosen_port("multi_instance", &env);
    let b = Example::start_on_a_chosen_port("multi_instance", &env);
    let client = http();
    let post = |text: &str| {
        client
            .post(a.url("/rooms/lobby/messages"))
            .json(&json!({"author": "ann", "text": text}))
            .send()
    };

    // As a load balancer would: traffic only once each instance is ready. A stream opened on B
    // before B's Redis listener first connected would get a `livepush.reset` (broker_gap).
    a.wait_ready().await;
    b.wait_ready().await;
    // The response head is the signal that the stream is live: B answers only once Redis
    // confirmed its subscription of the topic (fail-open after a bound, which a ready B does not
    // reach), so one message posted on A from then on reaches it, first and alone.
    let mut on_b = SseClient::connect(&b.url("/events?topic=room:lobby")).await;
    let response = post("hello").await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let first = on_b.next().await;
    assert_eq!(first.event, "message_posted", "{first:?}");
    let data: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(data["text"], "hello", "{first:?}");
    assert_eq!(
        data["instance"],
        format!("127.0.0.1:{}", a.port),
        "published by A"
    );
    on_b.assert_quiet(Duration::from_millis(300), "one post, one event")
        .await;
    let last_id = first.id.clone();
    drop(on_b);

    for text in ["missed 1", "missed 2"] {
        assert_eq!(post(text).await.unwrap().status(), StatusCode::CREATED);
    }
    let mut resumed = SseClient::connect_with(
        &a.url("/events?topic=room:lobby"),
        &[("last-event-id", last_id.as_str())],
    )
    .await;
    for text in ["missed 1", "missed 2"] {
        let event = resumed.next().await;
        assert_eq!(event.event, "message_posted");
        assert_eq!(
            serde_json::from_str::<Value>(&event.data).unwrap()["text"],
            text
        );
    }
    assert_eq!(post("live").await.unwrap().status(), StatusCode::CREATED);
    let event = resumed.next().await;
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["text"],
        "live"
    );
}
