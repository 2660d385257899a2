//! Returning drivers: cards saved through earlier bookings stay on the driver's Stripe
//! customer, are listed, removed and made default, and book in one step. Stripe is the
//! imitation, over HTTP.

use fake_stripe::PaymentIntentFilter;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    Booked, TestApp, expect_problem, expect_status, insert_spot, invalid_fields, reservation_count,
};

async fn new_spot(app: &TestApp) -> Uuid {
    insert_spot(
        &app.db,
        &format!("W-{}", Uuid::new_v4()),
        40.758,
        -73.985,
        240,
        450,
    )
    .await
}

/// A driver who booked once and saved `card`: their access token and the card's `pm_…`.
async fn returning_driver(app: &TestApp, email: &str, card: &str) -> (String, String) {
    let session = app.sign_up(email).await;
    let spot = new_spot(app).await;
    let first = app
        .book(
            &json!({"spot_id": spot, "duration_minutes": 30,
                    "starts_at": in_hours(2)}),
            Some(&session.access_token),
        )
        .await;
    app.save_card_and_confirm(&first, card).await;
    let pm: String =
        sqlx::query_scalar("select stripe_payment_method_id from reservations where id = $1")
            .bind(first.id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    (session.access_token, pm)
}

fn in_hours(hours: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::hours(hours)).to_rfc3339()
}

async fn cards(app: &TestApp, token: &str) -> Vec<Value> {
    let listed = expect_status(
        app.get("/v1/me/payment-methods", Some(token)).await,
        StatusCode::OK,
    )
    .await;
    listed["items"].as_array().unwrap().clone()
}

async fn book_with_card(
    app: &TestApp,
    spot: Uuid,
    token: &str,
    pm: &str,
    minutes: i64,
) -> reqwest::Response {
    app.post(
        "/v1/reservations",
        &json!({"spot_id": spot, "duration_minutes": minutes, "payment_method_id": pm}),
        Some(token),
    )
    .await
}

