//! The reservation state machine in one place: which action a reservation allows now, and
//! why not. Routes, jobs and webhooks ask here before they change anything; the HTTP answer
//! to a refusal is chosen by the caller.
//!
//! ```text
//! held ──confirm──▶ confirmed ──complete / end──▶ completed
//!   │                   │
//!   ├──expire──▶ expired└──cancel (before the start)──▶ cancelled
//!   └──cancel (any time)──▶ cancelled
//! ```
//!
//! `held` and `confirmed` reservations are the live ones (a hold only until
//! `hold_expires_at`); only they take part in the exclusion constraint.

use chrono::{DateTime, Utc};

use super::model::{PaymentStatus, Reservation, Status};

/// Attempts at one reservation's final charge, the first included: after that many cards
/// have failed, the bill goes to support rather than to another card (a stolen-card tester
/// gets no endless trials).
pub const MAX_CHARGE_ATTEMPTS: i32 = 10;

/// What can be done to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Save the card: `held` → `confirmed`.
    Confirm,
    /// Move the end (extend or shorten).
    Change,
    /// End a running reservation now, by its driver.
    End,
    /// Give it up before it starts, or give up a hold.
    Cancel,
    /// A hold whose card was not saved in time lapses.
    Expire,
    /// The end has come: `confirmed` → `completed` with the final bill.
    Complete,
    /// Charge the final bill off-session.
    Charge,
    /// Pay a bill whose charge failed with another card (or the same one again).
    RetryPayment,
    /// Give back part or all of a paid bill (an operator).
    Refund,
}

/// Why an action is refused now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The status does not allow the action at all.
    #[error("the reservation is {}", .0.as_str())]
    Status(Status),
    /// Confirming what is confirmed already: nothing to do, and no error for the caller.
    #[error("the reservation is confirmed already")]
    AlreadyConfirmed,
    #[error("the reservation is over and can no longer change")]
    Over,
    #[error("the reservation has not started; cancel it instead")]
    NotStarted,
    #[error("the reservation has started; end it instead")]
    Started,
    #[error("the reservation is already over")]
    AlreadyOver,
    /// A timed step (an end, an expiry) whose time has not come.
    #[error("its time has not come")]
    NotYet,
    #[error("no charge is waiting")]
    NothingToCharge,
    /// Only a failed charge is tried again; one in progress, paid or awaiting the card
    /// holder's authentication is not.
    #[error("the payment has not failed; nothing to pay again")]
    PaymentNotFailed,
    #[error("{MAX_CHARGE_ATTEMPTS} cards were tried for this bill; contact support to pay it")]
    TooManyAttempts,
    /// Only a paid bill is refunded.
    #[error("the reservation's bill is not paid; nothing to refund")]
    NotPaid,
    #[error("everything paid for the reservation is refunded already")]
    FullyRefunded,
}

