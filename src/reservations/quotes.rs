//! Quotes that bind: `POST /v1/quotes` stores the price of a window on a spot for
//! `QUOTE_VALIDITY_MINUTES`, and a booking that names the quote gets that window, rate and
//! amount, even if an operator changed the spot's rate since. A quote books once.
//!
//! A quote "for the next N minutes" (`duration_minutes` without `starts_at`) is booked from
//! the moment of booking for the same N minutes, so for the same amount. Any other quote
//! names a fixed window and lapses a minute after its start at the latest, so it never books
//! time that has mostly passed.

use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::billing::{Bill, bill};
use super::model::{Quote, QuoteRequest, START_GRACE, WindowRequest};
use crate::error::{AppError, AppResult};
use crate::extract::Json;
use crate::money::Cents;
use crate::spots;
use crate::spots::model::Spot;
use crate::state::AppState;
use crate::time_window::{TimeWindow, to_stored_precision};

/// The spot, if it exists and can be booked.
pub(super) async fn bookable_spot(state: &AppState, spot_id: Uuid) -> AppResult<Spot> {
    let spot = spots::db::find(&mut *state.db.acquire().await?, spot_id)
        .await?
        .ok_or_else(|| AppError::validation("spot_id", "no such spot"))?;
    if !spot.active {
        return Err(AppError::conflict(
            "spot_unavailable",
            "the spot is not in service",
        ));
    }
    Ok(spot)
}

/// What a window on a spot would cost, computed by the function the final bill uses, and
/// binding until `expires_at`: book with its `quote_id`.
#[utoipa::path(
    post, path = "/v1/quotes", tag = "reservations",
    request_body = QuoteRequest,
    responses(
        (status = 200, description = "The price, binding until `expires_at`", body = Quote),
        (status = 409, description = "`spot_unavailable`: the spot is out of service"),
        (status = 422, description = "`validation_failed`: an unknown spot, or a window the booking rules refuse; `errors` names each field"),
    )
)]
pub async fn quote(
    State(state): State<AppState>,
    Json(body): Json<QuoteRequest>,
) -> AppResult<axum::Json<Quote>> {
    let now = Utc::now();
    let spot = bookable_spot(&state, body.spot_id).await?;
    let window = body.window().booking_window(
        now,
        state.config.min_reservation_minutes,
        spot.max_stay_minutes,
    )?;
    let starts_on_booking = body.starts_at.is_none() && body.duration_minutes.is_some();
    let mut expires_at = now + state.config.quote_validity();
    if !starts_on_booking {
        expires_at = expires_at.min(window.starts_at + START_GRACE);
    }
    let quote = Quote {
        quote_id: Uuid::new_v4(),
        expires_at: to_stored_precision(expires_at),
        spot_id: spot.id,
        starts_at: window.starts_at,
        ends_at: window.ends_at,
        starts_on_booking,
        bill: bill(window.starts_at, window.ends_at, spot.rate_cents_per_hour),
        currency: spot.currency,
        rate_cents_per_hour: spot.rate_cents_per_hour,
    };
    insert(&mut *state.db.acquire().await?, &quote).await?;
    Ok(axum::Json(quote))
}

