//! Settings, read once at start-up from the environment (and `.env` in development).
//!
//! A missing or malformed setting stops start-up with one line naming it. In production
//! every setting that has a development default must be given explicitly, so a server can
//! never run in production on a development secret or database by accident.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

/// The JWT secret used when none is set in development; refused in production.
const DEV_JWT_SECRET: &str = "development-only-jwt-secret-change-me-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// Which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub bind_addr: SocketAddr,
    pub database_url: SecretString,
    /// An optional read replica for spot search; the primary when unset.
    pub database_read_url: Option<SecretString>,
    pub redis_url: SecretString,
    /// Prefix of every Redis key, so several deployments (or test runs) can share a Redis.
    pub redis_key_prefix: String,
    pub jwt_secret: SecretString,
    pub public_base_url: String,
    /// The web app's address, where emails send people (to pay a bill, to regain access),
    /// without a trailing slash. Its pages are at the paths `links` builds.
    pub public_app_url: String,
    pub cors_allowed_origins: CorsOrigins,
    /// Requests per minute per client on every route.
    pub rate_limit_per_minute: u32,
    /// Sign-in and sign-up attempts per minute, per IP and per email.
    pub auth_rate_limit_per_minute: u32,
    /// How long a booking holds its spot waiting for a saved card.
    pub hold_minutes: u32,
    /// How long a quote binds its price.
    pub quote_validity_minutes: u32,
    /// How long before its end a confirmed reservation's driver is reminded.
    pub reminder_minutes: u32,
    pub stripe_secret_key: SecretString,
    /// Given to browsers (`GET /v1/config`) for Stripe.js; not a secret.
    pub stripe_publishable_key: String,
    pub stripe_webhook_secret: SecretString,
    /// Stripe's API, or a local imitation of it (`fake-stripe`) in development.
    pub stripe_api_base: String,
    /// The shortest booking, and the default length of a search window.
    pub min_reservation_minutes: u32,
    /// Where emails go: an SMTP server, or in development without `SMTP_URL` a folder.
    pub mail: MailTransport,
    /// The sender of every email, e.g. `Curbside <no-reply@example.com>`.
    pub email_from: String,
    /// How often the reconciler looks for work a lost job left undone.
    pub reconcile_interval: std::time::Duration,
    /// Jobs one worker process runs at once, in each of its two lanes.
    pub worker_concurrency: u32,
    /// Spot searches sent to PostgreSQL at once; the rest wait their turn. About four per
    /// database core: more adds little throughput, and left the jobs that end reservations
    /// without CPU during a burst; fewer cost searches throughput (BENCHMARKS.md).
    pub search_concurrency: u32,
    /// Connections served at once; more wait to be accepted. Below the process's file
    /// descriptor limit, so a flood of connections cannot stop the server from accepting.
    pub max_connections: u32,
    /// How long a connection may take to send a request's headers before it is closed.
    pub header_read_timeout: std::time::Duration,
    /// Take the client address from the last `X-Forwarded-For` entry (set by the Nginx in
    /// front). Off by default: a client could otherwise pick its own rate-limit bucket.
    pub trust_forwarded_for: bool,
    /// Answer `GET /v1/spots` from the replica's picture of the curb (`spots::picture`)
    /// while it is current; off, or while it is not, PostgreSQL answers.
    pub search_from_memory: bool,
    /// Live availability streams (`GET /v1/spots/events`) one process serves at once.
    pub max_streams: u32,
    /// Streams one client address may hold open at once.
    pub max_streams_per_client: u32,
}

/// How emails leave the process.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// `SMTP_URL`: `smtp://host:port` (plain), `smtps://…` or `smtp://…?tls=required`.
    Smtp(SecretString),
    /// Development without `SMTP_URL`: each message is written to `MAIL_DIR` as an `.eml`
    /// file, readable without running a mail server.
    Files(std::path::PathBuf),
}

