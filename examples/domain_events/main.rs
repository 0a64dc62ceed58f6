//! # domain_events: a service layer that emits typed domain events
//!
//! No handler here publishes what it returns. The service layer (`Accounts`) does its work and
//! emits domain events, each a struct with `#[derive(Serialize, SseEvent)]` that carries its SSE
//! event name, topic template and category. Clients listen on their user channel plus the
//! broadcast channel, and may filter by category. At start-up the program prints its registry:
//! every event type it can push and where it goes; `/events/catalog` serves the same as JSON.
//!
//! Run:   cargo run --bin domain_events
//! Open:  http://127.0.0.1:3000/?user=7, a live notification log on the typed TypeScript client
//!        (`page.ts`; with `LIVEPUSH_REPLAY=100` a reload shows what was pushed while it was away)
//!
//! ```sh
//! curl -N 'localhost:3000/users/7/events'                          # user:7 + broadcast
//! curl -N 'localhost:3000/users/7/events?category=billing'         # only billing events
//! curl -N 'localhost:3000/events?topic=user:7,broadcast'          # the same, topics by hand
//! curl -X POST localhost:3000/users/7/sync                         # sync.completed (data_sync)
//! curl -X POST -H 'content-type: application/json' -d '{"amount_cents":1200}' \
//!      localhost:3000/users/7/invoices                             # invoice.paid (billing)
//! curl -X POST -H 'content-type: application/json' -d '{"minutes":15}' \
//!      localhost:3000/maintenance                                  # maintenance.scheduled, everyone
//! curl localhost:3000/events/catalog
//! ```
//!
//! The demo takes the user id from the path; a real service takes it from its auth extractor
//! (see the `tickets` example), so nobody can listen on someone else's channel.
//!
//! The app is in `app.rs`; its tests, written with `livepush::testing` as an app's own tests
//! would be, are `tests/it/domain_events.rs`.

#[path = "../common/mod.rs"]
mod common;

mod app;

#[tokio::main]
async fn main() {
    common::init_tracing();
    app::print_registry();
    let hub = common::hub_from_env();
    common::serve("domain_events", app::router(&hub), &hub).await;
}
