//! The payment of a reservation, as a resource: what its state is and what the card holder
//! must do next, with the secret Stripe.js needs for it. Stripe's advice for off-session
//! payments is the model: when a charge is declined or the bank asks for 3-D Secure, bring
//! the card holder back on-session to authenticate or to give another card.
//!
//! ```text
//! held ─────────────── save_card (the booking's SetupIntent, again) ──▶ confirmed
//! requires_action ──── authenticate (the PaymentIntent's secret) ──────▶ paid
//! failed ──retry──┬─── a saved card (`payment_method_id`) ─────────────▶ charge, attempt n+1
//!                 └─── save_card (a new SetupIntent) ──saved──────────▶ charge, attempt n+1
//! ```
//!
//! Every path that starts an attempt locks the reservation and checks that its payment has
//! failed, so the driver's retries, Stripe's webhooks and `GET …/payment` start each attempt
//! once; `charges` keeps one succeeded attempt per reservation at most.

use axum::extract::State;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::Caller;
use super::actions::Action;
use super::charges;
use super::db;
use super::lifecycle::{self, ChargeAttempt};
use super::model::{PaymentStatus, Reservation, Status};
use super::payment;
use crate::error::{AppError, AppResult};
use crate::extract::{Json, Path};
use crate::money::Cents;
use crate::payments::{Card, PaymentMethodId, SetupIntentStatus, payment_error};
use crate::state::AppState;
use crate::wallet;

/// The payment of a reservation and what to do next.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    pub reservation_id: Uuid,
    pub payment_status: PaymentStatus,
    /// The quote while the reservation runs; the final bill once completed.
    pub amount_cents: Cents,
    #[schema(example = "usd")]
    pub currency: String,
    /// The attempt at the final charge made last (or next): 1, then one more per card
    /// given after a failure, up to `max_attempts`.
    pub attempt: i32,
    pub max_attempts: i32,
    /// Why the last attempt failed, when it did.
    #[schema(required = true)]
    pub last_error: Option<String>,
    pub next_action: NextAction,
}

/// What the client does next.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NextAction {
    /// Save a card with Stripe.js (`confirmCardSetup(client_secret)`). For a held booking,
    /// then `POST …/confirm`; after a failed payment the server charges the card as soon as
    /// Stripe reports it saved (its webhook, or the next `GET …/payment`).
    SaveCard { client_secret: String },
    /// The bank asks the card holder to authenticate: Stripe.js
    /// `confirmCardPayment(client_secret, {payment_method: payment_method_id})`. Stripe's
    /// webhook, or the next `GET …/payment`, then settles the payment.
    Authenticate {
        client_secret: String,
        payment_method_id: String,
    },
    /// The charge failed: `POST …/payment/retry` with a saved card, or without one to save
    /// a new card.
    GiveAnotherCard,
    /// A charge is on its way, or the card setup is being started: ask again shortly.
    Wait,
    /// Nothing to do: paid, nothing owed, or the card is saved and the bill comes at the end.
    None,
}

impl PaymentView {
    fn new(reservation: &Reservation, next_action: NextAction) -> Self {
        Self {
            reservation_id: reservation.id,
            payment_status: reservation.payment_status,
            amount_cents: reservation.amount_cents,
            currency: reservation.currency.clone(),
            attempt: reservation.charge_attempt,
            max_attempts: super::actions::MAX_CHARGE_ATTEMPTS,
            last_error: reservation.payment_error.clone(),
            next_action,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// A card saved for this reservation's payer (`pm_…`): charged at once. Without it, a
    /// new SetupIntent is started to save another card (`next_action.type = save_card`).
    #[schema(max_length = 255, example = "pm_1Q0PsIJvEtkwdCNY")]
    pub payment_method_id: Option<String>,
}

async fn find(state: &AppState, id: Uuid, caller: &Caller) -> AppResult<Reservation> {
    db::find_for(&mut *state.db.acquire().await?, id, caller)
        .await?
        .ok_or_else(|| AppError::NotFound("no such reservation".into()))
}

/// The payment of a reservation and exactly what the client must do next. Asks Stripe
/// where the answer depends on it, and settles what Stripe reports meanwhile (a payment the
/// card holder authenticated, a card saved for a failed bill).
#[utoipa::path(
    get, path = "/v1/reservations/{id}/payment", tag = "payments",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The payment and its next action", body = PaymentView),
        (status = 404, description = "`not_found`: no such reservation, or not the caller's"),
        (status = 409, description = "`invalid_state`: a card saved for a hold that lapsed or was cancelled meanwhile"),
        (status = 502, description = "`bad_gateway`: Stripe answered, but not usefully"),
    )
)]
#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn show_payment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<axum::Json<PaymentView>> {
    let reservation = find(&state, id, &caller).await?;
    let (reservation, next_action) = next_step(&state, reservation).await?;
    Ok(axum::Json(PaymentView::new(&reservation, next_action)))
}

