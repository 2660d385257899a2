//! Bad input of every kind gets a problem+json answer and never a 5xx.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{PASSWORD, TestApp, expect_problem, invalid_fields};

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn malformed_json_is_a_bad_request(db: PgPool) {
    let app = TestApp::spawn(db).await;
    for body in [
        "{\"email\": ",
        "not json",
        "{\"email\": \"a@b.co\", \"password\": \"12345678\"} extra",
    ] {
        let response = app
            .request(Method::POST, "/v1/auth/sign-up")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn json_of_the_wrong_shape_names_the_field(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let cases = [
        (json!({"password": PASSWORD}), "email"),
        (json!({"email": 42, "password": PASSWORD}), "email"),
        (
            json!({"email": "a@example.com", "password": ["x"]}),
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD, "admin": true}),
            "admin",
        ),
        (json!("just a string"), "body"),
    ];
    for (body, field) in cases {
        let response = app.post("/v1/auth/sign-up", &body, None).await;
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(invalid_fields(&problem), [field], "{body}");
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_body_that_is_not_json_is_unsupported(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let form = app
        .request(Method::POST, "/v1/auth/sign-in")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=a%40example.com&password=12345678")
        .send()
        .await
        .unwrap();
    expect_problem(
        form,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let none = app
        .request(Method::POST, "/v1/auth/sign-in")
        .send()
        .await
        .unwrap();
    expect_problem(
        none,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn bodies_over_64_kib_are_refused(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let big =
        json!({"email": "a@example.com", "password": PASSWORD, "name": "x".repeat(70 * 1024)});
    let response = app.post("/v1/auth/sign-up", &big, None).await;
    expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let count: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn unknown_routes_and_wrong_methods_are_problems(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let missing = app.get("/v1/nothing-here", None).await;
    expect_problem(missing, StatusCode::NOT_FOUND, "not_found").await;

    let wrong_method = app
        .request(Method::DELETE, "/v1/auth/sign-in")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.headers()["allow"], "POST");
    expect_problem(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn every_response_carries_a_request_id(db: PgPool) {
    let app = TestApp::spawn(db).await;
    for path in ["/healthz", "/v1/me", "/v1/nothing-here"] {
        let response = app.get(path, None).await;
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{path}: {id}");
    }
    // A request id set by the proxy in front is kept, so logs of both can be joined.
    let response = app
        .request(Method::GET, "/healthz")
        .header("x-request-id", "from-nginx-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "from-nginx-123");
}