/// One setting that is missing or malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name}: {message}")]
pub struct ConfigError {
    pub name: &'static str,
    pub message: String,
}

/// Every setting that is missing or malformed, so one run names them all.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|error| error.name).collect()
    }
}

impl std::error::Error for ConfigErrors {}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "configuration error: {error}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads the process environment (into which `main` loads `.env`, once, in development).
    pub fn from_env() -> Result<Self, ConfigErrors> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any source of variables (the environment, or a map in
    /// tests). Every problem is reported, not only the first.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        let vars = Vars {
            lookup: &lookup,
            errors: RefCell::new(Vec::new()),
        };
        let app_env = match vars.get("APP_ENV").as_deref() {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(other) => {
                return Err(ConfigErrors(vec![ConfigError {
                    name: "APP_ENV",
                    message: format!("must be `development` or `production`, not `{other}`"),
                }]));
            }
        };
        let dev = |default: &str| (app_env == AppEnv::Development).then(|| default.to_owned());

        let jwt_secret = vars.required("JWT_SECRET", dev(DEV_JWT_SECRET));
        if !jwt_secret.is_empty() && jwt_secret.len() < 32 {
            vars.fail("JWT_SECRET", "must be at least 32 bytes long");
        }
        if app_env == AppEnv::Production && jwt_secret == DEV_JWT_SECRET {
            vars.fail(
                "JWT_SECRET",
                "is the development secret; set a random one in production",
            );
        }
        let cors = vars.required("CORS_ALLOWED_ORIGINS", dev("*"));
        let public_base_url = vars.required("PUBLIC_BASE_URL", dev("http://127.0.0.1:8080"));
        let public_app_url = vars.required("PUBLIC_APP_URL", dev("http://localhost:5173"));
        let stripe_api_base = vars
            .get("STRIPE_API_BASE")
            .unwrap_or_else(|| "https://api.stripe.com/".into());

        let config = Self {
            app_env,
            bind_addr: vars
                .parsed("BIND_ADDR", "127.0.0.1:8080")
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
            database_url: vars
                .required(
                    "DATABASE_URL",
                    dev("postgres://postgres:postgres@127.0.0.1:5432/curbside"),
                )
                .into(),
            database_read_url: vars.get("DATABASE_READ_URL").map(Into::into),
            redis_url: vars
                .required("REDIS_URL", dev("redis://127.0.0.1:6379"))
                .into(),
            redis_key_prefix: vars.get("REDIS_KEY_PREFIX").unwrap_or("curbside".into()),
            jwt_secret: jwt_secret.into(),
            public_base_url: vars
                .check("PUBLIC_BASE_URL", parse_base_url(&public_base_url))
                .unwrap_or_default(),
            public_app_url: vars
                .check("PUBLIC_APP_URL", parse_base_url(&public_app_url))
                .unwrap_or_default(),
            cors_allowed_origins: vars
                .check("CORS_ALLOWED_ORIGINS", parse_cors(&cors, app_env))
                .unwrap_or(CorsOrigins::List(Vec::new())),
            rate_limit_per_minute: vars.positive("RATE_LIMIT_PER_MINUTE", 600),
            auth_rate_limit_per_minute: vars.positive("AUTH_RATE_LIMIT_PER_MINUTE", 10),
            hold_minutes: vars.positive("HOLD_MINUTES", 15),
            quote_validity_minutes: vars.positive("QUOTE_VALIDITY_MINUTES", 10),
            reminder_minutes: vars.positive("REMINDER_MINUTES", 10),
            stripe_secret_key: vars
                .required("STRIPE_SECRET_KEY", dev("sk_test_curbside_development"))
                .into(),
            stripe_publishable_key: vars
                .check(
                    "STRIPE_PUBLISHABLE_KEY",
                    parse_publishable_key(&vars.required(
                        "STRIPE_PUBLISHABLE_KEY",
                        dev("pk_test_curbside_development"),
                    )),
                )
                .unwrap_or_default(),
            stripe_webhook_secret: vars
                .required("STRIPE_WEBHOOK_SECRET", dev("whsec_curbside_development"))
                .into(),
            stripe_api_base: vars
                .check(
                    "STRIPE_API_BASE",
                    parse_stripe_api_base(&stripe_api_base, app_env),
                )
                .unwrap_or_default(),
            min_reservation_minutes: vars.positive("MIN_RESERVATION_MINUTES", 5),
            mail: match vars.get("SMTP_URL") {
                Some(url) => MailTransport::Smtp(url.into()),
                None if app_env == AppEnv::Development => MailTransport::Files(
                    vars.get("MAIL_DIR").unwrap_or_else(|| "mail".into()).into(),
                ),
                None => {
                    vars.fail("SMTP_URL", "must be set in production");
                    MailTransport::Files(std::path::PathBuf::new())
                }
            },
            email_from: vars.required("EMAIL_FROM", dev("Curbside <no-reply@curbside.localhost>")),
            reconcile_interval: std::time::Duration::from_secs(
                vars.positive("RECONCILE_INTERVAL_SECONDS", 30).into(),
            ),
            worker_concurrency: vars.positive("WORKER_CONCURRENCY", 32),
            search_concurrency: vars.positive("SEARCH_CONCURRENCY", 8),
            max_connections: vars.positive("MAX_CONNECTIONS", 4096),
            header_read_timeout: std::time::Duration::from_secs(
                vars.positive("HEADER_READ_TIMEOUT_SECONDS", 10).into(),
            ),
            trust_forwarded_for: vars.parsed("TRUST_FORWARDED_FOR", "false").unwrap_or(false),
            search_from_memory: vars.parsed("SEARCH_FROM_MEMORY", "true").unwrap_or(true),
            max_streams: vars.positive("MAX_STREAMS", 10_000),
            max_streams_per_client: vars.positive("MAX_STREAMS_PER_CLIENT", 16),
        };
        match vars.errors.into_inner() {
            errors if errors.is_empty() => Ok(config),
            errors => Err(ConfigErrors(errors)),
        }
    }

    pub fn is_production(&self) -> bool {
        self.app_env == AppEnv::Production
    }

    pub fn database_url(&self) -> &str {
        self.database_url.expose_secret()
    }

    pub fn hold_length(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.hold_minutes))
    }

    pub fn reminder_lead(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.reminder_minutes))
    }

    pub fn quote_validity(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.quote_validity_minutes))
    }

    pub fn min_reservation_length(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.min_reservation_minutes))
    }
}