impl Reservation {
    /// Whether the reservation still holds its spot: confirmed, or held and not lapsed.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        match self.status {
            Status::Confirmed => true,
            Status::Held => self.hold_expires_at.is_some_and(|at| at > now),
            _ => false,
        }
    }

    /// Whether `action` is allowed at `now`, and why not.
    pub fn check(&self, action: Action, now: DateTime<Utc>) -> Result<(), Refusal> {
        use Status::{Cancelled, Completed, Confirmed, Expired, Held};
        match (action, self.status) {
            (Action::Confirm, Held) => Ok(()),
            (Action::Confirm, Confirmed) => Err(Refusal::AlreadyConfirmed),
            (Action::Change, _) if !self.is_live(now) || self.ends_at <= now => Err(Refusal::Over),
            (Action::Change, _) => Ok(()),
            (Action::End, Confirmed) if now < self.starts_at => Err(Refusal::NotStarted),
            (Action::End, Confirmed) if now >= self.ends_at => Err(Refusal::AlreadyOver),
            (Action::End, Confirmed) => Ok(()),
            // A hold can be let go at any time (nothing was promised, nothing is owed); a
            // confirmed booking that has started is ended, and billed, instead.
            (Action::Cancel, Held) => Ok(()),
            (Action::Cancel, Confirmed) if now >= self.starts_at => Err(Refusal::Started),
            (Action::Cancel, Confirmed) => Ok(()),
            (Action::Expire, Held) if self.hold_expires_at.is_some_and(|at| at > now) => {
                Err(Refusal::NotYet)
            }
            (Action::Expire, Held) => Ok(()),
            (Action::Complete, Confirmed) if self.ends_at > now => Err(Refusal::NotYet),
            (Action::Complete, Confirmed) => Ok(()),
            (Action::Charge, _) if self.payment_status == PaymentStatus::ChargePending => Ok(()),
            (Action::Charge, _) => Err(Refusal::NothingToCharge),
            (Action::RetryPayment, _) if self.payment_status != PaymentStatus::Failed => {
                Err(Refusal::PaymentNotFailed)
            }
            (Action::RetryPayment, _) if self.charge_attempt >= MAX_CHARGE_ATTEMPTS => {
                Err(Refusal::TooManyAttempts)
            }
            (Action::RetryPayment, _) => Ok(()),
            (Action::Refund, _) if self.payment_status != PaymentStatus::Paid => {
                Err(Refusal::NotPaid)
            }
            (Action::Refund, _) if self.refunded_cents >= self.amount_cents => {
                Err(Refusal::FullyRefunded)
            }
            (Action::Refund, _) => Ok(()),
            (
                Action::Confirm | Action::End | Action::Cancel | Action::Expire | Action::Complete,
                status @ (Held | Confirmed | Completed | Expired | Cancelled),
            ) => Err(Refusal::Status(status)),
        }
    }

    /// When the driver is reminded of the end, `lead` before it: for a confirmed reservation
    /// booked before that time (one booked for less than `lead` is not reminded at once on
    /// booking). A change bumps the version, and the new end is reminded anew.
    pub fn remind_at(&self, lead: chrono::Duration) -> Option<DateTime<Utc>> {
        let at = self.ends_at - lead;
        (self.status == Status::Confirmed && at > self.created_at).then_some(at)
    }

    /// Whether a charge's result (from the charge job or Stripe's webhook) is still awaited:
    /// a charge sent and not answered, or one the bank wanted authenticated.
    pub fn awaits_payment_result(&self) -> bool {
        matches!(
            self.payment_status,
            PaymentStatus::ChargePending | PaymentStatus::RequiresAction
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use uuid::Uuid;

    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    /// A reservation from minute 0 to 60; a hold lapses at minute 15.
    fn reservation(status: Status, payment_status: PaymentStatus) -> Reservation {
        Reservation {
            id: Uuid::nil(),
            spot_id: Uuid::nil(),
            user_id: None,
            email: "a@example.com".into(),
            vehicle_plate: None,
            starts_at: at(0),
            ends_at: at(60),
            status,
            payment_status,
            rate_cents_per_hour: 450,
            amount_cents: crate::money::Cents(450),
            currency: "usd".into(),
            version: 1,
            hold_expires_at: (status == Status::Held).then(|| at(15)),
            stripe_customer_id: None,
            stripe_setup_intent_id: None,
            stripe_payment_method_id: None,
            stripe_payment_intent_id: None,
            card_brand: None,
            card_last4: None,
            payment_error: None,
            charge_attempt: 1,
            refunded_cents: crate::money::Cents::ZERO,
            created_at: at(-10),
            updated_at: at(-10),
        }
    }

    /// The whole table: every status, every action, before the start (minute -5), while
    /// a hold is unexpired (10), after it lapsed and while running (30), after the end (70).
    #[test]
    fn every_status_and_action() {
        use Action::*;
        use PaymentStatus as P;
        use Refusal as R;
        use Status::*;
        let ok = Ok(());
        // (status, payment status, action, [at -5, at 10, at 30, at 70])
        type Row = (Status, PaymentStatus, Action, [Result<(), Refusal>; 4]);
        let table: Vec<Row> = vec![
            (Held, P::SetupPending, Confirm, [ok, ok, ok, ok]),
            (
                Held,
                P::SetupPending,
                Change,
                [ok, ok, Err(R::Over), Err(R::Over)],
            ),
            (Held, P::SetupPending, End, [Err(R::Status(Held)); 4]),
            (Held, P::SetupPending, Cancel, [ok, ok, ok, ok]),
            (
                Held,
                P::SetupPending,
                Expire,
                [Err(R::NotYet), Err(R::NotYet), ok, ok],
            ),
            (Held, P::SetupPending, Complete, [Err(R::Status(Held)); 4]),
            (Held, P::SetupPending, Charge, [Err(R::NothingToCharge); 4]),
            (
                Confirmed,
                P::CardSaved,
                Confirm,
                [Err(R::AlreadyConfirmed); 4],
            ),
            (Confirmed, P::CardSaved, Change, [ok, ok, ok, Err(R::Over)]),
            (
                Confirmed,
                P::CardSaved,
                End,
                [Err(R::NotStarted), ok, ok, Err(R::AlreadyOver)],
            ),
            (
                Confirmed,
                P::CardSaved,
                Cancel,
                [ok, Err(R::Started), Err(R::Started), Err(R::Started)],
            ),
            (
                Confirmed,
                P::CardSaved,
                Expire,
                [Err(R::Status(Confirmed)); 4],
            ),
            (
                Confirmed,
                P::CardSaved,
                Complete,
                [Err(R::NotYet), Err(R::NotYet), Err(R::NotYet), ok],
            ),
            (
                Confirmed,
                P::CardSaved,
                Charge,
                [Err(R::NothingToCharge); 4],
            ),
            (Completed, P::ChargePending, Charge, [ok, ok, ok, ok]),
            (Completed, P::Paid, Charge, [Err(R::NothingToCharge); 4]),
            (Completed, P::Failed, Charge, [Err(R::NothingToCharge); 4]),
            (Completed, P::ChargePending, Change, [Err(R::Over); 4]),
            (Completed, P::Failed, RetryPayment, [ok, ok, ok, ok]),
            (
                Completed,
                P::ChargePending,
                RetryPayment,
                [Err(R::PaymentNotFailed); 4],
            ),
            (
                Completed,
                P::RequiresAction,
                RetryPayment,
                [Err(R::PaymentNotFailed); 4],
            ),
            (
                Completed,
                P::Paid,
                RetryPayment,
                [Err(R::PaymentNotFailed); 4],
            ),
            (
                Confirmed,
                P::CardSaved,
                RetryPayment,
                [Err(R::PaymentNotFailed); 4],
            ),
            (Completed, P::Paid, Refund, [ok, ok, ok, ok]),
            (Completed, P::ChargePending, Refund, [Err(R::NotPaid); 4]),
            (Completed, P::Failed, Refund, [Err(R::NotPaid); 4]),
            (Completed, P::RequiresAction, Refund, [Err(R::NotPaid); 4]),
            (Confirmed, P::CardSaved, Refund, [Err(R::NotPaid); 4]),
            (Held, P::SetupPending, Refund, [Err(R::NotPaid); 4]),
        ];
        let mut rows = table;
        for status in [Completed, Expired, Cancelled] {
            for action in [Confirm, End, Cancel, Expire, Complete] {
                rows.push((status, P::NotRequired, action, [Err(R::Status(status)); 4]));
            }
            rows.push((status, P::NotRequired, Change, [Err(R::Over); 4]));
            rows.push((status, P::NotRequired, Charge, [Err(R::NothingToCharge); 4]));
            rows.push((
                status,
                P::NotRequired,
                RetryPayment,
                [Err(R::PaymentNotFailed); 4],
            ));
            rows.push((status, P::NotRequired, Refund, [Err(R::NotPaid); 4]));
        }
        for (status, payment_status, action, expected) in rows {
            let reservation = reservation(status, payment_status);
            for (now, expected) in [at(-5), at(10), at(30), at(70)].into_iter().zip(expected) {
                assert_eq!(
                    reservation.check(action, now),
                    expected,
                    "{status:?}/{payment_status:?} {action:?} at {now}"
                );
            }
        }
    }

    #[test]
    fn a_failed_bill_takes_a_limited_number_of_cards() {
        let mut failed = reservation(Status::Completed, PaymentStatus::Failed);
        failed.charge_attempt = MAX_CHARGE_ATTEMPTS - 1;
        assert_eq!(failed.check(Action::RetryPayment, at(70)), Ok(()));
        failed.charge_attempt = MAX_CHARGE_ATTEMPTS;
        assert_eq!(
            failed.check(Action::RetryPayment, at(70)),
            Err(Refusal::TooManyAttempts)
        );
    }

    #[test]
    fn a_bill_is_refunded_up_to_what_was_paid() {
        let mut paid = reservation(Status::Completed, PaymentStatus::Paid);
        paid.refunded_cents = crate::money::Cents(449);
        assert_eq!(paid.check(Action::Refund, at(70)), Ok(()));
        paid.refunded_cents = paid.amount_cents;
        assert_eq!(
            paid.check(Action::Refund, at(70)),
            Err(Refusal::FullyRefunded)
        );
    }

    #[test]
    fn a_confirmed_reservation_is_reminded_if_booked_before_its_reminder() {
        let lead = Duration::minutes(10);
        let confirmed = reservation(Status::Confirmed, PaymentStatus::CardSaved);
        assert_eq!(confirmed.remind_at(lead), Some(at(50)));
        let mut short = confirmed.clone();
        short.created_at = at(55);
        assert_eq!(short.remind_at(lead), None);
        for status in [
            Status::Held,
            Status::Completed,
            Status::Cancelled,
            Status::Expired,
        ] {
            assert_eq!(
                reservation(status, PaymentStatus::NotRequired).remind_at(lead),
                None
            );
        }
    }

    #[test]
    fn a_hold_is_live_until_it_lapses() {
        let held = reservation(Status::Held, PaymentStatus::SetupPending);
        assert!(held.is_live(at(14)));
        assert!(!held.is_live(at(15)));
        assert!(reservation(Status::Confirmed, PaymentStatus::CardSaved).is_live(at(70)));
        assert!(!reservation(Status::Cancelled, PaymentStatus::NotRequired).is_live(at(0)));
    }

    #[test]
    fn payment_results_are_awaited_while_pending_or_authenticating() {
        for (payment_status, awaited) in [
            (PaymentStatus::ChargePending, true),
            (PaymentStatus::RequiresAction, true),
            (PaymentStatus::Paid, false),
            (PaymentStatus::Failed, false),
            (PaymentStatus::CardSaved, false),
        ] {
            assert_eq!(
                reservation(Status::Completed, payment_status).awaits_payment_result(),
                awaited
            );
        }
    }
}
