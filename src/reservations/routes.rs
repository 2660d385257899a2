//! Quotes, bookings and their changes.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::access::{Booker, Caller};
use super::actions::{Action, Refusal};
use super::billing::bill;
use super::charges;
use super::db::{self, NewReservation};
use super::model::{
    Booking, BookingRequest, ChangeRequest, ListQuery, PaymentSetup, Plate, Reservation,
    ReservationView, Scope, Status,
};
use super::notices::{self, Notice, Place};
use super::quotes::{self, Terms};
use super::{lifecycle, payment};
use crate::auth::token::new_guest_token;
use crate::auth::{AuthUser, model::Email};
use crate::error::{AppError, AppResult, FieldError};
use crate::extract::{Json, Path, Query};
use crate::pagination::{self, Page, decode_cursor, encode_cursor};
use crate::payments::PaymentMethodId;
use crate::spots;
use crate::spots::model::Spot;
use crate::state::AppState;
use crate::time_window::to_stored_precision;
use crate::wallet;

fn no_such_reservation() -> AppError {
    AppError::NotFound("no such reservation".into())
}

/// Book a spot. With `payment_method_id` (a signed-in driver's saved card) the booking is
/// confirmed at once; otherwise it holds the spot for `HOLD_MINUTES` while the card is
/// saved (`POST …/confirm`, or Stripe's webhook).
#[utoipa::path(
    post, path = "/v1/reservations", tag = "reservations",
    // A guest books without credentials; a driver's token makes it theirs.
    security((), ("bearer" = [])),
    request_body = BookingRequest,
    responses(
        (status = 201, description = "Held (save the card with `payment.client_secret`), or confirmed with the saved card (`payment` null)", body = Booking),
        (status = 409, description = "`spot_unavailable`: out of service, or taken for part of the window; `unpaid_balance`: a bill of this email address (or account) failed or awaits authentication, `reservation_id` names it; `quote_mismatch`: the quote is for another spot or window; `quote_expired`; `quote_used`: the quote booked already"),
        (status = 422, description = "`validation_failed`: an unknown spot or quote, a window the booking rules refuse, no email for a guest, an invalid email or plate, a saved card for a guest, or a card that is not the driver's or has expired; `errors` names each field"),
        (status = 502, description = "`bad_gateway`: Stripe refused the card setup; nothing was booked"),
    )
)]
#[tracing::instrument(skip_all, fields(spot.id = %body.spot_id))]
pub async fn book(
    State(state): State<AppState>,
    Booker(user): Booker,
    Json(body): Json<BookingRequest>,
) -> AppResult<(StatusCode, axum::Json<Booking>)> {
    let now = Utc::now();
    let fields = BookingFields::parse(&body, user.as_ref())?;
    let spot = quotes::bookable_spot(&state, body.spot_id).await?;
    let terms = booking_terms(&state, &body, &spot, now).await?;
    let user_id = user.map(|u| u.user_id);
    let guest_email = match (user_id, &fields.guest_email) {
        (Some(_), _) => "",
        (None, Some(email)) => email.as_str(),
        (None, None) => return Err(AppError::validation("email", GUEST_EMAIL_REQUIRED)),
    };
    let payer = charges::payer(&state.db, guest_email, user_id)
        .await?
        .ok_or_else(|| AppError::unauthorized("invalid_token", "the account no longer exists"))?;
    if let Some(reservation_id) = payer.unpaid {
        return Err(AppError::UnpaidBalance { reservation_id });
    }
    let card = match (user_id, &fields.payment_method) {
        (Some(user_id), Some(payment_method)) => Some(
            wallet::usable_card(
                &state,
                user_id,
                payer.customer.as_ref(),
                payment_method,
                now,
            )
            .await?,
        ),
        _ => None,
    };
    let (guest_token, guest_token_hash) = match user {
        Some(_) => (None, None),
        None => {
            let (token, hash) = new_guest_token();
            (Some(token), Some(hash))
        }
    };
    let new = NewReservation {
        id: Uuid::now_v7(),
        spot_id: spot.id,
        user_id,
        email: &payer.email,
        vehicle_plate: fields.plate.as_ref().map(Plate::as_str),
        window: terms.window,
        rate_cents_per_hour: terms.rate_cents_per_hour,
        bill: terms.bill,
        hold_expires_at: now + state.config.hold_length(),
        guest_token_hash,
        paid_with: card.as_ref().zip(payer.customer.as_ref()),
    };
    let reservation = hold_spot(&state, &new, &Place::of(&spot), body.quote_id).await?;
    let payment = match card {
        Some(_) => {
            tracing::info!(reservation.id = %reservation.id, "booked with a saved card");
            None
        }
        None => {
            tracing::info!(reservation.id = %reservation.id, "spot held");
            Some(card_setup(&state, &reservation, user.as_ref()).await?)
        }
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(Booking {
            reservation: ReservationView::from(&reservation),
            payment,
            guest_token,
        }),
    ))
}

