//! Every supported `#[publish_event]` handler shape compiles, keeps its signature's meaning, and
//! is registered.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use livepush::{publish_event, Hub, RouterExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Serialize, Deserialize)]
struct Ticket {
    id: u64,
    title: String,
    owner: Owner,
}

#[derive(Serialize, Deserialize)]
struct Owner {
    id: u64,
}

#[derive(Deserialize)]
struct NewTicket {
    title: String,
}

struct AppError;

impl From<std::num::ParseIntError> for AppError {
    fn from(_: std::num::ParseIntError) -> Self {
        AppError
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        StatusCode::BAD_REQUEST.into_response()
    }
}

#[derive(Clone)]
struct Db {
    prefix: String,
}

fn only_id(ticket: &Ticket) -> Value {
    json!({ "id": ticket.id })
}

mod ids {
    pub fn owner_id(ticket: &super::Ticket) -> u64 {
        ticket.owner.id
    }
}

/// Stacked attributes, `?` and `return` in the body, an inner attribute, fields of the value.
#[publish_event(topic = "tickets", event = "ticket_created")]
#[publish_event(topic = "ticket:{id}", event = "created", category = "tickets")]
#[livepush::publish_event(topic = "owner:{owner.id}", data = only_id)]
pub async fn create_ticket(
    Json(new): Json<NewTicket>,
) -> Result<(StatusCode, Json<Ticket>), AppError> {
    #![allow(clippy::needless_return)]
    let id: u64 = new.title.len().to_string().parse()?;
    if id == 0 {
        return Err(AppError);
    }
    Ok((
        StatusCode::CREATED,
        Json(Ticket {
            id,
            title: new.title,
            owner: Owner { id: 7 },
        }),
    ))
}

/// Placeholders bound by destructured extractors, read before the body moves them.
#[publish_event(topic = "{prefix}:{org}/ticket:{id}", event = "ticket.renamed", data = ids::owner_id)]
async fn rename(
    State(Db { prefix }): State<Db>,
    Path((org, id)): Path<(String, u64)>,
    Json(new): Json<NewTicket>,
) -> Json<Ticket> {
    drop((prefix, org));
    Json(Ticket {
        id,
        title: new.title,
        owner: Owner { id: 1 },
    })
}

/// An `impl Trait` return type: the concrete type is what is published.
#[publish_event(topic = "echo")]
async fn r#echo(Json(value): Json<Value>) -> impl IntoResponse {
    Json(value)
}

/// `?` in a body whose return type holds an `impl Trait`: the error type still guides `?`.
#[publish_event(topic = "numbers")]
async fn parse_number(Json(text): Json<String>) -> Result<impl IntoResponse, AppError> {
    let number: u64 = text.parse()?;
    Ok(Json(number))
}

/// A generic handler with a where clause.
#[publish_event(topic = "generic")]
async fn generic<S>(State(_state): State<S>) -> Json<u8>
where
    S: Clone + Send + Sync + 'static,
{
    Json(1)
}

fn main() {
    let hub = Hub::builder().build().unwrap();
    let _app: Router = Router::new()
        .route("/tickets", post(create_ticket))
        .route("/orgs/{org}/tickets/{id}", post(rename))
        .route("/echo", post(echo))
        .route("/numbers", post(parse_number))
        .route("/generic", post(generic::<Db>))
        .with_state(Db {
            prefix: "db".into(),
        })
        .livepush(&hub);

    let mut published: Vec<_> = livepush::registry::publish_routes()
        .map(|r| (r.handler, r.event, r.topic, r.category, r.data))
        .collect();
    published.sort();
    assert_eq!(
        published,
        [
            (
                "create_ticket",
                "create_ticket",
                "owner:{owner.id}",
                None,
                Some("only_id")
            ),
            (
                "create_ticket",
                "created",
                "ticket:{id}",
                Some("tickets"),
                None
            ),
            ("create_ticket", "ticket_created", "tickets", None, None),
            ("echo", "echo", "echo", None, None),
            ("generic", "generic", "generic", None, None),
            ("parse_number", "parse_number", "numbers", None, None),
            (
                "rename",
                "ticket.renamed",
                "{prefix}:{org}/ticket:{id}",
                None,
                Some("ids::owner_id")
            ),
        ]
    );
    // Each stacked attribute is registered at its own line.
    let line_of = |event: &str| {
        livepush::registry::publish_routes()
            .find(|r| r.event == event)
            .map(|r| (r.file, r.line))
            .unwrap()
    };
    let (file, first) = line_of("ticket_created");
    assert!(file.ends_with("handlers.rs"), "{file}");
    assert_eq!(line_of("created").1, first + 1);
    assert_eq!(line_of("create_ticket").1, first + 2);

}
