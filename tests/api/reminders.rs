//! Reminders before the end, with a one-tap extension: sent once at the right time, not for
//! cancelled or ended reservations, for the new end after a change; the link's page changes
//! nothing, its form extends once, under the rules of `PATCH`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Booked, TestApp, expect_page, expect_status, insert_spot};

/// A guest booking on a new spot, confirmed, whose end is `REMINDER_MINUTES` (10) and
/// `seconds` away: its reminder is due in `seconds`. It starts at `starts_in` minutes
/// (negative: it runs).
async fn ending_soon(app: &TestApp, email: &str, seconds: i64, starts_in: i64) -> Booked {
    let spot = insert_spot(
        &app.db,
        &format!("RM-{}", Uuid::new_v4()),
        40.758,
        -73.985,
        120,
        450,
    )
    .await;
    let booked = app.book_as_guest(spot, email, 60).await;
    sqlx::query(
        "update reservations set starts_at = now() + $2 * interval '1 minute',
                ends_at = now() + interval '10 minutes' + $3 * interval '1 second'
         where id = $1",
    )
    .bind(booked.id)
    .bind(starts_in)
    .bind(seconds)
    .execute(&app.db)
    .await
    .unwrap();
    app.save_card_and_confirm(&booked, "pm_card_visa").await;
    booked
}

fn reminders_to(app: &TestApp, to: &str) -> Vec<String> {
    app.smtp
        .mails()
        .into_iter()
        .filter(|m| m.header("To").is_some_and(|t| t.contains(to)))
        .filter(|m| {
            m.header("Subject")
                .is_some_and(|s| s.starts_with("Your parking ends"))
        })
        .map(|m| m.text())
        .collect()
}

async fn wait_for_reminders(app: &TestApp, to: &str, seconds: u64) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let found = reminders_to(app, to);
        if !found.is_empty() || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The path and query of the reminder's link (it names `PUBLIC_BASE_URL`'s host).
fn link_of(mail: &str) -> String {
    let url = mail
        .split_whitespace()
        .find(|word| word.contains("/extend?token="))
        .unwrap_or_else(|| panic!("no link in {mail}"));
    url[url.find("/v1/").unwrap()..].to_owned()
}

fn token_of(link: &str) -> &str {
    link.split_once("token=").unwrap().1
}