const GUEST_EMAIL_REQUIRED: &str = "is required when booking as a guest";

/// The fields of a booking that need checking beyond their types, every bad one named.
struct BookingFields {
    plate: Option<Plate>,
    guest_email: Option<Email>,
    payment_method: Option<PaymentMethodId>,
}

impl BookingFields {
    fn parse(body: &BookingRequest, user: Option<&AuthUser>) -> AppResult<Self> {
        let mut errors = Vec::new();
        let plate = body
            .vehicle_plate
            .as_deref()
            .map(Plate::parse)
            .transpose()
            .map_err(|e| errors.push(e))
            .ok()
            .flatten();
        let guest_email = match (user, body.email.as_deref()) {
            (Some(_), _) => None,
            (None, Some(raw)) => Email::parse(raw).map_err(|e| errors.push(e)).ok(),
            (None, None) => {
                errors.push(FieldError::new("email", GUEST_EMAIL_REQUIRED));
                None
            }
        };
        let payment_method = match (user, body.payment_method_id.as_deref()) {
            (_, None) => None,
            (None, Some(_)) => {
                errors.push(FieldError::new(
                    "payment_method_id",
                    "saved cards are for signed-in drivers; a guest saves a card with each booking",
                ));
                None
            }
            (Some(_), Some(raw)) => PaymentMethodId::parse(raw).or_else(|| {
                errors.push(FieldError::new(
                    "payment_method_id",
                    "must be a Stripe payment method id (pm_…)",
                ));
                None
            }),
        };
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        Ok(Self {
            plate,
            guest_email,
            payment_method,
        })
    }
}

/// The window, rate and bill: the quote's if one is named, else the spot's rate now.
async fn booking_terms(
    state: &AppState,
    body: &BookingRequest,
    spot: &Spot,
    now: DateTime<Utc>,
) -> AppResult<Terms> {
    if let Some(quote_id) = body.quote_id {
        return quotes::terms(
            &mut *state.db.acquire().await?,
            quote_id,
            spot.id,
            &body.window(),
            now,
        )
        .await;
    }
    let window = body.window().booking_window(
        now,
        state.config.min_reservation_minutes,
        spot.max_stay_minutes,
    )?;
    Ok(Terms {
        window,
        rate_cents_per_hour: spot.rate_cents_per_hour,
        bill: bill(window.starts_at, window.ends_at, spot.rate_cents_per_hour),
    })
}

/// Starts saving the card of a held booking; if that fails, nothing was promised yet, so
/// the spot is freed (and its quote with it) and the client can simply retry.
async fn card_setup(
    state: &AppState,
    reservation: &Reservation,
    user: Option<&AuthUser>,
) -> AppResult<PaymentSetup> {
    match payment::start_card_setup(state, reservation, user).await {
        Ok(client_secret) => Ok(PaymentSetup { client_secret }),
        Err(error) => {
            db::discard_unstarted(&mut *state.db.acquire().await?, reservation.id).await?;
            Err(error)
        }
    }
}

/// Inserts the booking after expiring lapsed holds in its way, in one transaction; with a
/// saved card the card is held against its removal, and with a quote the quote is used up.
async fn hold_spot(
    state: &AppState,
    new: &NewReservation<'_>,
    place: &Place,
    quote_id: Option<Uuid>,
) -> AppResult<Reservation> {
    let mut tx = state.db.begin().await?;
    db::lock_spot(&mut tx, new.spot_id).await?;
    let expired = db::expire_lapsed_holds(&mut tx, new.spot_id, &new.window).await?;
    for lapsed in &expired {
        notices::write_at(&mut tx, &state.links, lapsed, place, &Notice::HoldExpired).await?;
    }
    let reservation = db::insert(&mut tx, new).await?.ok_or_else(|| {
        AppError::validation(
            "payment_method_id",
            "the card was removed from your account",
        )
    })?;
    if let Some(quote_id) = quote_id {
        quotes::take(&mut tx, quote_id, reservation.id).await?;
    }
    let mut emails = Vec::new();
    if reservation.status == Status::Confirmed {
        let notice = Notice::Confirmed;
        emails.push(notices::write_at(&mut tx, &state.links, &reservation, place, &notice).await?);
    }
    tx.commit().await?;
    for lapsed in &expired {
        lifecycle::schedule_follow_up(state, lapsed).await;
    }
    lifecycle::schedule_with_emails(state, &reservation, &emails).await;
    Ok(reservation)
}

