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

use chrono::Utc;
use sqlx::PgConnection;
use uuid::Uuid;

use super::actions::{Action, Refusal};
use super::charges;
use super::db;
use super::lifecycle;
use super::model::{PaymentStatus, Reservation, Status};
use super::notices::{self, Notice};
use super::refunds::{self, Verdict};
use crate::auth::AuthUser;
use crate::error::{AppError, AppResult};
use crate::links::AppLinks;
use crate::payments::{
    ChargeOutcome, CustomerId, PaymentError, PaymentMethodId, SetupIntentStatus, WebhookError,
    WebhookEventKind, payment_error,
};
use crate::state::AppState;
use crate::wallet;

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
    // Like every write to a live booking, after the spot's lock: a booking of the same
    // window being checked against this row at the same moment would otherwise deadlock
    // with it (each waiting for the other's row).
    let mut tx = state.db.begin().await?;
    db::lock_spot(&mut tx, reservation.spot_id).await?;
    db::attach_setup_intent(&mut tx, reservation.id, &customer, &intent.id).await?;
    tx.commit().await?;
    Ok(intent.client_secret)
}

/// A driver's one Stripe customer, created at the first booking.
async fn account_customer(state: &AppState, user: &AuthUser, email: &str) -> AppResult<CustomerId> {
    if let Some(id) = wallet::db::customer_of(&mut *state.db.acquire().await?, user.user_id).await?
    {
        return Ok(id);
    }
    let created = state
        .payments
        .create_customer(email, &format!("user:{}:customer", user.user_id))
        .await
        .map_err(payment_error)?;
    let kept =
        wallet::db::keep_customer(&mut *state.db.acquire().await?, user.user_id, &created).await?;
    Ok(kept)
}

/// The saved card of the reservation's SetupIntent, as Stripe reports it; 409 with the
/// intent's state while the card is not saved.
pub async fn saved_card(state: &AppState, reservation: &Reservation) -> AppResult<PaymentMethodId> {
    let not_saved = |detail: String| AppError::conflict("card_not_saved", detail);
    let setup_intent_id = reservation
        .stripe_setup_intent_id
        .as_ref()
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
    payment_method: &PaymentMethodId,
) -> AppResult<Reservation> {
    let mut tx = state.db.begin().await?;
    let confirmed = confirm_in(&mut tx, &state.links, reservation, payment_method).await?;
    tx.commit().await?;
    match confirmed {
        Confirmation::Now(confirmed) => {
            lifecycle::schedule_follow_up(state, &confirmed).await;
            Ok(confirmed)
        }
        Confirmation::Already(current) => Ok(current),
        Confirmation::Refused(refusal) => Err(refusal.into()),
    }
}

enum Confirmation {
    Now(Reservation),
    Already(Reservation),
    Refused(Refusal),
}

