use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, SubsecRound as _, Utc};
use fake_stripe::PaymentIntentFilter;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    TestApp, expect_problem, expect_status, insert_spot, invalid_fields, reservation_count,
};

/// When this test process started, in whole seconds: every `at` counts from it, so two
/// times made by separate calls are exactly as far apart as their arguments say.
static BASE: LazyLock<DateTime<Utc>> = LazyLock::new(|| Utc::now().trunc_subsecs(0));

fn at(minutes: i64) -> String {
    (*BASE + Duration::minutes(minutes)).to_rfc3339()
}

/// Books as a guest `starts` minutes after [`BASE`]: (reservation id, guest token, client
/// secret).
async fn book_as_guest(
    app: &TestApp,
    spot: Uuid,
    starts: i64,
    minutes: i64,
) -> (String, String, String) {
    let body = json!({"spot_id": spot, "starts_at": at(starts), "duration_minutes": minutes, "email": "guest@example.com"});
    let booked = app.book(&body, None).await;
    (booked.id.to_string(), booked.token, booked.client_secret)
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn quotes_use_the_billing_rules(db: PgPool) {
    let spot = insert_spot(&db, "Q-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db).await;
    let quote = expect_status(
        app.post(
            "/v1/quotes",
            &json!({"spot_id": spot, "starts_at": at(60), "duration_minutes": 61}),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (quote["minutes"].as_i64(), quote["amount_cents"].as_i64()),
        (Some(61), Some(458))
    );
    assert_eq!(
        (
            quote["currency"].as_str(),
            quote["rate_cents_per_hour"].as_i64()
        ),
        (Some("usd"), Some(450))
    );
    let short = expect_status(
        app.post(
            "/v1/quotes",
            &json!({"spot_id": spot, "duration_minutes": 5}),
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(short["amount_cents"], 50, "the minimum charge");

    let cases = [
        (
            json!({"spot_id": spot, "duration_minutes": 121}),
            "duration_minutes",
        ),
        (
            json!({"spot_id": spot, "duration_minutes": 4}),
            "duration_minutes",
        ),
        (
            json!({"spot_id": spot, "starts_at": at(60), "ends_at": at(90), "duration_minutes": 30}),
            "ends_at",
        ),
        (
            json!({"spot_id": spot, "starts_at": at(-10), "duration_minutes": 30}),
            "starts_at",
        ),
        (
            json!({"spot_id": spot, "starts_at": at(31 * 24 * 60), "duration_minutes": 30}),
            "starts_at",
        ),
        (
            json!({"spot_id": Uuid::new_v4(), "duration_minutes": 30}),
            "spot_id",
        ),
    ];
    for (body, field) in cases {
        let problem = expect_problem(
            app.post("/v1/quotes", &body, None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(invalid_fields(&problem), [field], "{body}");
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_guest_books_saves_a_card_confirms_extends_and_cancels(db: PgPool) {
    let spot = insert_spot(&db, "G-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db).await;
    let (id, guest, client_secret) = book_as_guest(&app, spot, 60, 30).await;
    let path = format!("/v1/reservations/{id}");

    let held = expect_status(app.get(&path, Some(&guest)).await, StatusCode::OK).await;
    assert_eq!(
        (held["status"].as_str(), held["payment_status"].as_str()),
        (Some("held"), Some("setup_pending"))
    );
    assert!(held["hold_expires_at"].is_string());
    assert!(
        held.get("stripe_setup_intent_id").is_none() && held.get("stripe_customer_id").is_none()
    );

    // The client claims the card is saved before it is: the server asks Stripe.
    let early = app
        .request(Method::POST, &format!("{path}/confirm"))
        .bearer_auth(&guest)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(early, StatusCode::CONFLICT, "card_not_saved").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("requires_payment_method")
    );

    let (status, _) = app
        .stripe
        .confirm_setup_intent(&client_secret, "pm_card_visa")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let confirmed = app
        .request(Method::POST, &format!("{path}/confirm"))
        .bearer_auth(&guest)
        .send()
        .await
        .unwrap();
    let confirmed = expect_status(confirmed, StatusCode::OK).await;
    assert_eq!(
        (
            confirmed["status"].as_str(),
            confirmed["payment_status"].as_str()
        ),
        (Some("confirmed"), Some("card_saved"))
    );
    assert!(confirmed["hold_expires_at"].is_null());
    let version = confirmed["version"].as_i64().unwrap();

    let extended = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"ends_at": at(150)}),
            Some(&guest),
        )
        .await;
    let extended = expect_status(extended, StatusCode::OK).await;
    assert_eq!(
        (
            extended["minutes"].as_i64(),
            extended["amount_cents"].as_i64()
        ),
        (Some(90), Some(675))
    );
    assert_eq!(extended["version"].as_i64(), Some(version + 1));

    let too_long = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"ends_at": at(181)}),
            Some(&guest),
        )
        .await;
    let problem = expect_problem(
        too_long,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(invalid_fields(&problem), ["ends_at"]);

    let cancelled = app
        .request(Method::POST, &format!("{path}/cancel"))
        .bearer_auth(&guest)
        .send()
        .await
        .unwrap();
    let cancelled = expect_status(cancelled, StatusCode::OK).await;
    assert_eq!(
        (
            cancelled["status"].as_str(),
            cancelled["payment_status"].as_str()
        ),
        (Some("cancelled"), Some("not_required"))
    );
    assert_eq!(cancelled["amount_cents"], 0);
    assert_eq!(
        app.stripe
            .payment_intent_count(&PaymentIntentFilter::default()),
        0
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_driver_is_confirmed_by_the_webhook_and_ends_early(db: PgPool) {
    let spot = insert_spot(&db, "D-1", 40.7580, -73.9855, 120, 600).await;
    let app = TestApp::spawn(db.clone()).await;
    let driver = app.sign_up("driver@example.com").await;
    let body = json!({"spot_id": spot, "duration_minutes": 60, "vehicle_plate": "abc 123"});
    let booked = expect_status(
        app.post("/v1/reservations", &body, Some(&driver.access_token))
            .await,
        StatusCode::CREATED,
    )
    .await;
    assert!(booked.get("guest_token").is_none());
    assert_eq!(booked["reservation"]["email"], "driver@example.com");
    assert_eq!(booked["reservation"]["vehicle_plate"], "ABC 123");
    let id = booked["reservation"]["id"].as_str().unwrap().to_owned();

    // The driver's app never calls confirm: Stripe's signed webhook confirms the booking.
    let secret = booked["payment"]["client_secret"].as_str().unwrap();
    app.stripe
        .confirm_setup_intent(secret, "pm_card_visa")
        .await
        .unwrap();
    let delivered = app
        .stripe
        .wait_for_event(StdDuration::from_secs(10), |e| {
            e.kind == "setup_intent.succeeded" && e.delivered
        })
        .await;
    assert!(
        delivered.is_some(),
        "the webhook was not delivered: {:?}",
        app.stripe.events()
    );
    let path = format!("/v1/reservations/{id}");
    let confirmed = expect_status(
        app.get(&path, Some(&driver.access_token)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(confirmed["status"], "confirmed");

    // A second booking reuses the driver's Stripe customer.
    let other_spot = insert_spot(&db, "D-2", 40.7590, -73.9855, 120, 600).await;
    let second = json!({"spot_id": other_spot, "starts_at": at(120), "duration_minutes": 30});
    expect_status(
        app.post("/v1/reservations", &second, Some(&driver.access_token))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let customers: i64 =
        sqlx::query_scalar("select count(distinct stripe_customer_id) from reservations")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(customers, 1);

    let current = expect_status(
        app.get("/v1/reservations?scope=current", Some(&driver.access_token))
            .await,
        StatusCode::OK,
    )
    .await;
    // Current: the confirmed booking, then the held one that starts later.
    let ids: Vec<&str> = current["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["confirmed", "held"], "{current}");

    let ended = app
        .request(Method::POST, &format!("{path}/end"))
        .bearer_auth(&driver.access_token)
        .send()
        .await
        .unwrap();
    let ended = expect_status(ended, StatusCode::OK).await;
    assert_eq!(
        (ended["status"].as_str(), ended["payment_status"].as_str()),
        (Some("completed"), Some("charge_pending"))
    );
    assert_eq!(
        (ended["minutes"].as_i64(), ended["amount_cents"].as_i64()),
        (Some(1), Some(50))
    );
    let again = app
        .request(Method::POST, &format!("{path}/end"))
        .bearer_auth(&driver.access_token)
        .send()
        .await
        .unwrap();
    expect_problem(again, StatusCode::CONFLICT, "invalid_state").await;

    let past = expect_status(
        app.get("/v1/reservations?scope=past", Some(&driver.access_token))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(past["items"][0]["id"], id.as_str());
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_hundred_concurrent_bookings_of_one_window_have_one_winner(db: PgPool) {
    let spot = insert_spot(&db, "C-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let body = json!({"spot_id": spot, "starts_at": at(60), "duration_minutes": 60, "email": "race@example.com"});
    let attempts = (0..100).map(|_| app.post("/v1/reservations", &body, None));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    let count = |status: StatusCode| statuses.iter().filter(|s| **s == status).count();
    assert_eq!(
        (count(StatusCode::CREATED), count(StatusCode::CONFLICT)),
        (1, 99),
        "{statuses:?}"
    );
    assert_eq!(reservation_count(&db).await, 1);

    // Staggered windows, each overlapping its neighbours: the survivors never overlap.
    let attempts = (0..60).map(|i| {
        let body = json!({"spot_id": spot, "starts_at": at(180 + i * 7), "duration_minutes": 20, "email": "race@example.com"});
        let app = &app;
        async move { app.post("/v1/reservations", &body, None).await.status() }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    let overlapping: i64 = sqlx::query_scalar(
        "select count(*) from reservations a join reservations b on a.spot_id = b.spot_id and a.id < b.id
         where tstzrange(a.starts_at, a.ends_at, '[)') && tstzrange(b.starts_at, b.ends_at, '[)')",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(overlapping, 0);
    // A booking is refused only for overlapping a winner, and a winner overlaps at most
    // four of the other windows, so at least 60 / 5 must win.
    let survivors = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert!(
        survivors >= 12,
        "only {survivors} of 60 staggered bookings won"
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn an_extension_racing_a_booking_of_the_next_window_has_one_winner(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    for trial in 0..8 {
        let spot = insert_spot(&db, &format!("X-{trial}"), 40.7580, -73.9855, 240, 450).await;
        let (id, guest, _) = book_as_guest(&app, spot, 60, 30).await;
        let (path, longer) = (
            format!("/v1/reservations/{id}"),
            json!({"ends_at": at(120)}),
        );
        let extend = app.send_json(Method::PATCH, &path, &longer, Some(&guest));
        let next = json!({"spot_id": spot, "starts_at": at(90), "duration_minutes": 30, "email": "next@example.com"});
        let book = app.post("/v1/reservations", &next, None);
        let (extend, book) = tokio::join!(extend, book);
        let outcome = (extend.status(), book.status());
        assert!(
            outcome == (StatusCode::OK, StatusCode::CONFLICT)
                || outcome == (StatusCode::CONFLICT, StatusCode::CREATED),
            "trial {trial}: {outcome:?}"
        );
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_lapsed_hold_never_blocks_anyone(db: PgPool) {
    let spot = insert_spot(&db, "L-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let (abandoned, _, _) = book_as_guest(&app, spot, 60, 60).await;
    let body = json!({"spot_id": spot, "starts_at": at(90), "duration_minutes": 60, "email": "b@example.com"});
    expect_problem(
        app.post("/v1/reservations", &body, None).await,
        StatusCode::CONFLICT,
        "spot_unavailable",
    )
    .await;

    // The checkout is abandoned: the hold lapses, and no job has expired it yet.
    sqlx::query("update reservations set hold_expires_at = now() - interval '1 second'")
        .execute(&db)
        .await
        .unwrap();
    let booked = expect_status(
        app.post("/v1/reservations", &body, None).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(booked["reservation"]["status"], "held");
    let old: String = sqlx::query_scalar("select status from reservations where id = $1")
        .bind(Uuid::parse_str(&abandoned).unwrap())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(old, "expired");
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn an_extension_into_another_booking_changes_nothing(db: PgPool) {
    let spot = insert_spot(&db, "E-1", 40.7580, -73.9855, 240, 450).await;
    let app = TestApp::spawn(db).await;
    let (first, guest, _) = book_as_guest(&app, spot, 60, 30).await;
    book_as_guest(&app, spot, 120, 30).await;
    let path = format!("/v1/reservations/{first}");
    let before = expect_status(app.get(&path, Some(&guest)).await, StatusCode::OK).await;
    let clash = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"ends_at": at(130)}),
            Some(&guest),
        )
        .await;
    expect_problem(clash, StatusCode::CONFLICT, "spot_unavailable").await;
    let after = expect_status(app.get(&path, Some(&guest)).await, StatusCode::OK).await;
    assert_eq!(before, after);
    // Back to back is fine.
    let adjacent = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"ends_at": at(120)}),
            Some(&guest),
        )
        .await;
    expect_status(adjacent, StatusCode::OK).await;
    let past = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"ends_at": at(-30)}),
            Some(&guest),
        )
        .await;
    expect_problem(past, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn nobody_else_can_see_or_change_a_reservation(db: PgPool) {
    let spot = insert_spot(&db, "B-1", 40.7580, -73.9855, 120, 450).await;
    let other_spot = insert_spot(&db, "B-2", 40.7590, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let owner = app.sign_up("owner@example.com").await;
    let other_driver = app.sign_up("other@example.com").await;
    let operator = app.sign_up_operator("ops@example.com").await;
    let (_, other_guest, _) = book_as_guest(&app, other_spot, 60, 30).await;

    let body = json!({"spot_id": spot, "starts_at": at(60), "duration_minutes": 30});
    let booked = expect_status(
        app.post("/v1/reservations", &body, Some(&owner.access_token))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let id = booked["reservation"]["id"].as_str().unwrap();
    let (guest_id, guest_token, _) = book_as_guest(&app, spot, 200, 30).await;

    let routes = |id: &str| -> Vec<(Method, String, Option<Value>)> {
        vec![
            (Method::GET, format!("/v1/reservations/{id}"), None),
            (
                Method::PATCH,
                format!("/v1/reservations/{id}"),
                Some(json!({"ends_at": at(100)})),
            ),
            (Method::POST, format!("/v1/reservations/{id}/confirm"), None),
            (Method::POST, format!("/v1/reservations/{id}/end"), None),
            (Method::POST, format!("/v1/reservations/{id}/cancel"), None),
        ]
    };
    let intruders: [(&str, Option<&str>, StatusCode); 5] = [
        (
            "another driver",
            Some(&other_driver.access_token),
            StatusCode::NOT_FOUND,
        ),
        (
            "another reservation's guest",
            Some(&other_guest),
            StatusCode::NOT_FOUND,
        ),
        (
            "an operator",
            Some(&operator.access_token),
            StatusCode::NOT_FOUND,
        ),
        (
            "a made-up guest token",
            Some("cg_not-a-real-token"),
            StatusCode::NOT_FOUND,
        ),
        ("anyone anonymous", None, StatusCode::UNAUTHORIZED),
    ];
    for target in [id, guest_id.as_str()] {
        for (method, path, body) in routes(target) {
            for (who, token, expected) in &intruders {
                let mut request = app.request(method.clone(), &path);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                if let Some(body) = &body {
                    request = request.json(body);
                }
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), *expected, "{who}: {method} {path}");
            }
        }
    }
    // The driver's own token does not open the guest's booking, nor the guest's the driver's.
    assert_eq!(
        app.get(
            &format!("/v1/reservations/{guest_id}"),
            Some(&owner.access_token)
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/v1/reservations/{id}"), Some(&guest_token))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // Nothing changed.
    let unchanged: i64 = sqlx::query_scalar(
        "select count(*) from reservations where version = 1 and status = 'held'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(unchanged, 3);
    let others = expect_status(
        app.get(
            "/v1/reservations?scope=current",
            Some(&other_driver.access_token),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(others["items"], json!([]));
}

/// Posts a webhook body with a signature made at `timestamp` with `secret`.
async fn post_webhook(
    app: &TestApp,
    payload: &Value,
    secret: &str,
    timestamp: i64,
) -> reqwest::Response {
    let raw = serde_json::to_vec(payload).unwrap();
    let signature = curbside::payments::webhook::sign(&raw, secret, timestamp);
    app.request(Method::POST, "/v1/webhooks/stripe")
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn webhooks_are_verified_and_take_effect_once(db: PgPool) {
    let spot = insert_spot(&db, "W-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    app.stripe.set_webhook_url(None);
    let (id, guest, client_secret) = book_as_guest(&app, spot, 60, 30).await;
    app.stripe
        .confirm_setup_intent(&client_secret, "pm_card_visa")
        .await
        .unwrap();
    let event = app
        .stripe
        .wait_for_event(StdDuration::from_secs(5), |e| {
            e.kind == "setup_intent.succeeded"
        })
        .await
        .expect("the imitation made the event");
    let secret = app.stripe.webhook_secret().to_owned();
    let now = Utc::now().timestamp();

    let forged = post_webhook(&app, &event.payload, "whsec_someone_else", now).await;
    expect_problem(forged, StatusCode::BAD_REQUEST, "invalid_signature").await;
    let stale = post_webhook(&app, &event.payload, &secret, now - 301).await;
    expect_problem(stale, StatusCode::BAD_REQUEST, "stale_signature").await;
    let unsigned = app
        .request(Method::POST, "/v1/webhooks/stripe")
        .body(event.payload.to_string())
        .send()
        .await
        .unwrap();
    expect_problem(unsigned, StatusCode::BAD_REQUEST, "invalid_signature").await;
    let held = expect_status(
        app.get(&format!("/v1/reservations/{id}"), Some(&guest))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        held["status"], "held",
        "a refused webhook changed the reservation"
    );

    let first = expect_status(
        post_webhook(&app, &event.payload, &secret, now).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(first["duplicate"], false);
    let confirmed = expect_status(
        app.get(&format!("/v1/reservations/{id}"), Some(&guest))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(confirmed["status"], "confirmed");

    let replay = expect_status(
        post_webhook(&app, &event.payload, &secret, now).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(replay["duplicate"], true);
    let after = expect_status(
        app.get(&format!("/v1/reservations/{id}"), Some(&guest))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        after["version"], confirmed["version"],
        "a replayed event had a second effect"
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn idempotency_keys_replay_refuse_other_bodies_and_in_flight_twins(db: PgPool) {
    let spot = insert_spot(&db, "I-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let body = json!({"spot_id": spot, "starts_at": at(60), "duration_minutes": 30, "email": "i@example.com"});
    let send = |key: &str, body: &Value| {
        app.request(Method::POST, "/v1/reservations")
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    // Guests have no credentials: their keys must be random (version-4 UUIDs here).
    let key_1 = "6f1c2a56-2d4b-4f6e-9a41-3b7d8e0c5a11";
    let key_2 = "0a9e4b7c-51d2-4c83-8f16-e2b3a4c5d6e7";
    let first = send(key_1, &body).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = send(key_1, &body).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(reservation_count(&db).await, 1);

    let mut other = body.clone();
    other["duration_minutes"] = json!(45);
    let reused = send(key_1, &other).await.unwrap();
    let problem = expect_problem(
        reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(invalid_fields(&problem), ["Idempotency-Key"]);

    // While the first request waits on Stripe, its twin is told to wait.
    app.stripe
        .delay_responses("/v1/setup_intents", StdDuration::from_millis(1500));
    let later = json!({"spot_id": spot, "starts_at": at(200), "duration_minutes": 30, "email": "i@example.com"});
    let slow = send(key_2, &later);
    let twin = async {
        tokio::time::sleep(StdDuration::from_millis(500)).await;
        send(key_2, &later).await.unwrap()
    };
    let (slow, twin) = tokio::join!(slow, twin);
    assert_eq!(slow.unwrap().status(), StatusCode::CREATED);
    expect_problem(twin, StatusCode::CONFLICT, "idempotency_key_in_flight").await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_stripe_outage_leaves_no_booking_behind_and_can_be_retried(db: PgPool) {
    let spot = insert_spot(&db, "S-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let body = json!({"spot_id": spot, "starts_at": at(60), "duration_minutes": 30, "email": "s@example.com"});
    let send = || {
        app.request(Method::POST, "/v1/reservations")
            .header("idempotency-key", "5d0c7f1e-8a3b-4e29-b6d4-7c1f2e3a4b5c")
            .json(&body)
            .send()
    };

    app.stripe.fail_next(
        "/v1/setup_intents",
        1,
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
    );
    let failed = send().await.unwrap();
    expect_problem(
        failed,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
    assert_eq!(
        reservation_count(&db).await,
        0,
        "a half-made reservation was left behind"
    );

    let retried = send().await.unwrap();
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert_eq!(reservation_count(&db).await, 1);
    // The customer made on the first try was reused through its idempotency key.
    let customers: HashMap<String, usize> = app
        .stripe
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/customers" && r.method == "POST" && !r.replayed)
        .fold(HashMap::new(), |mut seen, r| {
            *seen
                .entry(r.idempotency_key.unwrap_or_default())
                .or_default() += 1;
            seen
        });
    assert!(customers.values().all(|n| *n == 1), "{customers:?}");
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn bookings_are_checked_field_by_field(db: PgPool) {
    let spot = insert_spot(&db, "V-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let cases = [
        (
            json!({"spot_id": spot, "duration_minutes": 30}),
            vec!["email"],
        ),
        (
            json!({"spot_id": spot, "duration_minutes": 30, "email": "nope"}),
            vec!["email"],
        ),
        (
            json!({"spot_id": spot, "duration_minutes": 30, "email": "a@b.co", "vehicle_plate": "$$$"}),
            vec!["vehicle_plate"],
        ),
        (
            json!({"spot_id": spot, "duration_minutes": 300, "email": "a@b.co"}),
            vec!["duration_minutes"],
        ),
        (json!({"spot_id": spot, "email": "a@b.co"}), vec!["ends_at"]),
    ];
    for (body, fields) in cases {
        let problem = expect_problem(
            app.post("/v1/reservations", &body, None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(invalid_fields(&problem), fields, "{body}");
    }
    sqlx::query("update spots set active = false")
        .execute(&db)
        .await
        .unwrap();
    let inactive = json!({"spot_id": spot, "duration_minutes": 30, "email": "a@b.co"});
    expect_problem(
        app.post("/v1/reservations", &inactive, None).await,
        StatusCode::CONFLICT,
        "spot_unavailable",
    )
    .await;
    assert_eq!(reservation_count(&db).await, 0);
}

/// A stored time and the billing agree: the quote of a window equals the amount booked.
#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn the_booked_amount_is_the_quote(db: PgPool) {
    let spot = insert_spot(&db, "P-1", 40.7580, -73.9855, 120, 333).await;
    let app = TestApp::spawn(db).await;
    let starts_at: DateTime<Utc> =
        Utc::now() + Duration::minutes(61) + Duration::nanoseconds(123_456_789);
    let ends_at = starts_at + Duration::seconds(47 * 60 + 13) + Duration::nanoseconds(987);
    let window = json!({"spot_id": spot, "starts_at": starts_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true), "ends_at": ends_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)});
    let quote = expect_status(app.post("/v1/quotes", &window, None).await, StatusCode::OK).await;
    let mut booking = window.clone();
    booking["email"] = json!("p@example.com");
    let booked = expect_status(
        app.post("/v1/reservations", &booking, None).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(booked["reservation"]["amount_cents"], quote["amount_cents"]);
    assert_eq!(booked["reservation"]["minutes"], quote["minutes"]);
    assert_eq!(quote["minutes"], 48);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_signed_event_is_believed_only_when_stripe_confirms_it(db: PgPool) {
    let spot = insert_spot(&db, "W-2", 40.7580, -73.9855, 120, 450).await;
    let other_spot = insert_spot(&db, "W-3", 40.7581, -73.9856, 120, 450).await;
    // No worker: the ended reservation's charge stays pending while forged events arrive.
    let app = TestApp::spawn_without_worker(db.clone(), &[]).await;
    let secret = app.stripe.webhook_secret().to_owned();
    let (id, guest, client_secret) = book_as_guest(&app, spot, 0, 30).await;
    app.stripe
        .confirm_setup_intent(&client_secret, "pm_card_visa")
        .await
        .unwrap();
    let confirm = app
        .request(Method::POST, &format!("/v1/reservations/{id}/confirm"))
        .bearer_auth(&guest)
        .send()
        .await
        .unwrap();
    expect_status(confirm, StatusCode::OK).await;
    let end = app
        .request(Method::POST, &format!("/v1/reservations/{id}/end"))
        .bearer_auth(&guest)
        .send()
        .await
        .unwrap();
    let ended = expect_status(end, StatusCode::OK).await;
    assert_eq!(ended["payment_status"], "charge_pending");

    let forged = |event_id: &str, kind: &str, object: Value| {
        json!({"id": event_id, "object": "event", "created": Utc::now().timestamp(), "type": kind,
               "data": {"object": object}, "livemode": false, "pending_webhooks": 1,
               "api_version": null, "request": {"id": null, "idempotency_key": null}})
    };
    let now = Utc::now().timestamp();
    for (event_id, kind) in [
        ("evt_forged_1", "payment_intent.succeeded"),
        ("evt_forged_2", "payment_intent.payment_failed"),
    ] {
        let event = forged(
            event_id,
            kind,
            json!({"id": "pi_never_created", "object": "payment_intent", "status": "succeeded",
                   "metadata": {"reservation_id": id}}),
        );
        let ack = expect_status(
            post_webhook(&app, &event, &secret, now).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(ack["duplicate"], false);
    }
    let row = expect_status(
        app.get(&format!("/v1/reservations/{id}"), Some(&guest))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        row["payment_status"], "charge_pending",
        "an event naming a PaymentIntent Stripe never made settled the bill"
    );

    // A SetupIntent whose card was never saved does not confirm its booking either.
    let (held_id, held_guest, held_secret) = book_as_guest(&app, other_spot, 60, 30).await;
    let setup_intent = held_secret.split_once("_secret_").unwrap().0;
    let event = forged(
        "evt_forged_3",
        "setup_intent.succeeded",
        json!({"id": setup_intent, "object": "setup_intent", "status": "succeeded",
               "payment_method": "pm_card_visa"}),
    );
    expect_status(
        post_webhook(&app, &event, &secret, now).await,
        StatusCode::OK,
    )
    .await;
    let held = expect_status(
        app.get(&format!("/v1/reservations/{held_id}"), Some(&held_guest))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(held["status"], "held");
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn event_ids_that_are_not_stripes_are_refused_cleanly(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let secret = app.stripe.webhook_secret().to_owned();
    let now = Utc::now().timestamp();
    let long = format!("evt_{}", "x".repeat(8 * 1024));
    for (event_id, object_id) in [
        ("evt_\u{0}nul", "pi_1"),
        (long.as_str(), "pi_1"),
        ("evt_ok", "pi_\u{0}"),
        ("evt_ok", long.as_str()),
    ] {
        let event = json!({"id": event_id, "object": "event", "created": now,
                           "type": "payment_intent.succeeded",
                           "data": {"object": {"id": object_id}}});
        expect_problem(
            post_webhook(&app, &event, &secret, now).await,
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        )
        .await;
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from stripe_events")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn an_abandoned_checkout_can_let_its_spot_go_at_once(db: PgPool) {
    let spot = insert_spot(&db, "C-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    // Starts now, so it has started by the time the driver gives up on saving a card.
    let (id, guest, _) = book_as_guest(&app, spot, 0, 30).await;
    let cancel = app
        .request(Method::POST, &format!("/v1/reservations/{id}/cancel"))
        .bearer_auth(&guest)
        .send()
        .await
        .unwrap();
    let cancelled = expect_status(cancel, StatusCode::OK).await;
    assert_eq!(
        (
            cancelled["status"].as_str(),
            cancelled["amount_cents"].as_i64()
        ),
        (Some("cancelled"), Some(0))
    );
    // The spot is free for the same window at once, not after the hold's 15 minutes.
    let (again, _, _) = book_as_guest(&app, spot, 0, 30).await;
    assert_ne!(again, id);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn every_update_of_a_row_moves_its_updated_at(db: PgPool) {
    let spot = insert_spot(&db, "U-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let (id, _, _) = book_as_guest(&app, spot, 60, 30).await;
    let id: Uuid = id.parse().unwrap();
    let updated_at = || async {
        sqlx::query_scalar::<_, DateTime<Utc>>("select updated_at from reservations where id = $1")
            .bind(id)
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let before = updated_at().await;
    // A statement that says nothing of updated_at still moves it.
    sqlx::query("update reservations set vehicle_plate = 'T 1' where id = $1")
        .bind(id)
        .execute(&db)
        .await
        .unwrap();
    assert!(updated_at().await > before);
}