/// A reservation the caller may see.
#[utoipa::path(
    get, path = "/v1/reservations/{id}", tag = "reservations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The reservation", body = ReservationView),
        (status = 404, description = "`not_found`: no such reservation, or not the caller's"),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<axum::Json<ReservationView>> {
    let reservation = db::find_for(&mut *state.db.acquire().await?, id, &caller)
        .await?
        .ok_or_else(no_such_reservation)?;
    Ok(axum::Json(ReservationView::from(&reservation)))
}

/// Confirm a held reservation once the card is saved; the server asks Stripe.
#[utoipa::path(
    post, path = "/v1/reservations/{id}/confirm", tag = "reservations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Confirmed (also when it already was)", body = ReservationView),
        (status = 404, description = "`not_found`: no such reservation, or not the caller's"),
        (status = 409, description = "`card_not_saved`: the card is not saved yet, the detail says the SetupIntent's state; `invalid_state`: expired, cancelled or over"),
        (status = 502, description = "`bad_gateway`: Stripe answered, but not usefully; nothing was changed"),
    )
)]
#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<axum::Json<ReservationView>> {
    let reservation = db::find_for(&mut *state.db.acquire().await?, id, &caller)
        .await?
        .ok_or_else(no_such_reservation)?;
    match reservation.check(Action::Confirm, Utc::now()) {
        Ok(()) => {}
        Err(Refusal::AlreadyConfirmed) => {
            return Ok(axum::Json(ReservationView::from(&reservation)));
        }
        Err(refusal) => return Err(refusal.into()),
    }
    let payment_method = payment::saved_card(&state, &reservation).await?;
    let confirmed = payment::confirm_with_card(&state, &reservation, &payment_method).await?;
    Ok(axum::Json(ReservationView::from(&confirmed)))
}

/// A reservation the caller may act on, locked (its spot's lock first, as on every path
/// that writes a live booking) in a transaction of its own, and checked for the action.
/// Change, end and cancel each write their step into `tx`, then [`Locked::commit`].
pub(super) struct Locked {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    pub(super) reservation: Reservation,
}

impl Locked {
    async fn take(
        state: &AppState,
        id: Uuid,
        caller: &Caller,
        action: Action,
        now: DateTime<Utc>,
    ) -> AppResult<Self> {
        let mut tx = state.db.begin().await?;
        let found = db::find_for(&mut tx, id, caller)
            .await?
            .ok_or_else(no_such_reservation)?;
        Self::lock_in(tx, found.spot_id, id, action, now).await
    }

    /// [`Locked::take`] for a caller whose right comes with the request rather than from
    /// credentials (a reminder's signed link, checked against the locked row).
    pub(super) async fn take_by_link(
        state: &AppState,
        id: Uuid,
        action: Action,
        now: DateTime<Utc>,
    ) -> AppResult<Self> {
        let mut tx = state.db.begin().await?;
        let found = db::get_optional(&mut tx, id)
            .await?
            .ok_or_else(no_such_reservation)?;
        Self::lock_in(tx, found.spot_id, id, action, now).await
    }

    async fn lock_in(
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        spot_id: Uuid,
        id: Uuid,
        action: Action,
        now: DateTime<Utc>,
    ) -> AppResult<Self> {
        db::lock_spot(&mut tx, spot_id).await?;
        let reservation = db::lock(&mut tx, id)
            .await?
            .ok_or_else(no_such_reservation)?;
        reservation.check(action, now)?;
        Ok(Self { tx, reservation })
    }

    /// Commits the step, then schedules what follows from its result (jobs, emails).
    async fn commit(self, state: &AppState, changed: Reservation) -> AppResult<Reservation> {
        self.tx.commit().await?;
        lifecycle::schedule_follow_up(state, &changed).await;
        Ok(changed)
    }
}

/// A refused action is a conflict with the reservation's state.
impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        AppError::conflict("invalid_state", refusal.to_string())
    }
}

/// Extend or shorten: a new end from now on, within the spot's maximum stay.
#[utoipa::path(
    patch, path = "/v1/reservations/{id}", tag = "reservations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = ChangeRequest,
    responses(
        (status = 200, description = "Changed; `version` bumped", body = ReservationView),
        (status = 404, description = "`not_found`: no such reservation, or not the caller's"),
        (status = 409, description = "`spot_unavailable`: an extension into another booking; `invalid_state`: the reservation is over"),
        (status = 422, description = "`validation_failed`: an end in the past, before the start, or beyond the maximum stay"),
    )
)]
#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn change(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<ChangeRequest>,
) -> AppResult<axum::Json<ReservationView>> {
    let now = Utc::now();
    let locked = Locked::take(&state, id, &caller, Action::Change, now).await?;
    let changed = move_end(&state, locked, body.ends_at, now).await?;
    Ok(axum::Json(ReservationView::from(&changed)))
}