/// Confirms a held reservation with its confirmation email, in the caller's transaction.
async fn confirm_in(
    conn: &mut PgConnection,
    links: &AppLinks,
    reservation: &Reservation,
    payment_method: &PaymentMethodId,
) -> AppResult<Confirmation> {
    db::lock_spot(conn, reservation.spot_id).await?;
    let current = db::lock(conn, reservation.id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such reservation".into()))?;
    match current.check(Action::Confirm, Utc::now()) {
        Ok(()) => {
            let confirmed = db::confirm(conn, reservation.id, payment_method).await?;
            notices::write(conn, links, &confirmed, &Notice::Confirmed).await?;
            tracing::info!(reservation.id = %reservation.id, "reservation confirmed");
            Ok(Confirmation::Now(confirmed))
        }
        Err(Refusal::AlreadyConfirmed) => Ok(Confirmation::Already(current)),
        Err(refusal) => Ok(Confirmation::Refused(refusal)),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    received: bool,
    /// True when this event id was handled before and had no second effect.
    duplicate: bool,
}

/// Stripe's events, verified by signature over the raw body. Each event id takes effect once.
/// An event only says which object to look at: the object's state is asked of Stripe.
#[utoipa::path(
    post, path = "/v1/webhooks/stripe", tag = "reservations",
    request_body(content = String, description = "The event, exactly as Stripe signed it", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header)),
    responses(
        (status = 200, description = "Handled, or acknowledged and ignored", body = WebhookAck),
        (status = 400, description = "`invalid_signature`: no or a wrong `Stripe-Signature`; `stale_signature`: signed more than 300 s ago; `invalid_payload`: not an event, or ids that are not Stripe's"),
        (status = 503, description = "Stripe could not be asked about the event's object; Stripe sends the event again"),
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
    tracing::info!(event.id = %event.id, event.type = %event.event_type, "Stripe event received");
    let duplicate = axum::Json(WebhookAck {
        received: true,
        duplicate: true,
    });
    // Asking Stripe again about an event handled before would change nothing.
    if db::event_seen(&mut *state.db.acquire().await?, &event.id).await? {
        return Ok(duplicate);
    }
    let effect = effect_of(&state, &event.kind).await?;

    let mut tx = state.db.begin().await?;
    if !db::record_event(&mut tx, &event.id, &event.event_type).await? {
        return Ok(duplicate);
    }
    let changed = match effect {
        Some(Effect::Confirm {
            reservation,
            payment_method,
        }) => match confirm_in(&mut tx, &state.links, &reservation, &payment_method).await? {
            Confirmation::Now(confirmed) => vec![confirmed],
            Confirmation::Already(_) | Confirmation::Refused(_) => Vec::new(),
        },
        Some(Effect::Settle {
            reservation_id,
            outcome,
        }) => lifecycle::settle_in(&mut tx, &state.links, reservation_id, &outcome)
            .await?
            .into_iter()
            .collect(),
        Some(Effect::Retry {
            reservation_id,
            payment_method,
        }) => charges::start_attempt_in(&mut tx, reservation_id, &payment_method, None)
            .await?
            .into_iter()
            .collect(),
        Some(Effect::SettleRefunds(verdicts)) => {
            let mut settled = Vec::new();
            for verdict in &verdicts {
                if let Some((_, reservation)) =
                    refunds::settle_in(&mut tx, &state.links, verdict).await?
                {
                    settled.push(reservation);
                }
            }
            settled
        }
        Some(Effect::ForgetCard(payment_method)) => {
            wallet::db::mark_removed(&mut tx, &payment_method).await?;
            Vec::new()
        }
        None => Vec::new(),
    };
    tx.commit().await?;
    for changed in &changed {
        lifecycle::schedule_follow_up(&state, changed).await;
    }
    Ok(axum::Json(WebhookAck {
        received: true,
        duplicate: false,
    }))
}

/// What an event leads to, once Stripe has confirmed it.
enum Effect {
    /// The held reservation's card is saved.
    Confirm {
        reservation: Box<Reservation>,
        payment_method: PaymentMethodId,
    },
    /// A new card is saved for a failed bill: charge it.
    Retry {
        reservation_id: Uuid,
        payment_method: PaymentMethodId,
    },
    /// The reservation's charge has this result.
    Settle {
        reservation_id: Uuid,
        outcome: ChargeOutcome,
    },
    /// Stripe's word on refunds of ours.
    SettleRefunds(Vec<Verdict>),
    /// Stripe reports the card attached to nobody (detached outside Curbside).
    ForgetCard(PaymentMethodId),
}

/// Asks Stripe about the event's object (outside any transaction). `None` when the event
/// concerns nothing of ours, or Stripe does not confirm it: such an event is acknowledged
/// and has no effect. Stripe unreachable is a 503, and Stripe sends the event again.
async fn effect_of(state: &AppState, kind: &WebhookEventKind) -> AppResult<Option<Effect>> {
    match kind {
        WebhookEventKind::SetupIntentSucceeded { setup_intent_id } => {
            let reservation =
                db::find_by_setup_intent(&mut *state.db.acquire().await?, setup_intent_id).await?;
            let Some(reservation) = reservation else {
                return Ok(None);
            };
            if reservation.payment_status == PaymentStatus::Failed {
                return Ok(new_card_for(state, &reservation)
                    .await?
                    .map(|payment_method| Effect::Retry {
                        reservation_id: reservation.id,
                        payment_method,
                    }));
            }
            if reservation.status != Status::Held {
                return Ok(None);
            }
            match saved_card(state, &reservation).await {
                Ok(payment_method) => Ok(Some(Effect::Confirm {
                    reservation: Box::new(reservation),
                    payment_method,
                })),
                Err(AppError::Conflict { .. }) => {
                    tracing::warn!(setup_intent.id = %setup_intent_id, "Stripe does not report a saved card for this event");
                    Ok(None)
                }
                Err(error) => Err(error),
            }
        }
        WebhookEventKind::PaymentIntentUpdated { payment_intent_id } => {
            let Some(intent) = state
                .payments
                .retrieve_payment_intent(payment_intent_id)
                .await
                .map_err(payment_error)?
            else {
                tracing::warn!(payment_intent.id = %payment_intent_id, "an event names a PaymentIntent Stripe does not know");
                return Ok(None);
            };
            let reservation_id =
                db::find_charged_by(&mut *state.db.acquire().await?, &intent).await?;
            Ok(reservation_id.map(|reservation_id| Effect::Settle {
                reservation_id,
                outcome: intent.outcome,
            }))
        }
        WebhookEventKind::RefundsChanged { payment_intent_id } => {
            let verdicts: Vec<Verdict> = state
                .payments
                .refunds_of(payment_intent_id)
                .await
                .map_err(payment_error)?
                .iter()
                .filter_map(Verdict::of)
                .collect();
            Ok((!verdicts.is_empty()).then_some(Effect::SettleRefunds(verdicts)))
        }
        WebhookEventKind::CardDetached { payment_method_id } => {
            match state.payments.card(payment_method_id).await {
                Ok(Some(card)) if card.customer_id.is_some() => Ok(None),
                Ok(_) | Err(PaymentError::Rejected { status: 404, .. }) => {
                    Ok(Some(Effect::ForgetCard(payment_method_id.clone())))
                }
                Err(error) => Err(payment_error(error)),
            }
        }
        WebhookEventKind::Other => Ok(None),
    }
}

/// The card a SetupIntent saved for a failed bill, as Stripe reports it (see
/// [`charges::new_card`]).
async fn new_card_for(
    state: &AppState,
    reservation: &Reservation,
) -> AppResult<Option<PaymentMethodId>> {
    let Some(setup_intent_id) = reservation.stripe_setup_intent_id.as_ref() else {
        return Ok(None);
    };
    let intent = state
        .payments
        .retrieve_setup_intent(setup_intent_id)
        .await
        .map_err(payment_error)?;
    Ok(charges::new_card(reservation, &intent))
}
