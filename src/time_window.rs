//! A half-open time window `[starts_at, ends_at)`, the unit of search and booking.

use chrono::{DateTime, Duration, SubsecRound as _, Utc};

use crate::error::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
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

/// The instants the API takes: from 2000-01-01T00:00:00Z, before 2100-01-01T00:00:00Z. Every
/// time a client sends is checked against them as it is read, before any arithmetic (a year
/// like +262142 overflows `DateTime + Duration`) and before PostgreSQL (whose timestamps end
/// in the year 294276 and begin at 4713 BC).
pub const EARLIEST_UNIX: i64 = 946_684_800;
pub const LATEST_UNIX: i64 = 4_102_444_800;

/// Why a time was refused, in the words of the field error.
pub const OUT_OF_RANGE: &str = "must be between 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z";

/// Deserializers of client-sent times that refuse an instant outside the API's range, so
/// the field is named in a 422 like any other invalid value.
pub mod bounded {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize as _, Deserializer};

    fn check<E: serde::de::Error>(at: DateTime<Utc>) -> Result<DateTime<Utc>, E> {
        if (super::EARLIEST_UNIX..super::LATEST_UNIX).contains(&at.timestamp()) {
            Ok(at)
        } else {
            Err(E::custom(super::OUT_OF_RANGE))
        }
    }

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        check(DateTime::<Utc>::deserialize(d)?)
    }

    /// For `Option` fields; pair with `#[serde(default)]` so a missing field is `None`.
    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<DateTime<Utc>>::deserialize(d)?
            .map(check)
            .transpose()
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

    #[derive(Debug, serde::Deserialize)]
    struct Times {
        #[serde(default, deserialize_with = "bounded::optional")]
        at: Option<DateTime<Utc>>,
    }

    fn read(json: &str) -> Result<Option<DateTime<Utc>>, String> {
        serde_json::from_str::<Times>(json)
            .map(|t| t.at)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn times_outside_the_api_range_are_refused_as_they_are_read() {
        assert_eq!(read("{}"), Ok(None));
        assert_eq!(read(r#"{"at": null}"#), Ok(None));
        assert!(
            read(r#"{"at": "2026-12-02T10:00:00-05:00"}"#)
                .unwrap()
                .is_some()
        );
        assert!(read(r#"{"at": "2000-01-01T00:00:00Z"}"#).is_ok());
        for bad in [
            "+262142-12-31T23:59:59Z",
            "-4714-01-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "2100-01-01T00:00:00Z",
        ] {
            let error = read(&format!(r#"{{"at": "{bad}"}}"#)).unwrap_err();
            assert!(error.contains(OUT_OF_RANGE), "{bad}: {error}");
        }
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