async fn extend(app: &TestApp, id: Uuid, token: &str, minutes: i64) -> reqwest::Response {
    app.request(Method::POST, &format!("/v1/reservations/{id}/extend"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&minutes={minutes}"))
        .send()
        .await
        .unwrap()
}

async fn reservation(app: &TestApp, booked: &Booked) -> Value {
    expect_status(app.get_reservation(booked, "").await, StatusCode::OK).await
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_reminder_comes_once_and_its_link_extends_once(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let booked = ending_soon(&app, "remind@example.com", 2, -30).await;
    assert!(
        reminders_to(&app, "remind@example.com").is_empty(),
        "not before its time"
    );
    let mails = wait_for_reminders(&app, "remind@example.com", 15).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reminders_to(&app, "remind@example.com").len(), 1, "once");
    let link = link_of(&mails[0]);
    let before = reservation(&app, &booked).await;

    // The page offers the steps and changes nothing, however often it is fetched.
    for _ in 0..2 {
        let html = expect_page(app.get(&link, None).await, StatusCode::OK).await;
        assert!(
            html.contains("Extend by 15 minutes") && html.contains("method=\"post\""),
            "{html}"
        );
    }
    assert_eq!(reservation(&app, &booked).await, before);

    let extended = extend(&app, booked.id, token_of(&link), 15).await;
    assert_eq!(extended.status(), StatusCode::OK);
    let after = reservation(&app, &booked).await;
    let ends = |r: &Value| {
        r["ends_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    assert_eq!(ends(&after) - ends(&before), chrono::Duration::minutes(15));
    assert_eq!(after["version"], before["version"].as_i64().unwrap() + 1);
    // Billed as `PATCH` bills: the whole new window at the locked rate.
    assert_eq!(after["minutes"], before["minutes"].as_i64().unwrap() + 15);

    // Used once: the form and the page are gone.
    assert_eq!(
        extend(&app, booked.id, token_of(&link), 15).await.status(),
        StatusCode::GONE
    );
    assert_eq!(app.get(&link, None).await.status(), StatusCode::GONE);
    assert_eq!(
        reservation(&app, &booked).await["version"],
        after["version"]
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_changed_reservation_is_reminded_of_its_new_end_only(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let booked = ending_soon(&app, "moved@example.com", 2, -30).await;
    // Moved a few seconds later before the first reminder was due.
    let current = reservation(&app, &booked).await;
    let ends_at = current["ends_at"]
        .as_str()
        .unwrap()
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap()
        + chrono::Duration::seconds(3);
    let changed = app
        .request(Method::PATCH, &format!("/v1/reservations/{}", booked.id))
        .bearer_auth(&booked.token)
        .json(&json!({"ends_at": ends_at.to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    let version = reservation(&app, &booked).await["version"]
        .as_i64()
        .unwrap();

    let mails = wait_for_reminders(&app, "moved@example.com", 15).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails = if mails.is_empty() {
        mails
    } else {
        reminders_to(&app, "moved@example.com")
    };
    assert_eq!(mails.len(), 1, "{mails:?}");
    let link = link_of(&mails[0]);
    assert!(
        token_of(&link).starts_with(&format!("{version}.")),
        "{link}"
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn no_reminder_for_a_cancelled_or_ended_reservation(db: PgPool) {
    let app = TestApp::spawn(db).await;
    // Running: ended early.
    let ended = ending_soon(&app, "ended@example.com", 2, -30).await;
    app.end_now(&ended).await;
    // Not started yet: cancelled.
    let cancelled = ending_soon(&app, "cancelled@example.com", 2, 1).await;
    expect_status(
        app.post(
            &format!("/v1/reservations/{}/cancel", cancelled.id),
            &json!({}),
            Some(&cancelled.token),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    // A reservation confirmed alongside is reminded: the jobs do run.
    ending_soon(&app, "control@example.com", 2, -30).await;
    assert_eq!(
        wait_for_reminders(&app, "control@example.com", 15)
            .await
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(reminders_to(&app, "ended@example.com").is_empty());
    assert!(reminders_to(&app, "cancelled@example.com").is_empty());
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_link_cannot_extend_into_another_booking_or_beyond_its_steps(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let booked = ending_soon(&app, "blocked@example.com", 1, -30).await;
    let link = link_of(&wait_for_reminders(&app, "blocked@example.com", 15).await[0]);
    let current = reservation(&app, &booked).await;
    // Someone books the spot from this reservation's end.
    let next = app
        .book(
            &json!({"spot_id": current["spot_id"], "starts_at": current["ends_at"],
                    "duration_minutes": 30, "email": "next@example.com"}),
            None,
        )
        .await;
    app.save_card_and_confirm(&next, "pm_card_visa").await;

    assert_eq!(
        extend(&app, booked.id, token_of(&link), 15).await.status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        extend(&app, booked.id, token_of(&link), 45).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // A forged token, or one of another reservation, is not found.
    let token = token_of(&link);
    let flipped = if token.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{flipped}", &token[..token.len() - 1]);
    assert_eq!(
        extend(&app, booked.id, &forged, 15).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        extend(&app, next.id, token_of(&link), 15).await.status(),
        StatusCode::NOT_FOUND
    );
    // A form the page never sends is a problem, like any bad input.
    let no_token = app
        .request(
            Method::POST,
            &format!("/v1/reservations/{}/extend", booked.id),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body("minutes=15")
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = no_token.json().await.unwrap();
    assert_eq!(
        (problem["status"].as_u64(), problem["code"].as_str()),
        (Some(422), Some("validation_failed")),
        "{problem}"
    );
    assert_eq!(reservation(&app, &booked).await, current, "nothing changed");
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn when_redis_loses_the_reminder_the_reconciler_sends_it(db: PgPool) {
    let app = TestApp::spawn_with(db, &[("RECONCILE_INTERVAL_SECONDS", "1")]).await;
    ending_soon(&app, "lost@example.com", 1, -30).await;
    app.flush_jobs().await;
    let mails = wait_for_reminders(&app, "lost@example.com", 15).await;
    assert_eq!(mails.len(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reminders_to(&app, "lost@example.com").len(), 1, "once");
}
