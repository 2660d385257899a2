//! Nobody is stuck with an unpaid bill: a declined charge is paid with another card, a
//! charge the bank wants authenticated is completed by the card holder, and until then the
//! payer cannot book again. Stripe is the imitation, over HTTP, with its webhooks.

use std::time::Duration;

use fake_stripe::{PaymentIntentFilter, SentEvent};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Booked, TestApp, expect_problem, expect_status, insert_spot};

/// A guest booking on a new spot, saved with `card`, confirmed and ended at once: its
/// final charge is on its way.
async fn ended_booking(app: &TestApp, email: &str, card: &str) -> Booked {
    let spot = insert_spot(
        &app.db,
        &format!("R-{}", Uuid::new_v4()),
        40.758,
        -73.985,
        120,
        450,
    )
    .await;
    let booked = app.book_as_guest(spot, email, 30).await;
    app.save_card_and_confirm(&booked, card).await;
    app.end_now(&booked).await;
    booked
}

fn status_is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |payment| payment["payment_status"] == status
}

fn charges_for(app: &TestApp, id: Uuid) -> Vec<Value> {
    app.stripe.payment_intents(&PaymentIntentFilter {
        reservation_id: Some(id.to_string()),
        ..Default::default()
    })
}

/// (attempt, status) of every recorded attempt at the reservation's charge.
async fn attempts(db: &PgPool, id: Uuid) -> Vec<(i32, String)> {
    sqlx::query_as(
        "select attempt, status from charge_attempts where reservation_id = $1 order by attempt",
    )
    .bind(id)
    .fetch_all(db)
    .await
    .unwrap()
}

fn mails_with_subject(app: &TestApp, to: &str, needle: &str) -> Vec<String> {
    app.smtp
        .mails()
        .into_iter()
        .filter(|m| m.header("To").is_some_and(|t| t.contains(to)))
        .filter(|m| m.header("Subject").is_some_and(|s| s.contains(needle)))
        .map(|m| m.text())
        .collect()
}

async fn wait_for_mail(app: &TestApp, to: &str, needle: &str) -> String {
    let found = app
        .smtp
        .wait_for(Duration::from_secs(10), |m| {
            m.header("To").is_some_and(|t| t.contains(to))
                && m.header("Subject").is_some_and(|s| s.contains(needle))
        })
        .await;
    found
        .unwrap_or_else(|| panic!("no '{needle}' email to {to}: {:?}", app.smtp.mails()))
        .text()
}

/// Posts an event again, freshly signed, as Stripe does when it retries a delivery.
async fn redeliver(app: &TestApp, event: &SentEvent) -> Value {
    let body = serde_json::to_vec(&event.payload).unwrap();
    let signature = fake_stripe::webhook_signature(
        &body,
        app.stripe.webhook_secret(),
        chrono::Utc::now().timestamp(),
    );
    let response = app
        .request(Method::POST, "/v1/webhooks/stripe")
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    expect_status(response, StatusCode::OK).await
}

