//! Spot types and the parsed form of a search.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{AppError, FieldError};
use crate::pagination::{self, decode_cursor};
use crate::time_window::{TimeWindow, bounded};

/// The largest search radius, so one search cannot ask for the whole city sorted.
pub const MAX_RADIUS_M: f64 = 50_000.0;
const METERS_PER_MILE: f64 = 1_609.344;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Facility {
    OnStreet,
    OffStreet,
}

/// A parking spot (one meter). Read from rows by position (see `spots::db`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Spot {
    pub id: Uuid,
    /// The city's meter number.
    pub meter_number: String,
    pub lat: f64,
    pub lng: f64,
    pub borough: String,
    #[schema(required = true)]
    pub street: Option<String>,
    /// Side of the street (N, S, E, W, …).
    #[schema(required = true)]
    pub side: Option<String>,
    #[schema(required = true)]
    pub from_street: Option<String>,
    #[schema(required = true)]
    pub to_street: Option<String>,
    pub facility: Facility,
    /// The posted rule, as the city wrote it.
    #[schema(required = true)]
    pub rule: Option<String>,
    pub max_stay_minutes: i32,
    pub rate_cents_per_hour: i32,
    #[schema(example = "usd")]
    pub currency: String,
    pub active: bool,
}

/// A search result: the spot, whether it is free for the whole window, and its distance.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpotMatch {
    #[serde(flatten)]
    pub spot: Spot,
    /// Free for the whole requested window.
    pub available: bool,
    /// Great-circle distance from the search point in metres (geo searches only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
}

/// A time a live reservation takes its spot: `[starts_at, ends_at)`, until `lapses_at`
/// for a hold waiting for its card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub lapses_at: Option<DateTime<Utc>>,
}

impl Taken {
    /// The SQL's `live_sql!` and overlap test: confirmed, or held and not lapsed.
    pub fn blocks(&self, window: &TimeWindow, now: DateTime<Utc>) -> bool {
        self.lapses_at.is_none_or(|lapses_at| lapses_at > now)
            && self.ends_at > window.starts_at
            && self.starts_at < window.ends_at
    }
}

