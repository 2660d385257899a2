use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, SubsecRound as _, Utc};
use curbside::spots::import::{NYC_SNAPSHOT, RateTable, import_meters};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{PgPool, Row as _};
use uuid::Uuid;

use crate::helpers::{TestApp, expect_problem, expect_status, invalid_fields};

/// The bundled snapshot as a file, the way an operator passes one to `import-meters`.
const NYC_CSV_GZ: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/nyc-parking-meters.csv.gz"
);
const TIMES_SQUARE: (f64, f64) = (40.7580, -73.9855);

async fn import_nyc(db: &PgPool) {
    let mut conn = db.acquire().await.unwrap();
    let report = import_meters(&mut conn, NYC_SNAPSHOT, &RateTable::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.inserted, 13_415);
}

/// Every page of a search, following `next_cursor`.
async fn all_pages(app: &TestApp, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/spots?{query}&cursor={cursor}"),
            None => format!("/v1/spots?{query}"),
        };
        let page = expect_status(app.get(&path, None).await, StatusCode::OK).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// Great-circle distance on PostGIS's sphere (mean Earth radius), written independently of
/// the server, which asks PostGIS.
fn haversine_m((lat1, lng1): (f64, f64), (lat2, lng2): (f64, f64)) -> f64 {
    const R: f64 = 6_371_008.771_415_06;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lng2 - lng1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * R * a.sqrt().asin()
}

