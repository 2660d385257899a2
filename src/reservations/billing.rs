//! The one billing function. Quotes, changes and the final charge all call [`bill`], so a
//! reservation that ends on time is charged exactly what it was quoted.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::money::Cents;
use utoipa::ToSchema;

/// Stripe's smallest card charge in USD: anything owed is at least this.
pub const MINIMUM_CHARGE: Cents = Cents(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Bill {
    /// Time used, in whole minutes rounded up.
    pub minutes: i64,
    pub amount_cents: Cents,
}

/// Seconds used, rounded up to whole minutes; nothing for an empty or negative span.
pub fn billable_minutes(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> i64 {
    let used = ends_at - starts_at;
    if used <= chrono::Duration::zero() {
        return 0;
    }
    let seconds = used.num_seconds() + i64::from(used.subsec_nanos() > 0);
    (seconds + 59) / 60
}

/// `ceil(minutes × rate / 60)` cents, and at least the minimum charge when anything is owed.
pub fn amount_cents(minutes: i64, rate_cents_per_hour: i32) -> Cents {
    let exact = minutes.max(0) * i64::from(rate_cents_per_hour.max(0));
    match (exact + 59) / 60 {
        0 => Cents::ZERO,
        cents => Cents(cents).max(MINIMUM_CHARGE),
    }
}

/// The bill for `[starts_at, ends_at)` at `rate_cents_per_hour`.
pub fn bill(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>, rate_cents_per_hour: i32) -> Bill {
    let minutes = billable_minutes(starts_at, ends_at);
    Bill {
        minutes,
        amount_cents: amount_cents(minutes, rate_cents_per_hour),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use proptest::prelude::*;

    use super::*;
    use crate::time_window::TimeWindow;

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn seconds_round_up_to_minutes() {
        let at = |seconds: i64, nanos: i64| {
            start() + Duration::seconds(seconds) + Duration::nanoseconds(nanos)
        };
        assert_eq!(billable_minutes(start(), at(0, 0)), 0);
        assert_eq!(billable_minutes(start(), at(0, 1)), 1);
        assert_eq!(billable_minutes(start(), at(60, 0)), 1);
        assert_eq!(billable_minutes(start(), at(60, 1)), 2);
        assert_eq!(billable_minutes(start(), at(61, 0)), 2);
        assert_eq!(billable_minutes(start(), at(-30, 0)), 0);
    }

    #[test]
    fn cents_round_up_with_a_minimum() {
        assert_eq!(amount_cents(60, 450), Cents(450));
        assert_eq!(amount_cents(61, 450), Cents(458)); // 457.5 rounds up
        assert_eq!(amount_cents(1, 450), Cents(50)); // 7.5 cents, raised to the minimum
        assert_eq!(amount_cents(0, 450), Cents::ZERO);
        assert_eq!(amount_cents(90, 0), Cents::ZERO);
    }

    proptest! {
        #[test]
        fn never_decreases_with_more_minutes(minutes in 0i64..100_000, more in 0i64..1_000, rate in 0i32..100_000) {
            prop_assert!(amount_cents(minutes + more, rate) >= amount_cents(minutes, rate));
        }

        #[test]
        fn anything_owed_is_at_least_the_minimum(minutes in 1i64..100_000, rate in 1i32..100_000) {
            prop_assert!(amount_cents(minutes, rate) >= MINIMUM_CHARGE);
        }

        #[test]
        fn never_undercharges_the_exact_price(minutes in 0i64..100_000, rate in 0i32..100_000) {
            let exact = minutes as f64 * f64::from(rate) / 60.0;
            let charged = amount_cents(minutes, rate).0 as f64;
            prop_assert!(charged >= exact - 1e-9);
            prop_assert!(charged < exact + 1.0 || charged == MINIMUM_CHARGE.0 as f64);
        }

        /// The quote is computed from the window as the client sent it (parsed), the final
        /// bill from the row PostgreSQL stored; the two must agree to the cent.
        #[test]
        fn a_quote_equals_the_final_bill_when_ending_on_time(
            offset_ns in 0i64..86_400_000_000_000, length_ns in 1i64..86_400_000_000_000, rate in 0i32..100_000
        ) {
            let starts_at = start() + Duration::nanoseconds(offset_ns);
            let ends_at = starts_at + Duration::nanoseconds(length_ns);
            let window = TimeWindow::parse(Some(starts_at), Some(ends_at), start(), Duration::minutes(5));
            prop_assume!(window.is_ok());
            let window = window.unwrap();
            let quote = bill(window.starts_at, window.ends_at, rate);
            let stored = |t: DateTime<Utc>| DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap();
            let final_bill = bill(stored(window.starts_at), stored(window.ends_at), rate);
            prop_assert_eq!(quote, final_bill);
        }
    }
}
