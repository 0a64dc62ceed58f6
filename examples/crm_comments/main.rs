//! # crm_comments: the quickstart
//!
//! Comments on a CRM record, live in every open tab. Shows `#[publish_event]` on ordinary axum
//! handlers (create, update, delete publish what they return, only on success),
//! `#[subscribe_to_events]` with topics from `?topic=`, a list with a `Livepush-Cursor`
//! (`Cursor` extractor), and a page on the typed TypeScript client (`page.ts`, bundled into
//! `page.js`; types generated from `/events/asyncapi.json` into `events.gen.ts`).
//!
//! Run:   cargo run --bin crm_comments
//! Open:  http://127.0.0.1:3000 in two tabs and post in one.
//!
//! Or with curl, in two terminals:
//!
//! ```sh
//! curl -N 'localhost:3000/events?topic=comments'
//! curl -X POST -H 'content-type: application/json' -d '{"author":"a","text":"hi"}' localhost:3000/comments
//! curl -X PUT -H 'content-type: application/json' -d '{"text":"edited"}' localhost:3000/comments/1
//! curl -X DELETE localhost:3000/comments/1
//! ```
//!
//! | route | answer | published on `comments` |
//! | --- | --- | --- |
//! | `GET /` | the live page | |
//! | `GET /comments` | every comment, header `Livepush-Cursor` | |
//! | `POST /comments` `{"author","text"}` | 201 `{"id","author","text","created_at"}` | `comment_created` |
//! | `PUT /comments/{id}` `{"author"?,"text"?}` | 200 the changed comment | `comment_updated` |
//! | `DELETE /comments/{id}` | 200 the deleted comment | `comment_deleted` |
//! | `GET /events?topic=comments` | the SSE stream | |
//!
//! Invalid input (bad JSON, missing or empty fields, author over 80 or text over 2,000
//! characters, unknown id) answers 4xx `{"error","message"}` and publishes nothing.
//! Also served: `/health`, `/health/live`, `/health/ready`, `/metrics`, `/events/catalog`,
//! `/events/asyncapi.json`, and the page's script `/page.js`.
//! Settings: `HOST`, `PORT`, `REDIS_URL`, `LIVEPUSH_*` (see `examples/common/mod.rs`).

#[path = "../common/mod.rs"]
mod common;

mod app;

#[tokio::main]
async fn main() {
    common::init_tracing();
    let hub = common::hub_from_env();
    common::serve("crm_comments", app::router(&hub), &hub).await;
}
