//! The reservation side of Stripe: saving a card at booking, checking it was saved, and the
//! webhook that confirms a booking whose client never called confirm.
//!
//! No database transaction is held across a call to Stripe: each step reads or writes
//! PostgreSQL, calls Stripe, then writes again, and every Stripe call that creates something
//! carries a deterministic idempotency key, so a retried step never makes a second object.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;

use super::db;
use super::model::{Reservation, Status, invalid_state};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{AppError, AppResult, Problem};
use crate::payments::{
    CustomerId, PaymentError, SetupIntentStatus, WebhookError, WebhookEventKind,
};

/// Answers a failed Stripe call: 503 when trying again may work, 502 otherwise.
fn payment_error(error: PaymentError) -> AppError {
    tracing::warn!(%error, "Stripe call failed");
    match error {
        PaymentError::Unavailable(_) => AppError::ServiceUnavailable(
            "the payment provider is unavailable; retry shortly".into(),
        ),
        PaymentError::Rejected { .. } | PaymentError::Unexpected(_) => {
            AppError::BadGateway("the payment provider refused the request".into())
        }
    }
}

/// Creates (or reuses) the Stripe customer and a SetupIntent for the reservation; returns
/// the client secret for Stripe.js.
pub async fn start_card_setup(
    state: &AppState,
    reservation: &Reservation,
    user: Option<&AuthUser>,
) -> AppResult<String> {
    let customer = match user {
        Some(user) => account_customer(state, user, &reservation.email).await?,
        None => state
            .payments
            .create_customer(
                &reservation.email,
                &format!("reservation:{}:customer", reservation.id),
            )
            .await
            .map_err(payment_error)?,
    };
    let intent = state
        .payments
        .create_setup_intent(&customer, &format!("reservation:{}:setup", reservation.id))
        .await
        .map_err(payment_error)?;
    db::attach_setup_intent(
        &mut *state.db.acquire().await?,
        reservation.id,
        customer.as_str(),
        &intent.id,
    )
    .await?;
    Ok(intent.client_secret)
}

/// A driver's one Stripe customer, created at the first booking.
async fn account_customer(state: &AppState, user: &AuthUser, email: &str) -> AppResult<CustomerId> {
    if let Some(id) = db::user_customer_id(&mut *state.db.acquire().await?, user.user_id).await? {
        return Ok(CustomerId::new(id));
    }
    let created = state
        .payments
        .create_customer(email, &format!("user:{}:customer", user.user_id))
        .await
        .map_err(payment_error)?;
    let kept = db::set_user_customer_id(
        &mut *state.db.acquire().await?,
        user.user_id,
        created.as_str(),
    )
    .await?;
    Ok(CustomerId::new(kept))
}

/// The saved card of the reservation's SetupIntent, as Stripe reports it; 409 with the
/// intent's state while the card is not saved.
pub async fn saved_card(state: &AppState, reservation: &Reservation) -> AppResult<String> {
    let not_saved = |detail: String| AppError::conflict("card_not_saved", detail);
    let setup_intent_id = reservation
        .stripe_setup_intent_id
        .as_deref()
        .ok_or_else(|| not_saved("saving the card has not started".into()))?;
    let intent = state
        .payments
        .retrieve_setup_intent(setup_intent_id)
        .await
        .map_err(payment_error)?;
    match (&intent.status, intent.payment_method) {
        (SetupIntentStatus::Succeeded, Some(payment_method)) => Ok(payment_method),
        (status, _) => Err(not_saved(format!(
            "the card setup is {}",
            setup_status_name(status)
        ))),
    }
}

fn setup_status_name(status: &SetupIntentStatus) -> &str {
    match status {
        SetupIntentStatus::RequiresPaymentMethod => "requires_payment_method",
        SetupIntentStatus::RequiresConfirmation => "requires_confirmation",
        SetupIntentStatus::RequiresAction => "requires_action",
        SetupIntentStatus::Processing => "processing",
        SetupIntentStatus::Canceled => "canceled",
        SetupIntentStatus::Succeeded => "succeeded without a card",
        SetupIntentStatus::Other(other) => other,
    }
}

/// `held` → `confirmed` with the saved card. Confirming twice (client and webhook) is
/// harmless; a reservation that expired or was cancelled meanwhile stays so (409).
pub async fn confirm_with_card(
    state: &AppState,
    reservation: &Reservation,
    payment_method: &str,
) -> AppResult<Reservation> {
    let id = reservation.id;
    let mut tx = state.db.begin().await?;
    db::lock_spot(&mut tx, reservation.spot_id).await?;
    let current = db::lock(&mut tx, id).await?;
    let confirmed = match current.status {
        Status::Held => db::confirm(&mut tx, id, payment_method)
            .await?
            .ok_or_else(|| {
                AppError::conflict("invalid_state", "the reservation changed meanwhile")
            })?,
        Status::Confirmed => current,
        other => return Err(invalid_state(other)),
    };
    tx.commit().await?;
    tracing::info!(reservation.id = %id, "reservation confirmed");
    Ok(confirmed)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    received: bool,
    /// True when this event id was handled before and had no second effect.
    duplicate: bool,
}

/// Stripe's events, verified by signature over the raw body. Each event id takes effect once.
#[utoipa::path(
    post, path = "/v1/webhooks/stripe", tag = "reservations",
    request_body(content = String, description = "The event, exactly as Stripe signed it", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header)),
    responses(
        (status = 200, description = "Handled, or acknowledged and ignored", body = WebhookAck),
        (status = 400, description = "`invalid_signature`, `stale_signature` or `invalid_payload`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<axum::Json<WebhookAck>> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            AppError::bad_request(
                "invalid_signature",
                "the Stripe-Signature header is missing",
            )
        })?;
    let event = state
        .payments
        .verify_webhook(&body, signature)
        .map_err(|error| match error {
            WebhookError::StaleTimestamp { .. } => {
                AppError::bad_request("stale_signature", error.to_string())
            }
            WebhookError::BadPayload(_) => {
                AppError::bad_request("invalid_payload", error.to_string())
            }
            _ => AppError::bad_request("invalid_signature", error.to_string()),
        })?;
    tracing::info!(event.id = %event.id, "Stripe event received");

    let mut tx = state.db.begin().await?;
    if !db::record_event(&mut tx, &event.id, event_type(&event.kind)).await? {
        return Ok(axum::Json(WebhookAck {
            received: true,
            duplicate: true,
        }));
    }
    if let WebhookEventKind::SetupIntentSucceeded {
        setup_intent_id,
        payment_method: Some(payment_method),
    } = &event.kind
        && let Some(reservation) = db::find_by_setup_intent(&mut tx, setup_intent_id).await?
    {
        db::lock_spot(&mut tx, reservation.spot_id).await?;
        if db::lock(&mut tx, reservation.id).await?.status == Status::Held {
            db::confirm(&mut tx, reservation.id, payment_method).await?;
            tracing::info!(reservation.id = %reservation.id, "reservation confirmed by webhook");
        }
    }
    tx.commit().await?;
    Ok(axum::Json(WebhookAck {
        received: true,
        duplicate: false,
    }))
}

fn event_type(kind: &WebhookEventKind) -> &str {
    match kind {
        WebhookEventKind::SetupIntentSucceeded { .. } => "setup_intent.succeeded",
        WebhookEventKind::PaymentIntentSucceeded { .. } => "payment_intent.succeeded",
        WebhookEventKind::PaymentIntentFailed { .. } => "payment_intent.payment_failed",
        WebhookEventKind::Other(kind) => kind,
    }
}
