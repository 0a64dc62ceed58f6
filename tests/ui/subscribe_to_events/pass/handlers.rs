//! Every supported `#[subscribe_to_events]` handler shape compiles and is registered.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use livepush::{subscribe_to_events, Hub, RouterExt, Subscription, Topics};

#[derive(Clone)]
struct Db;

#[subscribe_to_events]
async fn events() {}

#[subscribe_to_events]
async fn with_extractor(State(_db): State<Db>) {}

#[subscribe_to_events]
async fn mine(Path(user): Path<u64>) -> Result<Subscription, StatusCode> {
    if user == 0 {
        return Err(StatusCode::FORBIDDEN);
    }
    Ok(Subscription::new(Topics::one(format!("user:{user}"))))
}

#[subscribe_to_events]
async fn everyone() -> Topics {
    Topics::one("broadcast")
}

fn main() {
    let hub = Hub::builder().build().unwrap();
    let _app: Router = Router::new()
        .route("/events", get(events))
        .route("/db/events", get(with_extractor))
        .route("/users/{user}/events", get(mine))
        .route("/everyone", get(everyone))
        .with_state(Db)
        .livepush(&hub);
    let mut subscribing: Vec<(&str, livepush::registry::SubscribeMode)> =
        livepush::registry::subscribe_routes()
            .map(|r| (r.handler, r.mode))
            .collect();
    subscribing.sort_by_key(|(name, _)| *name);
    use livepush::registry::SubscribeMode::{Handler, Query};
    assert_eq!(
        subscribing,
        [
            ("events", Query),
            ("everyone", Handler),
            ("mine", Handler),
            ("with_extractor", Query)
        ]
    );
}
