//! The attempts at a reservation's final charge, and what they decide: whether a bill is
//! unpaid, and which card the next attempt uses.
//!
//! Each attempt is one PaymentIntent under its own idempotency key (`reservation:{id}:charge`
//! for the first, `reservation:{id}:charge:{n}` after). `charge_attempts_one_success`, a
//! unique partial index, refuses a second succeeded attempt of one reservation, whatever the
//! order in which the charge job, Stripe's webhooks and the driver's retries arrive.

use chrono::Utc;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::actions::Action;
use super::db::query_reservation;
use super::model::{PaymentStatus, Reservation, Status};
use crate::error::{AppError, AppResult};
use crate::money::Cents;
use crate::payments::{
    Card, CustomerId, PaymentIntentId, PaymentMethodId, SetupIntent, SetupIntentId,
    SetupIntentStatus,
};

/// The idempotency key of attempt `attempt` at the reservation's final charge. The first
/// keeps the key it had before attempts were numbered, so a charge in flight across an
/// upgrade is not made twice.
pub fn charge_key(reservation_id: Uuid, attempt: i32) -> String {
    match attempt {
        1 => format!("reservation:{reservation_id}:charge"),
        n => format!("reservation:{reservation_id}:charge:{n}"),
    }
}

/// The idempotency key of the SetupIntent that saves a new card for attempt `attempt`.
pub fn setup_key(reservation_id: Uuid, attempt: i32) -> String {
    format!("reservation:{reservation_id}:setup:{attempt}")
}

/// What Stripe said of an attempt, as `charge_attempts.status` stores it (Stripe's own
/// words for a PaymentIntent, `failed` for one that was refused).
pub fn attempt_status(payment_status: PaymentStatus) -> &'static str {
    match payment_status {
        PaymentStatus::Paid => "succeeded",
        PaymentStatus::RequiresAction => "requires_action",
        PaymentStatus::Failed => "failed",
        _ => "processing",
    }
}

