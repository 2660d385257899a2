//! Spot queries. Search runs on the read pool; changes on the primary.
//!
//! The search keeps runtime queries: its three shapes share SQL fragments (`taken_join!`,
//! `nearest_within_radius!`), which a checked query cannot take (it is one literal), and
//! its rows are decoded by position straight into `SpotMatch`: the form whose generic plans
//! and decoding BENCHMARKS.md measured. Every other query here is checked at compile time.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgPool, Row as _};
use uuid::Uuid;

use super::model::Taken;
use super::model::{
    BusyInterval, Circle, Facility, NewSpot, Search, SearchCursor, Spot, SpotChanges, SpotMatch,
};
use super::paging::{nearest_cursor, page_of_nearest};
use crate::error::{AppError, AppResult, ResultExt as _};
use crate::pagination;
use crate::reservations::model::live_sql;

/// `query_as!` for a [`Spot`]: the SQL before its columns and the SQL after them.
macro_rules! query_spot {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Spot,
            $before
                + r#" id, meter_number, lat, lng, borough, street, side, from_street, to_street,
                      facility as "facility: Facility", rule, max_stay_minutes,
                      rate_cents_per_hour, currency, active "#
                + $after
            $(, $arg)*
        )
    };
}

/// The spot's columns for the search's runtime queries, in the order [`Spot`]'s `FromRow`
/// reads them.
macro_rules! spot_columns {
    ($alias:literal) => {
        concat!(
            $alias,
            ".id, ",
            $alias,
            ".meter_number, ",
            $alias,
            ".lat, ",
            $alias,
            ".lng, ",
            $alias,
            ".borough, ",
            $alias,
            ".street, ",
            $alias,
            ".side, ",
            $alias,
            ".from_street, ",
            $alias,
            ".to_street, ",
            $alias,
            ".facility, ",
            $alias,
            ".rule, ",
            $alias,
            ".max_stay_minutes, ",
            $alias,
            ".rate_cents_per_hour, ",
            $alias,
            ".currency, ",
            $alias,
            ".active"
        )
    };
}

/// Search rows are read by position, in the order of `spot_columns!`, which the search
/// selects first: it decodes thousands of rows a second, and looking each column up by
/// name was a fifth of its CPU time.
impl<'r> FromRow<'r, PgRow> for Spot {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get(0)?,
            meter_number: row.try_get(1)?,
            lat: row.try_get(2)?,
            lng: row.try_get(3)?,
            borough: row.try_get(4)?,
            street: row.try_get(5)?,
            side: row.try_get(6)?,
            from_street: row.try_get(7)?,
            to_street: row.try_get(8)?,
            facility: row.try_get(9)?,
            rule: row.try_get(10)?,
            max_stay_minutes: row.try_get(11)?,
            rate_cents_per_hour: row.try_get(12)?,
            currency: row.try_get(13)?,
            active: row.try_get(14)?,
        })
    }
}

/// A search row: the spot's columns, then `available`, then `distance_m`.
impl<'r> FromRow<'r, PgRow> for SpotMatch {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            spot: Spot::from_row(row)?,
            available: row.try_get(15)?,
            distance_m: row.try_get(16)?,
        })
    }
}

/// Joins `taken`: one reservation of spot `s` that holds it during the window
/// `[$from, $to)` (confirmed, or held and not lapsed), or nulls. Half-open windows:
/// back-to-back bookings do not overlap.
///
/// A lateral probe per spot read, on `reservations_active_by_spot_idx`, so a search costs
/// the same however many reservations are active elsewhere in the city. Written as
/// `exists (…)`, PostgreSQL's generic plan hashed every active reservation overlapping the
/// window on each search instead: 5,500 searches/s with none active, 241/s with 10,000
/// (BENCHMARKS.md).
macro_rules! taken_join {
    ($from:literal, $to:literal) => {
        concat!(
            " left join lateral (select true as spot_taken from reservations r",
            " where r.spot_id = s.id and ",
            live_sql!("r."),
            " and r.ends_at > ",
            $from,
            " and r.starts_at < ",
            $to,
            " limit 1) taken on true "
        )
    };
}

/// Whether the spot is free, once [`taken_join!`] is joined.
macro_rules! available {
    () => {
        "(taken.spot_taken is null)"
    };
}

/// `$1, $2`: lat, lng.
macro_rules! search_point {
    () => {
        "st_setsrid(st_makepoint($2, $1), 4326)::geography"
    };
}