/// Pay a failed bill again: with a saved card (charged now), or by saving a new one.
#[utoipa::path(
    post, path = "/v1/reservations/{id}/payment/retry", tag = "payments",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = RetryRequest,
    responses(
        (status = 200, description = "The payment after the attempt (`paid`, `failed` again, `requires_action`), or the new card's SetupIntent (`next_action.type = save_card`)", body = PaymentView),
        (status = 404, description = "`not_found`: no such reservation, or not the caller's"),
        (status = 409, description = "`invalid_state`: the payment has not failed (it is paid, on its way or awaiting authentication), or `max_attempts` cards were tried"),
        (status = 422, description = "`validation_failed`: `payment_method_id` is not a card saved for this reservation's payer"),
        (status = 502, description = "`bad_gateway`: Stripe answered, but not usefully; nothing was changed"),
    )
)]
#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn retry_payment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<RetryRequest>,
) -> AppResult<axum::Json<PaymentView>> {
    let reservation = find(&state, id, &caller).await?;
    reservation.check(Action::RetryPayment, Utc::now())?;
    match body.payment_method_id {
        Some(payment_method_id) => {
            let card = payers_card(&state, &reservation, &payment_method_id).await?;
            let started = start_attempt(&state, id, &card.id, Some(&card))
                .await?
                .ok_or(super::actions::Refusal::PaymentNotFailed)?;
            charge_now(&state, &started).await;
        }
        None => start_new_card(&state, &reservation).await?,
    }
    let reservation = find(&state, id, &caller).await?;
    let (reservation, next_action) = next_step(&state, reservation).await?;
    Ok(axum::Json(PaymentView::new(&reservation, next_action)))
}

/// What the client must do next, after catching up with what Stripe reports.
async fn next_step(
    state: &AppState,
    reservation: Reservation,
) -> AppResult<(Reservation, NextAction)> {
    match reservation.payment_status {
        PaymentStatus::SetupPending => card_setup_step(state, reservation).await,
        PaymentStatus::RequiresAction => authentication_step(state, reservation).await,
        PaymentStatus::Failed => recovery_step(state, reservation).await,
        PaymentStatus::ChargePending => Ok((reservation, NextAction::Wait)),
        PaymentStatus::CardSaved | PaymentStatus::Paid | PaymentStatus::NotRequired => {
            Ok((reservation, NextAction::None))
        }
    }
}

/// A held booking: the SetupIntent's client secret again (a lost booking response is no
/// dead end), or the confirmation if the card was saved meanwhile.
async fn card_setup_step(
    state: &AppState,
    reservation: Reservation,
) -> AppResult<(Reservation, NextAction)> {
    if reservation.status != Status::Held || !reservation.is_live(Utc::now()) {
        return Ok((reservation, NextAction::None));
    }
    let Some(setup_intent_id) = reservation.stripe_setup_intent_id.as_ref() else {
        return Ok((reservation, NextAction::Wait));
    };
    let intent = state
        .payments
        .retrieve_setup_intent(setup_intent_id)
        .await
        .map_err(payment_error)?;
    match (intent.status, intent.payment_method) {
        (SetupIntentStatus::Succeeded, Some(payment_method)) => {
            let confirmed =
                payment::confirm_with_card(state, &reservation, &payment_method).await?;
            Ok((confirmed, NextAction::None))
        }
        _ => Ok((
            reservation,
            NextAction::SaveCard {
                client_secret: intent.client_secret,
            },
        )),
    }
}

/// A payment waiting for the card holder to authenticate: settled if Stripe says it is
/// done, else the PaymentIntent's client secret for Stripe.js.
async fn authentication_step(
    state: &AppState,
    reservation: Reservation,
) -> AppResult<(Reservation, NextAction)> {
    let Some(payment_intent_id) = reservation.stripe_payment_intent_id.as_ref() else {
        return Ok((reservation, NextAction::Wait));
    };
    let intent = state
        .payments
        .retrieve_payment_intent(payment_intent_id)
        .await
        .map_err(payment_error)?
        .ok_or_else(|| {
            AppError::BadGateway("Stripe does not know the payment being authenticated".into())
        })?;
    if !matches!(
        intent.outcome,
        crate::payments::ChargeOutcome::RequiresAction { .. }
    ) {
        lifecycle::settle(state, reservation.id, &intent.outcome).await?;
        let settled = db::get(&mut *state.db.acquire().await?, reservation.id).await?;
        return Box::pin(next_step(state, settled)).await;
    }
    match (intent.client_secret, intent.payment_method_id) {
        (Some(client_secret), Some(payment_method_id)) => Ok((
            reservation,
            NextAction::Authenticate {
                client_secret,
                payment_method_id: payment_method_id.into_string(),
            },
        )),
        _ => Err(AppError::BadGateway(
            "Stripe did not say how to authenticate the payment".into(),
        )),
    }
}

