//! A driver's wallet: the one Stripe customer of an account and the cards saved on it.
//!
//! Stripe is the record of which cards a customer has; `saved_cards` remembers what Stripe
//! said and when (see `migrations/0010_returning_drivers.sql`). A card is used for a
//! booking only after Stripe has reported it on the driver's own customer.

pub mod db;
mod routes;

use chrono::{DateTime, Datelike as _, Duration, Utc};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::payments::{Card, CustomerId, PaymentError, PaymentMethodId, payment_error};
use crate::state::AppState;

/// How long Stripe's word that a card is the driver's is taken without asking again.
///
/// Safe because a card changes owner only by being detached, and only Curbside holds the
/// secret key that detaches: its removal marks the card in PostgreSQL (under the lock a
/// booking takes) before asking Stripe, so no booking uses a card being removed, however
/// recent its check. What can change unseen within the hour is outside ownership: a card
/// detached from Stripe's dashboard (the `payment_method.detached` webhook marks it) or
/// cancelled by its bank. Either way the booking is made and its final charge fails, which
/// the payment-recovery flow answers (the driver is emailed and pays with another card):
/// nothing is charged to anyone else, and no spot is held without a way to pay.
pub const RECHECK_AFTER: Duration = Duration::hours(1);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::list_cards))
        .routes(routes!(routes::remove_card))
        .routes(routes!(routes::make_default))
}

/// The card, if Stripe reports it as a card attached to `customer`. One call to Stripe.
pub async fn card_of_customer(
    state: &AppState,
    customer: &CustomerId,
    payment_method_id: &PaymentMethodId,
) -> AppResult<Option<Card>> {
    let card = match state.payments.card(payment_method_id).await {
        Ok(card) => card,
        // Stripe answers 404 for a method it does not know.
        Err(PaymentError::Rejected { status: 404, .. }) => None,
        Err(error) => return Err(payment_error(error)),
    };
    Ok(card.filter(|card| card.customer_id.as_ref() == Some(customer)))
}

/// The driver's card as Stripe last reported it on their customer: as recorded if within
/// [`RECHECK_AFTER`] of `now`, else asked of Stripe (one call) and recorded. `None` for a card
/// that is not theirs, or that was removed through Curbside (it stays removed, whatever
/// Stripe still says).
pub async fn checked_card(
    state: &AppState,
    user_id: Uuid,
    customer: &CustomerId,
    payment_method_id: &PaymentMethodId,
    now: DateTime<Utc>,
) -> AppResult<Option<Card>> {
    let since = now - RECHECK_AFTER;
    let recorded = db::recently_verified(
        &mut *state.db.acquire().await?,
        user_id,
        payment_method_id,
        since,
    )
    .await?;
    if recorded.is_some() {
        return Ok(recorded);
    }
    let Some(card) = card_of_customer(state, customer, payment_method_id).await? else {
        return Ok(None);
    };
    let live =
        db::record_verified(&mut *state.db.acquire().await?, user_id, customer, &card).await?;
    Ok(live.then_some(card))
}

/// A card of the driver's that a booking may use now, checked with Stripe unless Stripe
/// reported it within [`RECHECK_AFTER`]: no call to Stripe then, one otherwise. 422 for a
/// card that is not theirs (another customer's, removed, unknown) or has expired.
pub async fn usable_card(
    state: &AppState,
    user_id: Uuid,
    customer: Option<&CustomerId>,
    payment_method_id: &PaymentMethodId,
    now: DateTime<Utc>,
) -> AppResult<Card> {
    let not_theirs = || {
        AppError::validation(
            "payment_method_id",
            "is not a card saved on your account; list them at GET /v1/me/payment-methods",
        )
    };
    let customer = customer.ok_or_else(not_theirs)?;
    let card = checked_card(state, user_id, customer, payment_method_id, now)
        .await?
        .ok_or_else(not_theirs)?;
    if has_expired(&card, now) {
        return Err(AppError::validation(
            "payment_method_id",
            "the card has expired; save another one",
        ));
    }
    Ok(card)
}

/// A card is valid through the last day of its expiry month.
fn has_expired(card: &Card, now: DateTime<Utc>) -> bool {
    let (year, month) = (now.year(), now.month());
    (
        i32::from(card.exp_year),
        u32::try_from(card.exp_month).unwrap_or(0),
    ) < (year, month)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(exp_month: i16, exp_year: i16) -> Card {
        Card {
            id: PaymentMethodId::new("pm_1"),
            brand: "visa".into(),
            last4: "4242".into(),
            exp_month,
            exp_year,
            customer_id: None,
        }
    }

    #[test]
    fn a_card_is_valid_through_its_expiry_month() {
        let now = DateTime::parse_from_rfc3339("2026-12-31T23:59:59Z")
            .unwrap()
            .to_utc();
        assert!(!has_expired(&card(12, 2026), now));
        assert!(!has_expired(&card(1, 2027), now));
        assert!(has_expired(&card(11, 2026), now));
        assert!(has_expired(&card(12, 2025), now));
    }
}
