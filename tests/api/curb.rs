//! The live curb: the change feed, the picture of the curb every replica keeps, and the
//! availability streams. Replicas are apps built in this process on one database, each
//! with its own feed connection, picture and streams, as `serve` processes have.

use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound as _, Utc};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uuid::Uuid;

use crate::helpers::{TestApp, expect_problem, expect_status, insert_spot};
use curbside::pagination::encode_cursor;
use curbside::spots::model::{Circle, Search};
use curbside::time_window::TimeWindow;

const TIMES_SQUARE: (f64, f64) = (40.7580, -73.9855);

/// One Server-Sent Event.
#[derive(Debug)]
struct Sse {
    event: String,
    id: Option<i64>,
    data: Value,
}

/// A client of `GET /v1/spots/events` that reads events as they come.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<i64>) -> Self {
        let mut request = app.request(reqwest::Method::GET, &format!("/v1/spots/events?{query}"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when none came within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .unwrap()
                .unwrap_or_else(|| panic!("the stream ended; unread: {:?}", self.buffer));
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn next(&mut self) -> Sse {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("an event within 10 s")
    }

    /// The first `spot` event about `spot` within `wait`.
    async fn spot_event(&mut self, spot: Uuid, wait: Duration) -> Sse {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self
                .next_within(left)
                .await
                .unwrap_or_else(|| panic!("no event about {spot} within {wait:?}"));
            if event.event == "spot" && event.data["id"] == spot.to_string() {
                return event;
            }
        }
    }
}

/// An event block; `None` for a comment (a heartbeat).
fn parse(block: &str) -> Option<Sse> {
    let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            event = value.trim().to_owned();
        } else if let Some(value) = line.strip_prefix("id:") {
            id = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        }
    }
    (!data.is_empty()).then(|| Sse {
        event,
        id,
        data: serde_json::from_str(&data).unwrap(),
    })
}

fn around_times_square(radius_km: f64) -> String {
    format!(
        "lat={}&lng={}&radius={radius_km}",
        TIMES_SQUARE.0, TIMES_SQUARE.1
    )
}

