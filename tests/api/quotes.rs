//! Binding quotes: a booking with a quote gets its window, rate and amount, whatever an
//! operator changed since; a quote for another spot or window, an expired one or a used one
//! is refused with its own code.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{TestApp, expect_problem, expect_status, insert_spot, invalid_fields};

async fn quote(app: &TestApp, body: &Value) -> Value {
    expect_status(app.post("/v1/quotes", body, None).await, StatusCode::OK).await
}

async fn book_with(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post("/v1/reservations", body, None).await
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_quote_is_honoured_after_the_rate_changed(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "Q-1", 40.758, -73.985, 240, 450).await;
    let quoted = quote(&app, &json!({"spot_id": spot, "duration_minutes": 60})).await;
    assert_eq!(quoted["amount_cents"], 450);
    assert_eq!(quoted["starts_on_booking"], true);
    let expires_at = time(&quoted["expires_at"]);
    let in_ten = Utc::now() + Duration::minutes(10);
    assert!(
        (expires_at - in_ten).num_seconds().abs() < 5,
        "{expires_at}"
    );

    let ops = app.sign_up_operator("ops@example.com").await.access_token;
    let changed = app
        .request(Method::PATCH, &format!("/v1/spots/{spot}"))
        .bearer_auth(&ops)
        .json(&json!({"rate_cents_per_hour": 900}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);

    let booked = expect_status(
        book_with(
            &app,
            &json!({"spot_id": spot, "quote_id": quoted["quote_id"],
                    "email": "q@example.com"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let reservation = &booked["reservation"];
    assert_eq!(reservation["rate_cents_per_hour"], 450);
    assert_eq!(reservation["amount_cents"], 450);
    assert_eq!(reservation["minutes"], 60);
    // "For the next hour" starts when it is booked.
    let starts_at = time(&reservation["starts_at"]);
    assert!((Utc::now() - starts_at).num_seconds().abs() < 5);
    assert_eq!(
        time(&reservation["ends_at"]) - starts_at,
        Duration::minutes(60)
    );

    // Without the quote, the rate of now.
    let later = json!({"spot_id": spot, "duration_minutes": 60, "email": "q@example.com",
                       "starts_at": (Utc::now() + Duration::hours(3)).to_rfc3339()});
    let plain = expect_status(book_with(&app, &later).await, StatusCode::CREATED).await;
    assert_eq!(plain["reservation"]["rate_cents_per_hour"], 900);
    assert_eq!(plain["reservation"]["amount_cents"], 900);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_quote_of_a_fixed_window_books_that_window(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "Q-2", 40.758, -73.985, 240, 450).await;
    let starts_at = Utc::now() + Duration::hours(5);
    let ends_at = starts_at + Duration::minutes(90);
    let quoted = quote(
        &app,
        &json!({"spot_id": spot, "starts_at": starts_at.to_rfc3339(),
                "ends_at": ends_at.to_rfc3339()}),
    )
    .await;
    assert_eq!(quoted["starts_on_booking"], false);
    assert_eq!(quoted["amount_cents"], 675);

    // The quote's own fields, sent again, agree with it.
    let booked = expect_status(
        book_with(
            &app,
            &json!({"spot_id": spot, "quote_id": quoted["quote_id"], "email": "f@example.com",
                    "starts_at": quoted["starts_at"], "duration_minutes": 90}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(booked["reservation"]["starts_at"], quoted["starts_at"]);
    assert_eq!(booked["reservation"]["ends_at"], quoted["ends_at"]);
    assert_eq!(booked["reservation"]["amount_cents"], 675);

    // A fixed window starting soon binds only until a minute after its start.
    let soon = Utc::now() + Duration::minutes(2);
    let quoted = quote(
        &app,
        &json!({"spot_id": spot, "starts_at": soon.to_rfc3339(), "duration_minutes": 30}),
    )
    .await;
    let expires_at = time(&quoted["expires_at"]);
    assert!(expires_at <= soon + Duration::seconds(61), "{expires_at}");
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_quote_for_another_spot_or_window_is_refused(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "Q-3", 40.758, -73.985, 240, 450).await;
    let other = insert_spot(&db, "Q-4", 40.759, -73.985, 240, 450).await;
    let floating = quote(&app, &json!({"spot_id": spot, "duration_minutes": 60})).await;
    let later = (Utc::now() + Duration::hours(2)).to_rfc3339();
    let fixed = quote(
        &app,
        &json!({"spot_id": spot, "starts_at": later, "duration_minutes": 60}),
    )
    .await;
    let cases = [
        json!({"spot_id": other, "quote_id": floating["quote_id"]}),
        json!({"spot_id": spot, "quote_id": floating["quote_id"], "duration_minutes": 30}),
        json!({"spot_id": spot, "quote_id": floating["quote_id"], "starts_at": later}),
        json!({"spot_id": spot, "quote_id": fixed["quote_id"], "duration_minutes": 61}),
        json!({"spot_id": spot, "quote_id": fixed["quote_id"],
               "ends_at": (Utc::now() + Duration::hours(4)).to_rfc3339()}),
    ];
    for mut body in cases {
        body["email"] = json!("m@example.com");
        expect_problem(
            book_with(&app, &body).await,
            StatusCode::CONFLICT,
            "quote_mismatch",
        )
        .await;
    }
    let unknown = expect_problem(
        book_with(
            &app,
            &json!({"spot_id": spot, "quote_id": Uuid::new_v4(), "email": "m@example.com"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(invalid_fields(&unknown), ["quote_id"]);
    let booked: i64 = sqlx::query_scalar("select count(*) from reservations")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(booked, 0);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn an_expired_quote_is_refused(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "Q-5", 40.758, -73.985, 240, 450).await;
    let quoted = quote(&app, &json!({"spot_id": spot, "duration_minutes": 60})).await;
    sqlx::query("update quotes set expires_at = now() - interval '1 second'")
        .execute(&db)
        .await
        .unwrap();
    expect_problem(
        book_with(
            &app,
            &json!({"spot_id": spot, "quote_id": quoted["quote_id"], "email": "e@example.com"}),
        )
        .await,
        StatusCode::CONFLICT,
        "quote_expired",
    )
    .await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_quote_books_once_even_when_used_at_once(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "Q-6", 40.758, -73.985, 240, 450).await;
    let quoted = quote(&app, &json!({"spot_id": spot, "duration_minutes": 60})).await;
    let body = json!({"spot_id": spot, "quote_id": quoted["quote_id"],
                      "email": "once@example.com"});
    let answers = futures_util::future::join_all((0..8).map(|_| book_with(&app, &body))).await;
    let mut created = 0;
    for answer in answers {
        match answer.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                let problem: Value = answer.json().await.unwrap();
                assert!(
                    ["quote_used", "spot_unavailable"].contains(&problem["code"].as_str().unwrap()),
                    "{problem}"
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);
    // Used is used: told as such, not as a taken spot.
    expect_problem(
        book_with(&app, &body).await,
        StatusCode::CONFLICT,
        "quote_used",
    )
    .await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_booking_that_could_not_start_its_card_setup_frees_its_quote(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "Q-8", 40.758, -73.985, 240, 450).await;
    let quoted = quote(&app, &json!({"spot_id": spot, "duration_minutes": 60})).await;
    let body = json!({"spot_id": spot, "quote_id": quoted["quote_id"], "email": "r@example.com"});
    app.stripe
        .fail_next("/v1/setup_intents", 1, StatusCode::INTERNAL_SERVER_ERROR);
    let failed = book_with(&app, &body).await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    expect_status(book_with(&app, &body).await, StatusCode::CREATED).await;
}
