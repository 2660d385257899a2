//! What a reservation's driver is told, and when: every change is announced by an email
//! written to the outbox in the same transaction as the change. Plain text, times in New
//! York time, money in dollars.

use chrono::{DateTime, Utc};
use chrono_tz::America::New_York;
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::Reservation;
use crate::email::outbox::{self, NewEmail};
use crate::money::Cents;
use crate::spots;

/// What happened to a reservation, worth telling its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Confirmed,
    Changed,
    /// The receipt: the reservation ended and its bill is settled (or nothing was owed).
    Receipt,
    Cancelled,
    HoldExpired,
    /// The off-session charge did not go through.
    PaymentFailed {
        reason: String,
        requires_action: bool,
    },
}

impl Notice {
    /// Stored in the outbox, for support and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Changed => "changed",
            Self::Receipt => "receipt",
            Self::Cancelled => "cancelled",
            Self::HoldExpired => "hold_expired",
            Self::PaymentFailed { .. } => "payment_failed",
        }
    }
}

/// Writes the email announcing `notice` for the reservation; call it inside the
/// transaction that makes the change, so the two commit or roll back together.
pub async fn write(
    conn: &mut PgConnection,
    reservation: &Reservation,
    notice: &Notice,
) -> sqlx::Result<Uuid> {
    let spot = spots::db::find(&mut *conn, reservation.spot_id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    let place = Place {
        meter_number: spot.meter_number,
        street: spot.street,
        borough: spot.borough,
    };
    let (subject, body) = compose(notice, reservation, &place);
    outbox::insert(
        conn,
        &NewEmail {
            reservation_id: Some(reservation.id),
            kind: notice.kind(),
            to_address: &reservation.email,
            subject: &subject,
            body: &body,
        },
    )
    .await
}

/// Where the spot is, for people: "meter 1083076, West 85 Street, Manhattan".
pub struct Place {
    pub meter_number: String,
    pub street: Option<String>,
    pub borough: String,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "meter {}", self.meter_number)?;
        if let Some(street) = &self.street {
            write!(f, ", {street}")?;
        }
        write!(f, ", {}", self.borough)
    }
}

fn new_york(at: DateTime<Utc>) -> String {
    at.with_timezone(&New_York)
        .format("%a %b %-d, %Y at %-I:%M %p %Z")
        .to_string()
}

/// The subject and body of the email for a notice.
pub fn compose(notice: &Notice, reservation: &Reservation, place: &Place) -> (String, String) {
    let window = format!(
        "From:  {}\nTo:    {}\nWhere: {place}",
        new_york(reservation.starts_at),
        new_york(reservation.ends_at)
    );
    let reference = format!("Reservation {}", reservation.id);
    match notice {
        Notice::Confirmed => (
            "Your parking is booked".into(),
            format!(
                "Your parking reservation is confirmed.\n\n{window}\nRate:  {}/hour\nQuote: {}\n\n\
                 The card you saved is charged for the time used when the reservation ends.\n\n{reference}\n",
                Cents(reservation.rate_cents_per_hour.into()).dollars(),
                reservation.amount_cents.dollars()
            ),
        ),
        Notice::Changed => (
            "Your parking reservation changed".into(),
            format!(
                "Your parking reservation now runs:\n\n{window}\nQuote: {}\n\n{reference}\n",
                reservation.amount_cents.dollars()
            ),
        ),
        Notice::Receipt => {
            let minutes =
                super::billing::billable_minutes(reservation.starts_at, reservation.ends_at);
            let card = reservation.card_last4.as_deref().map_or_else(
                || "the card on file".to_owned(),
                |last4| format!("the card ending in {last4}"),
            );
            let paid = if reservation.amount_cents == Cents::ZERO {
                "Nothing was owed.".to_owned()
            } else {
                format!("Charged to {card}.")
            };
            (
                format!(
                    "Your parking receipt: {}",
                    reservation.amount_cents.dollars()
                ),
                format!(
                    "Thank you for parking with Curbside.\n\n{window}\nMinutes: {minutes}\nRate:    {}/hour\nAmount:  {}\n\n{paid}\n\n{reference}\n",
                    Cents(reservation.rate_cents_per_hour.into()).dollars(),
                    reservation.amount_cents.dollars()
                ),
            )
        }
        Notice::Cancelled => (
            "Your parking reservation is cancelled".into(),
            format!(
                "Your parking reservation was cancelled. Nothing is charged.\n\n{window}\n\n{reference}\n"
            ),
        ),
        Notice::HoldExpired => (
            "Your parking hold expired".into(),
            format!(
                "We held this spot for you, but no card was saved in time, so the hold has \
                 expired and the spot is free again. Nothing is charged. Book again any time.\n\n{window}\n\n{reference}\n"
            ),
        ),
        Notice::PaymentFailed {
            reason,
            requires_action,
        } => {
            let what_to_do = if *requires_action {
                "Your bank asks you to confirm this payment. Open the Curbside app and pay the \
                 reservation there, or contact support with the reference below."
            } else {
                "Please pay the amount in the Curbside app with another card, or contact \
                 support with the reference below. Until then new bookings may be refused."
            };
            (
                format!(
                    "Action needed: your parking payment of {} failed",
                    reservation.amount_cents.dollars()
                ),
                format!(
                    "We could not charge your card for this reservation: {reason}\n\n{window}\nAmount: {}\n\n{what_to_do}\n\n{reference}\n",
                    reservation.amount_cents.dollars()
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_new_york_time() {
        let winter = DateTime::parse_from_rfc3339("2026-01-15T14:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(new_york(winter), "Thu Jan 15, 2026 at 9:05 AM EST");
        let summer = DateTime::parse_from_rfc3339("2026-07-04T23:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(new_york(summer), "Sat Jul 4, 2026 at 7:30 PM EDT");
    }
}
