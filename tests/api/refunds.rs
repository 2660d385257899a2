//! Refunds by an operator: full and partial, never more than was paid (PostgreSQL refuses
//! it, even for refunds made at once), settled by Stripe's answer or its `charge.refunded`
//! webhook, emailed to the payer and shown on the receipt.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Booked, TestApp, expect_problem, expect_status, insert_spot};

/// A guest booking of an hour at $45 (4500 cents), saved with `card`, ended now and paid.
async fn paid_booking(app: &TestApp, email: &str, card: &str) -> Booked {
    let spot = insert_spot(
        &app.db,
        &format!("RF-{}", Uuid::new_v4()),
        40.758,
        -73.985,
        120,
        4500,
    )
    .await;
    let booked = app.book_as_guest(spot, email, 60).await;
    app.save_card_and_confirm(&booked, card).await;
    // Started just under an hour ago, so ending now bills the hour: 4500 cents.
    sqlx::query(
        "update reservations set starts_at = now() - interval '59 minutes 30 seconds',
                ends_at = now() + interval '1 minute' where id = $1",
    )
    .bind(booked.id)
    .execute(&app.db)
    .await
    .unwrap();
    app.end_now(&booked).await;
    let paid = app
        .wait_for_payment(&booked, |p| p["payment_status"] == "paid")
        .await;
    assert_eq!(paid["payment_status"], "paid", "{paid}");
    booked
}

async fn refund(
    app: &TestApp,
    id: Uuid,
    token: Option<&str>,
    amount_cents: i64,
) -> reqwest::Response {
    app.post(
        &format!("/v1/reservations/{id}/refunds"),
        &json!({"amount_cents": amount_cents, "reason": "the meter was broken"}),
        token,
    )
    .await
}

async fn paid_amount(app: &TestApp, booked: &Booked) -> i64 {
    let reservation = expect_status(app.get_reservation(booked, "").await, StatusCode::OK).await;
    reservation["amount_cents"].as_i64().unwrap()
}

fn refund_mails(app: &TestApp, to: &str) -> Vec<String> {
    app.smtp
        .mails()
        .into_iter()
        .filter(|m| m.header("To").is_some_and(|t| t.contains(to)))
        .filter(|m| m.header("Subject").is_some_and(|s| s.contains("refund")))
        .map(|m| m.text())
        .collect()
}

