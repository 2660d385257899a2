//! What a new user meets first: the commands of `scripts/run.sh` and the container health
//! check, the settings' error messages, emails without a mail server, the API's development
//! webhook secret shared with the Stripe imitation, and `GET /v1/config` for a web app. (The
//! imitation's own command, `fake-stripe save-card`, is tested in its crate.)

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{TestApp, database_url, expect_status, insert_spot};

/// Runs the `curbside` binary with only the given environment (no `.env` is read from the
/// test's directory: the manifest directory has none). Awaited, not blocking: the app it
/// talks to runs on the test's own single-threaded runtime.
async fn curbside(args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_curbside"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("curbside runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_first_start_imports_the_built_in_city_once(db: PgPool) {
    let url = database_url(&db);
    let env = [("DATABASE_URL", url.as_str())];
    let first = curbside(&["import-meters", "--if-empty"], &env).await;
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("imported 13415/13415 rows"));
    assert!(String::from_utf8_lossy(&first.stdout).contains("inserted 13415"));

    let again = curbside(&["import-meters", "--if-empty"], &env).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        !stderr(&again).contains("imported"),
        "a second start imports nothing: {}",
        stderr(&again)
    );
    let spots: i64 = sqlx::query_scalar("select count(*) from spots")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(spots, 13_415);

    // A typo in a borough is refused, not ignored.
    let typo = curbside(&["import-meters", "--rate", "Manhatan=500"], &env).await;
    assert!(!typo.status.success());
    assert!(
        stderr(&typo).contains("`Manhatan` is not a borough"),
        "{}",
        stderr(&typo)
    );
}

#[tokio::test]
async fn an_unreachable_database_is_named_with_its_cause_once() {
    let output = curbside(
        &["migrate"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/curbside")],
    )
    .await;
    assert!(!output.status.success());
    let text = stderr(&output);
    let error = text
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {text}"));
    assert!(error.contains("127.0.0.1:1 (database curbside"), "{error}");
    assert!(error.to_lowercase().contains("refused"), "{error}");
    assert!(!text.contains("pool timed out"), "{text}");
    assert_eq!(text.matches("cannot connect").count(), 1, "{text}");
}

#[tokio::test]
async fn production_names_every_missing_setting_in_one_run() {
    let output = curbside(&["migrate"], &[("APP_ENV", "production")]).await;
    assert!(!output.status.success());
    let text = stderr(&output);
    for name in [
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_SECRET",
        "PUBLIC_BASE_URL",
        "PUBLIC_APP_URL",
        "CORS_ALLOWED_ORIGINS",
        "STRIPE_SECRET_KEY",
        "STRIPE_PUBLISHABLE_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "SMTP_URL",
        "EMAIL_FROM",
    ] {
        assert!(
            text.contains(&format!("configuration error: {name}: must be set")),
            "{name} missing from:\n{text}"
        );
    }
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn the_health_check_command_asks_the_running_server(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let bind = app.address.trim_start_matches("http://").to_owned();
    let up = curbside(&["healthcheck"], &[("BIND_ADDR", &bind)]).await;
    assert!(up.status.success(), "{}", stderr(&up));
    let wildcard = bind.replace("127.0.0.1", "0.0.0.0");
    let via_wildcard = curbside(&["healthcheck"], &[("BIND_ADDR", &wildcard)]).await;
    assert!(via_wildcard.status.success(), "{}", stderr(&via_wildcard));
    let down = curbside(&["healthcheck"], &[("BIND_ADDR", "127.0.0.1:1")]).await;
    assert!(!down.status.success());
    assert!(stderr(&down).contains("http://127.0.0.1:1/healthz"));
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_worker_warns_at_once_when_redis_does_not_answer(db: PgPool) {
    let url = database_url(&db);
    let mut worker = Command::new(env!("CARGO_BIN_EXE_curbside"))
        .arg("worker")
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = worker.stdout.take().unwrap();
    let found = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|_| Instant::now() < deadline)
            .find(|line| line.contains("Redis does not answer"))
    });
    let line = tokio::time::timeout(Duration::from_secs(30), found).await;
    let _ = worker.kill();
    let _ = worker.wait();
    let line = line.expect("the worker logs within 30 s").unwrap();
    let line = line.expect("a warning about Redis");
    assert!(line.contains("127.0.0.1:1"), "{line}");
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn without_smtp_emails_are_written_to_the_mail_folder(db: PgPool) {
    let spot = insert_spot(&db, "MAIL-1", 40.7580, -73.9855, 120, 450).await;
    let dir = std::env::temp_dir().join(format!("curbside-mail-{}", uuid::Uuid::new_v4()));
    let dir_text = dir.to_str().unwrap().to_owned();
    let app = TestApp::spawn_with(db, &[("SMTP_URL", ""), ("MAIL_DIR", &dir_text)]).await;
    let booked = expect_status(
        app.post(
            "/v1/reservations",
            &json!({"spot_id": spot, "duration_minutes": 30, "email": "files@example.com"}),
            None,
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let secret = booked["payment"]["client_secret"].as_str().unwrap();
    let (status, _) = app
        .stripe
        .confirm_setup_intent(secret, "pm_card_visa")
        .await
        .unwrap();
    assert_eq!(status, 200);
    // The webhook confirms the booking; its email is delivered by a job.
    let deadline = Instant::now() + Duration::from_secs(20);
    let message = loop {
        let files: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.filter_map(Result::ok).collect())
            .unwrap_or_default();
        if let Some(file) = files.first() {
            break std::fs::read_to_string(file.path()).unwrap();
        }
        assert!(Instant::now() < deadline, "no email file in {dir_text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(message.contains("To: files@example.com"), "{message}");
    assert!(message.contains("Your parking is booked"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_imitation_and_the_api_agree_on_the_development_webhook_secret() {
    let config = curbside::config::Config::from_lookup(|_| None).unwrap();
    assert_eq!(
        config.stripe_webhook_secret.expose_secret(),
        fake_stripe::DEFAULT_WEBHOOK_SECRET
    );
}

#[sqlx::test(migrator = "curbside::db::MIGRATOR")]
async fn a_web_app_learns_the_publishable_key_and_booking_rules(db: PgPool) {
    let app = TestApp::spawn_with(
        db,
        &[
            ("STRIPE_PUBLISHABLE_KEY", "pk_test_web_app"),
            ("HOLD_MINUTES", "12"),
        ],
    )
    .await;
    let response = app.get("/v1/config", None).await;
    assert_eq!(
        response.headers()["cache-control"].to_str().unwrap(),
        "public, max-age=300"
    );
    let settings = expect_status(response, StatusCode::OK).await;
    assert_eq!(
        settings,
        json!({
            "stripe_publishable_key": "pk_test_web_app",
            "currency": "usd",
            "hold_minutes": 12,
            "min_reservation_minutes": 5,
            "max_days_ahead": 30,
        })
    );
}
