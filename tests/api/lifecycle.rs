//! The end of reservations: delayed jobs on Redis, the off-session charge, emails over SMTP,
//! and the reconciler that finishes what a lost job left undone.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use fake_stripe::PaymentIntentFilter;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{TestApp, expect_status, insert_spot};
use crate::smtp_sink::SmtpSink;

/// A guest booking starting now, with `card` saved and confirmed: (id, guest token). Each
/// card books under an address of its own (`pm_card_visa@example.com`), since a failed bill
/// keeps its address from booking again.
async fn confirmed_booking(app: &TestApp, spot: Uuid, card: &str) -> (Uuid, String) {
    let email = format!("{}@example.com", card.to_lowercase());
    let booked = app.book_as_guest(spot, &email, 30).await;
    app.save_card_and_confirm(&booked, card).await;
    (booked.id, booked.token)
}

/// Moves the end of a reservation to `seconds` from now, through the API.
async fn end_in(app: &TestApp, id: Uuid, token: &str, seconds: i64) -> Value {
    let ends_at = (Utc::now() + Duration::seconds(seconds)).to_rfc3339();
    let response = app
        .send_json(
            Method::PATCH,
            &format!("/v1/reservations/{id}"),
            &json!({"ends_at": ends_at}),
            Some(token),
        )
        .await;
    expect_status(response, StatusCode::OK).await
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    status: String,
    payment_status: String,
    amount_cents: i64,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    card_last4: Option<String>,
}

async fn row(db: &PgPool, id: Uuid) -> Row {
    sqlx::query_as(
        "select status, payment_status, amount_cents, starts_at, ends_at, completed_at, card_last4
         from reservations where id = $1",
    )
    .bind(id)
    .fetch_one(db)
    .await
    .unwrap()
}