/// Reads variables and collects every problem; a setting in error gets a placeholder value
/// so the rest can still be checked, and the configuration is never built from it.
struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    errors: RefCell<Vec<ConfigError>>,
}

impl Vars<'_> {
    /// The value, with blank treated as unset.
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn fail(&self, name: &'static str, message: impl Into<String>) {
        let mut errors = self.errors.borrow_mut();
        // One line per setting: the first problem found with it.
        if errors.iter().all(|error| error.name != name) {
            errors.push(ConfigError {
                name,
                message: message.into(),
            });
        }
    }

    /// The value of a check; `None` after recording why it failed.
    fn check<T>(&self, name: &'static str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.fail(name, message)).ok()
    }

    fn required(&self, name: &'static str, default: Option<String>) -> String {
        self.get(name).or(default).unwrap_or_else(|| {
            self.fail(name, "must be set in production");
            String::new()
        })
    }

    fn parsed<T>(&self, name: &'static str, default: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let raw = self.get(name).unwrap_or_else(|| default.to_owned());
        let parsed = raw
            .parse()
            .map_err(|error| format!("cannot parse `{raw}`: {error}"));
        self.check(name, parsed)
    }

    fn positive(&self, name: &'static str, default: u32) -> u32 {
        let value = self
            .parsed::<u32>(name, &default.to_string())
            .and_then(|value| {
                let positive = (value > 0).then_some(value);
                self.check(name, positive.ok_or("must be greater than zero".to_owned()))
            });
        value.unwrap_or(default)
    }
}

