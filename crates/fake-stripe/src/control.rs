//! The control API under `/_fake/`, for tests that drive a separately running imitation.
//! (The table of routes is in the module documentation of `fake_stripe`.)

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Delay, Fault, PaymentIntentFilter, Shared};

pub(super) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/payment_intents", get(payment_intents))
        .route("/refunds", get(refunds))
        .route("/refunds/settle", post(settle_refunds))
        .route("/requests", get(requests))
        .route("/events", get(events))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/delay", put(set_delay).delete(clear_delay))
        .route("/webhook", put(set_webhook))
}

async fn payment_intents(
    State(shared): State<Arc<Shared>>,
    Query(filter): Query<PaymentIntentFilter>,
) -> Json<Value> {
    let data = shared.payment_intents(&filter);
    Json(json!({"count": data.len(), "data": data}))
}

async fn refunds(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let data = shared.lock().store.refunds.clone();
    Json(json!({"count": data.len(), "data": data}))
}

async fn settle_refunds(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({"settled": super::api::settle_pending_refunds(&shared)}))
}

async fn requests(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(shared.lock().requests))
}

async fn events(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(shared.lock().events))
}

#[derive(Deserialize)]
struct NewFault {
    path_prefix: String,
    count: u32,
    #[serde(default = "internal_error")]
    status: u16,
}

fn internal_error() -> u16 {
    500
}

async fn add_fault(
    State(shared): State<Arc<Shared>>,
    Json(fault): Json<NewFault>,
) -> Result<StatusCode, (StatusCode, String)> {
    let status = StatusCode::from_u16(fault.status)
        .ok()
        .filter(|status| status.is_client_error() || status.is_server_error())
        .ok_or((
            StatusCode::UNPROCESSABLE_ENTITY,
            "status must be a 4xx or 5xx code".to_owned(),
        ))?;
    shared.lock().faults.push(Fault {
        path_prefix: fault.path_prefix,
        remaining: fault.count,
        status,
    });
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().faults.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct NewDelay {
    #[serde(default = "everything")]
    path_prefix: String,
    millis: u64,
}

fn everything() -> String {
    "/v1/".to_owned()
}

async fn set_delay(State(shared): State<Arc<Shared>>, Json(delay): Json<NewDelay>) -> StatusCode {
    shared.lock().delay = Some(Delay {
        path_prefix: delay.path_prefix,
        delay: Duration::from_millis(delay.millis),
    });
    StatusCode::NO_CONTENT
}

async fn clear_delay(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().delay = None;
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Webhook {
    url: Option<String>,
}

async fn set_webhook(
    State(shared): State<Arc<Shared>>,
    Json(webhook): Json<Webhook>,
) -> StatusCode {
    shared.lock().webhook_url = webhook.url;
    StatusCode::NO_CONTENT
}
