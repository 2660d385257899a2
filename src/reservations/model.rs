//! Reservation types: the stored row, what clients see, and the parsed booking window.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::billing::{Bill, bill};
use crate::error::{AppError, FieldError};
use crate::money::Cents;
use crate::payments::{CustomerId, PaymentIntentId, PaymentMethodId, SetupIntentId};
use crate::time_window::{TimeWindow, bounded, to_stored_precision};

/// How far ahead a booking may start.
pub const MAX_DAYS_AHEAD: i64 = 30;
/// A start this far in the past is taken as "now" (clocks differ); earlier is refused.
pub const START_GRACE: Duration = Duration::seconds(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a saved card; lapses at `hold_expires_at`.
    Held,
    Confirmed,
    Completed,
    Expired,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A status or payment status as SQL text, named by its variant: the one list of these
/// words, each held against the enums' own encoding by a unit test. Predicates that must
/// match a partial index word for word (under generic plans a bound parameter cannot, and
/// the reconciler's and search's indexes are partial) use the words, not parameters: the
/// search's runtime SQL through `live_sql!`, and the checked queries of `reservations::db`
/// (each one literal) written out.
macro_rules! sql_status {
    (Held) => {
        "'held'"
    };
    (Confirmed) => {
        "'confirmed'"
    };
    (Completed) => {
        "'completed'"
    };
    (Expired) => {
        "'expired'"
    };
    (Cancelled) => {
        "'cancelled'"
    };
    (CardSaved) => {
        "'card_saved'"
    };
    (ChargePending) => {
        "'charge_pending'"
    };
    (NotRequired) => {
        "'not_required'"
    };
    (Failed) => {
        "'failed'"
    };
    (RequiresAction) => {
        "'requires_action'"
    };
}
pub(crate) use sql_status;

/// The predicate of a live reservation (it holds its spot: confirmed, or held and not
/// lapsed), over columns named with `prefix` (`""` or `"r."`). Literal, so it matches the
/// partial index `reservations_active_by_spot_idx`.
macro_rules! live_sql {
    ($prefix:literal) => {
        concat!(
            "(",
            $prefix,
            "status in (",
            $crate::reservations::model::sql_status!(Held),
            ", ",
            $crate::reservations::model::sql_status!(Confirmed),
            ") and (",
            $prefix,
            "status = ",
            $crate::reservations::model::sql_status!(Confirmed),
            " or ",
            $prefix,
            "hold_expires_at > now()))"
        )
    };
}
pub(crate) use live_sql;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum PaymentStatus {
    SetupPending,
    CardSaved,
    ChargePending,
    Paid,
    Failed,
    RequiresAction,
    NotRequired,
}

/// A reservation as stored, Stripe ids included; never sent to clients as is.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub id: Uuid,
    pub spot_id: Uuid,
    pub user_id: Option<Uuid>,
    pub email: String,
    pub vehicle_plate: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: Status,
    pub payment_status: PaymentStatus,
    pub rate_cents_per_hour: i32,
    pub amount_cents: Cents,
    pub currency: String,
    pub version: i32,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub stripe_customer_id: Option<CustomerId>,
    pub stripe_setup_intent_id: Option<SetupIntentId>,
    pub stripe_payment_method_id: Option<PaymentMethodId>,
    /// The current attempt's PaymentIntent, once Stripe has answered it.
    pub stripe_payment_intent_id: Option<PaymentIntentId>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub payment_error: Option<String>,
    /// The attempt at the final charge that is made next, or was made last: 1, then one
    /// more for each card the driver gives after a failure.
    pub charge_attempt: i32,
    /// What refunds give back (pending or succeeded ones); at most `amount_cents`.
    pub refunded_cents: Cents,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A reservation as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationView {
    pub id: Uuid,
    pub spot_id: Uuid,
    pub email: String,
    #[schema(required = true)]
    pub vehicle_plate: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: Status,
    pub payment_status: PaymentStatus,
    pub rate_cents_per_hour: i32,
    /// Billed minutes of the window (the final bill's once completed).
    pub minutes: i64,
    /// The quote while the reservation runs; the final bill once it is completed.
    pub amount_cents: Cents,
    #[schema(example = "usd")]
    pub currency: String,
    /// Bumped on every change.
    pub version: i32,
    /// When a `held` reservation lapses unless a card is saved; null in any other status.
    #[schema(required = true)]
    pub hold_expires_at: Option<DateTime<Utc>>,
    /// The charged card's brand (`visa`, …), once charged.
    #[schema(required = true)]
    pub card_brand: Option<String>,
    /// The charged card's last four digits, once charged.
    #[schema(required = true)]
    pub card_last4: Option<String>,
    /// Why the final charge failed, when it did.
    #[schema(required = true)]
    pub payment_error: Option<String>,
    /// Given back by refunds (pending or succeeded), out of `amount_cents`.
    pub refunded_cents: Cents,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Reservation> for ReservationView {
    fn from(r: &Reservation) -> Self {
        let minutes = match (r.status, r.payment_status) {
            (Status::Cancelled | Status::Expired, _) => 0,
            _ => bill(r.starts_at, r.ends_at, r.rate_cents_per_hour).minutes,
        };
        Self {
            id: r.id,
            spot_id: r.spot_id,
            email: r.email.clone(),
            vehicle_plate: r.vehicle_plate.clone(),
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            status: r.status,
            payment_status: r.payment_status,
            rate_cents_per_hour: r.rate_cents_per_hour,
            minutes,
            amount_cents: r.amount_cents,
            currency: r.currency.clone(),
            version: r.version,
            hold_expires_at: r.hold_expires_at.filter(|_| r.status == Status::Held),
            card_brand: r.card_brand.clone(),
            card_last4: r.card_last4.clone(),
            payment_error: r.payment_error.clone(),
            refunded_cents: r.refunded_cents,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// The window of a quote or booking as sent: a start (default now) and either an end or a
/// length in minutes.
#[derive(Debug, Clone, Copy)]
pub struct WindowRequest {
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i64>,
}

impl WindowRequest {
    /// Checks the window against the booking rules: it starts now or within 30 days, and
    /// lasts from the minimum length to the spot's maximum stay.
    pub fn booking_window(
        &self,
        now: DateTime<Utc>,
        min_minutes: u32,
        max_stay_minutes: i32,
    ) -> Result<TimeWindow, AppError> {
        let mut errors = Vec::new();
        let starts_at = match self.starts_at {
            None => now,
            Some(at) if at < now - START_GRACE => {
                errors.push(FieldError::new("starts_at", "must not be in the past"));
                now
            }
            Some(at) if at > now + Duration::days(MAX_DAYS_AHEAD) => {
                errors.push(FieldError::new(
                    "starts_at",
                    format!("must be within {MAX_DAYS_AHEAD} days"),
                ));
                now
            }
            Some(at) => at.max(now),
        };
        let ends_at = match (self.ends_at, self.duration_minutes) {
            (Some(_), Some(_)) | (None, None) => {
                errors.push(FieldError::new(
                    "ends_at",
                    "give either ends_at or duration_minutes",
                ));
                None
            }
            (Some(at), None) => Some(at),
            (None, Some(minutes)) if (1..=24 * 60).contains(&minutes) => {
                Some(starts_at + Duration::minutes(minutes))
            }
            (None, Some(_)) => {
                errors.push(FieldError::new(
                    "duration_minutes",
                    "must be between 1 and 1440",
                ));
                None
            }
        };
        let field = if self.duration_minutes.is_some() {
            "duration_minutes"
        } else {
            "ends_at"
        };
        if let Some(ends_at) = ends_at {
            let minutes = (to_stored_precision(ends_at) - to_stored_precision(starts_at))
                .num_seconds() as f64
                / 60.0;
            if minutes < f64::from(min_minutes) {
                errors.push(FieldError::new(
                    field,
                    format!("the reservation must last at least {min_minutes} minutes"),
                ));
            } else if minutes > f64::from(max_stay_minutes) {
                errors.push(FieldError::new(
                    field,
                    format!("the spot allows at most {max_stay_minutes} minutes"),
                ));
            }
        }
        match ends_at {
            Some(ends_at) if errors.is_empty() => {
                TimeWindow::parse(Some(starts_at), Some(ends_at), now, Duration::zero())
                    .map_err(AppError::from)
            }
            _ => Err(AppError::Validation(errors)),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    pub spot_id: Uuid,
    /// RFC 3339 with an offset, between 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z: now
    /// (default; up to a minute in the past is taken as now) or within 30 days.
    #[serde(default, deserialize_with = "bounded::optional")]
    pub starts_at: Option<DateTime<Utc>>,
    /// RFC 3339 with an offset, between 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z. Give
    /// `ends_at` or `duration_minutes`, not both; the length must be from
    /// `MIN_RESERVATION_MINUTES` to the spot's `max_stay_minutes`.
    #[serde(default, deserialize_with = "bounded::optional")]
    pub ends_at: Option<DateTime<Utc>>,
    #[schema(minimum = 1, maximum = 1440)]
    pub duration_minutes: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Quote {
    /// Book with it (`POST /v1/reservations` with `quote_id`) to get this price.
    pub quote_id: Uuid,
    /// The quote binds until then: `QUOTE_VALIDITY_MINUTES` after it was made, and for a
    /// window with a fixed start at most a minute after that start.
    pub expires_at: DateTime<Utc>,
    pub spot_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// A quote for `duration_minutes` from now (no `starts_at`): a booking with it starts
    /// when it is made and lasts as long, for the same amount. Otherwise the booking gets
    /// exactly `starts_at`–`ends_at`.
    pub starts_on_booking: bool,
    #[serde(flatten)]
    pub bill: Bill,
    #[schema(example = "usd")]
    pub currency: String,
    pub rate_cents_per_hour: i32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingRequest {
    pub spot_id: Uuid,
    /// RFC 3339 with an offset, between 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z: now
    /// (default; up to a minute in the past is taken as now) or within 30 days.
    #[serde(default, deserialize_with = "bounded::optional")]
    pub starts_at: Option<DateTime<Utc>>,
    /// RFC 3339 with an offset, between 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z. Give
    /// `ends_at` or `duration_minutes`, not both; the length must be from
    /// `MIN_RESERVATION_MINUTES` to the spot's `max_stay_minutes`.
    #[serde(default, deserialize_with = "bounded::optional")]
    pub ends_at: Option<DateTime<Utc>>,
    #[schema(minimum = 1, maximum = 1440)]
    pub duration_minutes: Option<i64>,
    /// Required for guests; a signed-in driver's own email is used otherwise.
    #[schema(format = Email, max_length = 254)]
    pub email: Option<String>,
    /// Letters, digits, spaces and dashes; trimmed and stored uppercase.
    #[schema(
        min_length = 1,
        max_length = 16,
        pattern = r"^[A-Za-z0-9 -]*[A-Za-z0-9-][A-Za-z0-9 -]*$"
    )]
    pub vehicle_plate: Option<String>,
    /// A quote of this spot (`POST /v1/quotes`): the booking gets its window, rate and
    /// amount. The window fields may then be left out; any that are given must be the
    /// quote's.
    pub quote_id: Option<Uuid>,
    /// A card saved on the signed-in driver's account (`GET /v1/me/payment-methods`): the
    /// booking is confirmed at once and its final bill charged to this card. Not for guests.
    #[schema(max_length = 255, pattern = r"^pm_[A-Za-z0-9_]*$")]
    pub payment_method_id: Option<String>,
}

/// A licence plate: letters, digits, spaces and dashes, up to 16, stored uppercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plate(String);

impl Plate {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let plate = raw.trim().to_uppercase();
        let valid = (1..=16).contains(&plate.chars().count())
            && plate
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
        if valid {
            Ok(Self(plate))
        } else {
            Err(FieldError::new(
                "vehicle_plate",
                "must be 1 to 16 letters, digits, spaces or dashes",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The window of a request that names one (a quote, a booking). Their wire structs repeat
/// the three fields because serde cannot flatten into a struct that refuses unknown fields.
macro_rules! window_of {
    ($($request:ty),+) => {$(
        impl $request {
            pub fn window(&self) -> WindowRequest {
                WindowRequest {
                    starts_at: self.starts_at,
                    ends_at: self.ends_at,
                    duration_minutes: self.duration_minutes,
                }
            }
        }
    )+};
}
window_of!(QuoteRequest, BookingRequest);

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentSetup {
    /// Give to Stripe.js (`confirmCardSetup`) to save the card.
    pub client_secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Booking {
    pub reservation: ReservationView,
    /// How to save the card; null for a booking made with a saved card (confirmed already).
    #[schema(required = true)]
    pub payment: Option<PaymentSetup>,
    /// Guests only, shown once: send as `Authorization: Bearer <guest_token>` to see or
    /// change this reservation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    /// The new end, RFC 3339 with an offset, between 2000-01-01T00:00:00Z and
    /// 2100-01-01T00:00:00Z: from now on (up to a minute in the past is taken as now),
    /// within the spot's maximum stay from the start.
    #[serde(deserialize_with = "bounded::required")]
    pub ends_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Held or confirmed, not yet over.
    Current,
    /// Everything else.
    Past,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `current` (default) or `past`.
    pub scope: Option<Scope>,
    /// Page size.
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    fn window(
        starts: Option<i64>,
        ends: Option<i64>,
        duration: Option<i64>,
    ) -> Result<TimeWindow, AppError> {
        WindowRequest {
            starts_at: starts.map(at),
            ends_at: ends.map(at),
            duration_minutes: duration,
        }
        .booking_window(at(0), 5, 120)
    }

    fn fields(result: Result<TimeWindow, AppError>) -> Vec<String> {
        match result {
            Err(AppError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_window_needs_one_of_end_and_duration() {
        assert_eq!(window(None, None, Some(60)).unwrap().ends_at, at(60));
        assert_eq!(window(Some(10), Some(70), None).unwrap().starts_at, at(10));
        assert_eq!(fields(window(None, Some(60), Some(60))), ["ends_at"]);
        assert_eq!(fields(window(None, None, None)), ["ends_at"]);
    }

    #[test]
    fn length_is_between_the_minimum_and_the_max_stay() {
        assert!(window(None, None, Some(5)).is_ok());
        assert!(window(None, None, Some(120)).is_ok());
        assert_eq!(fields(window(None, None, Some(4))), ["duration_minutes"]);
        assert_eq!(fields(window(None, None, Some(121))), ["duration_minutes"]);
        assert_eq!(fields(window(Some(0), Some(121), None)), ["ends_at"]);
    }

    #[test]
    fn the_start_is_now_or_within_thirty_days() {
        assert_eq!(fields(window(Some(-5), None, Some(60))), ["starts_at"]);
        assert!(window(Some(30 * 24 * 60), None, Some(60)).is_ok());
        assert_eq!(
            fields(window(Some(30 * 24 * 60 + 1), None, Some(60))),
            ["starts_at"]
        );
    }

    #[test]
    fn sql_statuses_are_the_enums_own_words() {
        let text = |value: &dyn erased::Encoded| value.sql_text();
        for (sql, expected) in [
            (sql_status!(Held), text(&Status::Held)),
            (sql_status!(Confirmed), text(&Status::Confirmed)),
            (sql_status!(Completed), text(&Status::Completed)),
            (sql_status!(Expired), text(&Status::Expired)),
            (sql_status!(Cancelled), text(&Status::Cancelled)),
            (sql_status!(CardSaved), text(&PaymentStatus::CardSaved)),
            (
                sql_status!(ChargePending),
                text(&PaymentStatus::ChargePending),
            ),
            (sql_status!(NotRequired), text(&PaymentStatus::NotRequired)),
            (sql_status!(Failed), text(&PaymentStatus::Failed)),
            (
                sql_status!(RequiresAction),
                text(&PaymentStatus::RequiresAction),
            ),
        ] {
            assert_eq!(sql, expected);
        }
    }

    /// The text a status is stored as, quoted as SQL would, read from its serde form
    /// (the same snake_case words as its `sqlx::Type`).
    mod erased {
        pub trait Encoded {
            fn sql_text(&self) -> String;
        }

        impl<T: serde::Serialize> Encoded for T {
            fn sql_text(&self) -> String {
                format!(
                    "'{}'",
                    serde_json::to_value(self).unwrap().as_str().unwrap()
                )
            }
        }
    }

    #[test]
    fn plates_are_normalised() {
        assert_eq!(Plate::parse(" abc-1234 ").unwrap().as_str(), "ABC-1234");
        assert!(Plate::parse("").is_err());
        assert!(Plate::parse("ABC;DROP").is_err());
    }
}
