//! # crm_comments: the quickstart
//!
//! Comments on a CRM record, kept in a database and live in every open tab. Shows the
//! transactional outbox (create, update and delete write their event in the same transaction
//! as the change: it reaches subscribers if and only if the change committed, even when the
//! process dies right after the commit), `#[subscribe_to_events]` with topics from `?topic=`,
//! a list with an exact `Livepush-Cursor` (`Outbox::cursor`), and a page on the typed TypeScript
//! client (`page.ts`, bundled into `page.js`; types generated from `/events/asyncapi.json` into
//! `events.gen.ts`).
//!
//! Run:   cargo run --bin crm_comments        (SQLite: creates ./crm_comments.db)
//! Open:  http://127.0.0.1:3000 in two tabs and post in one.
//!
//! Several instances: give them the same `DATABASE_URL` and `REDIS_URL`, e.g.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1/test REDIS_URL=redis://127.0.0.1/ PORT=3001 cargo run --bin crm_comments
//! DATABASE_URL=postgres://postgres@127.0.0.1/test REDIS_URL=redis://127.0.0.1/ PORT=3002 cargo run --bin crm_comments
//! ```
//!
//! Both answer `GET /comments` alike, and a comment posted to either reaches subscribers of both.
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
//! Settings: `HOST`, `PORT`, `REDIS_URL`, `LIVEPUSH_*` (see `examples/common/mod.rs`),
//! `DATABASE_URL` (unset: `sqlite://crm_comments.db?mode=rwc`; `postgres://…`) and
//! `LIVEPUSH_OUTBOX_RELAY=on|off` (default on: whether this process relays committed events;
//! a database down at run time answers 503 with a JSON body and publishes nothing).

#[path = "../common/mod.rs"]
mod common;

mod app;

#[tokio::main]
async fn main() {
    common::init_tracing();
    let hub = common::hub_from_env();
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| app::DEFAULT_DATABASE_URL.to_owned());
    let db = app::Db::open(&url)
        .await
        .unwrap_or_else(|e| common::exit_with(e));
    // LIVEPUSH_OUTBOX_RELAY=on|off (default on): whether this process relays
    let relay = db
        .outbox()
        .relay(&hub)
        .start_if_enabled()
        .unwrap_or_else(|e| common::exit_with(format_args!("cannot configure livepush: {e}")));
    tracing::info!(relay = relay.is_some(), "comments stored in {}", db.kind());
    common::serve("crm_comments", app::router(&hub, db), &hub).await;
    // After the requests in flight: what they committed is relayed before the process ends.
    if let Some(relay) = relay {
        relay.shutdown().await;
    }
}