/// Moves the end of a locked reservation (checked for [`Action::Change`]) to `requested`,
/// under the booking rules, and commits: the one way a reservation is extended or
/// shortened, by `PATCH` or by a reminder's link.
pub(super) async fn move_end(
    state: &AppState,
    mut locked: Locked,
    requested: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<Reservation> {
    let reservation = &locked.reservation;
    let ends_at = to_stored_precision(requested.max(now));
    if requested < now - chrono::Duration::seconds(60) {
        return Err(AppError::validation("ends_at", "must not be in the past"));
    }
    if ends_at <= reservation.starts_at {
        return Err(AppError::validation("ends_at", "must be after starts_at"));
    }
    // Before the start the booking rules still apply in full; once running, a reservation
    // may end at any time from now on.
    let min_length = state.config.min_reservation_length();
    if now < reservation.starts_at && ends_at - reservation.starts_at < min_length {
        return Err(AppError::validation(
            "ends_at",
            format!(
                "a reservation that has not started lasts at least {} minutes",
                state.config.min_reservation_minutes
            ),
        ));
    }
    let spot = spots::db::find(&mut locked.tx, reservation.spot_id)
        .await?
        .ok_or_else(no_such_reservation)?;
    if ends_at - reservation.starts_at > chrono::Duration::minutes(i64::from(spot.max_stay_minutes))
    {
        return Err(AppError::validation(
            "ends_at",
            format!("the spot allows at most {} minutes", spot.max_stay_minutes),
        ));
    }
    let new_bill = bill(
        reservation.starts_at,
        ends_at,
        reservation.rate_cents_per_hour,
    );
    let changed = db::change_end(&mut locked.tx, reservation.id, ends_at, new_bill).await?;
    let place = Place::of(&spot);
    notices::write_at(
        &mut locked.tx,
        &state.links,
        &changed,
        &place,
        &Notice::Changed,
    )
    .await?;
    let changed = locked.commit(state, changed).await?;
    tracing::info!(reservation.id = %changed.id, version = changed.version, "reservation changed");
    Ok(changed)
}

/// End a running reservation now and bill the minutes used.
#[utoipa::path(
    post, path = "/v1/reservations/{id}/end", tag = "reservations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Completed with its final bill", body = ReservationView),
        (status = 404, description = "`not_found`: no such reservation, or not the caller's"),
        (status = 409, description = "`invalid_state`: not confirmed, not started (cancel instead) or already over"),
    )
)]
#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn end(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<axum::Json<ReservationView>> {
    let now = to_stored_precision(Utc::now());
    let mut locked = Locked::take(&state, id, &caller, Action::End, now).await?;
    let ended = lifecycle::finish(&mut locked.tx, &state.links, &locked.reservation, now).await?;
    let ended = locked.commit(&state, ended).await?;
    tracing::info!(
        amount_cents = ended.amount_cents.0,
        "reservation ended early"
    );
    Ok(axum::Json(ReservationView::from(&ended)))
}

/// Cancel before the start (a hold, at any time); nothing is charged.
#[utoipa::path(
    post, path = "/v1/reservations/{id}/cancel", tag = "reservations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Cancelled", body = ReservationView),
        (status = 404, description = "`not_found`: no such reservation, or not the caller's"),
        (status = 409, description = "`invalid_state`: confirmed and already started (end it instead), or not held or confirmed"),
    )
)]
#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> AppResult<axum::Json<ReservationView>> {
    let mut locked = Locked::take(&state, id, &caller, Action::Cancel, Utc::now()).await?;
    let cancelled = db::cancel(&mut locked.tx, id).await?;
    notices::write(&mut locked.tx, &state.links, &cancelled, &Notice::Cancelled).await?;
    let cancelled = locked.commit(&state, cancelled).await?;
    tracing::info!("reservation cancelled");
    Ok(axum::Json(ReservationView::from(&cancelled)))
}

/// The signed-in driver's reservations.
#[utoipa::path(
    get, path = "/v1/reservations", tag = "reservations",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of the driver's own reservations", body = Page<ReservationView>),
        (status = 422, description = "`validation_failed`: a `limit` out of range, or a cursor this listing did not return"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<ListQuery>,
) -> AppResult<axum::Json<Page<ReservationView>>> {
    let scope = query.scope.unwrap_or(Scope::Current);
    let limit = pagination::limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(decode_cursor::<(DateTime<Utc>, Uuid)>)
        .transpose()?;
    let rows = db::list(
        &mut *state.db.acquire().await?,
        user.user_id,
        scope,
        after,
        pagination::rows_for(limit),
    )
    .await?;
    let (rows, next) = pagination::cut(rows, limit, |r| (r.starts_at, r.id));
    Ok(axum::Json(Page {
        items: rows.iter().map(ReservationView::from).collect(),
        next_cursor: next.map(|key| encode_cursor(&key)),
    }))
}
