use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{TestApp, expect_status};

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn health_and_readiness_with_everything_up(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let health = expect_status(app.get("/healthz", None).await, StatusCode::OK).await;
    assert_eq!(health["status"], "ok");
    let ready = expect_status(app.get("/readyz", None).await, StatusCode::OK).await;
    assert_eq!(
        ready,
        serde_json::json!({"status": "ok", "postgres": "ok", "redis": "ok"})
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn readiness_fails_while_redis_is_unreachable(db: PgPool) {
    // Nothing listens on port 1; the app must still start and report the outage.
    let app = TestApp::spawn_with(db, &[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let ready = expect_status(
        app.get("/readyz", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(ready["redis"], "unreachable");
    assert_eq!(ready["postgres"], "ok");
    // Liveness does not depend on Redis.
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn metrics_count_requests_by_route_and_status(db: PgPool) {
    let app = TestApp::spawn(db).await;
    for _ in 0..3 {
        app.get("/v1/me", None).await;
    }
    app.get("/v1/does-not-exist", None).await;
    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/v1/me",status="401"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn the_openapi_description_covers_every_route(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let spec: Value = expect_status(app.get("/openapi.json", None).await, StatusCode::OK).await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    let expected = [
        ("/v1/auth/sign-up", "post"),
        ("/v1/auth/sign-in", "post"),
        ("/v1/auth/refresh", "post"),
        ("/v1/auth/sign-out", "post"),
        ("/v1/auth/password", "put"),
        ("/v1/me", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ];
    for (path, method) in expected {
        assert!(
            spec["paths"][path][method].is_object(),
            "{method} {path} is not described"
        );
    }
    assert!(spec["components"]["schemas"]["Problem"].is_object());
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());

    let docs = app.get("/docs/", None).await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
}
