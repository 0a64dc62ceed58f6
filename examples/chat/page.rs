//! `GET /`: the chat page, and `GET /page.js`: its script (`page.ts` bundled with the
//! TypeScript client by `npm run build:pages` in `clients/typescript`; committed, so `cargo run`
//! needs no Node.js).

use axum::http::header;
use axum::response::{Html, IntoResponse};

const INDEX_HTML: &str = include_str!("index.html");
const PAGE_JS: &str = include_str!("page.js");

pub async fn index() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(INDEX_HTML))
}

pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE_JS,
    )
}