/// A time a spot is taken.
#[derive(Debug, Serialize, ToSchema)]
pub struct BusyInterval {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// A spot with the times it is taken in the next 24 hours.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpotDetail {
    #[serde(flatten)]
    pub spot: Spot,
    pub busy: Vec<BusyInterval>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DistanceUnit {
    Km,
    Mi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AvailabilityFilter {
    True,
    False,
    Any,
}

/// `GET /v1/spots` query parameters, as sent.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Latitude of the search point; give `lat`, `lng` and `radius` together or not at all.
    #[param(minimum = -90, maximum = 90)]
    lat: Option<f64>,
    /// Longitude of the search point.
    #[param(minimum = -180, maximum = 180)]
    lng: Option<f64>,
    /// Radius in `unit`: more than 0, at most 50 km (31.07 mi).
    #[param(exclusive_minimum = 0, maximum = 50)]
    radius: Option<f64>,
    /// `km` (default) or `mi`.
    unit: Option<DistanceUnit>,
    /// Window start, RFC 3339 with an offset, between 2000-01-01T00:00:00Z and
    /// 2100-01-01T00:00:00Z; default now.
    #[serde(default, deserialize_with = "bounded::optional")]
    starts_at: Option<DateTime<Utc>>,
    /// Window end, after the start and at most 31 days after it, between
    /// 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z; default `starts_at` plus the minimum
    /// reservation length.
    #[serde(default, deserialize_with = "bounded::optional")]
    ends_at: Option<DateTime<Utc>>,
    /// `true` (default): free for the whole window; `false`: taken; `any`.
    available: Option<AvailabilityFilter>,
    /// Page size.
    #[param(minimum = 1, maximum = 200, default = 50)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page of the same kind of search (with or without a point).
    cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Circle {
    pub lat: f64,
    pub lng: f64,
    pub radius_m: f64,
}

/// Where a page starts: after this key of the previous page's last item.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum SearchCursor {
    Nearest { distance_m: f64, id: Uuid },
    ById { id: Uuid },
}

/// A validated search.
#[derive(Debug, Clone)]
pub struct Search {
    pub circle: Option<Circle>,
    pub window: TimeWindow,
    /// `Some(true)`: only free spots; `Some(false)`: only taken ones; `None`: all.
    pub available: Option<bool>,
    pub limit: u32,
    pub after: Option<SearchCursor>,
}

impl SearchQuery {
    /// Checks every parameter and lists all that are wrong.
    pub fn validate(
        self,
        now: DateTime<Utc>,
        default_length: Duration,
    ) -> Result<Search, AppError> {
        let mut errors = Vec::new();
        let circle = self.circle().map_err(|e| errors.extend(e)).ok().flatten();
        let window = TimeWindow::parse(self.starts_at, self.ends_at, now, default_length)
            .map_err(|e| errors.push(e))
            .ok();
        let limit = pagination::limit(self.limit)
            .map_err(|e| errors.push(e))
            .ok();
        let after = self
            .cursor
            .as_deref()
            .map(decode_cursor::<SearchCursor>)
            .transpose()
            .map_err(|e| errors.push(e))
            .ok()
            .flatten();
        let other_kind = matches!(
            (after, circle),
            (Some(SearchCursor::Nearest { .. }), None) | (Some(SearchCursor::ById { .. }), Some(_))
        );
        if other_kind {
            errors.push(FieldError::new(
                "cursor",
                "belongs to another kind of search",
            ));
        }
        match (window, limit) {
            (Some(window), Some(limit)) if errors.is_empty() => Ok(Search {
                circle,
                window,
                available: match self.available.unwrap_or(AvailabilityFilter::True) {
                    AvailabilityFilter::True => Some(true),
                    AvailabilityFilter::False => Some(false),
                    AvailabilityFilter::Any => None,
                },
                limit,
                after,
            }),
            _ => Err(AppError::Validation(errors)),
        }
    }

    fn circle(&self) -> Result<Option<Circle>, Vec<FieldError>> {
        let (lat, lng, radius) = match (self.lat, self.lng, self.radius) {
            (None, None, None) => return Ok(None),
            (Some(lat), Some(lng), Some(radius)) => (lat, lng, radius),
            (lat, lng, radius) => {
                let missing = [("lat", lat), ("lng", lng), ("radius", radius)]
                    .into_iter()
                    .filter(|(_, value)| value.is_none())
                    .map(|(name, _)| {
                        FieldError::new(
                            name,
                            "lat, lng and radius go together: give all three or none",
                        )
                    });
                return Err(missing.collect());
            }
        };
        circle(lat, lng, radius, self.unit, MAX_RADIUS_M).map(Some)
    }
}

/// A circle of at most `max_m` metres, or what is wrong with it.
fn circle(
    lat: f64,
    lng: f64,
    radius: f64,
    unit: Option<DistanceUnit>,
    max_m: f64,
) -> Result<Circle, Vec<FieldError>> {
    let mut errors = Vec::new();
    if !(-90.0..=90.0).contains(&lat) {
        errors.push(FieldError::new("lat", "must be between -90 and 90"));
    }
    if !(-180.0..=180.0).contains(&lng) {
        errors.push(FieldError::new("lng", "must be between -180 and 180"));
    }
    let radius_m = match unit.unwrap_or(DistanceUnit::Km) {
        DistanceUnit::Km => radius * 1_000.0,
        DistanceUnit::Mi => radius * METERS_PER_MILE,
    };
    if !(radius_m > 0.0 && radius_m <= max_m) {
        errors.push(FieldError::new(
            "radius",
            format!(
                "must be greater than 0 and at most {} km ({:.2} mi)",
                max_m / 1_000.0,
                max_m / METERS_PER_MILE
            ),
        ));
    }
    if errors.is_empty() {
        Ok(Circle { lat, lng, radius_m })
    } else {
        Err(errors)
    }
}

/// The largest circle a stream may watch: its snapshot is every spot in it, sent at once.
pub const MAX_STREAM_RADIUS_M: f64 = 2_000.0;

/// `GET /v1/spots/events` query parameters, as sent.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Latitude of the centre.
    #[param(minimum = -90, maximum = 90)]
    lat: f64,
    /// Longitude of the centre.
    #[param(minimum = -180, maximum = 180)]
    lng: f64,
    /// Radius in `unit`: more than 0, at most 2 km (1.24 mi).
    #[param(exclusive_minimum = 0, maximum = 2)]
    radius: f64,
    /// `km` (default) or `mi`.
    unit: Option<DistanceUnit>,
    /// Start of the window availability is for, as in `GET /v1/spots`. Without `starts_at`
    /// and `ends_at`, each event tells availability from its own time for the minimum
    /// reservation length.
    #[serde(default, deserialize_with = "bounded::optional")]
    starts_at: Option<DateTime<Utc>>,
    /// End of that window, as in `GET /v1/spots`.
    #[serde(default, deserialize_with = "bounded::optional")]
    ends_at: Option<DateTime<Utc>>,
}

