use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{PASSWORD, TestApp, expect_problem, expect_status, invalid_fields};

async fn user_count(db: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from users")
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn sign_up_creates_a_driver_and_signs_in(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let response = app
        .post(
            "/v1/auth/sign-up",
            &json!({"email": "  Ada@Example.COM ", "password": PASSWORD, "name": " Ada "}),
            None,
        )
        .await;
    let body = expect_status(response, StatusCode::CREATED).await;
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["user"]["name"], "Ada");
    assert_eq!(body["user"]["role"], "driver");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["user"].get("password_hash").is_none());

    let access = body["access_token"].as_str().unwrap();
    let me = expect_status(app.get("/v1/me", Some(access)).await, StatusCode::OK).await;
    assert_eq!(me, body["user"]);

    let stored: String = sqlx::query_scalar("select password_hash from users")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn an_email_is_taken_whatever_its_case(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.sign_up("ada@example.com").await;
    let response = app
        .post(
            "/v1/auth/sign-up",
            &json!({"email": "ADA@example.com", "password": "another password"}),
            None,
        )
        .await;
    expect_problem(response, StatusCode::CONFLICT, "email_taken").await;
    assert_eq!(user_count(&app.db).await, 1);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn invalid_sign_ups_list_every_bad_field_and_create_nothing(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let cases = [
        (
            json!({"email": "ada@example.com", "password": "short"}),
            vec!["password"],
        ),
        (
            json!({"email": "ada@example.com", "password": "x".repeat(129)}),
            vec!["password"],
        ),
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            vec!["email"],
        ),
        (
            json!({"email": "nope", "password": "short", "name": "  "}),
            vec!["email", "password", "name"],
        ),
    ];
    for (body, fields) in cases {
        let response = app.post("/v1/auth/sign-up", &body, None).await;
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(invalid_fields(&problem), fields, "{body}");
    }
    assert_eq!(user_count(&app.db).await, 0);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn sign_in_refuses_wrong_password_and_unknown_email_alike(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.sign_up("ada@example.com").await;

    let ok = app.sign_in("ADA@example.com", PASSWORD).await;
    let body = expect_status(ok, StatusCode::OK).await;
    assert_eq!(body["user"]["email"], "ada@example.com");

    let wrong_password = app.sign_in("ada@example.com", "wrong password").await;
    let unknown_email = app.sign_in("bob@example.com", PASSWORD).await;
    let a = expect_problem(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let b = expect_problem(
        unknown_email,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(a, b);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn refresh_rotates_and_a_reused_token_revokes_the_session(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let first = app.sign_up("ada@example.com").await;

    let body = expect_status(app.refresh(&first.refresh_token).await, StatusCode::OK).await;
    let second = crate::helpers::Session::from(&body);
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(app.me_status(&second.access_token).await, StatusCode::OK);

    // The first token again: someone else has a copy. The whole session ends.
    let reused = app.refresh(&first.refresh_token).await;
    expect_problem(reused, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    assert_eq!(
        app.me_status(&second.access_token).await,
        StatusCode::UNAUTHORIZED
    );
    let after = app.refresh(&second.refresh_token).await;
    expect_problem(after, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;

    let unknown = app.refresh("not-a-token").await;
    expect_problem(unknown, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn concurrent_refreshes_with_one_token_yield_one_pair(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let session = app.sign_up("ada@example.com").await;
    let (a, b) = tokio::join!(
        app.refresh(&session.refresh_token),
        app.refresh(&session.refresh_token)
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn sign_out_revokes_access_and_refresh_tokens_at_once(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let session = app.sign_up("ada@example.com").await;
    let other = app.sign_up("bob@example.com").await;

    let response = app
        .request(Method::POST, "/v1/auth/sign-out")
        .bearer_auth(&session.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let me = app.get("/v1/me", Some(&session.access_token)).await;
    expect_problem(me, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let refresh = app.refresh(&session.refresh_token).await;
    expect_problem(refresh, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    // Another user's session is untouched.
    assert_eq!(app.me_status(&other.access_token).await, StatusCode::OK);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn changing_the_password_revokes_every_other_session(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let here = app.sign_up("ada@example.com").await;
    let body = expect_status(
        app.sign_in("ada@example.com", PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    let elsewhere = crate::helpers::Session::from(&body);

    let wrong = app
        .send_json(
            Method::PUT,
            "/v1/auth/password",
            &json!({"current_password": "not my password", "new_password": "a new password"}),
            Some(&here.access_token),
        )
        .await;
    let problem =
        expect_problem(wrong, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(invalid_fields(&problem), ["current_password"]);
    assert_eq!(app.me_status(&elsewhere.access_token).await, StatusCode::OK);

    let changed = app
        .send_json(
            Method::PUT,
            "/v1/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "a new password"}),
            Some(&here.access_token),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);

    assert_eq!(app.me_status(&here.access_token).await, StatusCode::OK);
    assert_eq!(
        app.me_status(&elsewhere.access_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.refresh(&elsewhere.refresh_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.sign_in("ada@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.sign_in("ada@example.com", "a new password")
            .await
            .status(),
        StatusCode::OK
    );
}

/// Signs claims with the app's own secret, to forge tokens the server must still refuse.
fn forge(app: &TestApp, algorithm: Algorithm, claims: serde_json::Value) -> String {
    let key = EncodingKey::from_secret(app.config.jwt_secret.expose_secret().as_bytes());
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).unwrap()
}

fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn forged_tampered_and_expired_tokens_are_refused(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let session = app.sign_up("ada@example.com").await;
    let claims = claims_of(&session.access_token);

    // Control: the forging itself produces a token the server accepts.
    let genuine = forge(&app, Algorithm::HS256, claims.clone());
    assert_eq!(app.me_status(&genuine).await, StatusCode::OK);

    let mut expired = claims.clone();
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 60);
    let mut wrong_audience = claims.clone();
    wrong_audience["aud"] = json!("someone-else");
    let mut other_user = claims.clone();
    other_user["sub"] = json!(uuid::Uuid::new_v4());

    let header_none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let alg_none = format!("{header_none}.{payload}.");

    let mut tampered = session.access_token.clone();
    let signature_start = tampered.rfind('.').unwrap() + 1;
    let flipped = if &tampered[signature_start..=signature_start] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(signature_start..=signature_start, flipped);

    let tokens = [
        ("expired", forge(&app, Algorithm::HS256, expired)),
        (
            "wrong audience",
            forge(&app, Algorithm::HS256, wrong_audience),
        ),
        (
            "another user's id in the session",
            forge(&app, Algorithm::HS256, other_user),
        ),
        ("HS512", forge(&app, Algorithm::HS512, claims.clone())),
        ("alg none", alg_none),
        ("tampered signature", tampered),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in tokens {
        let response = app.get("/v1/me", Some(&token)).await;
        let problem = expect_problem(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        assert_eq!(problem["status"], 401, "{what}");
    }

    let anonymous = app.get("/v1/me", None).await;
    expect_problem(anonymous, StatusCode::UNAUTHORIZED, "missing_credentials").await;
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn sign_in_is_rate_limited_per_address_and_per_email(db: PgPool) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("AUTH_RATE_LIMIT_PER_MINUTE", "3"),
            ("TRUST_FORWARDED_FOR", "true"),
        ],
    )
    .await;
    let attempt = |ip: &'static str, email: &'static str| {
        app.request(Method::POST, "/v1/auth/sign-in")
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email, "password": "wrong password"}))
            .send()
    };

    for _ in 0..3 {
        let response = attempt("203.0.113.1", "a@example.com").await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = attempt("203.0.113.1", "b@example.com").await.unwrap();
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    expect_problem(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // The same email from a fresh address is limited too: guessing one account's
    // password from many addresses does not get around the limit.
    let same_email = attempt("203.0.113.2", "a@example.com").await.unwrap();
    expect_problem(same_email, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let fresh = attempt("203.0.113.3", "c@example.com").await.unwrap();
    assert_eq!(fresh.status(), StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn every_route_is_rate_limited_per_client(db: PgPool) {
    let app = TestApp::spawn_with(db, &[("RATE_LIMIT_PER_MINUTE", "5")]).await;
    for _ in 0..5 {
        assert_eq!(
            app.get("/v1/me", None).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = app.get("/v1/me", None).await;
    assert!(limited.headers().contains_key("retry-after"));
    expect_problem(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Probes are never limited.
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn create_operator_gives_an_account_the_operator_role(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let session = app.sign_up("ops@example.com").await;

    let run = |email: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_curbside"))
            .args(["create-operator", email])
            .env("DATABASE_URL", crate::helpers::database_url(&app.db))
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let missing = run("nobody@example.com");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no account"));

    let done = run("OPS@example.com");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let me = expect_status(
        app.get("/v1/me", Some(&session.access_token)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["role"], "operator");
}
