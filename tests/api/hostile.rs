//! What a hostile tester found, each as the class of fault it belongs to: inputs that
//! reached arithmetic or PostgreSQL unchecked, addresses the mailer cannot send to, and
//! requests that should have been told to retry.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, expect_problem, expect_status, insert_spot, invalid_fields};

/// Far outside the API's range: chrono's last year (which overflows `+ Duration`), and a
/// year before PostgreSQL's first; and just outside the documented bounds.
const BAD_TIMES: [&str; 4] = [
    "+262142-12-31T23:59:59Z",
    "-4714-01-01T00:00:00Z",
    "1999-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
];

fn encoded(time: &str) -> String {
    time.replace('+', "%2B")
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn every_time_the_api_takes_is_range_checked(db: PgPool) {
    let spot = insert_spot(&db, "T-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let booked = expect_status(
        app.post(
            "/v1/reservations",
            &json!({"spot_id": spot, "duration_minutes": 30, "email": "t@example.com"}),
            None,
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let id = booked["reservation"]["id"].as_str().unwrap().to_owned();
    let guest = booked["guest_token"].as_str().unwrap().to_owned();

    for time in BAD_TIMES {
        for field in ["starts_at", "ends_at"] {
            let search = app
                .get(&format!("/v1/spots?{field}={}", encoded(time)), None)
                .await;
            let problem = expect_problem(
                search,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            )
            .await;
            assert_eq!(invalid_fields(&problem), [field], "{time}");

            for path in ["/v1/quotes", "/v1/reservations"] {
                let mut body = json!({"spot_id": spot});
                if path == "/v1/reservations" {
                    body["email"] = json!("t@example.com");
                }
                body[field] = json!(time);
                if field == "starts_at" {
                    body["duration_minutes"] = json!(30);
                }
                let problem = expect_problem(
                    app.post(path, &body, None).await,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                )
                .await;
                assert_eq!(invalid_fields(&problem), [field], "{path} {time}");
            }
        }
        let change = app
            .send_json(
                Method::PATCH,
                &format!("/v1/reservations/{id}"),
                &json!({"ends_at": time}),
                Some(&guest),
            )
            .await;
        let problem = expect_problem(
            change,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(invalid_fields(&problem), ["ends_at"], "{time}");
    }
    let unchanged: Value = expect_status(
        app.get(&format!("/v1/reservations/{id}"), Some(&guest))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(unchanged["version"], booked["reservation"]["version"]);
}

/// Addresses the mailer could not send to, which sign-up and guest booking once took.
const UNSENDABLE: [&str; 6] = [
    "a,b@example.com",
    "x<y>@example.com",
    "Ada <ada@example.com>",
    "\u{202E}moc.elpmaxe@ada",
    "ad\u{200B}a@example.com",
    "\"ada\"@example.com",
];

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn addresses_the_mailer_cannot_send_to_are_refused_at_the_door(db: PgPool) {
    let spot = insert_spot(&db, "E-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    for email in UNSENDABLE {
        let sign_up = app
            .post(
                "/v1/auth/sign-up",
                &json!({"email": email, "password": crate::helpers::PASSWORD}),
                None,
            )
            .await;
        let problem = expect_problem(
            sign_up,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(invalid_fields(&problem), ["email"], "{email:?}");
        let booking = app
            .post(
                "/v1/reservations",
                &json!({"spot_id": spot, "duration_minutes": 30, "email": email}),
                None,
            )
            .await;
        let problem = expect_problem(
            booking,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(invalid_fields(&problem), ["email"], "{email:?}");
    }
    let (users, outbox): (i64, i64) =
        sqlx::query_as("select (select count(*) from users), (select count(*) from email_outbox)")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((users, outbox), (0, 0));
}

async fn outbox_email(db: &PgPool, to: &str, attempts: i32) -> uuid::Uuid {
    sqlx::query_scalar(
        "insert into email_outbox (id, kind, to_address, subject, body, attempts)
         values ($1, 'receipt', $2, 'A receipt', 'Thank you.', $3) returning id",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(to)
    .bind(attempts)
    .fetch_one(db)
    .await
    .unwrap()
}

async fn wait_until_given_up(db: &PgPool, id: uuid::Uuid) -> (i32, Option<String>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let row: (i32, Option<String>, bool, bool) = sqlx::query_as(
            "select attempts, last_error, failed_at is not null, sent_at is not null
             from email_outbox where id = $1",
        )
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap();
        assert!(!row.3, "the email was sent");
        if row.2 {
            return (row.0, row.1);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the email was never given up on: {row:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn the_outbox_gives_up_after_its_last_attempt_and_says_so(db: PgPool) {
    // SMTP down for good: the reconciler retries until the last attempt, then gives up.
    let down = crate::smtp_sink::SmtpSink::reserve_port().await;
    let smtp_url = format!("smtp://{down}");
    let app = TestApp::spawn_with(
        db.clone(),
        &[("SMTP_URL", &smtp_url), ("RECONCILE_INTERVAL_SECONDS", "1")],
    )
    .await;
    let last_try = outbox_email(
        &db,
        "late@example.com",
        curbside::email::outbox::MAX_ATTEMPTS - 1,
    )
    .await;
    // A row written before addresses were checked is refused by the mailer at once.
    let unsendable = outbox_email(&db, "a,b@example.com", 0).await;

    let (attempts, error) = wait_until_given_up(&db, last_try).await;
    assert_eq!(attempts, curbside::email::outbox::MAX_ATTEMPTS);
    assert!(error.unwrap().contains("SMTP"));
    let (attempts, error) = wait_until_given_up(&db, unsendable).await;
    assert_eq!(attempts, 1, "a permanent refusal is not retried");
    assert!(error.unwrap().contains("cannot be sent to"));

    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("curbside_outbox_emails_failed 2"),
        "{metrics}"
    );
    // Given up means left alone: more passes of the reconciler change nothing.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let attempts: i32 = sqlx::query_scalar("select max(attempts) from email_outbox")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(attempts, curbside::email::outbox::MAX_ATTEMPTS);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_booking_that_has_not_started_keeps_the_minimum_length(db: PgPool) {
    use chrono::{DateTime, Duration, SubsecRound as _, Utc};
    let spot = insert_spot(&db, "S-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let starts_at = Utc::now().trunc_subsecs(0) + Duration::hours(1);
    let booked = expect_status(
        app.post(
            "/v1/reservations",
            &json!({"spot_id": spot, "starts_at": starts_at, "duration_minutes": 30,
                    "email": "s@example.com"}),
            None,
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let path = format!(
        "/v1/reservations/{}",
        booked["reservation"]["id"].as_str().unwrap()
    );
    let guest = booked["guest_token"].as_str().unwrap();
    let change = async |ends_at: DateTime<Utc>| {
        let body = json!({"ends_at": ends_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)});
        app.send_json(Method::PATCH, &path, &body, Some(guest))
            .await
    };
    for too_short in [Duration::microseconds(1), Duration::minutes(4)] {
        let problem = expect_problem(
            change(starts_at + too_short).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(invalid_fields(&problem), ["ends_at"]);
    }
    let shortened = expect_status(
        change(starts_at + Duration::minutes(5)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(shortened["amount_cents"], 50);

    // A running reservation may still end at any time from now on.
    let running = expect_status(
        app.post(
            "/v1/reservations",
            &json!({"spot_id": spot, "duration_minutes": 30, "email": "r@example.com"}),
            None,
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let running_path = format!(
        "/v1/reservations/{}",
        running["reservation"]["id"].as_str().unwrap()
    );
    let soon = app
        .send_json(
            Method::PATCH,
            &running_path,
            &json!({"ends_at": (Utc::now() + Duration::seconds(30)).to_rfc3339()}),
            Some(running["guest_token"].as_str().unwrap()),
        )
        .await;
    expect_status(soon, StatusCode::OK).await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_replay_goes_only_to_a_caller_that_still_proves_who_it_is(db: PgPool) {
    let spot = insert_spot(&db, "K-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let book = |key: &str, token: Option<&str>, body: &Value| {
        let mut request = app
            .request(Method::POST, "/v1/reservations")
            .header("idempotency-key", key)
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let body = json!({"spot_id": spot, "duration_minutes": 30, "email": "k@example.com"});

    // Without credentials, a guessable key is refused; a random UUID is taken.
    for weak in [
        "abc",
        "1",
        "retry",
        "01936b2e-1e3a-7c4d-8e5f-0a1b2c3d4e5f",
        &"a".repeat(40),
    ] {
        let refused = book(weak, None, &body).await.unwrap();
        expect_problem(refused, StatusCode::BAD_REQUEST, "invalid_idempotency_key").await;
    }
    let key = "c3d7a1f0-6b2e-4d58-9a7c-1e0f2b3c4d5e";
    let first = expect_status(book(key, None, &body).await.unwrap(), StatusCode::CREATED).await;
    let guest_token = first["guest_token"].as_str().unwrap();
    let replayed = book(key, None, &body).await.unwrap();
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(expect_status(replayed, StatusCode::CREATED).await, first);

    // The stored response holds the guest token, shown once: never readable in the database.
    let stored: Vec<u8> =
        sqlx::query_scalar("select response_body from idempotency_keys where key = $1")
            .bind(key)
            .fetch_one(&db)
            .await
            .unwrap();
    let stored_text = String::from_utf8_lossy(&stored);
    assert!(
        !stored_text.contains(guest_token),
        "the guest token is stored readable"
    );
    assert!(
        !stored_text.contains("reservation"),
        "the response is stored readable"
    );

    // A made-up guest token with a key is refused, not treated as anonymous.
    let made_up = book(key, Some("cg_made_up_token"), &body).await.unwrap();
    expect_problem(made_up, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // A driver signs out: the same key and request get 401, never the stored response.
    let driver = app.sign_up("keys@example.com").await;
    let mut other_window = body.clone();
    other_window["starts_at"] =
        json!((chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339());
    other_window.as_object_mut().unwrap().remove("email");
    let signed_in = book("driver-key-1", Some(&driver.access_token), &other_window)
        .await
        .unwrap();
    expect_status(signed_in, StatusCode::CREATED).await;
    let sign_out = app
        .request(Method::POST, "/v1/auth/sign-out")
        .bearer_auth(&driver.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(sign_out.status(), StatusCode::NO_CONTENT);
    let after = book("driver-key-1", Some(&driver.access_token), &other_window)
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    assert!(after.headers().get("idempotent-replayed").is_none());
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn while_postgres_is_out_of_reach_requests_are_told_to_retry(db: PgPool) {
    use crate::tcp_proxy::{Link, TcpProxy};
    use std::time::{Duration, Instant};

    let spot = insert_spot(&db, "P-1", 40.7580, -73.9855, 120, 450).await;
    let options = db.connect_options();
    let target = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = TcpProxy::start(target).await;
    let through_proxy = sqlx::postgres::PgPoolOptions::new()
        .max_connections(5)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with((*options).clone().host("127.0.0.1").port(proxy.addr.port()));
    // Search from PostgreSQL: the picture of the curb would answer on for its few seconds.
    let app = TestApp::spawn_with(through_proxy, &[("SEARCH_FROM_MEMORY", "false")]).await;
    let driver = app.sign_up("pg@example.com").await;

    let booking = json!({"spot_id": spot, "duration_minutes": 30, "email": "pg-guest@example.com"});
    let statuses = async || {
        let search = app.get("/v1/spots?lat=40.758&lng=-73.9855&radius=1", None);
        let me = app.get("/v1/me", Some(&driver.access_token));
        let sign_in = app.sign_in("pg@example.com", crate::helpers::PASSWORD);
        let book = app.post("/v1/reservations", &booking, None);
        let (search, me, sign_in, book) = tokio::join!(search, me, sign_in, book);
        [search, me, sign_in, book]
    };
    for response in statuses().await {
        assert!(response.status().is_success(), "{}", response.status());
    }

    for link in [Link::Cut, Link::Blackhole] {
        proxy.set(link);
        for response in statuses().await {
            let retry_after = response.headers().get("retry-after").cloned();
            expect_problem(
                response,
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
            )
            .await;
            assert!(retry_after.is_some(), "{link:?}: a 503 without Retry-After");
        }
    }

    // Back up: the pool reconnects by itself.
    proxy.set(Link::Up);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ok = statuses().await.iter().all(|response| {
            response.status().is_success() || response.status() == StatusCode::CONFLICT
        });
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the app did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn recording_a_bookings_setup_intent_waits_for_the_spots_lock(db: PgPool) {
    use std::time::{Duration, Instant};
    // Every write to a live booking takes the spot's lock first, so two writers of one spot
    // queue instead of deadlocking (a booking being checked against a row another request is
    // updating, each waiting for the other). The SetupIntent's id was once recorded without
    // it: here the test holds the lock while the booking's Stripe call returns.
    let spot = insert_spot(&db, "D-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    app.stripe
        .delay_responses("/v1/setup_intents", Duration::from_millis(500));
    let body = json!({"spot_id": spot, "duration_minutes": 30, "email": "lock@example.com"});
    let booking = async {
        let response = app.post("/v1/reservations", &body, None).await;
        (response.status(), Instant::now())
    };
    let holder = async {
        // Taken while the booking waits on Stripe, after its hold was committed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut tx = db.begin().await.unwrap();
        sqlx::query("select 1 from spots where id = $1 for no key update")
            .bind(spot)
            .execute(&mut *tx)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let released = Instant::now();
        tx.commit().await.unwrap();
        released
    };
    let ((status, answered), released) = tokio::join!(booking, holder);
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        answered > released,
        "the SetupIntent was recorded on a live booking without the spot's lock"
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_wrong_method_does_not_use_up_an_idempotency_key(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let key = "9b2f6d1e-3c4a-4b5d-8e6f-7a8b9c0d1e2f";
    for body in ["{}", "x"] {
        let response = app
            .request(Method::PATCH, "/v1/quotes")
            .header("idempotency-key", key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        expect_problem(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await;
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_slow_header_flood_is_shed_and_the_server_keeps_answering(db: PgPool) {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let app = TestApp::spawn_with(
        db,
        &[
            ("MAX_CONNECTIONS", "50"),
            ("HEADER_READ_TIMEOUT_SECONDS", "1"),
        ],
    )
    .await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    // Six times the connection bound, each sending half a request and then nothing.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: curbside\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let started = Instant::now();
    let ready = tokio::time::timeout(Duration::from_secs(20), app.get("/readyz", None))
        .await
        .expect("the server answered while flooded");
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(15));

    // The first of them was closed once its time was up, not held for ever.
    let mut buffer = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), slow[0].read(&mut buffer)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a connection that never finished its headers is still open: {closed:?}"
    );
}

/// The body as the client would read it, decoded as its `Content-Encoding` says.
async fn decoded_body(response: reqwest::Response) -> (Option<String>, Vec<u8>) {
    use std::io::Read as _;
    let encoding = response
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_owned());
    let raw = response.bytes().await.unwrap().to_vec();
    let body = match encoding.as_deref() {
        None | Some("identity") => raw,
        Some("gzip") => {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut plain)
                .expect("a gzip body that decodes");
            plain
        }
        Some(other) => panic!("an encoding the client did not offer: {other}"),
    };
    (encoding, body)
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn every_error_body_is_valid_in_the_encoding_it_declares(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let big = vec![b'a'; 70 * 1024];
    let requests = [
        // Too large, on the webhook (raw bytes) and on a JSON route.
        app.request(Method::POST, "/v1/webhooks/stripe")
            .header("stripe-signature", "t=1,v1=00")
            .header("content-type", "application/json")
            .body(big.clone()),
        app.request(Method::POST, "/v1/auth/sign-up")
            .header("content-type", "application/json")
            .body(big),
        app.request(Method::GET, "/v1/no-such-route"),
        app.request(Method::DELETE, "/v1/quotes"),
        app.request(Method::POST, "/v1/auth/sign-in")
            .body("not json"),
        app.request(Method::GET, "/v1/spots/not-a-uuid"),
    ];
    let mut compressed = 0;
    for request in requests {
        let response = request
            .header("accept-encoding", "gzip, deflate")
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(status.is_client_error(), "{status}");
        let (encoding, body) = decoded_body(response).await;
        compressed += usize::from(encoding.is_some());
        let problem: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{status} ({encoding:?}) is not JSON: {e}"));
        assert_eq!(problem["status"], status.as_u16(), "{problem}");
    }
    assert!(
        compressed > 0,
        "no error body was compressed: the test proves nothing"
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn browsers_get_safe_headers_and_a_working_preflight(db: PgPool) {
    let app = TestApp::spawn_with(db, &[("CORS_ALLOWED_ORIGINS", "https://app.example")]).await;
    let session = app.sign_up("headers@example.com").await;
    let public = app.get("/v1/spots?limit=1", None).await;
    let private = app.get("/v1/me", Some(&session.access_token)).await;
    let tokens = app
        .sign_in("headers@example.com", crate::helpers::PASSWORD)
        .await;
    for response in [&public, &private, &tokens] {
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["x-frame-options"], "DENY");
    }
    assert_eq!(private.headers()["cache-control"], "no-store");
    assert_eq!(tokens.headers()["cache-control"], "no-store");
    assert!(public.headers().get("cache-control").is_none());

    let preflight = app
        .request(Method::OPTIONS, "/v1/reservations")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, idempotency-key, x-request-id",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for header in [
        "authorization",
        "content-type",
        "idempotency-key",
        "x-request-id",
    ] {
        assert!(allowed.contains(header), "{header} not allowed: {allowed}");
    }
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let simple = app
        .request(Method::GET, "/v1/spots?limit=1")
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    let exposed = simple.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for header in ["x-request-id", "retry-after", "idempotent-replayed"] {
        assert!(exposed.contains(header), "{header} not exposed: {exposed}");
    }
    let other_origin = app
        .request(Method::OPTIONS, "/v1/reservations")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        other_origin
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
