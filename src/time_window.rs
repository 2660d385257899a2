//! A half-open time window `[starts_at, ends_at)`, the unit of search and booking.

use chrono::{DateTime, Duration, SubsecRound as _, Utc};

use crate::error::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl TimeWindow {
    /// The longest window anyone may ask about.
    pub const MAX_LENGTH: Duration = Duration::days(31);

    /// A window from optional bounds: the start defaults to `now`, the end to the start plus
    /// `default_length`. Errors name the field at fault.
    pub fn parse(
        starts_at: Option<DateTime<Utc>>,
        ends_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        default_length: Duration,
    ) -> Result<Self, FieldError> {
        // PostgreSQL keeps microseconds: cut the rest now, so a bill computed from this
        // window and one computed from the stored row are the same bill.
        let starts_at = to_stored_precision(starts_at.unwrap_or(now));
        let ends_at = to_stored_precision(ends_at.unwrap_or(starts_at + default_length));
        if ends_at <= starts_at {
            return Err(FieldError::new("ends_at", "must be after starts_at"));
        }
        if ends_at - starts_at > Self::MAX_LENGTH {
            return Err(FieldError::new(
                "ends_at",
                "the window may be at most 31 days long",
            ));
        }
        Ok(Self { starts_at, ends_at })
    }
}

/// The instant as PostgreSQL will store it: whole microseconds.
pub fn to_stored_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    #[test]
    fn defaults_to_now_and_the_default_length() {
        let window = TimeWindow::parse(None, None, at(0), Duration::minutes(5)).unwrap();
        assert_eq!((window.starts_at, window.ends_at), (at(0), at(5)));
    }

    #[test]
    fn refuses_empty_backwards_and_overlong_windows() {
        let five = Duration::minutes(5);
        assert!(TimeWindow::parse(Some(at(10)), Some(at(10)), at(0), five).is_err());
        assert!(TimeWindow::parse(Some(at(10)), Some(at(5)), at(0), five).is_err());
        let too_long = Some(at(0) + TimeWindow::MAX_LENGTH + Duration::seconds(1));
        assert!(TimeWindow::parse(Some(at(0)), too_long, at(0), five).is_err());
    }
}