/// Polls the reservation until `done` holds, up to `timeout`.
async fn wait_for_row(
    db: &PgPool,
    id: Uuid,
    timeout: StdDuration,
    done: impl Fn(&Row) -> bool,
) -> Row {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let current = row(db, id).await;
        if done(&current) || tokio::time::Instant::now() > deadline {
            return current;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
}

fn charges_for(app: &TestApp, id: Uuid) -> Vec<Value> {
    app.stripe.payment_intents(&PaymentIntentFilter {
        reservation_id: Some(id.to_string()),
        ..Default::default()
    })
}

fn expected_amount(row: &Row, rate: i64) -> i64 {
    let minutes = curbside::reservations::billing::billable_minutes(row.starts_at, row.ends_at);
    curbside::reservations::billing::amount_cents(minutes, rate as i32).0
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_shortened_reservation_ends_is_charged_once_and_emails_a_receipt(db: PgPool) {
    let spot = insert_spot(&db, "E2E-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let (id, token) = confirmed_booking(&app, spot, "pm_card_visa").await;
    let confirmation = app
        .smtp
        .wait_for(StdDuration::from_secs(10), |m| {
            m.header("Subject").is_some_and(|s| s.contains("booked"))
        })
        .await;
    assert!(
        confirmation.is_some(),
        "no confirmation email: {:?}",
        app.smtp.mails()
    );

    end_in(&app, id, &token, 2).await;
    let done = wait_for_row(&db, id, StdDuration::from_secs(15), |r| {
        r.payment_status == "paid"
    })
    .await;
    assert_eq!(
        (done.status.as_str(), done.payment_status.as_str()),
        ("completed", "paid")
    );
    let lateness = done.completed_at.unwrap() - done.ends_at;
    assert!(
        lateness < Duration::seconds(5),
        "completed {lateness} after its end"
    );
    assert_eq!(done.amount_cents, expected_amount(&done, 450));
    assert_eq!(done.card_last4.as_deref(), Some("4242"));

    let charges = charges_for(&app, id);
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0]["amount"].as_i64(), Some(done.amount_cents));
    assert_eq!(charges[0]["status"], "succeeded");

    let receipt = app
        .smtp
        .wait_for(StdDuration::from_secs(10), |m| {
            m.header("Subject").is_some_and(|s| s.contains("receipt"))
        })
        .await
        .expect("a receipt by SMTP");
    assert_eq!(receipt.to, "pm_card_visa@example.com");
    assert!(
        receipt.body().contains("card ending in 4242"),
        "{}",
        receipt.body()
    );
    assert!(
        receipt.body().contains("EST") || receipt.body().contains("EDT"),
        "times in New York time"
    );

    // The spot is free again from now on.
    let free = expect_status(
        app.get("/v1/spots?lat=40.7580&lng=-73.9855&radius=0.1", None)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(free["items"][0]["id"], spot.to_string());
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn after_an_extension_the_old_end_job_does_nothing(db: PgPool) {
    let spot = insert_spot(&db, "EXT-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let (id, token) = confirmed_booking(&app, spot, "pm_card_visa").await;
    end_in(&app, id, &token, 2).await;
    let extended = end_in(&app, id, &token, 6).await;
    let new_end: DateTime<Utc> = extended["ends_at"].as_str().unwrap().parse().unwrap();

    // The job for the first end fires and leaves the reservation alone.
    tokio::time::sleep(StdDuration::from_millis(4_000)).await;
    assert_eq!(
        row(&db, id).await.status,
        "confirmed",
        "the stale end job ended the reservation"
    );

    let done = wait_for_row(&db, id, StdDuration::from_secs(15), |r| {
        r.payment_status == "paid"
    })
    .await;
    assert_eq!(done.ends_at, new_end);
    assert!(done.completed_at.unwrap() >= new_end);
    assert_eq!(charges_for(&app, id).len(), 1);
    assert_eq!(done.amount_cents, expected_amount(&done, 450));
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn failed_charges_are_recorded_emailed_and_not_retried(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), &[("RECONCILE_INTERVAL_SECONDS", "1")]).await;
    let cases = [
        ("pm_card_chargeCustomerFail", "failed", "another card"),
        (
            "pm_card_authenticationRequired",
            "requires_action",
            "confirm this payment",
        ),
    ];
    for (n, (card, payment_status, advice)) in cases.into_iter().enumerate() {
        let spot = insert_spot(
            &db,
            &format!("FAIL-{n}"),
            40.7580 + n as f64 * 0.001,
            -73.9855,
            120,
            450,
        )
        .await;
        let (id, token) = confirmed_booking(&app, spot, card).await;
        end_in(&app, id, &token, 1).await;
        let done = wait_for_row(&db, id, StdDuration::from_secs(15), |r| {
            r.payment_status == payment_status
        })
        .await;
        assert_eq!(
            (done.status.as_str(), done.payment_status.as_str()),
            ("completed", payment_status),
            "{card}"
        );
        let email = app
            .smtp
            .wait_for(StdDuration::from_secs(10), |m| {
                m.header("Subject")
                    .is_some_and(|s| s.contains("payment") && s.contains("failed"))
                    && m.body().contains(&id.to_string())
            })
            .await
            .unwrap_or_else(|| panic!("no payment-failed email for {card}"));
        assert!(email.body().contains(advice), "{card}: {}", email.body());
        // Several reconciler passes later, still exactly one attempt at Stripe.
        tokio::time::sleep(StdDuration::from_secs(3)).await;
        assert_eq!(charges_for(&app, id).len(), 1, "{card} was charged again");
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn stripe_failing_twice_still_charges_exactly_once(db: PgPool) {
    let spot = insert_spot(&db, "S500-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn(db.clone()).await;
    let (id, token) = confirmed_booking(&app, spot, "pm_card_visa").await;
    app.stripe.fail_next(
        "/v1/payment_intents",
        2,
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
    );
    end_in(&app, id, &token, 1).await;
    let done = wait_for_row(&db, id, StdDuration::from_secs(20), |r| {
        r.payment_status == "paid"
    })
    .await;
    assert_eq!(done.payment_status, "paid");
    assert_eq!(charges_for(&app, id).len(), 1);
    let attempts: i32 =
        sqlx::query_scalar("select charge_attempts from reservations where id = $1")
            .bind(id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(attempts, 2, "each 500 counts as one attempt");
    let keys: Vec<String> = app
        .stripe
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/payment_intents")
        .filter_map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys, vec![format!("reservation:{id}:charge"); 3]);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn when_redis_loses_every_job_the_reconciler_still_finishes(db: PgPool) {
    let spot = insert_spot(&db, "FLUSH-1", 40.7580, -73.9855, 120, 450).await;
    let app = TestApp::spawn_with(db.clone(), &[("RECONCILE_INTERVAL_SECONDS", "1")]).await;
    let (id, token) = confirmed_booking(&app, spot, "pm_card_visa").await;
    let held_spot = insert_spot(&db, "FLUSH-2", 40.7590, -73.9855, 120, 450).await;
    let held = json!({"spot_id": held_spot, "duration_minutes": 30, "email": "late@example.com"});
    let held = expect_status(
        app.post("/v1/reservations", &held, None).await,
        StatusCode::CREATED,
    )
    .await;
    let held_id = Uuid::parse_str(held["reservation"]["id"].as_str().unwrap()).unwrap();

    // Far enough ahead that the jobs are flushed before the end job could run, even on a
    // loaded machine (had it run, its charge job would be flushed instead, and the
    // reconciler would wait a minute before retrying a charge it believes is in flight).
    end_in(&app, id, &token, 4).await;
    sqlx::query(
        "update reservations set hold_expires_at = now() + interval '1 second' where id = $1",
    )
    .bind(held_id)
    .execute(&db)
    .await
    .unwrap();
    app.flush_jobs().await;

    let done = wait_for_row(&db, id, StdDuration::from_secs(20), |r| {
        r.payment_status == "paid"
    })
    .await;
    assert_eq!(
        (done.status.as_str(), done.payment_status.as_str()),
        ("completed", "paid")
    );
    assert_eq!(charges_for(&app, id).len(), 1);
    let expired = wait_for_row(&db, held_id, StdDuration::from_secs(20), |r| {
        r.status == "expired"
    })
    .await;
    assert_eq!(expired.status, "expired");
    let emails = app
        .smtp
        .wait_for(StdDuration::from_secs(10), |m| {
            m.header("Subject")
                .is_some_and(|s| s.contains("hold expired"))
        })
        .await;
    assert!(emails.is_some(), "no hold-expired email");
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn emails_wait_out_an_smtp_outage_and_arrive_once(db: PgPool) {
    let down = SmtpSink::reserve_port().await;
    let smtp_url = format!("smtp://{down}");
    let app = TestApp::spawn_with(
        db.clone(),
        &[("SMTP_URL", &smtp_url), ("RECONCILE_INTERVAL_SECONDS", "1")],
    )
    .await;
    let spot = insert_spot(&db, "SMTP-1", 40.7580, -73.9855, 120, 450).await;
    let body = json!({"spot_id": spot, "starts_at": (Utc::now() + Duration::hours(2)).to_rfc3339(), "duration_minutes": 30, "email": "patient@example.com"});
    let booked = expect_status(
        app.post("/v1/reservations", &body, None).await,
        StatusCode::CREATED,
    )
    .await;
    let id = booked["reservation"]["id"].as_str().unwrap();
    let token = booked["guest_token"].as_str().unwrap();
    let cancel = app
        .request(Method::POST, &format!("/v1/reservations/{id}/cancel"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    expect_status(cancel, StatusCode::OK).await;

    // Nothing listens: the email waits in the outbox, tried and failed.
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    loop {
        let (attempts, sent): (i32, bool) = sqlx::query_as(
            "select attempts, sent_at is not null from email_outbox where kind = 'cancelled'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        assert!(!sent);
        if attempts >= 1 || tokio::time::Instant::now() > deadline {
            assert!(attempts >= 1, "the email was never tried");
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }

    let sink = SmtpSink::start_on(down).await;
    let mail = sink
        .wait_for(StdDuration::from_secs(30), |m| {
            m.header("Subject").is_some_and(|s| s.contains("cancelled"))
        })
        .await
        .expect("delivered once the server is back");
    assert_eq!(mail.to, "patient@example.com");
    tokio::time::sleep(StdDuration::from_secs(3)).await;
    let copies = sink
        .mails()
        .iter()
        .filter(|m| m.header("Subject") == mail.header("Subject"))
        .count();
    assert_eq!(copies, 1, "the email arrived more than once");
    let sent: bool =
        sqlx::query_scalar("select sent_at is not null from email_outbox where kind = 'cancelled'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(sent);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_worker_killed_mid_batch_loses_nothing_and_charges_once(db: PgPool) {
    const BATCH: usize = 12;
    let app = TestApp::spawn_without_worker(db.clone(), &[]).await;
    let mut bookings = Vec::new();
    for n in 0..BATCH {
        let spot = insert_spot(
            &db,
            &format!("KILL-{n}"),
            40.70 + n as f64 * 0.001,
            -73.98,
            120,
            450,
        )
        .await;
        bookings.push(confirmed_booking(&app, spot, "pm_card_visa").await);
    }
    // Slow charges, so the worker is surely in the middle of the batch when it dies.
    app.stripe
        .delay_responses("/v1/payment_intents", StdDuration::from_millis(400));
    for (id, token) in &bookings {
        end_in(&app, *id, token, 1).await;
    }

    let mut worker = app.worker_process();
    let first_charge = tokio::time::Instant::now() + StdDuration::from_secs(20);
    while app
        .stripe
        .payment_intent_count(&PaymentIntentFilter::default())
        == 0
        && tokio::time::Instant::now() < first_charge
    {
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    worker.kill();
    // Charges were under way at Stripe, but not all were recorded as paid: the worker died
    // between asking Stripe and writing down the answer.
    let paid: i64 =
        sqlx::query_scalar("select count(*) from reservations where payment_status = 'paid'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(
        (paid as usize) < BATCH,
        "the worker finished the batch before it was killed"
    );

    let _restarted = app.worker_process();
    for (id, _) in &bookings {
        let done = wait_for_row(&db, *id, StdDuration::from_secs(60), |r| {
            r.payment_status == "paid"
        })
        .await;
        assert_eq!(
            (done.status.as_str(), done.payment_status.as_str()),
            ("completed", "paid"),
            "{id}"
        );
        assert_eq!(
            charges_for(&app, *id).len(),
            1,
            "{id} was charged {} times",
            charges_for(&app, *id).len()
        );
    }
}
