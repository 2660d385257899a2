//! Cursor pagination: `{"items": [...], "next_cursor": "..."|null}`.
//!
//! A cursor is the sort key of the last item, base64url-encoded JSON. Keyset pagination
//! returns every row exactly once even while rows are inserted between pages, which an
//! offset cannot promise.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::error::FieldError;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The page size asked for, checked against the bounds.
pub fn limit(requested: Option<u32>) -> Result<u32, FieldError> {
    match requested.unwrap_or(DEFAULT_LIMIT) {
        limit @ 1..=MAX_LIMIT => Ok(limit),
        _ => Err(FieldError::new(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// How many rows to ask for a page of `limit`: one more, to learn whether a next page exists.
pub fn rows_for(limit: u32) -> i64 {
    i64::from(limit) + 1
}

/// Cuts rows fetched with [`rows_for`] to the page, and gives the key of its last row when
/// more follow.
pub fn cut<T, K>(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> K) -> (Vec<T>, Option<K>) {
    let limit = limit as usize;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = more.then(|| rows.last().map(key)).flatten();
    (rows, next)
}

pub fn encode_cursor(key: &impl Serialize) -> String {
    let json = serde_json::to_vec(key).expect("cursor keys serialize");
    URL_SAFE_NO_PAD.encode(json)
}

pub fn decode_cursor<K: DeserializeOwned>(cursor: &str) -> Result<K, FieldError> {
    let invalid = || FieldError::new("cursor", "is not a cursor this listing returned");
    let json = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    serde_json::from_slice(&json).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_cut_from_one_row_more_than_its_limit() {
        assert_eq!(rows_for(50), 51);
        assert_eq!(cut(vec![1, 2, 3], 2, |n| *n), (vec![1, 2], Some(2)));
        assert_eq!(cut(vec![1, 2], 2, |n| *n), (vec![1, 2], None));
        assert_eq!(cut(Vec::<i32>::new(), 2, |n| *n), (vec![], None));
    }

    #[test]
    fn cursors_round_trip_floats_exactly() {
        let key = (1_234.567_890_123_456_7_f64, uuid::Uuid::new_v4());
        let decoded: (f64, uuid::Uuid) = decode_cursor(&encode_cursor(&key)).unwrap();
        assert_eq!(decoded.0.to_bits(), key.0.to_bits());
        assert_eq!(decoded.1, key.1);
    }

    #[test]
    fn garbage_cursors_are_field_errors() {
        assert_eq!(decode_cursor::<u32>("%%%").unwrap_err().field, "cursor");
        assert_eq!(decode_cursor::<u32>("e30").unwrap_err().field, "cursor");
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None), Ok(50));
        assert_eq!(limit(Some(200)), Ok(200));
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(201)).is_err());
    }
}
