//! A guest who lost the guest token gets a new one by email, once per link.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{TestApp, expect_problem, expect_status, insert_spot};

async fn ask_for_links(app: &TestApp, email: &str) -> Value {
    let response = app
        .post("/v1/reservations/access", &json!({"email": email}), None)
        .await;
    expect_status(response, StatusCode::ACCEPTED).await
}

/// The codes of the access email to `to`, by reservation id, from its links.
async fn emailed_codes(app: &TestApp, to: &str) -> Vec<(Uuid, String)> {
    let mail = app
        .smtp
        .wait_for(Duration::from_secs(10), |m| {
            m.header("To").is_some_and(|t| t.contains(to))
                && m.header("Subject").is_some_and(|s| s.contains("links"))
        })
        .await
        .unwrap_or_else(|| panic!("no access email to {to}: {:?}", app.smtp.mails()));
    mail.text()
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("/reservations/")?;
            let (id, code) = rest.split_once("/access?code=")?;
            Some((id.parse().ok()?, code.trim().to_owned()))
        })
        .collect()
}

async fn exchange(app: &TestApp, id: Uuid, code: &str) -> reqwest::Response {
    let path = format!("/v1/reservations/{id}/access");
    app.post(&path, &json!({"code": code}), None).await
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_guest_regains_access_with_a_single_use_code(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "GA-1", 40.758, -73.985, 120, 450).await;
    let booked = app.book_as_guest(spot, "forgetful@example.com", 30).await;
    app.save_card_and_confirm(&booked, "pm_card_visa").await;
    // The confirmation says how to get back in.
    let confirmation = app
        .smtp
        .wait_for(Duration::from_secs(10), |m| {
            m.header("Subject").is_some_and(|s| s.contains("booked"))
        })
        .await
        .unwrap();
    assert!(
        confirmation
            .text()
            .contains("http://localhost:5173/reservations/access"),
        "{}",
        confirmation.text()
    );

    let answer = ask_for_links(&app, "Forgetful@Example.com").await;
    let codes = emailed_codes(&app, "forgetful@example.com").await;
    assert_eq!(codes.len(), 1, "{codes:?}");
    let (id, code) = &codes[0];
    assert_eq!(*id, booked.id);

    let granted = expect_status(exchange(&app, booked.id, code).await, StatusCode::OK).await;
    let new_token = granted["guest_token"].as_str().unwrap();
    assert!(new_token.starts_with("cg_"));
    assert_eq!(granted["reservation"]["id"], booked.id.to_string());
    let path = format!("/v1/reservations/{}", booked.id);
    expect_status(app.get(&path, Some(new_token)).await, StatusCode::OK).await;
    expect_problem(
        app.get(&path, Some(&booked.token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Used once, never again.
    expect_problem(
        exchange(&app, booked.id, code).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    // An address with nothing to link to gets the same answer, and no email.
    assert_eq!(ask_for_links(&app, "nobody@example.com").await, answer);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        app.smtp
            .mails()
            .iter()
            .all(|m| !m.header("To").unwrap_or_default().contains("nobody"))
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn codes_expire_and_open_only_their_own_reservation(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "GA-2", 40.758, -73.985, 120, 450).await;
    let first = app.book_as_guest(spot, "two@example.com", 30).await;
    let other = insert_spot(&db, "GA-3", 40.759, -73.984, 120, 450).await;
    let second = app.book_as_guest(other, "two@example.com", 30).await;
    // A driver's reservation is reached by signing in, not by email links.
    let driver = app.sign_up("two-driver@example.com").await;
    let third = insert_spot(&db, "GA-4", 40.757, -73.986, 120, 450).await;
    app.book_as_driver(third, &driver.access_token, 30).await;
    ask_for_links(&app, "two-driver@example.com").await;

    ask_for_links(&app, "two@example.com").await;
    let codes = emailed_codes(&app, "two@example.com").await;
    let mut ids: Vec<Uuid> = codes.iter().map(|(id, _)| *id).collect();
    ids.sort();
    let mut expected = vec![first.id, second.id];
    expected.sort();
    assert_eq!(ids, expected);
    let code_of = |id: Uuid| codes.iter().find(|(i, _)| *i == id).unwrap().1.clone();

    // Another reservation's code, a made-up one, an expired one: all refused alike.
    expect_problem(
        exchange(&app, first.id, &code_of(second.id)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    expect_problem(
        exchange(&app, first.id, "made-up").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    sqlx::query("update guest_access_codes set expires_at = now() - interval '1 second' where reservation_id = $1")
        .bind(first.id)
        .execute(&db)
        .await
        .unwrap();
    expect_problem(
        exchange(&app, first.id, &code_of(first.id)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    // The refusals did not touch the other code.
    expect_status(
        exchange(&app, second.id, &code_of(second.id)).await,
        StatusCode::OK,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        app.smtp
            .mails()
            .iter()
            .all(|m| !m.header("To").unwrap_or_default().contains("two-driver"))
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn asking_for_links_is_rate_limited_per_address_and_per_email(db: PgPool) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTH_RATE_LIMIT_PER_MINUTE", "3"),
            ("TRUST_FORWARDED_FOR", "true"),
        ],
    )
    .await;
    let ask = |ip: &'static str, email: &'static str| {
        app.request(reqwest::Method::POST, "/v1/reservations/access")
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(
            ask("198.51.100.1", "a@example.com").await.unwrap().status(),
            StatusCode::ACCEPTED
        );
    }
    // The same email from elsewhere, then the same address for other emails.
    assert_eq!(
        ask("198.51.100.2", "a@example.com").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        ask("198.51.100.1", "b@example.com").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        ask("198.51.100.3", "c@example.com").await.unwrap().status(),
        StatusCode::ACCEPTED
    );
}
