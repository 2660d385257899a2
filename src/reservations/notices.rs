//! What a reservation's driver is told, and when: every change is announced by an email
//! written to the outbox in the same transaction as the change. Plain text, times in New
//! York time, money in dollars.

use chrono::{DateTime, Utc};
use chrono_tz::America::New_York;
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::Reservation;
use crate::email::outbox::{self, NewEmail};
use crate::links::AppLinks;
use crate::money::Cents;
use crate::spots;
use crate::spots::model::Spot;

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
    /// An operator's refund of this amount went through.
    Refunded {
        amount: Cents,
    },
    /// The end is `REMINDER_MINUTES` away; `link` extends it in one tap.
    Reminder {
        link: String,
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
            Self::Refunded { .. } => "refunded",
            Self::Reminder { .. } => "reminder",
        }
    }
}

/// Writes the email announcing `notice` for the reservation; call it inside the
/// transaction that makes the change, so the two commit or roll back together.
pub async fn write(
    conn: &mut PgConnection,
    links: &AppLinks,
    reservation: &Reservation,
    notice: &Notice,
) -> sqlx::Result<Uuid> {
    let spot = spots::db::find(&mut *conn, reservation.spot_id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    write_at(conn, links, reservation, &Place::of(&spot), notice).await
}

/// [`write`] for a caller that has the spot at hand (a booking): one query fewer.
pub async fn write_at(
    conn: &mut PgConnection,
    links: &AppLinks,
    reservation: &Reservation,
    place: &Place,
    notice: &Notice,
) -> sqlx::Result<Uuid> {
    let (subject, body) = compose(notice, reservation, place, links);
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

impl Place {
    pub fn of(spot: &Spot) -> Self {
        Self {
            meter_number: spot.meter_number.clone(),
            street: spot.street.clone(),
            borough: spot.borough.clone(),
        }
    }
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

/// The subject and body of the email for a notice. Every email names the reservation; a
/// guest's also says how to get back to it without the guest link.
pub fn compose(
    notice: &Notice,
    reservation: &Reservation,
    place: &Place,
    links: &AppLinks,
) -> (String, String) {
    let window = format!(
        "From:  {}\nTo:    {}\nWhere: {place}",
        new_york(reservation.starts_at),
        new_york(reservation.ends_at)
    );
    let mut reference = format!("Reservation {}", reservation.id);
    if reservation.user_id.is_none() {
        reference.push_str(&format!(
            "\nLost the link to this reservation? Ask for a new one with this email address at \
             {}",
            links.request_access()
        ));
    }
    let (subject, text) = match notice {
        Notice::Confirmed => (
            "Your parking is booked".into(),
            format!(
                "Your parking reservation is confirmed.\n\n{window}\nRate:  {}/hour\nQuote: {}\n\n\
                 The card you saved is charged for the time used when the reservation ends.",
                Cents(reservation.rate_cents_per_hour.into()).dollars(),
                reservation.amount_cents.dollars()
            ),
        ),
        Notice::Changed => (
            "Your parking reservation changed".into(),
            format!(
                "Your parking reservation now runs:\n\n{window}\nQuote: {}",
                reservation.amount_cents.dollars()
            ),
        ),
        Notice::Receipt => (
            format!(
                "Your parking receipt: {}",
                reservation.amount_cents.dollars()
            ),
            format!(
                "Thank you for parking with Curbside.\n\n{window}\n{}\n\nReceipt: {}",
                receipt_lines(reservation),
                links.receipt(reservation.id)
            ),
        ),
        Notice::Cancelled => (
            "Your parking reservation is cancelled".into(),
            format!("Your parking reservation was cancelled. Nothing is charged.\n\n{window}"),
        ),
        Notice::HoldExpired => (
            "Your parking hold expired".into(),
            format!(
                "We held this spot for you, but no card was saved in time, so the hold has \
                 expired and the spot is free again. Nothing is charged. Book again any time.\n\n{window}"
            ),
        ),
        Notice::PaymentFailed {
            reason,
            requires_action,
        } => {
            let what_to_do = if *requires_action {
                "Your bank asks you to confirm this payment. Confirm it here"
            } else {
                "Please pay it with another card here"
            };
            (
                format!(
                    "Action needed: your parking payment of {} failed",
                    reservation.amount_cents.dollars()
                ),
                format!(
                    "We could not charge your card for this reservation: {reason}\n\n{window}\nAmount: {}\n\n\
                     {what_to_do}:\n{}\n\nUntil it is paid, new bookings with this email address are refused.",
                    reservation.amount_cents.dollars(),
                    links.payment(reservation.id)
                ),
            )
        }
        Notice::Reminder { link } => (
            format!(
                "Your parking ends {}",
                reservation
                    .ends_at
                    .with_timezone(&New_York)
                    .format("at %-I:%M %p")
            ),
            format!(
                "Your parking time is almost up.\n\n{window}\n\nNeed more time? Extend it in one \
                 tap (the page asks you to confirm; the link works once, until the end):\n{link}"
            ),
        ),
        Notice::Refunded { amount } => (
            format!("Your parking refund: {}", amount.dollars()),
            format!(
                "We have refunded {} of your parking payment.\n\n{window}\nPaid:     {}\n\
                 Refunded: {} in all\n\nThe money goes back to the card you paid with; banks \
                 take 5 to 10 business days to show it.\n\nReceipt: {}",
                amount.dollars(),
                reservation.amount_cents.dollars(),
                reservation.refunded_cents.dollars(),
                links.receipt(reservation.id)
            ),
        ),
    };
    (subject, format!("{text}\n\n{reference}\n"))
}

/// The lines of a receipt that say what was billed and how it was paid: the email and the
/// receipt page show the same.
pub fn receipt_lines(reservation: &Reservation) -> String {
    let minutes = super::billing::billable_minutes(reservation.starts_at, reservation.ends_at);
    let paid = if reservation.amount_cents == Cents::ZERO {
        "Nothing was owed.".to_owned()
    } else {
        match (&reservation.card_brand, &reservation.card_last4) {
            (Some(brand), Some(last4)) => format!("Charged to the {brand} card ending in {last4}."),
            (None, Some(last4)) => format!("Charged to the card ending in {last4}."),
            _ => "Charged to the card on file.".to_owned(),
        }
    };
    let refunded = if reservation.refunded_cents > Cents::ZERO {
        format!("\nRefunded: {}", reservation.refunded_cents.dollars())
    } else {
        String::new()
    };
    format!(
        "Minutes: {minutes}\nRate:    {}/hour\nAmount:  {}{refunded}\n\n{paid}",
        Cents(reservation.rate_cents_per_hour.into()).dollars(),
        reservation.amount_cents.dollars()
    )
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