async fn insert(conn: &mut PgConnection, quote: &Quote) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into quotes (id, spot_id, starts_at, ends_at, starts_on_booking,
                             rate_cents_per_hour, amount_cents, currency, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        quote.quote_id,
        quote.spot_id,
        quote.starts_at,
        quote.ends_at,
        quote.starts_on_booking,
        quote.rate_cents_per_hour,
        quote.bill.amount_cents as Cents,
        quote.currency,
        quote.expires_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What a booking gets: its window, the rate locked in, and the bill if it ends on time.
#[derive(Debug, Clone, Copy)]
pub struct Terms {
    pub window: TimeWindow,
    pub rate_cents_per_hour: i32,
    pub bill: Bill,
}

struct StoredQuote {
    spot_id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    starts_on_booking: bool,
    rate_cents_per_hour: i32,
    amount_cents: Cents,
    expires_at: DateTime<Utc>,
    reservation_id: Option<Uuid>,
}

fn mismatch(detail: &str) -> AppError {
    AppError::conflict(
        "quote_mismatch",
        format!("the quote is for {detail}; book without the quote, or ask for a new one"),
    )
}

fn expired() -> AppError {
    AppError::conflict("quote_expired", "the quote has expired; ask for a new one")
}

fn used() -> AppError {
    AppError::conflict("quote_used", "the quote was used for a booking already")
}

/// The terms of the quote, for a booking of `spot_id` whose window fields (any given) must
/// name the quote's window. 422 for an unknown quote; 409 `quote_mismatch`,
/// `quote_expired` or `quote_used` for one that cannot book this.
pub async fn terms(
    conn: &mut PgConnection,
    quote_id: Uuid,
    spot_id: Uuid,
    asked: &WindowRequest,
    now: DateTime<Utc>,
) -> AppResult<Terms> {
    let quote = sqlx::query_as!(
        StoredQuote,
        r#"select spot_id, starts_at, ends_at, starts_on_booking, rate_cents_per_hour,
                  amount_cents as "amount_cents: Cents", expires_at, reservation_id
           from quotes where id = $1"#,
        quote_id,
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| AppError::validation("quote_id", "no such quote"))?;
    if quote.spot_id != spot_id {
        return Err(mismatch("another spot"));
    }
    check_window(&quote, asked)?;
    if quote.reservation_id.is_some() {
        return Err(used());
    }
    if quote.expires_at <= now {
        return Err(expired());
    }
    let length = quote.ends_at - quote.starts_at;
    let window = if quote.starts_on_booking {
        let starts_at = to_stored_precision(now);
        TimeWindow {
            starts_at,
            ends_at: starts_at + length,
        }
    } else {
        TimeWindow {
            starts_at: quote.starts_at,
            ends_at: quote.ends_at,
        }
    };
    Ok(Terms {
        window,
        rate_cents_per_hour: quote.rate_cents_per_hour,
        bill: Bill {
            minutes: bill(window.starts_at, window.ends_at, quote.rate_cents_per_hour).minutes,
            amount_cents: quote.amount_cents,
        },
    })
}

/// Window fields sent with a quote must say what the quote says; left out, they are the
/// quote's.
fn check_window(quote: &StoredQuote, asked: &WindowRequest) -> AppResult<()> {
    let length = quote.ends_at - quote.starts_at;
    let same_length = |minutes: i64| Duration::minutes(minutes) == length;
    let same_time =
        |at: Option<DateTime<Utc>>, quoted| at.is_none_or(|at| to_stored_precision(at) == quoted);
    let agrees = if quote.starts_on_booking {
        asked.starts_at.is_none()
            && asked.ends_at.is_none()
            && asked.duration_minutes.is_none_or(same_length)
    } else {
        same_time(asked.starts_at, quote.starts_at)
            && same_time(asked.ends_at, quote.ends_at)
            && asked.duration_minutes.is_none_or(same_length)
    };
    if agrees {
        Ok(())
    } else if quote.starts_on_booking {
        Err(mismatch(&format!(
            "{} minutes from the moment of booking",
            length.num_minutes()
        )))
    } else {
        Err(mismatch(&format!(
            "{} to {}",
            quote.starts_at.to_rfc3339(),
            quote.ends_at.to_rfc3339()
        )))
    }
}

/// Marks the quote used by the reservation, in the booking's transaction; refused if
/// another booking took it first or it lapsed meanwhile. The reservation's row must be
/// inserted already (the quote points to it).
pub async fn take(conn: &mut PgConnection, quote_id: Uuid, reservation_id: Uuid) -> AppResult<()> {
    let taken = sqlx::query_scalar!(
        r#"update quotes set reservation_id = $2
           where id = $1 and reservation_id is null
           returning expires_at > now() as "live!""#,
        quote_id,
        reservation_id,
    )
    .fetch_optional(conn)
    .await?;
    match taken {
        Some(true) => Ok(()),
        Some(false) => Err(expired()),
        None => Err(used()),
    }
}

/// Deletes quotes a day past their expiry, for the reconciler: they can book nothing.
pub async fn forget_expired(conn: &mut PgConnection) -> sqlx::Result<u64> {
    let deleted = sqlx::query!("delete from quotes where expires_at < now() - interval '1 day'")
        .execute(conn)
        .await?;
    Ok(deleted.rows_affected())
}