/// Meter number → position, read straight from the CSV.
fn nyc_meters() -> HashMap<String, (f64, f64)> {
    let mut reader = csv::Reader::from_reader(flate2::read::GzDecoder::new(NYC_SNAPSHOT));
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (meter, lat, lng) = (col("Meter Number"), col("Latitude"), col("Longitude"));
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[meter].to_owned(),
                (r[lat].parse().unwrap(), r[lng].parse().unwrap()),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn radius_search_matches_an_independent_haversine(db: PgPool) {
    import_nyc(&db).await;
    let app = TestApp::spawn(db).await;
    let meters = nyc_meters();
    let searches = [
        (TIMES_SQUARE, 1.0, "km", 1_000.0),
        ((40.6928, -73.9903), 0.5, "mi", 804.672),
        ((40.7590, -73.8300), 2.0, "km", 2_000.0),
        ((40.6420, -74.0760), 1.0, "mi", 1_609.344),
        ((40.5000, -73.7000), 0.3, "km", 300.0),
    ];
    for (centre, radius, unit, radius_m) in searches {
        let query = format!(
            "lat={}&lng={}&radius={radius}&unit={unit}&limit=37",
            centre.0, centre.1
        );
        let got = all_pages(&app, &query).await;

        let mut expected: Vec<(&String, f64)> = meters
            .iter()
            .map(|(meter, &at)| (meter, haversine_m(centre, at)))
            .filter(|(_, d)| *d <= radius_m + 1.0)
            .collect();
        expected.sort_by(|a, b| a.1.total_cmp(&b.1));
        let must: HashSet<&str> = expected
            .iter()
            .filter(|(_, d)| *d < radius_m - 1.0)
            .map(|(m, _)| m.as_str())
            .collect();
        let may: HashSet<&str> = expected.iter().map(|(m, _)| m.as_str()).collect();

        let got_meters: Vec<&str> = got
            .iter()
            .map(|s| s["meter_number"].as_str().unwrap())
            .collect();
        let unique: HashSet<&str> = got_meters.iter().copied().collect();
        assert_eq!(unique.len(), got_meters.len(), "{query}: a spot came twice");
        assert!(
            must.is_subset(&unique),
            "{query}: missing {:?}",
            must.difference(&unique).collect::<Vec<_>>()
        );
        assert!(
            unique.is_subset(&may),
            "{query}: outside the radius {:?}",
            unique.difference(&may).collect::<Vec<_>>()
        );

        // Nearest first, with distances that agree with the oracle.
        let mut previous = 0.0;
        for spot in &got {
            let oracle = haversine_m(centre, meters[spot["meter_number"].as_str().unwrap()]);
            let reported = spot["distance_m"].as_f64().unwrap();
            assert!(
                (reported - oracle).abs() < 1.0,
                "{query}: {reported} vs {oracle}"
            );
            assert!(reported >= previous, "{query}: not nearest first");
            previous = reported;
        }
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn the_times_square_search_finds_its_620_spots(db: PgPool) {
    import_nyc(&db).await;
    let app = TestApp::spawn(db).await;
    let page = expect_status(
        app.get("/v1/spots?lat=40.7580&lng=-73.9855&radius=1", None)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 50);
    assert!(page["next_cursor"].is_string());
    let all = all_pages(&app, "lat=40.7580&lng=-73.9855&radius=1&limit=200").await;
    assert_eq!(all.len(), 620);
    let first = &all[0];
    for field in [
        "id",
        "meter_number",
        "borough",
        "street",
        "facility",
        "rule",
        "max_stay_minutes",
        "rate_cents_per_hour",
    ] {
        assert!(!first[field].is_null(), "{field} missing: {first}");
    }
    assert_eq!(first["currency"], "usd");
    assert_eq!(first["available"], true);
}

async fn insert_spot(db: &PgPool, meter: &str, lat: f64, lng: f64) -> Uuid {
    crate::helpers::insert_spot(db, meter, lat, lng, 120, 450).await
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn pages_miss_nothing_and_repeat_nothing_while_spots_are_added(db: PgPool) {
    // A grid, with several spots at exactly the same place to exercise ties in distance.
    let mut before = HashSet::new();
    for i in 0..120 {
        let (lat, lng) = if i % 10 == 0 {
            (40.7580, -73.9850)
        } else {
            (
                40.7580 + f64::from(i / 12) * 0.0004,
                -73.9855 + f64::from(i % 12) * 0.0004,
            )
        };
        before.insert(insert_spot(&db, &format!("grid-{i}"), lat, lng).await);
    }
    let app = TestApp::spawn(db.clone()).await;

    for query in ["lat=40.7580&lng=-73.9855&radius=2&limit=7", "limit=7"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut added = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/spots?{query}&cursor={c}"),
                None => format!("/v1/spots?{query}"),
            };
            let page = expect_status(app.get(&path, None).await, StatusCode::OK).await;
            for item in page["items"].as_array().unwrap() {
                seen.push(Uuid::parse_str(item["id"].as_str().unwrap()).unwrap());
            }
            // Between pages, other operators add spots, some nearer than the current page.
            for lat in [40.7581, 40.7700] {
                insert_spot(&db, &format!("{query}-new-{added}"), lat, -73.9855).await;
                added += 1;
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        let unique: HashSet<Uuid> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{query}: a spot came twice");
        assert!(
            before.is_subset(&unique),
            "{query}: {} spots were missed",
            before.difference(&unique).count()
        );
    }
}

async fn insert_reservation(
    db: &PgPool,
    spot: Uuid,
    status: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    hold_expires_at: Option<DateTime<Utc>>,
) {
    sqlx::query(
        "insert into reservations (id, spot_id, email, starts_at, ends_at, status, rate_cents_per_hour,
                                   amount_cents, hold_expires_at)
         values ($1, $2, 'driver@example.com', $3, $4, $5, 450, 900, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(spot)
    .bind(from)
    .bind(to)
    .bind(status)
    .bind(hold_expires_at)
    .execute(db)
    .await
    .unwrap();
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        .replace('+', "%2B")
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn availability_follows_the_half_open_window(db: PgPool) {
    // Whole seconds, so the window sent in the query is exactly the one booked against.
    let now = Utc::now().trunc_subsecs(0);
    let (from, to) = (now + Duration::hours(2), now + Duration::hours(3));
    let spot = |name: &'static str, n: f64| {
        let db = db.clone();
        async move {
            (
                name,
                insert_spot(&db, name, 40.7580 + n * 0.0001, -73.9855).await,
            )
        }
    };
    let (free, overlapping, before, after, lapsed, live_hold, cancelled) = (
        spot("free", 0.0).await,
        spot("confirmed-overlapping", 1.0).await,
        spot("back-to-back-before", 2.0).await,
        spot("back-to-back-after", 3.0).await,
        spot("lapsed-hold", 4.0).await,
        spot("live-hold", 5.0).await,
        spot("cancelled", 6.0).await,
    );
    insert_reservation(
        &db,
        overlapping.1,
        "confirmed",
        from + Duration::minutes(30),
        to + Duration::hours(1),
        None,
    )
    .await;
    insert_reservation(
        &db,
        before.1,
        "confirmed",
        from - Duration::hours(1),
        from,
        None,
    )
    .await;
    insert_reservation(&db, after.1, "confirmed", to, to + Duration::hours(1), None).await;
    insert_reservation(
        &db,
        lapsed.1,
        "held",
        from,
        to,
        Some(now - Duration::minutes(1)),
    )
    .await;
    insert_reservation(
        &db,
        live_hold.1,
        "held",
        from,
        to,
        Some(now + Duration::minutes(10)),
    )
    .await;
    insert_reservation(&db, cancelled.1, "cancelled", from, to, None).await;
    let app = TestApp::spawn(db).await;

    let names = |items: Vec<Value>| -> HashSet<String> {
        items
            .iter()
            .map(|s| s["meter_number"].as_str().unwrap().to_owned())
            .collect()
    };
    let window = format!("starts_at={}&ends_at={}", rfc3339(from), rfc3339(to));
    for geo in ["lat=40.7580&lng=-73.9855&radius=1&", ""] {
        let free_now = names(all_pages(&app, &format!("{geo}{window}")).await);
        let expected: HashSet<String> = [free, before, after, lapsed, cancelled]
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(free_now, expected, "{geo}");
        let taken = names(all_pages(&app, &format!("{geo}{window}&available=false")).await);
        let expected: HashSet<String> = [overlapping, live_hold]
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(taken, expected, "{geo}");
        let any = all_pages(&app, &format!("{geo}{window}&available=any")).await;
        assert_eq!(any.len(), 7);
        let flagged_taken: HashSet<String> = names(
            any.into_iter()
                .filter(|s| s["available"] == false)
                .collect(),
        );
        assert_eq!(flagged_taken, expected);
    }

    // Offsets other than Z mean the same instant.
    let shifted = |at: DateTime<Utc>| {
        at.with_timezone(&chrono::FixedOffset::west_opt(5 * 3600).unwrap())
            .to_rfc3339()
            .replace('+', "%2B")
    };
    let taken = names(
        all_pages(
            &app,
            &format!(
                "starts_at={}&ends_at={}&available=false",
                shifted(from),
                shifted(to)
            ),
        )
        .await,
    );
    assert_eq!(taken.len(), 2);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn bad_search_parameters_are_named(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let cases: [(&str, &[&str]); 12] = [
        ("lat=40.7", &["lng", "radius"]),
        ("lat=40.7&lng=-73.9", &["radius"]),
        ("lat=abc&lng=-73.9&radius=1", &["lat"]),
        ("lat=40.7&lng=-73.9&radius=51", &["radius"]),
        ("lat=40.7&lng=-73.9&radius=-1", &["radius"]),
        ("lat=40.7&lng=-73.9&radius=1&unit=furlong", &["unit"]),
        ("lat=95&lng=-73.9&radius=1", &["lat"]),
        ("starts_at=2030-01-01T10:00:00", &["starts_at"]),
        (
            "starts_at=2030-01-01T10:00:00Z&ends_at=2030-01-01T09:00:00Z",
            &["ends_at"],
        ),
        ("limit=0", &["limit"]),
        ("limit=500", &["limit"]),
        ("cursor=not-a-cursor", &["cursor"]),
    ];
    for (query, fields) in cases {
        let response = app.get(&format!("/v1/spots?{query}"), None).await;
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(invalid_fields(&problem), fields, "{query}");
    }
    let available = app.get("/v1/spots?available=maybe", None).await;
    let problem = expect_problem(
        available,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(invalid_fields(&problem), ["available"]);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_spot_shows_its_busy_times_for_the_next_day(db: PgPool) {
    let id = insert_spot(&db, "busy-1", 40.7580, -73.9855).await;
    let now = Utc::now();
    insert_reservation(
        &db,
        id,
        "confirmed",
        now + Duration::hours(1),
        now + Duration::hours(2),
        None,
    )
    .await;
    insert_reservation(
        &db,
        id,
        "held",
        now + Duration::hours(3),
        now + Duration::hours(4),
        Some(now + Duration::minutes(5)),
    )
    .await;
    insert_reservation(
        &db,
        id,
        "held",
        now + Duration::hours(5),
        now + Duration::hours(6),
        Some(now - Duration::minutes(5)),
    )
    .await;
    insert_reservation(
        &db,
        id,
        "confirmed",
        now + Duration::hours(30),
        now + Duration::hours(31),
        None,
    )
    .await;
    let app = TestApp::spawn(db).await;

    let spot = expect_status(
        app.get(&format!("/v1/spots/{id}"), None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(spot["meter_number"], "busy-1");
    let busy = spot["busy"].as_array().unwrap();
    assert_eq!(busy.len(), 2, "{spot}");
    let starts: Vec<DateTime<Utc>> = busy
        .iter()
        .map(|b| b["starts_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(starts[0] < starts[1]);
    assert!(busy[0]["starts_at"].as_str().unwrap().ends_with('Z'));

    let missing = app
        .get(&format!("/v1/spots/{}", Uuid::new_v4()), None)
        .await;
    expect_problem(missing, StatusCode::NOT_FOUND, "not_found").await;
    let malformed = app.get("/v1/spots/not-a-uuid", None).await;
    expect_problem(malformed, StatusCode::BAD_REQUEST, "invalid_path").await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn only_operators_create_and_change_spots(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let driver = app.sign_up("driver@example.com").await;
    let operator = app.sign_up_operator("ops@example.com").await;
    let new_spot = json!({
        "meter_number": "OPS-1", "lat": 40.7581, "lng": -73.9856, "borough": "Manhattan",
        "street": "West 44 Street", "rule": "2HR Pas Mon-Sat 0900-1900",
        "max_stay_minutes": 120, "rate_cents_per_hour": 500
    });

    let anonymous = app.post("/v1/spots", &new_spot, None).await;
    expect_problem(anonymous, StatusCode::UNAUTHORIZED, "missing_credentials").await;
    let as_driver = app
        .post("/v1/spots", &new_spot, Some(&driver.access_token))
        .await;
    expect_problem(as_driver, StatusCode::FORBIDDEN, "forbidden").await;

    let created = expect_status(
        app.post("/v1/spots", &new_spot, Some(&operator.access_token))
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["facility"], "on_street");
    assert_eq!(created["active"], true);
    let again = app
        .post("/v1/spots", &new_spot, Some(&operator.access_token))
        .await;
    expect_problem(again, StatusCode::CONFLICT, "meter_number_taken").await;
    let invalid = json!({"meter_number": "OPS-2", "lat": 100, "lng": 0, "borough": "Queens", "max_stay_minutes": 0, "rate_cents_per_hour": -5});
    let problem = expect_problem(
        app.post("/v1/spots", &invalid, Some(&operator.access_token))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        invalid_fields(&problem),
        ["lat", "rate_cents_per_hour", "max_stay_minutes"]
    );

    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/spots/{id}");
    let change = json!({"rate_cents_per_hour": 650, "active": false});
    let as_driver = app
        .send_json(Method::PATCH, &path, &change, Some(&driver.access_token))
        .await;
    expect_problem(as_driver, StatusCode::FORBIDDEN, "forbidden").await;
    let changed = expect_status(
        app.send_json(Method::PATCH, &path, &change, Some(&operator.access_token))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            changed["rate_cents_per_hour"].as_i64(),
            changed["active"].as_bool()
        ),
        (Some(650), Some(false))
    );
    assert_eq!(changed["rule"], "2HR Pas Mon-Sat 0900-1900");

    // An inactive spot is no longer offered.
    let found = all_pages(&app, "lat=40.7580&lng=-73.9855&radius=1").await;
    assert!(found.is_empty());
    let unknown = app
        .send_json(
            Method::PATCH,
            &format!("/v1/spots/{}", Uuid::new_v4()),
            &change,
            Some(&operator.access_token),
        )
        .await;
    expect_problem(unknown, StatusCode::NOT_FOUND, "not_found").await;
    let bad = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"max_stay_minutes": 5000}),
            Some(&operator.access_token),
        )
        .await;
    expect_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

/// The nearest-neighbour search must read the GiST index in both of PostgreSQL's plan
/// modes; a generic plan that falls back to a sequential scan would be 20x slower. In the
/// generic mode the server uses (src/db.rs) it must read nearest first rather than sort
/// everything in the radius (a custom plan may sort, bounded by the radius). And it
/// must decide availability with one index probe per spot: a generic plan that hashed every
/// active reservation of the city ran 20x slower with 10,000 of them.
#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn the_radius_query_uses_the_geo_index_in_both_plan_modes(db: PgPool) {
    import_nyc(&db).await;
    sqlx::query("analyze spots").execute(&db).await.unwrap();
    let mut conn = db.acquire().await.unwrap();
    // EXPLAIN of a statement with bound values always plans it with those values; only a
    // prepared statement's EXECUTE shows what `plan_cache_mode` picks.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "prepare nearest (float8, float8, float8, timestamptz, timestamptz, float8, uuid, bool, int8) as {}",
        curbside::spots::NEAREST_SQL
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        let plan: Vec<String> = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "set plan_cache_mode = {mode}; explain execute nearest ({}, {}, 1000, now(), \
             now() + interval '5 minutes', -1, '{}', true, 51)",
            TIMES_SQUARE.0,
            TIMES_SQUARE.1,
            Uuid::nil()
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .filter_map(|row| row.try_get(0).ok())
        .collect();
        let plan = plan.join("\n");
        assert_eq!(
            plan.contains("$1"),
            mode == "force_generic_plan",
            "{mode} is not the plan asked for:\n{plan}"
        );
        assert!(
            plan.contains("Index Scan using spots_geog_idx")
                || plan.contains("Bitmap Index Scan on spots_geog_idx"),
            "{mode}:\n{plan}"
        );
        assert!(!plan.contains("Seq Scan on spots"), "{mode}:\n{plan}");
        assert!(
            mode == "force_custom_plan" || !plan.contains("Sort"),
            "{mode} sorts instead of reading in index order:\n{plan}"
        );
        assert!(
            plan.contains("reservations_active_by_spot_idx") && !plan.contains("hashed"),
            "{mode} does not probe availability per spot:\n{plan}"
        );
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn importing_the_city_file_twice_changes_nothing(db: PgPool) {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_curbside"))
            .arg("import-meters")
            .args(args)
            .env("DATABASE_URL", crate::helpers::database_url(&db))
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let first = run(&[NYC_CSV_GZ]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let summary = String::from_utf8_lossy(&first.stdout);
    assert!(
        summary.contains("inserted 13415, updated 0, unchanged 0, skipped 0, unparsed rules 0"),
        "{summary}"
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains("imported 13415/13415 rows"));

    let snapshot = || async {
        sqlx::query_as::<_, (i64, i64, Option<DateTime<Utc>>)>(
            "select count(*), sum(rate_cents_per_hour), max(updated_at) from spots",
        )
        .fetch_one(&db)
        .await
        .unwrap()
    };
    let before = snapshot().await;
    let second = run(&[NYC_CSV_GZ, "--rate", "Manhattan=999"]);
    let summary = String::from_utf8_lossy(&second.stdout);
    assert!(
        summary.contains("inserted 0, updated 0, unchanged 13415"),
        "{summary}"
    );
    assert_eq!(
        snapshot().await,
        before,
        "a re-run must not touch any row, nor operators' rates"
    );

    let (queens, manhattan_rate, staten): (i64, i32, i64) = sqlx::query_as(
        "select (select count(*) from spots where borough = 'Queens'),
                (select max(rate_cents_per_hour) from spots where borough = 'Manhattan'),
                (select count(*) from spots where borough = 'Staten Island')",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((queens, manhattan_rate, staten), (3_664, 450, 285));
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_messy_file_imports_its_good_rows_and_reports_the_rest(db: PgPool) {
    let dir = std::env::temp_dir().join(format!("curbside-import-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let header = "Meter Number,Meter_Hours,Facility,Borough,On_Street,Side_of_Street,From_Street,To_Street,Latitude,Longitude";
    let files = [
        (
            "bom.csv",
            format!(
                "\u{feff}{header}\nM1,2HR Pas Mon-Sat 0900-1900,On Street,Bronx,A St,N,,,40.85,-73.88\n"
            ),
        ),
        (
            "messy.csv",
            format!(
                "{header}\nM2,2HR Pas,On Street,Bronx,A St,N,,,40.85,-73.88\nM3,2HR Pas,On Street,Bronx,A St,N,,,140.85,-73.88\n\
             M4,\"2HR Pas,On Street,Bronx,A St,N,,,40.85,-73.88\nM5,2HR Pas,On Street,Bronx,A St,N,,,40.86,-73.88\n"
            ),
        ),
        ("empty.csv", String::new()),
    ];
    for (name, content) in &files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    let run = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_curbside"))
            .args(["import-meters", dir.join(name).to_str().unwrap()])
            .env("DATABASE_URL", crate::helpers::database_url(&db))
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let count = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from spots")
            .fetch_one(&db)
            .await
            .unwrap()
    };

    let bom = run("bom.csv");
    assert!(
        bom.status.success(),
        "{}",
        String::from_utf8_lossy(&bom.stderr)
    );
    assert_eq!(count().await, 1);

    let messy = run("messy.csv");
    assert!(messy.status.success());
    let stderr = String::from_utf8_lossy(&messy.stderr);
    assert!(
        stderr.contains("skipped line 3: latitude 140.85 is out of range"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped line 4: malformed record"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&messy.stdout)
            .contains("inserted 1, updated 0, unchanged 0, skipped 2")
    );
    assert_eq!(count().await, 2);

    let empty = run("empty.csv");
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("empty"));
    assert_eq!(count().await, 2);
    std::fs::remove_dir_all(dir).unwrap();
}
