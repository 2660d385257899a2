use curbside::app::Application;
use curbside::config::Config;
use fake_stripe::{FakeStripe, FakeStripeOptions};
use futures_util::TryStreamExt as _;
use redis::{AsyncCommands as _, Commands as _};
use secrecy::ExposeSecret as _;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::smtp_sink::SmtpSink;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

pub const PASSWORD: &str = "correct horse battery";

/// A running app (API and, unless asked otherwise, its job workers), a client for it, the
/// imitation of Stripe it talks to (which posts signed webhooks back), and an SMTP server
/// that keeps the emails it sends.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: PgPool,
    pub config: Config,
    pub stripe: FakeStripe,
    pub smtp: SmtpSink,
    /// The app's state: its picture of the curb and its streams.
    pub state: curbside::state::AppState,
    /// Stops the in-process workers when the test ends.
    _workers: Option<DropGuard>,
}

/// Settings for tests: a free port, this machine's Redis under a key prefix of its own, and
/// limits high enough that only the rate-limit tests meet them.
fn test_config(overrides: &[(&str, &str)], stripe: &FakeStripe, smtp: &SmtpSink) -> Config {
    let prefix = format!("curbside-test-{}", uuid::Uuid::new_v4());
    Config::from_lookup(|name| {
        if let Some((_, value)) = overrides.iter().find(|(key, _)| *key == name) {
            return Some(value.to_string());
        }
        match name {
            "BIND_ADDR" => Some("127.0.0.1:0".into()),
            "REDIS_URL" => std::env::var("REDIS_URL").ok(),
            "REDIS_KEY_PREFIX" => Some(prefix.clone()),
            "RATE_LIMIT_PER_MINUTE" | "AUTH_RATE_LIMIT_PER_MINUTE" => Some("100000".into()),
            "STRIPE_API_BASE" => Some(stripe.base_url()),
            "STRIPE_SECRET_KEY" => Some(fake_stripe::TEST_SECRET_KEY.into()),
            "STRIPE_WEBHOOK_SECRET" => Some(stripe.webhook_secret().into()),
            "SMTP_URL" => Some(smtp.url()),
            _ => None,
        }
    })
    .expect("test configuration is valid")
}

impl TestApp {
    pub async fn spawn(db: PgPool) -> Self {
        Self::spawn_with(db, &[]).await
    }

    /// Starts the app with some settings overridden (`("AUTH_RATE_LIMIT_PER_MINUTE", "3")`).
    pub async fn spawn_with(db: PgPool, overrides: &[(&str, &str)]) -> Self {
        Self::start(db, overrides, true).await
    }

    /// The API alone; jobs wait in Redis for a worker (see [`TestApp::worker_process`]).
    pub async fn spawn_without_worker(db: PgPool, overrides: &[(&str, &str)]) -> Self {
        Self::start(db, overrides, false).await
    }

    async fn start(db: PgPool, overrides: &[(&str, &str)], workers: bool) -> Self {
        // `TEST_LOG=1 scripts/test.sh …` shows the app's logs, 5xx causes included.
        if std::env::var_os("TEST_LOG").is_some() {
            curbside::telemetry::init(curbside::config::AppEnv::Development);
        }
        let stripe = FakeStripe::start(FakeStripeOptions {
            webhook_retry_delay: std::time::Duration::from_millis(100),
            ..FakeStripeOptions::default()
        })
        .await
        .expect("the Stripe imitation starts");
        let smtp = SmtpSink::start().await;
        let config = test_config(overrides, &stripe, &smtp);
        // The app's own pool, as the test made it (through a proxy, with its timeouts) but
        // with the server's session settings; `db` writes as any other client would.
        let app_db = db
            .options()
            .clone()
            .connect_lazy_with(curbside::db::with_session_settings(
                (*db.connect_options()).clone(),
            ));
        let app = Application::build(config.clone(), app_db)
            .await
            .expect("the app builds");
        let address = format!("http://{}", app.local_addr());
        let workers = workers.then(|| {
            let stop = CancellationToken::new();
            tokio::spawn(curbside::jobs::run(app.state().clone(), stop.clone()));
            stop.drop_guard()
        });
        stripe.set_webhook_url(Some(format!("{address}/v1/webhooks/stripe")));
        let state = app.state().clone();
        tokio::spawn(app.run_until(std::future::pending()));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap();
        Self {
            address,
            client,
            db,
            config,
            stripe,
            smtp,
            state,
            _workers: workers,
        }
    }