/// The two radius searches up to their order: the spots within `$3` m of the point, after
/// the cursor `($6, $7)`, with their availability for `[$4, $5)` filtered by `$8`.
macro_rules! nearest_within_radius {
    () => {
        concat!(
            "select ",
            spot_columns!("s"),
            ", ",
            available!(),
            " as available, ",
            "s.geog <-> ",
            search_point!(),
            " as distance_m ",
            "from spots s",
            taken_join!("$4", "$5"),
            "where s.active and st_dwithin(s.geog, ",
            search_point!(),
            ", $3, false) ",
            "and ((s.geog <-> ",
            search_point!(),
            ") > $6 ",
            "or ((s.geog <-> ",
            search_point!(),
            ") = $6 and s.id > $7)) ",
            "and ($8::bool is null or ",
            available!(),
            " = $8) "
        )
    };
}

/// Nearest first, from the GiST index's nearest-neighbour scan (`<->`), which reads only as
/// many index entries as the page needs, bounded by the radius (`st_dwithin`), so a search
/// for free spots where all are taken stops at the radius. Ties in distance come back in no
/// particular order: see [`page_of_nearest`].
/// `$3` radius (m), `$4, $5` window, `$6, $7` cursor, `$8` availability, `$9` rows.
pub const NEAREST_SQL: &str = concat!(
    nearest_within_radius!(),
    "order by s.geog <-> ",
    search_point!(),
    " limit $9"
);

/// The same search in exact (distance, id) order, for the rare page that is one tie.
const NEAREST_EXACT_SQL: &str = concat!(
    nearest_within_radius!(),
    "order by distance_m, s.id limit $9"
);

/// Every active spot by id. `$1, $2` window, `$3` cursor, `$4` availability, `$5` rows.
const BY_ID_SQL: &str = concat!(
    "select ",
    spot_columns!("s"),
    ", ",
    available!(),
    " as available, ",
    "null::float8 as distance_m from spots s",
    taken_join!("$1", "$2"),
    "where s.active and s.id > $3 ",
    "and ($4::bool is null or ",
    available!(),
    " = $4) ",
    "order by s.id limit $5"
);

/// One page of a search and the cursor of the next, if any.
pub async fn search(
    db: &PgPool,
    search: &Search,
) -> sqlx::Result<(Vec<SpotMatch>, Option<SearchCursor>)> {
    match search.circle {
        Some(circle) => search_nearest(db, circle, search).await,
        None => search_by_id(db, search).await,
    }
}

async fn search_nearest(
    db: &PgPool,
    circle: Circle,
    search: &Search,
) -> sqlx::Result<(Vec<SpotMatch>, Option<SearchCursor>)> {
    let rows = fetch_nearest(db, NEAREST_SQL, circle, search).await?;
    if let Ok(page) = page_of_nearest(rows, search.limit as usize) {
        return Ok(page);
    }
    let rows = fetch_nearest(db, NEAREST_EXACT_SQL, circle, search).await?;
    Ok(pagination::cut(rows, search.limit, nearest_cursor))
}

async fn fetch_nearest(
    db: &PgPool,
    sql: &'static str,
    circle: Circle,
    search: &Search,
) -> sqlx::Result<Vec<SpotMatch>> {
    // The first page starts after a distance no spot has, so the query needs no null test
    // (which would keep PostgreSQL from planning it once for all pages).
    let (after_distance, after_id) = match search.after {
        Some(SearchCursor::Nearest { distance_m, id }) => (distance_m, id),
        _ => (-1.0, Uuid::nil()),
    };
    // Runtime, not `query_as!`: the search's measured form (see the module's note).
    sqlx::query_as(sql)
        .bind(circle.lat)
        .bind(circle.lng)
        .bind(circle.radius_m)
        .bind(search.window.starts_at)
        .bind(search.window.ends_at)
        .bind(after_distance)
        .bind(after_id)
        .bind(search.available)
        .bind(pagination::rows_for(search.limit))
        .fetch_all(db)
        .await
}

async fn search_by_id(
    db: &PgPool,
    search: &Search,
) -> sqlx::Result<(Vec<SpotMatch>, Option<SearchCursor>)> {
    // The nil UUID sorts first: the first page needs no null test.
    let after = match search.after {
        Some(SearchCursor::ById { id }) => id,
        _ => Uuid::nil(),
    };
    // Runtime, not `query_as!`: the search's measured form (see the module's note).
    let rows: Vec<SpotMatch> = sqlx::query_as(BY_ID_SQL)
        .bind(search.window.starts_at)
        .bind(search.window.ends_at)
        .bind(after)
        .bind(search.available)
        .bind(pagination::rows_for(search.limit))
        .fetch_all(db)
        .await?;
    Ok(pagination::cut(rows, search.limit, |row| {
        SearchCursor::ById { id: row.spot.id }
    }))
}

