//! How a nearest-first search is cut into pages, the same for the SQL (`db`) and the
//! picture of the curb (`picture`), so that both give the same pages and cursors.

use super::model::{SearchCursor, SpotMatch};

fn distance(row: &SpotMatch) -> f64 {
    row.distance_m.unwrap_or(f64::INFINITY)
}

pub fn nearest_cursor(row: &SpotMatch) -> SearchCursor {
    SearchCursor::Nearest {
        distance_m: distance(row),
        id: row.spot.id,
    }
}

/// Orders up to `limit + 1` nearest rows by (distance, id) and cuts a page.
///
/// The index returns ties in distance in no set order, so when the row after the page
/// shares its distance with rows on the page, other rows at that distance may not have
/// been read yet. The page then ends before that distance, and the next page starts with
/// all of it. When the whole page is one tie, the rows come back (sorted): that page needs
/// the exact query.
pub fn page_of_nearest(
    mut rows: Vec<SpotMatch>,
    limit: usize,
) -> Result<(Vec<SpotMatch>, Option<SearchCursor>), Vec<SpotMatch>> {
    rows.sort_by(|a, b| {
        distance(a)
            .total_cmp(&distance(b))
            .then(a.spot.id.cmp(&b.spot.id))
    });
    if rows.len() <= limit {
        return Ok((rows, None));
    }
    let boundary = distance(&rows[limit]);
    if distance(&rows[0]) == boundary {
        return Err(rows);
    }
    rows.truncate(limit);
    rows.retain(|row| distance(row) < boundary);
    let cursor = rows.last().map(nearest_cursor);
    Ok((rows, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pagination;
    use crate::spots::model::{Facility, Spot};
    use uuid::Uuid;

    fn row(id: u128, distance: f64) -> SpotMatch {
        SpotMatch {
            spot: Spot {
                id: Uuid::from_u128(id),
                meter_number: id.to_string(),
                lat: 0.0,
                lng: 0.0,
                borough: "Queens".into(),
                street: None,
                side: None,
                from_street: None,
                to_street: None,
                facility: Facility::OnStreet,
                rule: None,
                max_stay_minutes: 120,
                rate_cents_per_hour: 250,
                currency: "usd".into(),
                active: true,
            },
            available: true,
            distance_m: Some(distance),
        }
    }

    fn ids(rows: &[SpotMatch]) -> Vec<u128> {
        rows.iter().map(|r| r.spot.id.as_u128()).collect()
    }

    #[test]
    fn a_short_read_is_the_last_page() {
        let (page, cursor) = page_of_nearest(vec![row(2, 5.0), row(1, 3.0)], 2).unwrap();
        assert_eq!((ids(&page), cursor), (vec![1, 2], None));
    }

    #[test]
    fn a_tie_at_the_boundary_moves_to_the_next_page() {
        let rows = vec![row(1, 1.0), row(9, 2.0), row(3, 2.0), row(4, 2.0)];
        let (page, cursor) = page_of_nearest(rows, 3).unwrap();
        assert_eq!(ids(&page), [1]);
        assert_eq!(
            cursor,
            Some(SearchCursor::Nearest {
                distance_m: 1.0,
                id: Uuid::from_u128(1)
            })
        );
    }

    #[test]
    fn a_page_that_is_one_tie_needs_the_exact_query() {
        let rows = page_of_nearest(vec![row(3, 2.0), row(1, 2.0), row(2, 2.0)], 2).unwrap_err();
        assert_eq!(ids(&rows), [1, 2, 3]);
        let (page, cursor) = pagination::cut(
            vec![row(1, 2.0), row(2, 2.0), row(3, 2.0)],
            2,
            nearest_cursor,
        );
        assert_eq!(ids(&page), [1, 2]);
        assert_eq!(
            cursor,
            Some(SearchCursor::Nearest {
                distance_m: 2.0,
                id: Uuid::from_u128(2)
            })
        );
    }
}
