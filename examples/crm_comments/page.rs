//! `GET /page.js`: the page's script, `page.ts` bundled with the TypeScript client
//! (`clients/typescript`) and the types generated from `/events/asyncapi.json`.
//!
//! The bundle is committed so that `cargo run --bin crm_comments` needs no Node.js; rebuild it
//! with `npm run build:pages` in `clients/typescript` (the npm tests fail while it is stale).

use axum::http::header;
use axum::response::IntoResponse;

const PAGE_JS: &str = include_str!("page.js");

pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE_JS,
    )
}