pub async fn find(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Spot>> {
    query_spot!("select", "from spots where id = $1", id)
        .fetch_optional(conn)
        .await
}

/// Live reservations of the spot overlapping the next 24 hours, earliest first.
pub async fn busy_next_day(
    conn: &mut PgConnection,
    spot_id: Uuid,
) -> sqlx::Result<Vec<BusyInterval>> {
    // The live predicate is `live_sql!("")` written out (a checked query is one literal).
    sqlx::query_as!(
        BusyInterval,
        "select starts_at, ends_at from reservations where spot_id = $1
           and (status in ('held', 'confirmed') and (status = 'confirmed' or hold_expires_at > now()))
           and tstzrange(starts_at, ends_at, '[)') && tstzrange(now(), now() + interval '24 hours', '[)')
         order by starts_at",
        spot_id,
    )
    .fetch_all(conn)
    .await
}

pub async fn insert(conn: &mut PgConnection, spot: &NewSpot) -> AppResult<Spot> {
    query_spot!(
        "insert into spots (id, meter_number, lat, lng, borough, street, side, from_street,
                            to_street, facility, rule, max_stay_minutes, rate_cents_per_hour, active)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         returning",
        "",
        Uuid::now_v7(),
        spot.meter_number.trim(),
        spot.lat,
        spot.lng,
        spot.borough.trim(),
        spot.street.as_deref(),
        spot.side.as_deref(),
        spot.from_street.as_deref(),
        spot.to_street.as_deref(),
        spot.facility.unwrap_or(Facility::OnStreet) as Facility,
        spot.rule.as_deref(),
        spot.max_stay_minutes,
        spot.rate_cents_per_hour,
        spot.active.unwrap_or(true),
    )
    .fetch_one(conn)
    .await
    .on_constraint("spots_meter_number_key", || {
        AppError::conflict("meter_number_taken", "a spot with this meter number exists")
    })
}

/// Applies the given changes; `None` when there is no such spot.
pub async fn update(
    conn: &mut PgConnection,
    id: Uuid,
    changes: &SpotChanges,
) -> sqlx::Result<Option<Spot>> {
    query_spot!(
        "update spots set
             rate_cents_per_hour = coalesce($2, rate_cents_per_hour),
             rule = coalesce($3, rule),
             max_stay_minutes = coalesce($4, max_stay_minutes),
             active = coalesce($5, active)
         where id = $1
         returning",
        "",
        id,
        changes.rate_cents_per_hour,
        changes.rule.as_deref(),
        changes.max_stay_minutes,
        changes.active,
    )
    .fetch_optional(conn)
    .await
}

/// Every spot, inactive ones too (the feed may make them active), for the picture.
pub fn all_spots(
    conn: &mut PgConnection,
) -> impl futures_util::Stream<Item = sqlx::Result<Spot>> + '_ {
    query_spot!("select", "from spots").fetch(conn)
}

/// A live reservation's spot and the time it takes, as the two queries below read it.
struct SpotTaken {
    spot_id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    lapses_at: Option<DateTime<Utc>>,
}

impl SpotTaken {
    fn into_pair(self) -> (Uuid, Taken) {
        let taken = Taken {
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            lapses_at: self.lapses_at,
        };
        (self.spot_id, taken)
    }
}