/// What a stream watches: a circle, and a window (`None`: from each event's time).
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    pub circle: Circle,
    pub window: Option<TimeWindow>,
}

impl Watch {
    /// The window availability is told for at `now`.
    pub fn window_at(&self, now: DateTime<Utc>, default_length: Duration) -> TimeWindow {
        self.window.unwrap_or(TimeWindow {
            starts_at: now,
            ends_at: now + default_length,
        })
    }
}

impl StreamQuery {
    pub fn validate(self, now: DateTime<Utc>, default_length: Duration) -> Result<Watch, AppError> {
        let mut errors = Vec::new();
        let circle = circle(
            self.lat,
            self.lng,
            self.radius,
            self.unit,
            MAX_STREAM_RADIUS_M,
        )
        .map_err(|e| errors.extend(e))
        .ok();
        let window = match (self.starts_at, self.ends_at) {
            (None, None) => None,
            (starts_at, ends_at) => TimeWindow::parse(starts_at, ends_at, now, default_length)
                .map_err(|e| errors.push(e))
                .ok(),
        };
        match circle {
            Some(circle) if errors.is_empty() => Ok(Watch { circle, window }),
            _ => Err(AppError::Validation(errors)),
        }
    }
}

/// `POST /v1/spots` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSpot {
    /// Unique among spots; not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub meter_number: String,
    #[schema(minimum = -90, maximum = 90)]
    pub lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    pub lng: f64,
    /// Not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub borough: String,
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub street: Option<String>,
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub side: Option<String>,
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub from_street: Option<String>,
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub to_street: Option<String>,
    /// Default `on_street`.
    pub facility: Option<Facility>,
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub rule: Option<String>,
    #[schema(minimum = 1, maximum = 1440)]
    pub max_stay_minutes: i32,
    #[schema(minimum = 0, maximum = 100000)]
    pub rate_cents_per_hour: i32,
    /// Default `true`.
    pub active: Option<bool>,
}

/// `PATCH /v1/spots/{id}` body: only the fields given change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpotChanges {
    #[schema(minimum = 0, maximum = 100000)]
    pub rate_cents_per_hour: Option<i32>,
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub rule: Option<String>,
    #[schema(minimum = 1, maximum = 1440)]
    pub max_stay_minutes: Option<i32>,
    pub active: Option<bool>,
}

fn check_rate(rate: Option<i32>, errors: &mut Vec<FieldError>) {
    if rate.is_some_and(|r| !(0..=100_000).contains(&r)) {
        errors.push(FieldError::new(
            "rate_cents_per_hour",
            "must be between 0 and 100000",
        ));
    }
}