fn parse_base_url(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    if !(raw.starts_with("http://") || raw.starts_with("https://")) {
        return Err(format!("must be an http(s) URL, not `{raw}`"));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// Stripe's publishable keys start with `pk_`; a secret key here would be handed to every
/// browser, so anything else is refused.
fn parse_publishable_key(raw: &str) -> Result<String, String> {
    if raw.is_empty() || raw.starts_with("pk_test_") || raw.starts_with("pk_live_") {
        Ok(raw.to_owned())
    } else {
        Err("must be a publishable key (pk_test_… or pk_live_…), never a secret key".into())
    }
}

/// Stripe's base URL; production talks to Stripe over TLS only, never to an imitation.
fn parse_stripe_api_base(raw: &str, app_env: AppEnv) -> Result<String, String> {
    let error = |message: &str| message.to_owned();
    let plain_http = raw.starts_with("http://");
    if !(plain_http || raw.starts_with("https://")) {
        return Err(error("must be an http(s) URL"));
    }
    if plain_http && app_env == AppEnv::Production {
        return Err(error("must be https in production"));
    }
    Ok(format!("{}/", raw.trim_end_matches('/')))
}

fn parse_cors(raw: &str, app_env: AppEnv) -> Result<CorsOrigins, String> {
    let error = |message: String| message;
    if raw == "*" {
        return match app_env {
            AppEnv::Development => Ok(CorsOrigins::Any),
            AppEnv::Production => Err(error("must list origins in production, not `*`".into())),
        };
    }
    let origins: Vec<String> = raw
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    for origin in &origins {
        let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
            && axum::http::HeaderValue::from_str(origin).is_ok();
        if !valid {
            return Err(error(format!("`{origin}` is not an http(s) origin")));
        }
    }
    Ok(CorsOrigins::List(origins))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const PRODUCTION: &[(&str, &str)] = &[
        ("APP_ENV", "production"),
        ("DATABASE_URL", "postgres://db/curbside"),
        ("REDIS_URL", "redis://cache"),
        ("JWT_SECRET", "a-production-secret-of-enough-length-0123"),
        ("PUBLIC_BASE_URL", "https://curbside.example"),
        ("PUBLIC_APP_URL", "https://app.curbside.example"),
        ("CORS_ALLOWED_ORIGINS", "https://app.curbside.example"),
        ("STRIPE_SECRET_KEY", "sk_live_123"),
        ("STRIPE_PUBLISHABLE_KEY", "pk_live_123"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_123"),
        ("SMTP_URL", "smtps://user:pass@smtp.example.com"),
        ("EMAIL_FROM", "Curbside <no-reply@curbside.example>"),
    ];

    #[test]
    fn development_needs_nothing() {
        let config = config(&[]).unwrap();
        assert_eq!(config.app_env, AppEnv::Development);
        assert_eq!(config.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.cors_allowed_origins, CorsOrigins::Any);
        assert_eq!(config.auth_rate_limit_per_minute, 10);
        assert_eq!(config.rate_limit_per_minute, 600);
    }

    #[test]
    fn production_with_everything_set_starts() {
        let config = config(PRODUCTION).unwrap();
        assert!(config.is_production());
        assert_eq!(
            config.cors_allowed_origins,
            CorsOrigins::List(vec!["https://app.curbside.example".into()])
        );
    }

    const REQUIRED_IN_PRODUCTION: [&str; 11] = [
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
    ];

    #[test]
    fn production_refuses_each_development_default() {
        for missing in REQUIRED_IN_PRODUCTION {
            let vars: Vec<_> = PRODUCTION
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            assert_eq!(config(&vars).unwrap_err().names(), [missing]);
        }
    }

    #[test]
    fn production_reports_every_missing_setting_at_once() {
        let errors = config(&[("APP_ENV", "production"), ("HOLD_MINUTES", "0")]).unwrap_err();
        let mut names = errors.names();
        names.sort_unstable();
        let mut expected = REQUIRED_IN_PRODUCTION.to_vec();
        expected.push("HOLD_MINUTES");
        expected.sort_unstable();
        assert_eq!(names, expected);
        let text = errors.to_string();
        assert_eq!(text.lines().count(), expected.len(), "{text}");
        assert!(
            text.lines()
                .all(|line| line.starts_with("configuration error: ")),
            "{text}"
        );
    }

    #[test]
    fn development_without_smtp_writes_emails_to_a_folder() {
        match config(&[]).unwrap().mail {
            MailTransport::Files(dir) => assert_eq!(dir, std::path::Path::new("mail")),
            other => panic!("expected files, got {other:?}"),
        }
        match config(&[("MAIL_DIR", "/tmp/mails")]).unwrap().mail {
            MailTransport::Files(dir) => assert_eq!(dir, std::path::Path::new("/tmp/mails")),
            other => panic!("expected files, got {other:?}"),
        }
        let smtp = config(&[("SMTP_URL", "smtp://127.0.0.1:1025")]).unwrap();
        assert!(matches!(smtp.mail, MailTransport::Smtp(_)));
    }

    #[test]
    fn a_secret_key_is_never_taken_for_the_publishable_key() {
        let error = config(&[("STRIPE_PUBLISHABLE_KEY", "sk_live_123")]).unwrap_err();
        assert_eq!(error.names(), ["STRIPE_PUBLISHABLE_KEY"]);
        let config = config(&[]).unwrap();
        assert_eq!(
            config.stripe_publishable_key,
            "pk_test_curbside_development"
        );
    }

    #[test]
    fn production_refuses_the_development_secret_and_wildcard_cors() {
        let mut vars = PRODUCTION.to_vec();
        vars.push(("JWT_SECRET", DEV_JWT_SECRET));
        vars.retain(|(k, v)| *k != "JWT_SECRET" || *v == DEV_JWT_SECRET);
        assert_eq!(config(&vars).unwrap_err().names(), ["JWT_SECRET"]);

        let mut vars = PRODUCTION.to_vec();
        vars.retain(|(k, _)| *k != "CORS_ALLOWED_ORIGINS");
        vars.push(("CORS_ALLOWED_ORIGINS", "*"));
        assert_eq!(config(&vars).unwrap_err().names(), ["CORS_ALLOWED_ORIGINS"]);

        let mut vars = PRODUCTION.to_vec();
        vars.push(("STRIPE_API_BASE", "http://127.0.0.1:12111"));
        assert_eq!(config(&vars).unwrap_err().names(), ["STRIPE_API_BASE"]);
    }

    #[test]
    fn malformed_values_name_the_setting() {
        let cases = [
            ("BIND_ADDR", "localhost"),
            ("APP_ENV", "staging"),
            ("RATE_LIMIT_PER_MINUTE", "lots"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "0"),
            ("JWT_SECRET", "short"),
            ("PUBLIC_BASE_URL", "curbside.example"),
            ("PUBLIC_APP_URL", "app.example"),
            ("CORS_ALLOWED_ORIGINS", "app.example"),
            ("TRUST_FORWARDED_FOR", "maybe"),
            ("MIN_RESERVATION_MINUTES", "-5"),
            ("HOLD_MINUTES", "0"),
            ("RECONCILE_INTERVAL_SECONDS", "0"),
            ("WORKER_CONCURRENCY", "many"),
            ("SEARCH_CONCURRENCY", "0"),
            ("MAX_CONNECTIONS", "0"),
            ("HEADER_READ_TIMEOUT_SECONDS", "soon"),
            ("STRIPE_API_BASE", "localhost:12111"),
        ];
        for (name, value) in cases {
            let error = config(&[(name, value)]).unwrap_err();
            assert_eq!(error.names(), [name], "{error}");
            assert!(error.to_string().starts_with("configuration error: "));
        }
    }
}
