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