fn check_max_stay(minutes: Option<i32>, errors: &mut Vec<FieldError>) {
    if minutes.is_some_and(|m| !(1..=1440).contains(&m)) {
        errors.push(FieldError::new(
            "max_stay_minutes",
            "must be between 1 and 1440",
        ));
    }
}

fn check_text(field: &str, value: Option<&str>, max: usize, errors: &mut Vec<FieldError>) {
    if value.is_some_and(|v| v.chars().count() > max || v.chars().any(char::is_control)) {
        errors.push(FieldError::new(
            field,
            format!("must be at most {max} characters without control characters"),
        ));
    }
}

impl NewSpot {
    pub fn validate(&self) -> Result<(), AppError> {
        let mut errors = Vec::new();
        if self.meter_number.trim().is_empty() {
            errors.push(FieldError::new("meter_number", "is required"));
        }
        if self.borough.trim().is_empty() {
            errors.push(FieldError::new("borough", "is required"));
        }
        if !(-90.0..=90.0).contains(&self.lat) {
            errors.push(FieldError::new("lat", "must be between -90 and 90"));
        }
        if !(-180.0..=180.0).contains(&self.lng) {
            errors.push(FieldError::new("lng", "must be between -180 and 180"));
        }
        for (field, value) in [
            ("meter_number", Some(self.meter_number.as_str())),
            ("borough", Some(self.borough.as_str())),
            ("street", self.street.as_deref()),
            ("side", self.side.as_deref()),
            ("from_street", self.from_street.as_deref()),
            ("to_street", self.to_street.as_deref()),
            ("rule", self.rule.as_deref()),
        ] {
            check_text(field, value, 200, &mut errors);
        }
        check_rate(Some(self.rate_cents_per_hour), &mut errors);
        check_max_stay(Some(self.max_stay_minutes), &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(errors))
        }
    }
}

impl SpotChanges {
    pub fn validate(&self) -> Result<(), AppError> {
        let mut errors = Vec::new();
        check_rate(self.rate_cents_per_hour, &mut errors);
        check_max_stay(self.max_stay_minutes, &mut errors);
        check_text("rule", self.rule.as_deref(), 200, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &str) -> Result<Search, AppError> {
        let query: SearchQuery = serde_urlencoded::from_str(pairs).unwrap();
        query.validate(Utc::now(), Duration::minutes(5))
    }

    fn fields(result: Result<Search, AppError>) -> Vec<String> {
        match result {
            Err(AppError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn geo_parameters_go_together() {
        assert!(query("").unwrap().circle.is_none());
        assert_eq!(fields(query("lat=40.7")), ["lng", "radius"]);
        assert_eq!(fields(query("lat=40.7&lng=-73.9")), ["radius"]);
    }

    #[test]
    fn radius_is_bounded_in_either_unit() {
        let km = query("lat=40.7&lng=-73.9&radius=50").unwrap();
        assert_eq!(km.circle.unwrap().radius_m, 50_000.0);
        let mi = query("lat=40.7&lng=-73.9&radius=1&unit=mi").unwrap();
        assert_eq!(mi.circle.unwrap().radius_m, 1_609.344);
        assert_eq!(fields(query("lat=40.7&lng=-73.9&radius=50.1")), ["radius"]);
        assert_eq!(
            fields(query("lat=40.7&lng=-73.9&radius=31.1&unit=mi")),
            ["radius"]
        );
        assert_eq!(fields(query("lat=40.7&lng=-73.9&radius=0")), ["radius"]);
        assert_eq!(fields(query("lat=91&lng=-181&radius=1")), ["lat", "lng"]);
    }

    #[test]
    fn cursors_must_match_the_kind_of_search() {
        let nearest = pagination::encode_cursor(&SearchCursor::Nearest {
            distance_m: 1.0,
            id: Uuid::nil(),
        });
        assert_eq!(fields(query(&format!("cursor={nearest}"))), ["cursor"]);
        let by_id = pagination::encode_cursor(&SearchCursor::ById { id: Uuid::nil() });
        assert!(query(&format!("cursor={by_id}")).is_ok());
    }
}
