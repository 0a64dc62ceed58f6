//! The domain_events app: the domain events, the service layer that emits them, and the thin
//! HTTP handlers over it. `main.rs` serves it; the tests (`tests/it/domain_events.rs`) call it
//! in-process with `livepush::testing`.

#[path = "page.rs"]
mod page;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use livepush::registry;
use livepush::{subscribe_to_events, Hub, RouterExt, SseEvent, Topics};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::api::{ApiError, ApiJson, ApiPath};
use crate::common::clock::now_rfc3339;

// ---- domain events: what happened, and where each one goes ----

/// A user's bank accounts were synchronized.
#[derive(Debug, Serialize, SseEvent, JsonSchema)]
#[sse(
    event = "sync.completed",
    topic = "user:{user_id}",
    category = "data_sync"
)]
struct SyncCompleted {
    user_id: u64,
    accounts: u32,
    finished_at: String,
}

/// A user's invoice was paid.
#[derive(Debug, Serialize, SseEvent, JsonSchema)]
#[sse(event = "invoice.paid", topic = "user:{user_id}", category = "billing")]
struct InvoicePaid {
    user_id: u64,
    invoice_id: u64,
    amount_cents: u64,
}

/// Everyone is told about maintenance, on the broadcast channel.
#[derive(Debug, Serialize, SseEvent, JsonSchema)]
#[sse(
    event = "maintenance.scheduled",
    topic = "broadcast",
    category = "system"
)]
struct MaintenanceScheduled {
    minutes: u32,
    announced_at: String,
}

/// A domain event that stays on the server (audit log): no `SseEvent`, never pushed.
#[derive(Debug, Serialize)]
struct AuditRecorded {
    what: String,
}

// ---- the service layer: business logic that knows nothing of HTTP ----

/// Accounts and billing. Emitting is fail-open: the work is done whether or not the event
/// reaches anyone, so a broker outage is logged, not returned.
#[derive(Clone)]
struct Accounts {
    hub: Hub,
    next_invoice: Arc<AtomicU64>,
}

impl Accounts {
    async fn sync(&self, user_id: u64) -> SyncCompleted {
        // ... talk to the bank ...
        let done = SyncCompleted {
            user_id,
            accounts: 3,
            finished_at: now_rfc3339(),
        };
        self.emit(&done).await;
        self.audit(format!("synced accounts of user {user_id}"));
        done
    }

    async fn pay_invoice(&self, user_id: u64, amount_cents: u64) -> InvoicePaid {
        let paid = InvoicePaid {
            user_id,
            invoice_id: self.next_invoice.fetch_add(1, Ordering::Relaxed),
            amount_cents,
        };
        self.emit(&paid).await;
        paid
    }

    async fn schedule_maintenance(&self, minutes: u32) -> MaintenanceScheduled {
        let notice = MaintenanceScheduled {
            minutes,
            announced_at: now_rfc3339(),
        };
        self.emit(&notice).await;
        notice
    }

    async fn emit<E: SseEvent + Serialize + std::fmt::Debug>(&self, event: &E) {
        match self.hub.emit(event).await {
            // Published, or waits in the retry buffer for the broker: pushed late, or its topic
            // is reset.
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, ?event, "domain event not pushed"),
        }
    }

    fn audit(&self, what: String) {
        tracing::info!(record = ?AuditRecorded { what }, "audit");
    }
}

// ---- HTTP: thin handlers over the service ----

async fn sync(
    State(accounts): State<Accounts>,
    ApiPath(user_id): ApiPath<u64>,
) -> (StatusCode, Json<SyncCompleted>) {
    (StatusCode::ACCEPTED, Json(accounts.sync(user_id).await))
}

#[derive(Deserialize)]
struct Payment {
    amount_cents: u64,
}

async fn pay(
    State(accounts): State<Accounts>,
    ApiPath(user_id): ApiPath<u64>,
    ApiJson(payment): ApiJson<Payment>,
) -> Result<(StatusCode, Json<InvoicePaid>), ApiError> {
    if payment.amount_cents == 0 {
        return Err(ApiError::invalid("`amount_cents` must be above 0"));
    }
    Ok((
        StatusCode::CREATED,
        Json(accounts.pay_invoice(user_id, payment.amount_cents).await),
    ))
}

#[derive(Deserialize)]
struct Maintenance {
    minutes: u32,
}

async fn maintenance(
    State(accounts): State<Accounts>,
    ApiJson(m): ApiJson<Maintenance>,
) -> (StatusCode, Json<MaintenanceScheduled>) {
    (
        StatusCode::CREATED,
        Json(accounts.schedule_maintenance(m.minutes).await),
    )
}

/// `GET /users/{id}/events[?category=billing]`: the user's channel and the broadcast channel,
/// chosen by the handler. `?category=` still applies.
#[subscribe_to_events]
async fn user_events(ApiPath(user_id): ApiPath<u64>) -> Topics {
    Topics::one(format!("user:{user_id}")).and_broadcast()
}

/// `GET /events?topic=user:7,broadcast[&category=billing]`.
#[subscribe_to_events]
async fn events() {}

/// Prints what this program pushes, from the link-time registry.
pub fn print_registry() {
    let mut types: Vec<_> = registry::event_types().collect();
    types.sort_by_key(|t| t.type_name);
    tracing::info!("{} domain event types reach clients:", types.len());
    for t in types {
        tracing::info!(
            "  {:<22} event {:<24} topic {:<16} category {}",
            t.type_name,
            t.event,
            t.topic,
            t.category.unwrap_or("-")
        );
    }
    // The bridge question a dispatcher asks before pushing a domain event.
    debug_assert!(registry::has_mapping_for::<InvoicePaid>());
    tracing::info!(
        "AuditRecorded is pushed: {} (server-side only)",
        registry::has_mapping_for::<AuditRecorded>()
    );
}

/// The whole app on `hub`: the page, the API, both subscribe routes, and the operational
/// routes (`/metrics`, `/events/catalog` and `/events/asyncapi.json`: open here, as a demo; see
/// docs/deployment.md on mounting them where only operators reach them).
pub fn router(hub: &Hub) -> Router {
    let accounts = Accounts {
        hub: hub.clone(),
        next_invoice: Arc::new(AtomicU64::new(1)),
    };
    Router::new()
        .route("/", get(page::index))
        .route("/page.js", get(page::script))
        .route("/users/{id}/sync", post(sync))
        .route("/users/{id}/invoices", post(pay))
        .route("/maintenance", post(maintenance))
        .route("/users/{id}/events", get(user_events))
        .route("/events", get(events))
        .with_state(accounts)
        .livepush(hub)
        .merge(hub.admin_routes())
}