async fn retry(app: &TestApp, booked: &Booked, body: Value) -> reqwest::Response {
    let path = format!("/v1/reservations/{}/payment/retry", booked.id);
    app.post(&path, &body, Some(&booked.token)).await
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_declined_bill_is_paid_once_with_a_second_card(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let booked = ended_booking(&app, "decline@example.com", "pm_card_chargeCustomerFail").await;
    let failed = app.wait_for_payment(&booked, status_is("failed")).await;
    assert_eq!(failed["payment_status"], "failed", "{failed}");
    assert_eq!(failed["next_action"]["type"], "give_another_card");
    assert_eq!(failed["attempt"], 1);

    // The email says what is true: where to pay, and that booking waits for it.
    let email = wait_for_mail(&app, "decline@example.com", "failed").await;
    let link = format!("http://localhost:5173/reservations/{}/payment", booked.id);
    assert!(email.contains(&link), "{email}");
    assert!(
        email.contains("new bookings with this email address are refused"),
        "{email}"
    );
    assert!(
        email.contains(&format!("Reservation {}", booked.id)),
        "{email}"
    );
    assert!(
        email.contains("http://localhost:5173/reservations/access"),
        "{email}"
    );

    // A new card: the same SetupIntent however often it is asked for.
    let started = expect_status(retry(&app, &booked, json!({})).await, StatusCode::OK).await;
    assert_eq!(started["next_action"]["type"], "save_card", "{started}");
    let secret = started["next_action"]["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = expect_status(retry(&app, &booked, json!({})).await, StatusCode::OK).await;
    assert_eq!(again["next_action"]["client_secret"], secret.as_str());
    let shown = expect_status(
        app.get_reservation(&booked, "/payment").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(shown["next_action"]["client_secret"], secret.as_str());

    // Saving it is enough: Stripe's webhook starts the second attempt.
    let (status, _) = app
        .stripe
        .confirm_setup_intent(&secret, "pm_card_visa")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let paid = app.wait_for_payment(&booked, status_is("paid")).await;
    assert_eq!(paid["payment_status"], "paid", "{paid}");
    assert_eq!(paid["next_action"]["type"], "none");
    assert_eq!(paid["attempt"], 2);

    let charges = charges_for(&app, booked.id);
    let succeeded: Vec<_> = charges
        .iter()
        .filter(|pi| pi["status"] == "succeeded")
        .collect();
    assert_eq!((charges.len(), succeeded.len()), (2, 1), "{charges:?}");
    assert_eq!(
        attempts(&db, booked.id).await,
        [(1, "failed".to_owned()), (2, "succeeded".to_owned())]
    );
    wait_for_mail(&app, "decline@example.com", "receipt").await;
    let view = expect_status(app.get_reservation(&booked, "").await, StatusCode::OK).await;
    assert_eq!(
        (view["card_brand"].as_str(), view["card_last4"].as_str()),
        (Some("visa"), Some("4242"))
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn an_unpaid_bill_blocks_booking_by_email_until_it_is_paid(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let booked = ended_booking(&app, "owes@example.com", "pm_card_chargeCustomerFail").await;
    app.wait_for_payment(&booked, status_is("failed")).await;

    let spot = insert_spot(&db, "R-NEXT", 40.759, -73.984, 120, 450).await;
    let body = json!({"spot_id": spot, "duration_minutes": 30, "email": "OWES@example.com"});
    let refused = expect_problem(
        app.post("/v1/reservations", &body, None).await,
        StatusCode::CONFLICT,
        "unpaid_balance",
    )
    .await;
    assert_eq!(refused["reservation_id"], booked.id.to_string());
    let others = json!({"spot_id": spot, "duration_minutes": 30, "email": "someone@example.com"});
    let other = expect_status(
        app.post("/v1/reservations", &others, None).await,
        StatusCode::CREATED,
    )
    .await;
    let other_id = other["reservation"]["id"].as_str().unwrap();
    let path = format!("/v1/reservations/{other_id}/cancel");
    let token = other["guest_token"].as_str().unwrap();
    expect_status(
        app.post(&path, &json!({}), Some(token)).await,
        StatusCode::OK,
    )
    .await;

    let started = expect_status(retry(&app, &booked, json!({})).await, StatusCode::OK).await;
    let secret = started["next_action"]["client_secret"].as_str().unwrap();
    // Without the webhook, the next look at the payment finds the saved card and charges it.
    app.stripe.set_webhook_url(None);
    app.stripe
        .confirm_setup_intent(secret, "pm_card_mastercard")
        .await
        .unwrap();
    let paid = app.wait_for_payment(&booked, status_is("paid")).await;
    assert_eq!(paid["payment_status"], "paid", "{paid}");
    expect_status(
        app.post("/v1/reservations", &body, None).await,
        StatusCode::CREATED,
    )
    .await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn twenty_concurrent_retries_with_a_saved_card_charge_once(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let driver = app.sign_up("retry@example.com").await;
    // A first booking saves a good card to the driver's Stripe customer and is paid.
    let spot = insert_spot(&db, "R-SAVED", 40.758, -73.985, 120, 450).await;
    let first = app.book_as_driver(spot, &driver.access_token, 30).await;
    app.save_card_and_confirm(&first, "pm_card_visa").await;
    app.end_now(&first).await;
    app.wait_for_payment(&first, status_is("paid")).await;
    let good_card: String =
        sqlx::query_scalar("select stripe_payment_method_id from reservations where id = $1")
            .bind(first.id)
            .fetch_one(&db)
            .await
            .unwrap();

    let second = app.book_as_driver(spot, &driver.access_token, 30).await;
    app.save_card_and_confirm(&second, "pm_card_chargeCustomerFail")
        .await;
    app.end_now(&second).await;
    app.wait_for_payment(&second, status_is("failed")).await;

    // Someone else's card is refused, and changes nothing.
    let stranger = app.sign_up("stranger@example.com").await;
    let theirs = app.book_as_driver(spot, &stranger.access_token, 30).await;
    app.save_card_and_confirm(&theirs, "pm_card_visa").await;
    let their_card: String =
        sqlx::query_scalar("select stripe_payment_method_id from reservations where id = $1")
            .bind(theirs.id)
            .fetch_one(&db)
            .await
            .unwrap();
    for card in [their_card.as_str(), "pm_nonexistent", "not-a-card"] {
        expect_problem(
            retry(&app, &second, json!({"payment_method_id": card})).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }

    let body = json!({"payment_method_id": good_card});
    let answers =
        futures_util::future::join_all((0..20).map(|_| retry(&app, &second, body.clone()))).await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [vec![200], vec![409; 19]].concat());

    let paid = app.wait_for_payment(&second, status_is("paid")).await;
    assert_eq!(paid["payment_status"], "paid");
    let charges = charges_for(&app, second.id);
    let succeeded = charges
        .iter()
        .filter(|pi| pi["status"] == "succeeded")
        .count();
    assert_eq!((charges.len(), succeeded), (2, 1), "{charges:?}");
    assert_eq!(
        attempts(&db, second.id).await,
        [(1, "failed".to_owned()), (2, "succeeded".to_owned())]
    );
    // Paid is paid: nothing more to retry.
    expect_problem(
        retry(&app, &second, body).await,
        StatusCode::CONFLICT,
        "invalid_state",
    )
    .await;
}

/// What the bank's 3-D Secure request leaves: a booking whose charge awaits the card holder.
async fn awaiting_authentication(app: &TestApp, email: &str) -> (Booked, String, String) {
    let booked = ended_booking(app, email, "pm_card_authenticationRequired").await;
    let payment = app
        .wait_for_payment(&booked, status_is("requires_action"))
        .await;
    assert_eq!(payment["next_action"]["type"], "authenticate", "{payment}");
    let secret = payment["next_action"]["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let card = payment["next_action"]["payment_method_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let email_body = wait_for_mail(app, email, "failed").await;
    assert!(email_body.contains("confirm this payment"), "{email_body}");
    (booked, secret, card)
}

/// The card holder passes the bank's challenge in the browser (Stripe.js).
async fn authenticate(app: &TestApp, secret: &str, card: &str) {
    let (status, intent) = app
        .stripe
        .confirm_payment_intent(secret, Some(card))
        .await
        .unwrap();
    assert_eq!(
        (status, intent["status"].as_str()),
        (200, Some("requires_action")),
        "{intent}"
    );
    assert!(intent["next_action"]["type"].is_string(), "{intent}");
    let (status, intent) = app
        .stripe
        .confirm_payment_intent(secret, None)
        .await
        .unwrap();
    assert_eq!(
        (status, intent["status"].as_str()),
        (200, Some("succeeded")),
        "{intent}"
    );
}

async fn paid_once(app: &TestApp, booked: &Booked, email: &str) {
    let paid = app.wait_for_payment(booked, status_is("paid")).await;
    assert_eq!(paid["payment_status"], "paid", "{paid}");
    let charges = charges_for(app, booked.id);
    let succeeded = charges
        .iter()
        .filter(|pi| pi["status"] == "succeeded")
        .count();
    assert_eq!((charges.len(), succeeded), (1, 1), "{charges:?}");
    assert_eq!(
        attempts(&app.db, booked.id).await,
        [(1, "succeeded".to_owned())]
    );
    wait_for_mail(app, email, "receipt").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mails_with_subject(app, email, "receipt").len(), 1);
}

fn succeeded_event(app: &TestApp, booked: &Booked) -> Option<SentEvent> {
    app.stripe.events().into_iter().find(|e| {
        e.kind == "payment_intent.succeeded"
            && e.payload["data"]["object"]["metadata"]["reservation_id"] == booked.id.to_string()
    })
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn an_authenticated_payment_is_settled_once_whenever_and_however_often_the_webhook_comes(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;

    // The webhook first, then the client's look; then the same event once more.
    let (before, secret, card) = awaiting_authentication(&app, "before@example.com").await;
    let spot = insert_spot(&db, "R-3DS", 40.759, -73.984, 120, 450).await;
    let body = json!({"spot_id": spot, "duration_minutes": 30, "email": "before@example.com"});
    expect_problem(
        app.post("/v1/reservations", &body, None).await,
        StatusCode::CONFLICT,
        "unpaid_balance",
    )
    .await;
    authenticate(&app, &secret, &card).await;
    let event = app
        .stripe
        .wait_for_event(Duration::from_secs(10), |e| {
            e.kind == "payment_intent.succeeded" && e.delivered
        })
        .await
        .expect("the webhook is delivered");
    paid_once(&app, &before, "before@example.com").await;
    assert_eq!(redeliver(&app, &event).await["duplicate"], true);
    paid_once(&app, &before, "before@example.com").await;

    // The client's look first (no webhook reaches the API), then the webhook, twice.
    app.stripe.set_webhook_url(None);
    let (after, secret, card) = awaiting_authentication(&app, "after@example.com").await;
    authenticate(&app, &secret, &card).await;
    let shown = expect_status(
        app.get_reservation(&after, "/payment").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        shown["payment_status"], "paid",
        "the look settles it: {shown}"
    );
    let event = succeeded_event(&app, &after).expect("Stripe made the event");
    assert_eq!(redeliver(&app, &event).await["duplicate"], false);
    assert_eq!(redeliver(&app, &event).await["duplicate"], true);
    paid_once(&app, &after, "after@example.com").await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_held_booking_hands_out_its_card_setup_again(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "R-HELD", 40.758, -73.985, 120, 450).await;
    let booked = app.book_as_guest(spot, "lost@example.com", 30).await;
    let payment = expect_status(
        app.get_reservation(&booked, "/payment").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(payment["next_action"]["type"], "save_card");
    assert_eq!(
        payment["next_action"]["client_secret"],
        booked.client_secret.as_str()
    );

    // Saved, but the response confirming it was lost: the next look confirms it.
    app.stripe.set_webhook_url(None);
    app.stripe
        .confirm_setup_intent(&booked.client_secret, "pm_card_visa")
        .await
        .unwrap();
    let payment = expect_status(
        app.get_reservation(&booked, "/payment").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            payment["payment_status"].as_str(),
            payment["next_action"]["type"].as_str()
        ),
        (Some("card_saved"), Some("none"))
    );
    let view = expect_status(app.get_reservation(&booked, "").await, StatusCode::OK).await;
    assert_eq!(view["status"], "confirmed");
    // Nothing to retry before anything failed.
    expect_problem(
        retry(&app, &booked, json!({})).await,
        StatusCode::CONFLICT,
        "invalid_state",
    )
    .await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn payment_routes_refuse_everyone_but_the_payer(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let booked = ended_booking(&app, "mine@example.com", "pm_card_chargeCustomerFail").await;
    app.wait_for_payment(&booked, status_is("failed")).await;
    let driver = app.sign_up("other-driver@example.com").await;
    let spot = insert_spot(&db, "R-OTHER", 40.759, -73.984, 120, 450).await;
    let other_guest = app.book_as_guest(spot, "other@example.com", 30).await;
    let made_up = format!("cg_{}", "A".repeat(43));
    for suffix in ["/payment", "/payment/retry"] {
        let path = format!("/v1/reservations/{}{suffix}", booked.id);
        let method = if suffix == "/payment" {
            Method::GET
        } else {
            Method::POST
        };
        for token in [
            driver.access_token.as_str(),
            other_guest.token.as_str(),
            made_up.as_str(),
        ] {
            let response = app
                .send_json(method.clone(), &path, &json!({}), Some(token))
                .await;
            expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
        }
        let anonymous = app.send_json(method.clone(), &path, &json!({}), None).await;
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // None of that started an attempt.
    assert_eq!(attempts(&db, booked.id).await, [(1, "failed".to_owned())]);
}