    /// Waits until this app's picture of the curb, and its streams, have every change
    /// committed so far (they follow PostgreSQL milliseconds behind).
    pub async fn settle(&self) {
        let high: i64 = sqlx::query_scalar(
            "select case when is_called then last_value else 0 end from spot_changes_id_seq",
        )
        .fetch_one(&self.db)
        .await
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !(self.state.curb.is_current() && self.state.curb.streams.delivered() >= high) {
            assert!(
                std::time::Instant::now() < deadline,
                "the picture did not reach change {high}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.address, path))
    }

    /// A GET; a spot search first waits for the picture to have every change made so far,
    /// as a client a few milliseconds later would see it.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        if path.starts_with("/v1/spots?") && self.config.search_from_memory {
            self.settle().await;
        }
        let mut request = self.request(Method::GET, path);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Response {
        let mut request = self.request(method, path).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    pub async fn post(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send_json(Method::POST, path, body, token).await
    }

    pub async fn sign_up(&self, email: &str) -> Session {
        let response = self
            .post(
                "/v1/auth/sign-up",
                &json!({"email": email, "password": PASSWORD, "name": "Test Driver"}),
                None,
            )
            .await;
        let body = expect_status(response, StatusCode::CREATED).await;
        Session::from(&body)
    }

    /// Signs up and gives the account the operator role (as `curbside make-operator` does).
    pub async fn sign_up_operator(&self, email: &str) -> Session {
        let session = self.sign_up(email).await;
        sqlx::query("update users set role = 'operator' where email = $1")
            .bind(email)
            .execute(&self.db)
            .await
            .unwrap();
        session
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Response {
        self.post(
            "/v1/auth/sign-in",
            &json!({"email": email, "password": password}),
            None,
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post(
            "/v1/auth/refresh",
            &json!({"refresh_token": refresh_token}),
            None,
        )
        .await
    }

    pub async fn me_status(&self, access_token: &str) -> StatusCode {
        self.get("/v1/me", Some(access_token)).await.status()
    }

    /// Deletes every job this app queued or scheduled in Redis, as a Redis failover would.
    pub async fn flush_jobs(&self) {
        let client = redis::Client::open(self.config.redis_url.expose_secret()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        // SCAN, not KEYS: one KEYS over a Redis holding many keys outlasts the client's
        // response timeout.
        let keys: Vec<String> = conn
            .scan_match(format!("{}:*", self.config.redis_key_prefix))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert!(
            !keys.is_empty(),
            "no jobs were queued under {}",
            self.config.redis_key_prefix
        );
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// `curbside worker` as a separate process with this app's settings; killed when the
    /// handle is dropped, so a failing test leaves no worker behind.
    pub fn worker_process(&self) -> WorkerProcess {
        std::process::Command::new(env!("CARGO_BIN_EXE_curbside"))
            .arg("worker")
            .env("DATABASE_URL", database_url(&self.db))
            .env("REDIS_URL", self.config.redis_url.expose_secret())
            .env("REDIS_KEY_PREFIX", &self.config.redis_key_prefix)
            .env("STRIPE_API_BASE", &self.config.stripe_api_base)
            .env(
                "STRIPE_SECRET_KEY",
                self.config.stripe_secret_key.expose_secret(),
            )
            .env(
                "STRIPE_WEBHOOK_SECRET",
                self.config.stripe_webhook_secret.expose_secret(),
            )
            .env("SMTP_URL", self.smtp.url())
            .env("RECONCILE_INTERVAL_SECONDS", "2")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .map(WorkerProcess)
            .expect("the worker starts")
    }
}

impl Drop for TestApp {
    /// Removes what the test left in the shared Redis: its rate-limit counters and the jobs
    /// it scheduled (holds expire and reservations end long after the test is over).
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.config.redis_url.expose_secret()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        // SCAN, as in `flush_jobs`: every key of the app starts with its prefix.
        let keys: Vec<String> = conn
            .scan_match::<_, String>(format!("{}:*", self.config.redis_key_prefix))
            .map(|keys| keys.filter_map(Result::ok).collect())
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
    }
}

/// A signed-in session's tokens.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
}

impl From<&Value> for Session {
    fn from(body: &Value) -> Self {
        Self {
            access_token: body["access_token"].as_str().unwrap().to_owned(),
            refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// Asserts the status and that the answer is a page for people; returns its HTML.
pub async fn expect_page(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    response.text().await.unwrap()
}

/// Asserts the status and returns the JSON body.
pub async fn expect_status(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

/// Asserts an RFC 9457 problem response with this status and code, and returns it.
pub async fn expect_problem(response: Response, status: StatusCode, code: &str) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = expect_status(response, status).await;
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem without {field}: {body}");
    }
    body
}

/// The field names a 422 problem lists.
pub fn invalid_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .expect("a validation problem lists its errors")
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect()
}

/// A URL for the test's own database, for running the `curbside` binary against it.
pub fn database_url(db: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let name = db
        .connect_options()
        .get_database()
        .expect("the test database has a name")
        .to_owned();
    let (url, query) = base.split_once('?').unwrap_or((&base, ""));
    let server = &url[..url.rfind('/').expect("DATABASE_URL names a database")];
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{server}/{name}{query}")
}

/// A booking as the API answered it.
#[derive(Debug, Clone)]
pub struct Booked {
    pub id: uuid::Uuid,
    /// The guest token (`cg_…`), or the driver's access token for a driver's booking.
    pub token: String,
    /// The SetupIntent's client secret, for saving the card.
    pub client_secret: String,
}

impl TestApp {
    /// Books `minutes` from now on `spot` as a guest with `email`.
    pub async fn book_as_guest(&self, spot: uuid::Uuid, email: &str, minutes: i64) -> Booked {
        let body = json!({"spot_id": spot, "duration_minutes": minutes, "email": email});
        self.book(&body, None).await
    }

    /// Books `minutes` from now on `spot` as the driver whose access token is given.
    pub async fn book_as_driver(&self, spot: uuid::Uuid, token: &str, minutes: i64) -> Booked {
        let body = json!({"spot_id": spot, "duration_minutes": minutes});
        self.book(&body, Some(token)).await
    }

    /// `POST /v1/reservations` with `body` (as a driver if a token is given), expecting 201.
    pub async fn book(&self, body: &Value, driver_token: Option<&str>) -> Booked {
        let booked = expect_status(
            self.post("/v1/reservations", body, driver_token).await,
            StatusCode::CREATED,
        )
        .await;
        Booked {
            id: booked["reservation"]["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            token: driver_token
                .or(booked["guest_token"].as_str())
                .expect("a guest booking has a guest token")
                .to_owned(),
            client_secret: booked["payment"]["client_secret"]
                .as_str()
                .unwrap()
                .to_owned(),
        }
    }

    /// Saves `card` (`pm_card_visa`…) at the imitation, as Stripe.js would, and confirms.
    pub async fn save_card_and_confirm(&self, booked: &Booked, card: &str) -> Value {
        let (status, answer) = self
            .stripe
            .confirm_setup_intent(&booked.client_secret, card)
            .await
            .unwrap();
        assert_eq!(status, 200, "saving {card}: {answer}");
        let path = format!("/v1/reservations/{}/confirm", booked.id);
        expect_status(
            self.post(&path, &json!({}), Some(&booked.token)).await,
            StatusCode::OK,
        )
        .await
    }

    /// Ends a running reservation now, through the API.
    pub async fn end_now(&self, booked: &Booked) -> Value {
        let path = format!("/v1/reservations/{}/end", booked.id);
        expect_status(
            self.post(&path, &json!({}), Some(&booked.token)).await,
            StatusCode::OK,
        )
        .await
    }

    /// `GET /v1/reservations/{id}{suffix}` with the booking's token.
    pub async fn get_reservation(&self, booked: &Booked, suffix: &str) -> Response {
        self.get(
            &format!("/v1/reservations/{}{suffix}", booked.id),
            Some(&booked.token),
        )
        .await
    }

    /// Polls `GET …/payment` until `done` holds, up to 15 s; the last answer either way.
    pub async fn wait_for_payment(&self, booked: &Booked, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let payment = expect_status(
                self.get_reservation(booked, "/payment").await,
                StatusCode::OK,
            )
            .await;
            if done(&payment) || tokio::time::Instant::now() > deadline {
                return payment;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

pub async fn reservation_count(db: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from reservations")
        .fetch_one(db)
        .await
        .unwrap()
}

/// A spot with the given maximum stay and hourly rate.
pub async fn insert_spot(
    db: &PgPool,
    meter: &str,
    lat: f64,
    lng: f64,
    max_stay_minutes: i32,
    rate_cents_per_hour: i32,
) -> uuid::Uuid {
    sqlx::query_scalar(
        "insert into spots (id, meter_number, lat, lng, borough, max_stay_minutes, rate_cents_per_hour)
         values ($1, $2, $3, $4, 'Manhattan', $5, $6) returning id",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(meter)
    .bind(lat)
    .bind(lng)
    .bind(max_stay_minutes)
    .bind(rate_cents_per_hour)
    .fetch_one(db)
    .await
    .expect("the spot is inserted")
}

/// A `curbside worker` child process.
pub struct WorkerProcess(std::process::Child);

impl WorkerProcess {
    /// SIGKILL: no goodbye; the jobs it was running stay claimed in Redis.
    pub fn kill(&mut self) {
        self.0.kill().expect("the worker can be killed");
        self.0.wait().expect("the killed worker is reaped");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