/// Records what the current attempt's PaymentIntent did. A second succeeded attempt of the
/// same reservation fails here (`charge_attempts_one_success`), and its transaction with it.
pub async fn record_attempt(
    conn: &mut PgConnection,
    reservation: &Reservation,
    payment_intent_id: &PaymentIntentId,
    status: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into charge_attempts
             (reservation_id, attempt, payment_intent_id, payment_method_id, amount_cents, status)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (reservation_id, attempt)
         do update set payment_intent_id = excluded.payment_intent_id, status = excluded.status",
        reservation.id,
        reservation.charge_attempt,
        payment_intent_id as &PaymentIntentId,
        reservation
            .stripe_payment_method_id
            .as_ref()
            .map_or("", PaymentMethodId::as_str),
        reservation.amount_cents as Cents,
        status,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The latest attempt's PaymentIntent and its status, for the receipt.
pub async fn latest_attempt(
    conn: &mut PgConnection,
    reservation_id: Uuid,
) -> sqlx::Result<Option<(String, String)>> {
    let latest = sqlx::query!(
        "select payment_intent_id, status from charge_attempts
         where reservation_id = $1 order by attempt desc limit 1",
        reservation_id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(latest.map(|row| (row.payment_intent_id, row.status)))
}

/// Who pays for a booking: a guest's email, or the account's email and Stripe customer.
pub struct Payer {
    pub email: String,
    pub customer: Option<CustomerId>,
    /// A reservation of this payer whose bill is unpaid (failed, or waiting for the card
    /// holder to authenticate), by email for guests and drivers alike, and by account.
    pub unpaid: Option<Uuid>,
}

/// The payer of a booking by `user_id` (an account) or else `guest_email`, with its unpaid
/// bill if any, in one round trip; `None` if the account no longer exists. The words of the
/// unpaid test are those of `reservations_unpaid_by_email_idx`.
pub async fn payer(
    pool: &PgPool,
    guest_email: &str,
    user_id: Option<Uuid>,
) -> sqlx::Result<Option<Payer>> {
    sqlx::query_as!(
        Payer,
        r#"with payer as (
               select email, stripe_customer_id, id as user_id from users where id = $2
               union all
               select $1, null, null where $2::uuid is null
           )
           select p.email as "email!", p.stripe_customer_id as "customer: CustomerId",
                  (select r.id from reservations r
                   where (r.email = p.email or (p.user_id is not null and r.user_id = p.user_id))
                     and r.payment_status in ('failed', 'requires_action')
                   order by r.created_at limit 1) as unpaid
           from payer p"#,
        guest_email,
        user_id,
    )
    .fetch_optional(pool)
    .await
}

/// Starts the next attempt with `payment_method_id`, on a failed reservation the caller
/// locked and checked: the charge is pending again, under the next attempt's number. The
/// SetupIntent that saved the card has done its work and is forgotten, so a later failure
/// asks for another card rather than trying this one again.
pub async fn begin_attempt(
    conn: &mut PgConnection,
    id: Uuid,
    payment_method_id: &PaymentMethodId,
    card: Option<&Card>,
) -> sqlx::Result<Reservation> {
    query_reservation!(
        "update reservations set payment_status = 'charge_pending',
                stripe_payment_method_id = $2, stripe_payment_intent_id = null,
                payment_error = null, stripe_setup_intent_id = null, card_brand = $3,
                card_last4 = $4, charge_attempt = charge_attempt + 1
         where id = $1
         returning",
        "",
        id,
        payment_method_id as &PaymentMethodId,
        card.map(|c| c.brand.as_str()),
        card.map(|c| c.last4.as_str()),
    )
    .fetch_one(conn)
    .await
}

/// Records the SetupIntent that saves a new card for the next attempt: the one Stripe's
/// `setup_intent.succeeded` names, and the one `GET …/payment` hands out again.
pub async fn attach_retry_setup_intent(
    conn: &mut PgConnection,
    id: Uuid,
    setup_intent_id: &SetupIntentId,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update reservations set stripe_setup_intent_id = $2 where id = $1",
        id,
        setup_intent_id as &SetupIntentId,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The card the receipt names.
pub async fn set_card(conn: &mut PgConnection, id: Uuid, card: &Card) -> sqlx::Result<()> {
    sqlx::query!(
        "update reservations set card_brand = $2, card_last4 = $3 where id = $1",
        id,
        card.brand,
        card.last4,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The card a SetupIntent saved for a failed bill: the intent succeeded with a card other
/// than the one that failed (the booking's own SetupIntent names that one). Both the
/// webhook and `GET …/payment` start the next attempt with it.
pub fn new_card(reservation: &Reservation, intent: &SetupIntent) -> Option<PaymentMethodId> {
    match (&intent.status, &intent.payment_method) {
        (SetupIntentStatus::Succeeded, Some(card))
            if reservation.stripe_payment_method_id.as_ref() != Some(card) =>
        {
            Some(card.clone())
        }
        _ => None,
    }
}

/// Starts the next attempt with `payment_method_id` if the payment is still failed (and
/// not tried too often), in the caller's transaction; `None` if a request, job or webhook
/// started one first. The reservation's row lock makes every path start each attempt once.
pub async fn start_attempt_in(
    conn: &mut PgConnection,
    id: Uuid,
    payment_method_id: &PaymentMethodId,
    card: Option<&Card>,
) -> AppResult<Option<Reservation>> {
    let current = super::db::lock(conn, id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such reservation".into()))?;
    if current.check(Action::RetryPayment, Utc::now()).is_err() {
        return Ok(None);
    }
    let started = begin_attempt(conn, id, payment_method_id, card).await?;
    tracing::info!(reservation.id = %id, attempt = started.charge_attempt, "new charge attempt");
    Ok(Some(started))
}