fn item(snapshot: &Value, spot: Uuid) -> &Value {
    snapshot["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["id"] == spot.to_string())
        .unwrap_or_else(|| panic!("{spot} is not in {snapshot}"))
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_booking_on_one_replica_reaches_a_stream_on_the_other_within_a_second(db: PgPool) {
    let one = TestApp::spawn(db.clone()).await;
    let two = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "LIVE-1", 40.7585, -73.9850, 120, 450).await;
    let far = insert_spot(&db, "LIVE-FAR", 40.70, -74.01, 120, 450).await;
    two.settle().await;

    let mut stream = EventStream::open(&two, &around_times_square(0.5), None).await;
    let snapshot = stream.next().await;
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(item(&snapshot.data, spot)["available"], true);
    assert!(
        snapshot.data["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|item| item["id"] != far.to_string()),
        "a spot outside the circle is not in the snapshot"
    );

    one.book_as_guest(far, "far@example.com", 30).await;
    let booked = one.book_as_guest(spot, "live@example.com", 30).await;
    let event = stream.spot_event(spot, Duration::from_secs(1)).await;
    assert_eq!(event.data["available"], false);
    assert!(event.id.unwrap() > snapshot.id.unwrap());

    // Cancelled on the other replica: free again, on both replicas' searches too.
    let cancel = two
        .request(
            reqwest::Method::POST,
            &format!("/v1/reservations/{}/cancel", booked.id),
        )
        .bearer_auth(&booked.token)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::OK);
    let event = stream.spot_event(spot, Duration::from_secs(1)).await;
    assert_eq!(event.data["available"], true);
    for app in [&one, &two] {
        let found = expect_status(
            app.get(&format!("/v1/spots?{}", around_times_square(0.5)), None)
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(found["items"][0]["id"], spot.to_string());
    }
}

/// A notifying commit takes a cluster-wide lock until it is flushed, so the server's own
/// writes are not announced (bookings would commit one at a time): replicas poll the log.
/// Any other writer's changes are announced, and read at once.
#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn only_writers_other_than_the_server_notify(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "QUIET-1", 40.7585, -73.9850, 120, 450).await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&db).await.unwrap();
    listener.listen("spot_changes").await.unwrap();
    let logged = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from spot_changes where spot_id = $1")
            .bind(spot)
            .fetch_one(&db)
            .await
            .unwrap()
    };

    app.book_as_guest(spot, "quiet@example.com", 30).await;
    assert_eq!(logged().await, 2, "the spot's creation and its booking");
    let heard = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(heard.is_err(), "the booking was announced: {heard:?}");
    app.settle().await;
    let mut stream = EventStream::open(&app, &around_times_square(0.5), None).await;
    assert_eq!(item(&stream.next().await.data, spot)["available"], false);

    sqlx::query("update spots set rate_cents_per_hour = 500 where id = $1")
        .bind(spot)
        .execute(&db)
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
    assert!(heard.is_ok(), "another writer's change is announced");
    let event = stream.spot_event(spot, Duration::from_secs(1)).await;
    assert_eq!(event.data["rate_cents_per_hour"], 500);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn last_event_id_resumes_on_another_replica_without_a_gap(db: PgPool) {
    let one = TestApp::spawn(db.clone()).await;
    let spots = [
        insert_spot(&db, "RES-1", 40.7581, -73.9856, 120, 450).await,
        insert_spot(&db, "RES-2", 40.7582, -73.9857, 120, 450).await,
        insert_spot(&db, "RES-3", 40.7583, -73.9858, 120, 450).await,
    ];
    one.settle().await;
    let mut stream = EventStream::open(&one, &around_times_square(0.5), None).await;
    let last = stream.next().await.id.unwrap();
    drop(stream);

    // Missed while away: two bookings, and a change of a spot outside the circle.
    one.book_as_guest(spots[0], "away-1@example.com", 30).await;
    one.book_as_guest(spots[1], "away-2@example.com", 30).await;
    insert_spot(&db, "RES-FAR", 40.70, -74.01, 120, 450).await;

    // A replica started since (it remembers nothing older: it reads the log) and one
    // that was running (it remembers).
    let two = TestApp::spawn(db.clone()).await;
    two.settle().await;
    for app in [&two, &one] {
        let mut resumed = EventStream::open(app, &around_times_square(0.5), Some(last)).await;
        let mut seen = Vec::new();
        while let Some(event) = resumed.next_within(Duration::from_millis(500)).await {
            assert_eq!(event.event, "spot", "{event:?}");
            assert_eq!(event.data["available"], false);
            assert!(event.id.unwrap() > last);
            seen.push(event.data["id"].as_str().unwrap().to_owned());
        }
        seen.sort();
        let mut booked = vec![spots[0].to_string(), spots[1].to_string()];
        booked.sort();
        assert_eq!(seen, booked);
    }

    // A Last-Event-ID older than the log keeps: resync, then a snapshot.
    sqlx::query("delete from spot_changes")
        .execute(&db)
        .await
        .unwrap();
    let three = TestApp::spawn(db.clone()).await;
    three.settle().await;
    let mut stale = EventStream::open(&three, &around_times_square(0.5), Some(last)).await;
    let resync = stale.next().await;
    assert_eq!(
        (resync.event.as_str(), &resync.data),
        ("resync", &json!({"reason": "expired"}))
    );
    let snapshot = stale.next().await;
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(item(&snapshot.data, spots[2])["available"], true);
    assert_eq!(item(&snapshot.data, spots[0])["available"], false);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_lapsed_hold_and_an_operators_changes_are_events(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), &[("RECONCILE_INTERVAL_SECONDS", "1")]).await;
    let operator = app.sign_up_operator("curb-operator@example.com").await;
    let spot = insert_spot(&db, "LAPSE-1", 40.7581, -73.9856, 120, 450).await;
    // A hold lapsing in two seconds, whose hold-expiry job was lost: the reconciler
    // expires it.
    sqlx::query(
        "insert into reservations (id, spot_id, email, starts_at, ends_at, status,
                                   rate_cents_per_hour, amount_cents, hold_expires_at)
         values ($1, $2, 'lapse@example.com', now(), now() + interval '1 hour', 'held', 450,
                 450, now() + interval '2 seconds')",
    )
    .bind(Uuid::now_v7())
    .bind(spot)
    .execute(&db)
    .await
    .unwrap();
    app.settle().await;

    let mut stream = EventStream::open(&app, &around_times_square(0.5), None).await;
    assert_eq!(item(&stream.next().await.data, spot)["available"], false);
    let lapsed = stream.spot_event(spot, Duration::from_secs(10)).await;
    assert_eq!(lapsed.data["available"], true);
    let status: String = sqlx::query_scalar("select status from reservations where spot_id = $1")
        .bind(spot)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(status, "expired");

    for (change, field, value) in [
        (
            json!({"rate_cents_per_hour": 999}),
            "rate_cents_per_hour",
            json!(999),
        ),
        (json!({"active": false}), "active", json!(false)),
    ] {
        let response = app
            .send_json(
                reqwest::Method::PATCH,
                &format!("/v1/spots/{spot}"),
                &change,
                Some(&operator.access_token),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let event = stream.spot_event(spot, Duration::from_secs(1)).await;
        assert_eq!(event.data[field], value, "{change}");
    }
    // Withdrawn: not available, and not in a search.
    let found = expect_status(
        app.get(&format!("/v1/spots?{}", around_times_square(0.5)), None)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["items"], json!([]));
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_client_that_does_not_keep_up_is_told_to_resync(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    sqlx::query(
        "insert into spots (id, meter_number, lat, lng, borough, max_stay_minutes, rate_cents_per_hour)
         select gen_random_uuid(), 'SLOW-' || n, 40.7580 + n * 0.00001, -73.9855, 'Manhattan', 120, 100
         from generate_series(1, 400) n",
    )
    .execute(&db)
    .await
    .unwrap();
    app.settle().await;

    // A client with a tiny receive buffer that reads nothing for now.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let mut client = socket.connect(address).await.unwrap();
    let request = format!(
        "GET /v1/spots/events?{} HTTP/1.1\r\nhost: {address}\r\n\r\n",
        around_times_square(1.0)
    );
    client.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 400 changes a statement, a few MB of events in all.
    for _ in 0..25 {
        sqlx::query("update spots set rate_cents_per_hour = rate_cents_per_hour + 1")
            .execute(&db)
            .await
            .unwrap();
    }
    app.settle().await;

    let mut received = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buffer))
            .await
            .expect("the stream goes on")
            .unwrap();
        received.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&received);
        if let Some(at) = text.find("event: resync")
            && text[at..].contains("event: snapshot")
        {
            break text.into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no resync in {} bytes",
            received.len()
        );
    };
    let resync = &text[text.find("event: resync").unwrap()..];
    assert!(
        resync.contains(r#"{"reason":"behind"}"#),
        "{}",
        &resync[..200]
    );
    // Far fewer events than changes reached it: the rest were replaced by the snapshot.
    let events = text.matches("event: spot").count();
    assert!(events < 25 * 400, "{events} events");
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn streams_are_limited_per_client_and_per_server(db: PgPool) {
    let app = TestApp::spawn_with(
        db.clone(),
        &[
            ("MAX_STREAMS_PER_CLIENT", "2"),
            ("MAX_STREAMS", "3"),
            ("TRUST_FORWARDED_FOR", "true"),
        ],
    )
    .await;
    app.settle().await;
    let open = |client: &'static str| {
        app.request(
            reqwest::Method::GET,
            &format!("/v1/spots/events?{}", around_times_square(0.5)),
        )
        .header("x-forwarded-for", client)
        .send()
    };
    let first = open("10.0.0.1").await.unwrap();
    let second = open("10.0.0.1").await.unwrap();
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = open("10.0.0.1").await.unwrap();
    let retry = third.headers().get("retry-after").cloned();
    expect_problem(third, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert!(retry.is_some());
    let other = open("10.0.0.2").await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    let full = open("10.0.0.3").await.unwrap();
    assert!(full.headers().get("retry-after").is_some());
    expect_problem(full, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await;

    // A closed stream frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.state.curb.streams.open() > 2 {
        assert!(
            Instant::now() < deadline,
            "the closed stream was not let go"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open("10.0.0.1").await.unwrap().status(), StatusCode::OK);

    for (query, field) in [
        ("lat=40.758&lng=-73.985&radius=3", "radius"),
        ("lat=91&lng=-73.985&radius=1", "lat"),
        (
            "lat=40.758&lng=-73.985&radius=1&starts_at=2026-01-01T10:00:00Z&ends_at=2026-01-01T09:00:00Z",
            "ends_at",
        ),
    ] {
        let problem = expect_problem(
            app.get(&format!("/v1/spots/events?{query}"), None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
    let bad_id = app
        .request(
            reqwest::Method::GET,
            &format!("/v1/spots/events?{}", around_times_square(0.5)),
        )
        .header("last-event-id", "yesterday")
        .header("x-forwarded-for", "10.0.0.9")
        .send()
        .await
        .unwrap();
    expect_problem(bad_id, StatusCode::BAD_REQUEST, "bad_request").await;
}

/// A random search, as `GET /v1/spots` takes it and as `spots::db::search` does.
fn random_search(rng: &mut StdRng, spots: &[(f64, f64)], now: DateTime<Utc>) -> (String, Search) {
    let circle = rng.random_bool(0.85).then(|| {
        // Often exactly at a spot (distance 0, ties), else anywhere near.
        let (lat, lng) = if rng.random_bool(0.3) {
            spots[rng.random_range(0..spots.len())]
        } else {
            (
                TIMES_SQUARE.0 + rng.random_range(-0.01..0.01),
                TIMES_SQUARE.1 + rng.random_range(-0.01..0.01),
            )
        };
        let radius_km: f64 = [0.05, 0.2, 0.5, 1.0, 3.0][rng.random_range(0..5)];
        Circle {
            lat,
            lng,
            radius_m: radius_km * 1_000.0,
        }
    });
    // Whole seconds, as the query string sends them.
    let starts_at = now.trunc_subsecs(0) + chrono::Duration::minutes(rng.random_range(-120..600));
    let window = TimeWindow {
        starts_at,
        ends_at: starts_at + chrono::Duration::minutes(rng.random_range(5..300)),
    };
    let (available, available_query) = match rng.random_range(0..3) {
        0 => (Some(true), "true"),
        1 => (Some(false), "false"),
        _ => (None, "any"),
    };
    let limit = rng.random_range(1..25);
    let mut query = format!(
        "starts_at={}&ends_at={}&available={available_query}&limit={limit}",
        window.starts_at.format("%Y-%m-%dT%H:%M:%SZ"),
        window.ends_at.format("%Y-%m-%dT%H:%M:%SZ"),
    );
    if let Some(circle) = circle {
        query.push_str(&format!(
            "&lat={}&lng={}&radius={}",
            circle.lat,
            circle.lng,
            circle.radius_m / 1_000.0
        ));
    }
    let search = Search {
        circle,
        window,
        available,
        limit,
        after: None,
    };
    (query, search)
}

/// Random changes of every kind the feed carries, made in PostgreSQL.
async fn random_changes(rng: &mut StdRng, db: &PgPool, spots: &[Uuid], count: usize) {
    for _ in 0..count {
        let spot = spots[rng.random_range(0..spots.len())];
        let starts = rng.random_range(-180..600);
        let minutes = rng.random_range(5..240);
        let result = match rng.random_range(0..8) {
            // Bookings: held (live or lapsed) and confirmed.
            0..=2 => {
                let (status, hold) = match rng.random_range(0..3) {
                    0 => ("held", Some("1 hour")),
                    1 => ("held", Some("-1 hour")),
                    _ => ("confirmed", None),
                };
                sqlx::query(
                    "insert into reservations (id, spot_id, email, starts_at, ends_at, status,
                        rate_cents_per_hour, amount_cents, hold_expires_at)
                     values ($1, $2, 'prop@example.com', now() + make_interval(mins => $3),
                        now() + make_interval(mins => $3 + $4), $5, 450, 450,
                        now() + $6::interval)",
                )
                .bind(Uuid::now_v7())
                .bind(spot)
                .bind(starts)
                .bind(minutes)
                .bind(status)
                .bind(hold)
                .execute(db)
                .await
            }
            // Extensions and shortenings.
            3 => sqlx::query(
                "update reservations set ends_at = greatest(starts_at + interval '5 minutes',
                     ends_at + make_interval(mins => $2))
                 where id = (select id from reservations where spot_id = $1
                             and status in ('held', 'confirmed') limit 1)",
            )
            .bind(spot)
            .bind(rng.random_range(-60..60))
            .execute(db)
            .await,
            // Ends, cancellations and lapses (a held row's hold running out).
            4 => sqlx::query(
                "update reservations set status = (array['completed', 'cancelled', 'expired'])[$2]
                 where id = (select id from reservations where spot_id = $1
                             and status in ('held', 'confirmed') limit 1)",
            )
            .bind(spot)
            .bind(rng.random_range(1..4))
            .execute(db)
            .await,
            5 => sqlx::query(
                "update reservations set hold_expires_at = now() - interval '1 hour'
                 where id = (select id from reservations where spot_id = $1 and status = 'held' limit 1)",
            )
            .bind(spot)
            .execute(db)
            .await,
            // An operator's changes.
            6 => sqlx::query("update spots set active = not active where id = $1")
                .bind(spot)
                .execute(db)
                .await,
            _ => sqlx::query("update spots set rate_cents_per_hour = $2, rule = $3 where id = $1")
                .bind(spot)
                .bind(rng.random_range(0..1000))
                .bind(format!("{} HR", rng.random_range(1..4)))
                .execute(db)
                .await,
        };
        // An overlapping booking is refused by the exclusion constraint, as it should be.
        if let Err(error) = result {
            assert!(
                error.to_string().contains("reservations_no_overlap"),
                "{error}"
            );
        }
    }
}

/// Every page of a search, from the app (its picture) and from the SQL, side by side.
async fn compare_pages(app: &TestApp, query: &str, mut search: Search, case: &str) {
    let mut cursor: Option<String> = None;
    for page in 0..30 {
        let path = match &cursor {
            Some(cursor) => format!("/v1/spots?{query}&cursor={cursor}"),
            None => format!("/v1/spots?{query}"),
        };
        let from_picture = expect_status(app.get(&path, None).await, StatusCode::OK).await;
        let (items, next) = curbside::spots::db::search(&app.db, &search).await.unwrap();
        let from_sql = json!({
            "items": items,
            "next_cursor": next.map(|next| encode_cursor(&next)),
        });
        assert_eq!(from_picture, from_sql, "{case}, page {page}: {query}");
        match next {
            Some(next) => {
                search.after = Some(next);
                cursor = Some(encode_cursor(&next));
            }
            None => return,
        }
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn the_picture_answers_every_search_as_postgresql_does(db: PgPool) {
    let seed: u64 = std::env::var("CURB_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let app = TestApp::spawn(db.clone()).await;
    // 150 spots within a kilometre or so, a few sharing a place (ties in distance).
    let mut places = Vec::new();
    let mut ids = Vec::new();
    for n in 0..150 {
        let place = if n % 10 == 9 {
            places[rng.random_range(0..places.len())]
        } else {
            (
                TIMES_SQUARE.0 + rng.random_range(-0.01..0.01),
                TIMES_SQUARE.1 + rng.random_range(-0.01..0.01),
            )
        };
        places.push(place);
        ids.push(insert_spot(&db, &format!("PROP-{n}"), place.0, place.1, 240, 450).await);
    }
    for round in 0..6 {
        random_changes(&mut rng, &db, &ids, 60).await;
        app.settle().await;
        let now = Utc::now();
        for case in 0..25 {
            let (query, search) = random_search(&mut rng, &places, now);
            compare_pages(
                &app,
                &query,
                search,
                &format!("seed {seed} (CURB_SEED), round {round}, case {case}"),
            )
            .await;
        }
    }
}