/// The times live reservations take their spots: held ones until their hold lapses.
pub async fn taken(conn: impl sqlx::PgExecutor<'_>) -> sqlx::Result<Vec<(Uuid, Taken)>> {
    let rows = sqlx::query_as!(
        SpotTaken,
        r#"select spot_id, starts_at, ends_at,
                  case when status = 'held' then hold_expires_at end as "lapses_at?"
           from reservations
           where status in ('held', 'confirmed')"#,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(SpotTaken::into_pair).collect())
}

/// [`taken`] for these spots only. A query of its own: with `$1 is null or …` the generic
/// plan (see `db::with_session_settings`) read every live reservation of the city on each
/// feed read.
pub async fn taken_of(
    conn: impl sqlx::PgExecutor<'_>,
    spot_ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, Taken)>> {
    let rows = sqlx::query_as!(
        SpotTaken,
        r#"select spot_id, starts_at, ends_at,
                  case when status = 'held' then hold_expires_at end as "lapses_at?"
           from reservations
           where status in ('held', 'confirmed') and spot_id = any($1)"#,
        spot_ids,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(SpotTaken::into_pair).collect())
}

/// These spots as they are now; a missing one is gone.
pub async fn spots_by_id(conn: impl sqlx::PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<Spot>> {
    query_spot!("select", "from spots where id = any($1)", ids)
        .fetch_all(conn)
        .await
}

/// What one read of the change feed saw: the changes, and the snapshot's bounds (as
/// `pg_snapshot_xmin`/`xmax`: every transaction below `xmin` has ended, and every one
/// that started after the snapshot has an id of at least `xmax`).
pub struct FeedRead {
    pub changes: Vec<(i64, Uuid)>,
    pub xmin: i64,
    pub xmax: i64,
}

/// The changes after `after` (at most `limit`) and those of the ids in `missing`, in id
/// order, with the bounds of the snapshot that read them. One statement, one snapshot.
pub async fn read_changes(
    conn: impl sqlx::PgExecutor<'_>,
    after: i64,
    missing: &[i64],
    limit: i64,
) -> sqlx::Result<FeedRead> {
    let rows = sqlx::query!(
        r#"with snapshot as (
               select pg_snapshot_xmin(pg_current_snapshot())::text::int8 as xmin,
                      pg_snapshot_xmax(pg_current_snapshot())::text::int8 as xmax
           ), changes as (
               (select id, spot_id from spot_changes where id > $1 order by id limit $3)
               union all
               (select id, spot_id from spot_changes where id = any($2))
           )
           select s.xmin as "xmin!", s.xmax as "xmax!", c.id as "id?", c.spot_id as "spot_id?"
           from snapshot s left join changes c on true
           order by c.id"#,
        after,
        missing,
        limit,
    )
    .fetch_all(conn)
    .await?;
    let (xmin, xmax) = rows.first().map_or((0, 0), |row| (row.xmin, row.xmax));
    Ok(FeedRead {
        changes: rows
            .into_iter()
            .filter_map(|row| Some((row.id?, row.spot_id?)))
            .collect(),
        xmin,
        xmax,
    })
}

/// Where the feed stands in a snapshot: the highest change id taken, the ids up to that
/// (among the last `window`) it does not see, the changes it sees after the first of those
/// (not yet handed to streams, which get changes in id order), and its `xmax`.
pub struct FeedStart {
    pub high: i64,
    pub missing: Vec<i64>,
    pub after_missing: Vec<(i64, Uuid)>,
    pub xmax: i64,
}

pub async fn feed_start(conn: &mut PgConnection, window: i64) -> sqlx::Result<FeedStart> {
    // The sequence, not the log: the log may have lost its latest changes to retention,
    // and ids taken by transactions still in flight are waited for as missing.
    let head = sqlx::query!(
        r#"select case when is_called then last_value else 0 end as "high!",
                  pg_snapshot_xmax(pg_current_snapshot())::text::int8 as "xmax!"
           from spot_changes_id_seq"#
    )
    .fetch_one(&mut *conn)
    .await?;
    let missing = sqlx::query_scalar!(
        r#"select g.id as "id!" from generate_series(greatest($1::int8 - $2::int8, 1), $1::int8) g(id)
           where not exists (select 1 from spot_changes c where c.id = g.id)
           order by 1"#,
        head.high,
        window,
    )
    .fetch_all(&mut *conn)
    .await?;
    let after_missing = match missing.first() {
        Some(&first) => changed_between(conn, first, head.high).await?,
        None => Vec::new(),
    };
    Ok(FeedStart {
        high: head.high,
        missing,
        after_missing,
        xmax: head.xmax,
    })
}

/// The oldest change the log still holds, if any.
pub async fn oldest_change(conn: &mut PgConnection) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!("select min(id) from spot_changes")
        .fetch_one(conn)
        .await
}

/// The changes in `(after, upto]`, in id order.
pub async fn changed_between(
    conn: &mut PgConnection,
    after: i64,
    upto: i64,
) -> sqlx::Result<Vec<(i64, Uuid)>> {
    let rows = sqlx::query!(
        "select id, spot_id from spot_changes where id > $1 and id <= $2 order by id",
        after,
        upto,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, row.spot_id)).collect())
}

/// Deletes changes older than `retention`; returns how many.
pub async fn forget_changes(
    conn: &mut PgConnection,
    retention: std::time::Duration,
) -> sqlx::Result<u64> {
    let seconds = retention.as_secs_f64();
    let done = sqlx::query!(
        "delete from spot_changes where at < now() - make_interval(secs => $1)",
        seconds
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
