//! `/v1/me/payment-methods`: the signed-in driver's saved cards.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::{checked_card, db, has_expired};
use crate::auth::AuthUser;
use crate::error::{AppError, AppResult};
use crate::extract::Path;
use crate::payments::{Card, CustomerId, PaymentMethodId, payment_error};
use crate::state::AppState;

/// A saved card as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SavedCardView {
    /// Stripe's payment method id: give it as `payment_method_id` to book in one step.
    #[schema(example = "pm_1PgMxqLkdIwHu7ix")]
    pub id: String,
    #[schema(example = "visa")]
    pub brand: String,
    #[schema(example = "4242")]
    pub last4: String,
    #[schema(minimum = 1, maximum = 12)]
    pub exp_month: i16,
    pub exp_year: i16,
    /// Past its expiry month: it cannot book.
    pub expired: bool,
    /// The customer's default card (`PUT …/default`).
    pub default: bool,
}

impl SavedCardView {
    fn new(card: &Card, default: Option<&PaymentMethodId>) -> Self {
        Self {
            id: card.id.as_str().to_owned(),
            brand: card.brand.clone(),
            last4: card.last4.clone(),
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            expired: has_expired(card, Utc::now()),
            default: default == Some(&card.id),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SavedCards {
    /// Newest first; at most 100.
    #[schema(max_items = 100)]
    pub items: Vec<SavedCardView>,
}

fn no_such_card() -> AppError {
    AppError::NotFound("no such saved card".into())
}

/// The driver's cards, as Stripe lists them on their customer: every card saved through an
/// earlier booking (or a payment retry) stays there.
#[utoipa::path(
    get, path = "/v1/me/payment-methods", tag = "saved cards",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The saved cards, newest first (none before a first booking)", body = SavedCards),
        (status = 502, description = "`bad_gateway`: Stripe answered, but not usefully"),
    )
)]
pub async fn list_cards(
    State(state): State<AppState>,
    user: AuthUser,
) -> AppResult<axum::Json<SavedCards>> {
    let Some(customer) = db::customer_of(&mut *state.db.acquire().await?, user.user_id).await?
    else {
        return Ok(axum::Json(SavedCards { items: Vec::new() }));
    };
    let (cards, default) = tokio::try_join!(
        state.payments.cards_of(&customer),
        state.payments.default_card(&customer),
    )
    .map_err(payment_error)?;
    let hidden = db::record_listed(
        &mut *state.db.acquire().await?,
        user.user_id,
        &customer,
        &cards,
    )
    .await?;
    let items = cards
        .iter()
        .filter(|card| !hidden.contains(&card.id))
        .map(|card| SavedCardView::new(card, default.as_ref()))
        .collect();
    Ok(axum::Json(SavedCards { items }))
}

/// The driver's customer, if the card is theirs and not removed ([`checked_card`]); 404
/// otherwise, for another driver's card as for a made-up id.
async fn own_card(
    state: &AppState,
    user: &AuthUser,
    id: &PaymentMethodId,
) -> AppResult<CustomerId> {
    let customer = db::customer_of(&mut *state.db.acquire().await?, user.user_id)
        .await?
        .ok_or_else(no_such_card)?;
    checked_card(state, user.user_id, &customer, id, Utc::now())
        .await?
        .ok_or_else(no_such_card)?;
    Ok(customer)
}

/// Removes a saved card: detached from the driver's Stripe customer, it can no longer be
/// charged or booked with. Refused while a current reservation relies on it.
#[utoipa::path(
    delete, path = "/v1/me/payment-methods/{id}", tag = "saved cards",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The card's `pm_…` id", max_length = 255)),
    responses(
        (status = 204, description = "Removed (also when it already was)"),
        (status = 404, description = "`not_found`: no such card on the driver's account"),
        (status = 409, description = "`payment_method_in_use`: a current reservation, or a bill being charged or authenticated, relies on the card; `reservation_id` names it"),
        (status = 502, description = "`bad_gateway`: Stripe answered, but not usefully; the card stays removed for Curbside and `DELETE` again asks Stripe again"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn remove_card(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = PaymentMethodId::parse(&id).ok_or_else(no_such_card)?;
    // A card Curbside knows as theirs (removed ones too) needs no word from Stripe.
    let known = db::removal_state(&mut *state.db.acquire().await?, user.user_id, &id).await?;
    if known.is_none() {
        own_card(&state, &user, &id).await?;
    }
    let mut tx = state.db.begin().await?;
    let already_removed = db::removal_state(&mut tx, user.user_id, &id)
        .await?
        .ok_or_else(no_such_card)?;
    if !already_removed {
        if let Some(reservation_id) = db::relying_reservation(&mut tx, user.user_id, &id).await? {
            return Err(AppError::PaymentMethodInUse { reservation_id });
        }
        db::mark_removed(&mut tx, &id).await?;
    }
    tx.commit().await?;
    // Marked first, so nothing uses the card while Stripe is asked; asking again (a retried
    // DELETE) is harmless.
    state
        .payments
        .detach_card(&id)
        .await
        .map_err(payment_error)?;
    tracing::info!(payment_method.id = %id, "saved card removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a saved card the default, the one the web app offers first.
#[utoipa::path(
    put, path = "/v1/me/payment-methods/{id}/default", tag = "saved cards",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The card's `pm_…` id", max_length = 255)),
    responses(
        (status = 200, description = "The saved cards, this one the default", body = SavedCards),
        (status = 404, description = "`not_found`: no such card on the driver's account, or a removed one"),
        (status = 502, description = "`bad_gateway`: Stripe answered, but not usefully"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn make_default(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> AppResult<axum::Json<SavedCards>> {
    let id = PaymentMethodId::parse(&id).ok_or_else(no_such_card)?;
    let customer = own_card(&state, &user, &id).await?;
    state
        .payments
        .set_default_card(&customer, &id)
        .await
        .map_err(payment_error)?;
    list_cards(State(state), user).await
}