async fn remove(app: &TestApp, token: Option<&str>, pm: &str) -> reqwest::Response {
    let mut request = app.request(Method::DELETE, &format!("/v1/me/payment-methods/{pm}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn make_default(app: &TestApp, token: Option<&str>, pm: &str) -> reqwest::Response {
    let mut request = app.request(Method::PUT, &format!("/v1/me/payment-methods/{pm}/default"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// The calls to Stripe a booking could make: creating anything, or reading a card. (Stripe's
/// webhook for the first booking's SetupIntent makes the server read that intent, at a
/// moment of its own.)
fn booking_calls(app: &TestApp) -> Vec<fake_stripe::RequestRecord> {
    app.stripe
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" || r.path.starts_with("/v1/payment_methods/"))
        .collect()
}

fn stripe_calls(app: &TestApp) -> usize {
    booking_calls(app).len()
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_card_saved_at_a_first_booking_is_listed_and_books_in_one_step(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let (token, pm) = returning_driver(&app, "back@example.com", "pm_card_mastercard").await;

    let listed = cards(&app, &token).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], pm.as_str());
    assert_eq!(listed[0]["brand"], "mastercard");
    assert_eq!(listed[0]["last4"], "4444");
    assert!(listed[0]["exp_year"].as_i64().unwrap() >= 2026);
    assert_eq!(listed[0]["default"], false);
    assert_eq!(listed[0]["expired"], false);

    // Stripe reported the card just now: booking with it asks Stripe nothing.
    let spot = new_spot(&app).await;
    let before = stripe_calls(&app);
    let booked = expect_status(
        book_with_card(&app, spot, &token, &pm, 30).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(stripe_calls(&app), before, "{:?}", booking_calls(&app));
    assert_eq!(booked["reservation"]["status"], "confirmed");
    assert_eq!(booked["reservation"]["payment_status"], "card_saved");
    assert_eq!(booked["payment"], Value::Null);
    assert_eq!(booked["reservation"]["hold_expires_at"], Value::Null);

    // The final bill goes to that card.
    let booked = Booked {
        id: booked["reservation"]["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        token: token.clone(),
        client_secret: String::new(),
    };
    app.end_now(&booked).await;
    let paid = app
        .wait_for_payment(&booked, |p| p["payment_status"] == "paid")
        .await;
    assert_eq!(paid["payment_status"], "paid", "{paid}");
    let charges = app.stripe.payment_intents(&PaymentIntentFilter {
        reservation_id: Some(booked.id.to_string()),
        ..Default::default()
    });
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["payment_method"], pm.as_str());
    assert_eq!(charges[0]["status"], "succeeded");
    let receipt = expect_status(
        app.get_reservation(&booked, "/receipt").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(receipt["card"]["last4"], "4444");
    assert_eq!(receipt["card"]["brand"], "mastercard");
    let confirmations = || {
        app.smtp
            .mails()
            .into_iter()
            .filter(|m| m.header("Subject").is_some_and(|s| s.contains("is booked")))
            .count()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while confirmations() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(confirmations(), 2, "one per booking");
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_one_step_booking_asks_stripe_once_then_not_within_the_hour(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (token, pm) = returning_driver(&app, "once@example.com", "pm_card_visa").await;

    let before = stripe_calls(&app);
    expect_status(
        book_with_card(&app, new_spot(&app).await, &token, &pm, 30).await,
        StatusCode::CREATED,
    )
    .await;
    let calls: Vec<_> = booking_calls(&app)[before..].to_vec();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].path, format!("/v1/payment_methods/{pm}"));

    let before = stripe_calls(&app);
    expect_status(
        book_with_card(&app, new_spot(&app).await, &token, &pm, 30).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(stripe_calls(&app), before);

    // An hour later Stripe is asked again.
    sqlx::query("update saved_cards set verified_at = now() - interval '61 minutes'")
        .execute(&db)
        .await
        .unwrap();
    let before = stripe_calls(&app);
    expect_status(
        book_with_card(&app, new_spot(&app).await, &token, &pm, 30).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(stripe_calls(&app), before + 1);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_card_that_is_not_the_drivers_does_not_book(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (_, theirs) = returning_driver(&app, "owner@example.com", "pm_card_visa").await;
    let (mine_token, _) = returning_driver(&app, "other@example.com", "pm_card_visa").await;
    let newcomer = app.sign_up("new@example.com").await;
    let spot = new_spot(&app).await;
    let before = reservation_count(&db).await;

    for (token, pm) in [
        (mine_token.as_str(), theirs.as_str()),
        (newcomer.access_token.as_str(), theirs.as_str()),
        (mine_token.as_str(), "pm_made_up_123"),
        (mine_token.as_str(), "pm_card_visa"),
        (mine_token.as_str(), "pm_1'; drop table reservations; --"),
    ] {
        let problem = expect_problem(
            book_with_card(&app, spot, token, pm, 30).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(invalid_fields(&problem), ["payment_method_id"], "{pm}");
    }
    // A guest saves a card with each booking.
    let guest = app
        .post(
            "/v1/reservations",
            &json!({"spot_id": spot, "duration_minutes": 30, "email": "g@example.com",
                    "payment_method_id": theirs}),
            None,
        )
        .await;
    let problem =
        expect_problem(guest, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(invalid_fields(&problem), ["payment_method_id"]);
    assert_eq!(reservation_count(&db).await, before, "nothing was booked");
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_card_in_use_cannot_be_removed_until_its_reservations_are_over(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (token, pm) = returning_driver(&app, "remove@example.com", "pm_card_visa").await;

    // The first booking (saved with this card, starting in two hours) relies on it.
    let problem = expect_problem(
        remove(&app, Some(&token), &pm).await,
        StatusCode::CONFLICT,
        "payment_method_in_use",
    )
    .await;
    let relying: Uuid = problem["reservation_id"].as_str().unwrap().parse().unwrap();
    expect_status(
        app.post(
            &format!("/v1/reservations/{relying}/cancel"),
            &json!({}),
            Some(&token),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    let removed = remove(&app, Some(&token), &pm).await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let detached = app
        .stripe
        .requests()
        .into_iter()
        .filter(|r| r.path == format!("/v1/payment_methods/{pm}/detach"))
        .count();
    assert_eq!(detached, 1);
    assert!(cards(&app, &token).await.is_empty());
    // Removing again is fine; booking with it is not.
    assert_eq!(
        remove(&app, Some(&token), &pm).await.status(),
        StatusCode::NO_CONTENT
    );
    let problem = expect_problem(
        book_with_card(&app, new_spot(&app).await, &token, &pm, 30).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(invalid_fields(&problem), ["payment_method_id"]);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn removing_a_card_while_booking_with_it_never_leaves_a_booking_without_its_card(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let (token, pm) = returning_driver(&app, "race@example.com", "pm_card_visa").await;
    // Free the card of its first booking, so only the race decides.
    let first: Uuid = sqlx::query_scalar("select id from reservations")
        .fetch_one(&db)
        .await
        .unwrap();
    app.post(
        &format!("/v1/reservations/{first}/cancel"),
        &json!({}),
        Some(&token),
    )
    .await;
    cards(&app, &token).await;

    let spot = new_spot(&app).await;
    let (booked, removed) = tokio::join!(
        book_with_card(&app, spot, &token, &pm, 30),
        remove(&app, Some(&token), &pm),
    );
    match (booked.status(), removed.status()) {
        (StatusCode::CREATED, StatusCode::CONFLICT) => {}
        (StatusCode::UNPROCESSABLE_ENTITY, StatusCode::NO_CONTENT) => {}
        other => panic!("a booking and a removal both went through, or neither: {other:?}"),
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_default_card_is_chosen_among_the_drivers_own(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let (token, visa) = returning_driver(&app, "default@example.com", "pm_card_visa").await;
    // A second card, saved through a second booking.
    let second = app
        .book(
            &json!({"spot_id": new_spot(&app).await, "duration_minutes": 30,
                    "starts_at": in_hours(3)}),
            Some(&token),
        )
        .await;
    app.save_card_and_confirm(&second, "pm_card_mastercard")
        .await;
    let listed = cards(&app, &token).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["brand"], "mastercard", "newest first");

    let chosen = expect_status(
        make_default(&app, Some(&token), &visa).await,
        StatusCode::OK,
    )
    .await;
    let defaults: Vec<_> = chosen["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|card| card["default"] == true)
        .map(|card| card["id"].clone())
        .collect();
    assert_eq!(defaults, [json!(visa)]);
    // Listed again, from Stripe: the same default.
    let again = cards(&app, &token).await;
    assert!(
        again
            .iter()
            .any(|c| c["id"] == visa.as_str() && c["default"] == true)
    );

    let (other_token, _) = returning_driver(&app, "else@example.com", "pm_card_visa").await;
    expect_problem(
        make_default(&app, Some(&other_token), &visa).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn saved_cards_are_the_drivers_alone(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let (owner, pm) = returning_driver(&app, "mine@example.com", "pm_card_visa").await;
    let (intruder, _) = returning_driver(&app, "theirs@example.com", "pm_card_visa").await;
    let guest = app
        .book_as_guest(new_spot(&app).await, "guest@example.com", 30)
        .await;

    // Another driver sees only their own card, and cannot touch this one.
    let seen = cards(&app, &intruder).await;
    assert!(
        seen.iter().all(|card| card["id"] != pm.as_str()),
        "{seen:?}"
    );
    expect_problem(
        remove(&app, Some(&intruder), &pm).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_problem(
        make_default(&app, Some(&intruder), &pm).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Made-up and malformed ids are simply not found.
    for bad in ["pm_nope", "card_1", "pm_%27%3B"] {
        expect_problem(
            remove(&app, Some(&owner), bad).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    // Without an account: 401, a guest token included.
    for token in [None, Some(guest.token.as_str())] {
        let listed = match token {
            Some(token) => app.get("/v1/me/payment-methods", Some(token)).await,
            None => app.get("/v1/me/payment-methods", None).await,
        };
        assert_eq!(listed.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            remove(&app, token, &pm).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            make_default(&app, token, &pm).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // The owner's card is untouched by all of it.
    assert_eq!(cards(&app, &owner).await.len(), 1);
    let detached = app
        .stripe
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/detach"))
        .count();
    assert_eq!(detached, 0);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_driver_without_a_booking_has_no_cards(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let session = app.sign_up("fresh@example.com").await;
    assert!(cards(&app, &session.access_token).await.is_empty());
    assert!(app.stripe.requests().is_empty(), "Stripe is not asked");
}