async fn wait_for_mails(app: &TestApp, to: &str, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mails = refund_mails(app, to);
        if mails.len() >= count || tokio::time::Instant::now() > deadline {
            return mails;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_bill_is_refunded_in_parts_then_in_full_and_no_further(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let booked = paid_booking(&app, "payer@example.com", "pm_card_visa").await;
    let paid = paid_amount(&app, &booked).await;
    assert_eq!(paid, 4500);
    let ops = app.sign_up_operator("ops@example.com").await.access_token;

    let first = expect_status(
        refund(&app, booked.id, Some(&ops), 1000).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["amount_cents"], 1000);
    assert_eq!(first["reservation_refunded_cents"], 1000);
    assert!(
        first["stripe_refund_id"]
            .as_str()
            .unwrap()
            .starts_with("re_")
    );

    let too_much = expect_problem(
        refund(&app, booked.id, Some(&ops), paid - 999).await,
        StatusCode::CONFLICT,
        "refund_exceeds_payment",
    )
    .await;
    assert!(
        too_much["detail"].as_str().unwrap().contains("$35.00"),
        "{too_much}"
    );

    let rest = expect_status(
        refund(&app, booked.id, Some(&ops), paid - 1000).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(rest["reservation_refunded_cents"], paid);
    expect_problem(
        refund(&app, booked.id, Some(&ops), 1).await,
        StatusCode::CONFLICT,
        "invalid_state",
    )
    .await;

    // Stripe made two refunds, each under its own key, for what was asked.
    let at_stripe = app.stripe.refunds();
    let amounts: Vec<i64> = at_stripe
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [1000, paid - 1000]);
    let keys: Vec<String> = app
        .stripe
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/refunds" && r.method == "POST")
        .filter_map(|r| r.idempotency_key)
        .collect();
    assert_eq!(
        keys,
        [
            format!("refund:{}", first["id"].as_str().unwrap()),
            format!("refund:{}", rest["id"].as_str().unwrap())
        ]
    );

    // The payer sees it: the reservation, the receipt and two emails.
    let reservation = expect_status(app.get_reservation(&booked, "").await, StatusCode::OK).await;
    assert_eq!(reservation["refunded_cents"], paid);
    let receipt = expect_status(
        app.get_reservation(&booked, "/receipt").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(receipt["refunded_cents"], paid);
    let statuses: Vec<&str> = receipt["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "succeeded"]);
    let page = app
        .request(
            reqwest::Method::GET,
            &format!("/v1/reservations/{}/receipt", booked.id),
        )
        .bearer_auth(&booked.token)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Refunded: $45.00"), "{page}");
    let mails = wait_for_mails(&app, "payer@example.com", 2).await;
    assert_eq!(mails.len(), 2, "{mails:?}");
    // Each written when its refund succeeded, delivered in either order.
    assert!(
        mails.iter().any(|m| m.contains("We have refunded $10.00")),
        "{mails:?}"
    );
    assert!(
        mails.iter().any(|m| m.contains("We have refunded $35.00")
            && m.contains("Refunded: $45.00 in all")),
        "{mails:?}"
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn refunds_made_at_once_never_exceed_the_payment(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let booked = paid_booking(&app, "race@example.com", "pm_card_visa").await;
    let ops = app.sign_up_operator("ops@example.com").await.access_token;
    // Ten refunds of 40 % each, at once: two fit.
    let answers =
        futures_util::future::join_all((0..10).map(|_| refund(&app, booked.id, Some(&ops), 1800)))
            .await;
    let mut created = 0;
    for answer in answers {
        match answer.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                let problem: Value = answer.json().await.unwrap();
                assert_eq!(problem["code"], "refund_exceeds_payment", "{problem}");
            }
            other => panic!("unexpected {other}: {}", answer.text().await.unwrap()),
        }
    }
    assert_eq!(created, 2);
    let refunded: i64 = sqlx::query_scalar("select refunded_cents from reservations where id = $1")
        .bind(booked.id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(refunded, 3600);
    let at_stripe: i64 = app
        .stripe
        .refunds()
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(at_stripe, 3600);
    // PostgreSQL itself refuses a refund row beyond the payment, whatever the code does.
    let refused = sqlx::query(
        "insert into refunds (id, reservation_id, amount_cents, reason, payment_intent_id)
         select $1, id, 901, 'by hand', stripe_payment_intent_id from reservations where id = $2",
    )
    .bind(Uuid::new_v4())
    .bind(booked.id)
    .execute(&db)
    .await;
    assert!(refused.is_err_and(|e| e.to_string().contains("reservations_refund_within_payment")));
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn only_a_paid_bill_is_refunded(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let ops = app.sign_up_operator("ops@example.com").await.access_token;
    let spot = insert_spot(&db, "RF-UNPAID", 40.758, -73.985, 120, 450).await;
    // Held, then confirmed and running: nothing is paid yet.
    let held = app.book_as_guest(spot, "unpaid@example.com", 30).await;
    expect_problem(
        refund(&app, held.id, Some(&ops), 100).await,
        StatusCode::CONFLICT,
        "invalid_state",
    )
    .await;
    app.save_card_and_confirm(&held, "pm_card_visa").await;
    expect_problem(
        refund(&app, held.id, Some(&ops), 100).await,
        StatusCode::CONFLICT,
        "invalid_state",
    )
    .await;
    // A failed bill is not paid either.
    let failed_spot = insert_spot(&db, "RF-FAILED", 40.758, -73.985, 120, 450).await;
    let failed = app
        .book_as_guest(failed_spot, "failed@example.com", 30)
        .await;
    app.save_card_and_confirm(&failed, "pm_card_chargeCustomerFail")
        .await;
    app.end_now(&failed).await;
    app.wait_for_payment(&failed, |p| p["payment_status"] == "failed")
        .await;
    expect_problem(
        refund(&app, failed.id, Some(&ops), 100).await,
        StatusCode::CONFLICT,
        "invalid_state",
    )
    .await;
    expect_problem(
        refund(&app, Uuid::new_v4(), Some(&ops), 100).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Bad amounts and reasons change nothing.
    for body in [
        json!({"amount_cents": 0, "reason": "x"}),
        json!({"amount_cents": -5, "reason": "x"}),
        json!({"amount_cents": 100, "reason": "   "}),
        json!({"amount_cents": 100, "reason": "x".repeat(501)}),
        json!({"amount_cents": 100}),
    ] {
        let answer = app
            .post(
                &format!("/v1/reservations/{}/refunds", held.id),
                &body,
                Some(&ops),
            )
            .await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let refunds: i64 = sqlx::query_scalar("select count(*) from refunds")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(refunds, 0);
    assert!(app.stripe.refunds().is_empty());
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn drivers_and_guests_cannot_refund(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let booked = paid_booking(&app, "self@example.com", "pm_card_visa").await;
    let driver = app.sign_up("driver@example.com").await;
    // The payer's own guest token, another driver, and nobody.
    let refused = refund(&app, booked.id, Some(&booked.token), 100).await;
    expect_problem(refused, StatusCode::FORBIDDEN, "forbidden").await;
    let refused = refund(&app, booked.id, Some(&driver.access_token), 100).await;
    expect_problem(refused, StatusCode::FORBIDDEN, "forbidden").await;
    let refused = refund(&app, booked.id, None, 100).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(app.stripe.refunds().is_empty());
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_pending_refund_is_settled_by_stripes_webhook(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let booked = paid_booking(&app, "pending@example.com", "pm_card_pendingRefund").await;
    let ops = app.sign_up_operator("ops@example.com").await.access_token;
    let pending = expect_status(
        refund(&app, booked.id, Some(&ops), 500).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(
        pending["reservation_refunded_cents"], 500,
        "a pending refund counts"
    );
    assert!(refund_mails(&app, "pending@example.com").is_empty());

    assert_eq!(app.stripe.settle_pending_refunds(), 1);
    let mails = wait_for_mails(&app, "pending@example.com", 1).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let status: String = sqlx::query_scalar("select status from refunds where id = $1")
        .bind(Uuid::parse_str(pending["id"].as_str().unwrap()).unwrap())
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(status, "succeeded");
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_refund_stripe_did_not_answer_is_made_once_by_the_reconciler(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), &[("RECONCILE_INTERVAL_SECONDS", "1")]).await;
    let booked = paid_booking(&app, "later@example.com", "pm_card_visa").await;
    let ops = app.sign_up_operator("ops@example.com").await.access_token;
    app.stripe
        .fail_next("/v1/refunds", 1, StatusCode::INTERNAL_SERVER_ERROR);
    let pending = expect_status(
        refund(&app, booked.id, Some(&ops), 700).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["stripe_refund_id"], Value::Null);
    assert!(app.stripe.refunds().is_empty());

    // A minute later (made so) the reconciler asks again, with the same key.
    sqlx::query("update refunds set created_at = now() - interval '2 minutes'")
        .execute(&db)
        .await
        .unwrap();
    let mails = wait_for_mails(&app, "later@example.com", 1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(app.stripe.refunds().len(), 1);
    let keys: Vec<Option<String>> = app
        .stripe
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/refunds" && r.method == "POST")
        .map(|r| r.idempotency_key)
        .collect();
    let key = Some(format!("refund:{}", pending["id"].as_str().unwrap()));
    assert!(
        keys.len() >= 2 && keys.iter().all(|k| *k == key),
        "{keys:?}"
    );
}
