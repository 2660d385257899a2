//! What a driver is told the bill is: receipts as JSON and as a page, the receipt and
//! "changed" emails, the rate locked at booking; and the reads that have no other test
//! (the reservation list's cursor, search on `DATABASE_READ_URL`).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{
    Booked, TestApp, database_url, expect_page, expect_problem, expect_status, insert_spot,
};
use crate::tcp_proxy::{Link, TcpProxy};

async fn wait_for_mail(app: &TestApp, needle: &str) -> String {
    app.smtp
        .wait_for(Duration::from_secs(10), |m| {
            m.header("Subject").is_some_and(|s| s.contains(needle))
        })
        .await
        .unwrap_or_else(|| panic!("no '{needle}' email: {:?}", app.smtp.mails()))
        .text()
}

async fn paid(app: &TestApp, booked: &Booked) -> Value {
    let payment = app
        .wait_for_payment(booked, |p| p["payment_status"] == "paid")
        .await;
    assert_eq!(payment["payment_status"], "paid", "{payment}");
    payment
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_receipt_itemises_the_bill_at_the_rate_locked_at_booking(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "RC-1", 40.758, -73.985, 120, 450).await;
    let booked = app.book_as_guest(spot, "receipt@example.com", 30).await;
    app.save_card_and_confirm(&booked, "pm_card_visa").await;
    expect_problem(
        app.get_reservation(&booked, "/receipt").await,
        StatusCode::CONFLICT,
        "invalid_state",
    )
    .await;

    // The operator raises the rate after the booking: this booking keeps its rate.
    sqlx::query("update spots set rate_cents_per_hour = 900 where id = $1")
        .bind(spot)
        .execute(&db)
        .await
        .unwrap();
    // Let a whole minute start, so the bill is more than the minimum charge would be.
    sqlx::query("update reservations set starts_at = starts_at - interval '20 minutes', ends_at = ends_at - interval '20 minutes' where id = $1")
        .bind(booked.id)
        .execute(&db)
        .await
        .unwrap();
    let ended = app.end_now(&booked).await;
    paid(&app, &booked).await;
    let minutes = ended["minutes"].as_i64().unwrap();
    assert!((20..=21).contains(&minutes), "{ended}");
    let amount = (minutes * 450 + 59) / 60;
    assert_eq!(ended["amount_cents"].as_i64(), Some(amount.max(50)));

    let receipt = expect_status(
        app.get_reservation(&booked, "/receipt").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(receipt["minutes_billed"].as_i64(), Some(minutes));
    assert_eq!(receipt["rate_cents_per_hour"], 450);
    assert_eq!(receipt["amount_cents"].as_i64(), Some(amount));
    assert_eq!(receipt["card"], json!({"brand": "visa", "last4": "4242"}));
    assert_eq!(receipt["payment_intent"]["status"], "succeeded");
    assert_eq!(receipt["spot"]["meter_number"], "RC-1");
    assert_eq!(receipt["time_zone"], "America/New_York");
    let local = receipt["starts_at_local"].as_str().unwrap();
    let utc = receipt["starts_at"].as_str().unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(local).unwrap(),
        chrono::DateTime::parse_from_rfc3339(utc).unwrap()
    );
    assert!(
        local.ends_with("-05:00") || local.ends_with("-04:00"),
        "{local}"
    );

    let page = app
        .request(
            Method::GET,
            &format!("/v1/reservations/{}/receipt", booked.id),
        )
        .bearer_auth(&booked.token)
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    let page = expect_page(page, StatusCode::OK).await;
    let dollars = format!("${}.{:02}", amount / 100, amount % 100);
    for line in [
        format!("Minutes: {minutes}"),
        "Rate:    $4.50/hour".to_owned(),
        format!("Amount:  {dollars}"),
    ] {
        assert!(page.contains(&line), "{line} not in {page}");
    }
    assert!(page.contains("the visa card ending in 4242"), "{page}");

    // The email shows the same lines.
    let email = wait_for_mail(&app, "receipt").await;
    for line in [
        format!("Minutes: {minutes}"),
        "Rate:    $4.50/hour".to_owned(),
        format!("Amount:  {dollars}"),
    ] {
        assert!(email.contains(&line), "{line} not in {email}");
    }
    assert!(email.contains("the visa card ending in 4242"), "{email}");

    // Nobody else's.
    let stranger = app.sign_up("stranger@example.com").await;
    let path = format!("/v1/reservations/{}/receipt", booked.id);
    expect_problem(
        app.get(&path, Some(&stranger.access_token)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_problem(
        app.get(&path, Some(&format!("cg_{}", "B".repeat(43))))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        app.get(&path, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn an_extension_is_announced_with_its_new_end_and_quote(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let spot = insert_spot(&db, "RC-2", 40.758, -73.985, 240, 450).await;
    let booked = app.book_as_guest(spot, "changed@example.com", 30).await;
    app.save_card_and_confirm(&booked, "pm_card_visa").await;
    let starts_at = chrono::DateTime::parse_from_rfc3339(
        expect_status(app.get_reservation(&booked, "").await, StatusCode::OK).await["starts_at"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let ends_at = starts_at + chrono::Duration::minutes(90);
    let changed = expect_status(
        app.send_json(
            Method::PATCH,
            &format!("/v1/reservations/{}", booked.id),
            &json!({"ends_at": ends_at.to_rfc3339()}),
            Some(&booked.token),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["amount_cents"], 675);
    let email = wait_for_mail(&app, "changed").await;
    let new_end = ends_at
        .with_timezone(&chrono_tz::America::New_York)
        .format("%-I:%M %p")
        .to_string();
    assert!(email.contains("Quote: $6.75"), "{email}");
    let to_line = email
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap_or_default();
    assert!(to_line.contains(&new_end), "{new_end} not in {email}");
    assert!(
        email.contains(&format!("Reservation {}", booked.id)),
        "{email}"
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn the_reservation_list_pages_through_every_booking_once(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let driver = app.sign_up("lister@example.com").await;
    let mut booked = Vec::new();
    for n in 0..5 {
        let spot = insert_spot(&db, &format!("RC-L{n}"), 40.758, -73.985, 120, 450).await;
        booked.push(app.book_as_driver(spot, &driver.access_token, 30).await.id);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/reservations?limit=2".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = expect_status(
            app.get(&path, Some(&driver.access_token)).await,
            StatusCode::OK,
        )
        .await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|r| r["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let mut expected = booked.clone();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, expected, "each once: {seen:?}");
    expect_problem(
        app.get(
            "/v1/reservations?cursor=not-a-cursor",
            Some(&driver.access_token),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn search_reads_from_database_read_url(db: PgPool) {
    let primary = database_url(&db);
    let (scheme, rest) = primary.split_once("://").unwrap();
    let (credentials, location) = rest.rsplit_once('@').map_or(("", rest), |(c, l)| (c, l));
    let (host_port, path) = location.split_once('/').unwrap();
    let target: std::net::SocketAddr = tokio::net::lookup_host(if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    })
    .await
    .unwrap()
    .next()
    .unwrap();
    let proxy = TcpProxy::start(target).await;
    let at = if credentials.is_empty() {
        String::new()
    } else {
        format!("{credentials}@")
    };
    let replica = format!("{scheme}://{at}{}/{path}", proxy.addr);
    let app = TestApp::spawn_with(
        db.clone(),
        &[
            ("DATABASE_READ_URL", replica.as_str()),
            ("SEARCH_FROM_MEMORY", "false"),
        ],
    )
    .await;
    let spot = insert_spot(&db, "RC-R", 40.758, -73.985, 120, 450).await;

    let search = "/v1/spots?lat=40.758&lng=-73.985&radius=1";
    let found = expect_status(app.get(search, None).await, StatusCode::OK).await;
    assert_eq!(found["items"][0]["id"], spot.to_string());
    // Cut the "replica": search fails as unavailable, bookings (on the primary) go on.
    proxy.set(Link::Cut);
    let refused = app.get(search, None).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    app.book_as_guest(spot, "primary@example.com", 30).await;
}