/// A failed payment: the new card's SetupIntent if one was started (and the next attempt,
/// if the card is saved meanwhile), else an invitation to give another card.
async fn recovery_step(
    state: &AppState,
    reservation: Reservation,
) -> AppResult<(Reservation, NextAction)> {
    if reservation.check(Action::RetryPayment, Utc::now()).is_err() {
        return Ok((reservation, NextAction::None));
    }
    let Some(setup_intent_id) = reservation.stripe_setup_intent_id.as_ref() else {
        return Ok((reservation, NextAction::GiveAnotherCard));
    };
    let intent = state
        .payments
        .retrieve_setup_intent(setup_intent_id)
        .await
        .map_err(payment_error)?;
    if let Some(card) = charges::new_card(&reservation, &intent) {
        if let Some(started) = start_attempt(state, reservation.id, &card, None).await? {
            charge_now(state, &started).await;
        }
        let current = db::get(&mut *state.db.acquire().await?, reservation.id).await?;
        return Box::pin(next_step(state, current)).await;
    }
    if intent.status == SetupIntentStatus::Succeeded {
        // The booking's own SetupIntent, whose card just failed.
        return Ok((reservation, NextAction::GiveAnotherCard));
    }
    Ok((
        reservation,
        NextAction::SaveCard {
            client_secret: intent.client_secret,
        },
    ))
}

/// The card, if it is a card saved for the reservation's payer (Stripe says whose it is).
async fn payers_card(
    state: &AppState,
    reservation: &Reservation,
    payment_method_id: &str,
) -> AppResult<Card> {
    let not_theirs = || {
        AppError::validation(
            "payment_method_id",
            "is not a card saved for this reservation's payer",
        )
    };
    let payment_method_id = PaymentMethodId::parse(payment_method_id).ok_or_else(|| {
        AppError::validation(
            "payment_method_id",
            "must be a Stripe payment method id (pm_…)",
        )
    })?;
    let customer = reservation
        .stripe_customer_id
        .as_ref()
        .ok_or_else(not_theirs)?;
    wallet::card_of_customer(state, customer, &payment_method_id)
        .await?
        .ok_or_else(not_theirs)
}

/// Starts a SetupIntent for another card (the same one again if asked twice for one
/// attempt: its idempotency key names the attempt) and records it for the webhook.
async fn start_new_card(state: &AppState, reservation: &Reservation) -> AppResult<()> {
    let customer = reservation.stripe_customer_id.as_ref().ok_or_else(|| {
        AppError::conflict("invalid_state", "the reservation has no payer at Stripe")
    })?;
    let intent = state
        .payments
        .create_setup_intent(
            customer,
            &charges::setup_key(reservation.id, reservation.charge_attempt + 1),
        )
        .await
        .map_err(payment_error)?;
    let mut tx = state.db.begin().await?;
    let current = lock(&mut tx, reservation.id).await?;
    current.check(Action::RetryPayment, Utc::now())?;
    charges::attach_retry_setup_intent(&mut tx, reservation.id, &intent.id).await?;
    tx.commit().await?;
    Ok(())
}

async fn lock(conn: &mut PgConnection, id: Uuid) -> AppResult<Reservation> {
    db::lock(conn, id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such reservation".into()))
}

/// Starts the next attempt in a transaction of its own (see [`charges::start_attempt_in`]).
async fn start_attempt(
    state: &AppState,
    id: Uuid,
    payment_method_id: &PaymentMethodId,
    card: Option<&Card>,
) -> AppResult<Option<Reservation>> {
    let mut tx = state.db.begin().await?;
    let started = charges::start_attempt_in(&mut tx, id, payment_method_id, card).await?;
    tx.commit().await?;
    Ok(started)
}

/// Charges a started attempt while the card holder waits for the answer; what cannot be
/// finished now is left to the charge job (and the reconciler behind it).
async fn charge_now(state: &AppState, started: &Reservation) {
    match lifecycle::charge(state, started.id).await {
        Ok(ChargeAttempt::Settled) => {}
        Ok(ChargeAttempt::ProviderUnavailable(message)) => {
            tracing::warn!(%message, "Stripe unavailable for a retried charge; the job retries");
            lifecycle::schedule_follow_up(state, started).await;
        }
        Ok(ChargeAttempt::Unknown(error)) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "a retried charge's fate is unknown; the job asks again"
            );
            lifecycle::schedule_follow_up(state, started).await;
        }
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "a retried charge was not recorded; the job retries"
            );
            lifecycle::schedule_follow_up(state, started).await;
        }
    }
}
