//! # tickets: per-resource topics, a bearer-token extractor, per-topic authorization
//!
//! A help desk. Each ticket has its own topic, `ticket:{id}` (templated from the handler's
//! `Path(id)`), and each workspace one, `workspace:{workspace}` (templated from a field of the
//! returned ticket). Every request carries a bearer token; a user may subscribe only to the
//! tickets and the workspace they belong to.
//!
//! Run:   cargo run --bin tickets
//!
//! Demo tokens (`Authorization: Bearer <token>`):
//!
//! | token | user | workspace | tickets |
//! | --- | --- | --- | --- |
//! | `alice-token` | alice | `acme` | 1, 2 |
//! | `bob-token` | bob | `acme` | 1, 2 |
//! | `carol-token` | carol | `globex` | 3 |
//! | `ops-token` | ops (an operator) | | `/metrics`, `/events/catalog`, `/events/asyncapi.json` |
//!
//! The admin routes (`hub.admin_routes()`) describe the service from the inside: only an
//! operator's token opens them. Any other known user gets 403, as on a topic they may not see.
//!
//! ```sh
//! curl -N -H 'authorization: Bearer alice-token' 'localhost:3000/events?topic=ticket:1,workspace:acme'
//! curl -X POST -H 'authorization: Bearer bob-token' -H 'content-type: application/json' \
//!      -d '{"text":"on it"}' localhost:3000/tickets/1/comments          # alice sees comment_added
//! curl -X PATCH -H 'authorization: Bearer bob-token' -H 'content-type: application/json' \
//!      -d '{"status":"closed"}' localhost:3000/tickets/1                  # alice sees ticket_updated twice
//! curl -i 'localhost:3000/events?topic=ticket:1'                            # 401: no token
//! curl -i -H 'authorization: Bearer carol-token' 'localhost:3000/events?topic=ticket:1'  # 403
//! ```
//!
//! | route | answer | published |
//! | --- | --- | --- |
//! | `GET /tickets` | the caller's workspace's tickets | |
//! | `POST /tickets` `{"title"}` | 201 the ticket | `ticket_created` on `workspace:{workspace}` |
//! | `GET /tickets/{id}` | the ticket | |
//! | `PATCH /tickets/{id}` `{"status"}` (`open`, `pending`, `closed`) | 200 the ticket | `ticket_updated` on `ticket:{id}` and `workspace:{workspace}` |
//! | `POST /tickets/{id}/comments` `{"text"}` | 201 the comment | `comment_added` on `ticket:{id}` |
//! | `GET /events?topic=ticket:1,workspace:acme` | SSE | |
//!
//! No or unknown token: 401 with `WWW-Authenticate: Bearer`. A ticket of another workspace: 404
//! on the API (its existence is not revealed), 403 on `/events`. Both with a JSON body.
//! Browsers' `EventSource` cannot send headers: serve pages from the same site and authenticate
//! with a cookie, which `AuthUser` could read just as well.
//!
//! The app is in `app.rs`; its tests, written with `livepush::testing` as an app's own tests
//! would be, are `tests/it/tickets.rs`.

#[path = "../common/mod.rs"]
mod common;

mod app;

#[tokio::main]
async fn main() {
    common::init_tracing();
    let store = app::Store::seeded();
    let hub = common::hub_from_env_with(|builder| app::authorized(builder, store.clone()));
    common::serve("tickets", app::router(store, &hub), &hub).await;
}
