//! Settings, read once at start-up from the environment (and `.env` in development).
//!
//! A missing or malformed setting stops start-up with one line naming it. In production
//! every setting that has a development default must be given explicitly, so a server can
//! never run in production on a development secret or database by accident.

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
    pub cors_allowed_origins: CorsOrigins,
    /// Requests per minute per client on every route.
    pub rate_limit_per_minute: u32,
    /// Sign-in and sign-up attempts per minute, per IP and per email.
    pub auth_rate_limit_per_minute: u32,
    /// How long a booking holds its spot waiting for a saved card.
    pub hold_minutes: u32,
    pub stripe_secret_key: SecretString,
    pub stripe_webhook_secret: SecretString,
    /// Stripe's API, or a local imitation of it (`curbside fake-stripe`) in development.
    pub stripe_api_base: String,
    /// The shortest booking, and the default length of a search window.
    pub min_reservation_minutes: u32,
    /// Where emails go out: `smtp://host:port` (plain), `smtps://…` or `smtp://…?tls=required`.
    pub smtp_url: SecretString,
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
    /// Take the client address from the last `X-Forwarded-For` entry (set by the Nginx in
    /// front). Off by default: a client could otherwise pick its own rate-limit bucket.
    pub trust_forwarded_for: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration error: {name}: {message}")]
pub struct ConfigError {
    pub name: &'static str,
    pub message: String,
}

impl Config {
    /// Reads the process environment, after loading `.env` if there is one.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal (production, CI); a broken one is not silently ignored.
        if let Err(error) = dotenvy::dotenv()
            && !error.not_found()
        {
            return Err(ConfigError {
                name: ".env",
                message: error.to_string(),
            });
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any source of variables (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars { lookup: &lookup };
        let app_env = match vars.get("APP_ENV").as_deref() {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(other) => {
                return Err(ConfigError {
                    name: "APP_ENV",
                    message: format!("must be `development` or `production`, not `{other}`"),
                });
            }
        };
        let dev = |default: &str| (app_env == AppEnv::Development).then(|| default.to_owned());

        let jwt_secret = vars.required("JWT_SECRET", dev(DEV_JWT_SECRET))?;
        if jwt_secret.len() < 32 {
            return Err(ConfigError {
                name: "JWT_SECRET",
                message: "must be at least 32 bytes long".into(),
            });
        }
        if app_env == AppEnv::Production && jwt_secret == DEV_JWT_SECRET {
            return Err(ConfigError {
                name: "JWT_SECRET",
                message: "is the development secret; set a random one in production".into(),
            });
        }

        let cors = vars.required("CORS_ALLOWED_ORIGINS", dev("*"))?;
        let cors_allowed_origins = parse_cors(&cors, app_env)?;

        Ok(Self {
            app_env,
            bind_addr: vars.parsed("BIND_ADDR", "127.0.0.1:8080")?,
            database_url: vars
                .required(
                    "DATABASE_URL",
                    dev("postgres://postgres:postgres@127.0.0.1:5432/curbside"),
                )?
                .into(),
            database_read_url: vars.get("DATABASE_READ_URL").map(Into::into),
            redis_url: vars
                .required("REDIS_URL", dev("redis://127.0.0.1:6379"))?
                .into(),
            redis_key_prefix: vars.get("REDIS_KEY_PREFIX").unwrap_or("curbside".into()),
            jwt_secret: jwt_secret.into(),
            public_base_url: parse_base_url(
                &vars.required("PUBLIC_BASE_URL", dev("http://127.0.0.1:8080"))?,
            )?,
            cors_allowed_origins,
            rate_limit_per_minute: vars.positive("RATE_LIMIT_PER_MINUTE", 600)?,
            auth_rate_limit_per_minute: vars.positive("AUTH_RATE_LIMIT_PER_MINUTE", 10)?,
            hold_minutes: vars.positive("HOLD_MINUTES", 15)?,
            stripe_secret_key: vars
                .required("STRIPE_SECRET_KEY", dev("sk_test_curbside_development"))?
                .into(),
            stripe_webhook_secret: vars
                .required("STRIPE_WEBHOOK_SECRET", dev("whsec_curbside_development"))?
                .into(),
            stripe_api_base: parse_stripe_api_base(
                &vars
                    .get("STRIPE_API_BASE")
                    .unwrap_or_else(|| "https://api.stripe.com/".into()),
                app_env,
            )?,
            min_reservation_minutes: vars.positive("MIN_RESERVATION_MINUTES", 5)?,
            smtp_url: vars
                .required("SMTP_URL", dev("smtp://127.0.0.1:1025"))?
                .into(),
            email_from: vars
                .required("EMAIL_FROM", dev("Curbside <no-reply@curbside.localhost>"))?,
            reconcile_interval: std::time::Duration::from_secs(
                vars.positive("RECONCILE_INTERVAL_SECONDS", 30)?.into(),
            ),
            worker_concurrency: vars.positive("WORKER_CONCURRENCY", 32)?,
            search_concurrency: vars.positive("SEARCH_CONCURRENCY", 8)?,
            trust_forwarded_for: vars.parsed("TRUST_FORWARDED_FOR", "false")?,
        })
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

    pub fn min_reservation_length(&self) -> chrono::Duration {
        chrono::Duration::minutes(i64::from(self.min_reservation_minutes))
    }
}

struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Vars<'_> {
    /// The value, with blank treated as unset.
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str, default: Option<String>) -> Result<String, ConfigError> {
        self.get(name).or(default).ok_or_else(|| ConfigError {
            name,
            message: "must be set in production".into(),
        })
    }

    fn parsed<T>(&self, name: &'static str, default: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let raw = self.get(name).unwrap_or_else(|| default.to_owned());
        raw.parse().map_err(|error| ConfigError {
            name,
            message: format!("cannot parse `{raw}`: {error}"),
        })
    }

    fn positive(&self, name: &'static str, default: u32) -> Result<u32, ConfigError> {
        let value: u32 = self.parsed(name, &default.to_string())?;
        if value == 0 {
            return Err(ConfigError {
                name,
                message: "must be greater than zero".into(),
            });
        }
        Ok(value)
    }
}

fn parse_base_url(raw: &str) -> Result<String, ConfigError> {
    if !(raw.starts_with("http://") || raw.starts_with("https://")) {
        return Err(ConfigError {
            name: "PUBLIC_BASE_URL",
            message: format!("must be an http(s) URL, not `{raw}`"),
        });
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// Stripe's base URL; production talks to Stripe over TLS only, never to an imitation.
fn parse_stripe_api_base(raw: &str, app_env: AppEnv) -> Result<String, ConfigError> {
    let error = |message: &str| ConfigError {
        name: "STRIPE_API_BASE",
        message: message.into(),
    };
    let plain_http = raw.starts_with("http://");
    if !(plain_http || raw.starts_with("https://")) {
        return Err(error("must be an http(s) URL"));
    }
    if plain_http && app_env == AppEnv::Production {
        return Err(error("must be https in production"));
    }
    Ok(format!("{}/", raw.trim_end_matches('/')))
}

fn parse_cors(raw: &str, app_env: AppEnv) -> Result<CorsOrigins, ConfigError> {
    let error = |message: String| ConfigError {
        name: "CORS_ALLOWED_ORIGINS",
        message,
    };
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

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
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
        ("CORS_ALLOWED_ORIGINS", "https://app.curbside.example"),
        ("STRIPE_SECRET_KEY", "sk_live_123"),
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

    #[test]
    fn production_refuses_each_development_default() {
        for missing in [
            "DATABASE_URL",
            "REDIS_URL",
            "JWT_SECRET",
            "PUBLIC_BASE_URL",
            "CORS_ALLOWED_ORIGINS",
            "STRIPE_SECRET_KEY",
            "STRIPE_WEBHOOK_SECRET",
            "SMTP_URL",
            "EMAIL_FROM",
        ] {
            let vars: Vec<_> = PRODUCTION
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            assert_eq!(config(&vars).unwrap_err().name, missing);
        }
    }

    #[test]
    fn production_refuses_the_development_secret_and_wildcard_cors() {
        let mut vars = PRODUCTION.to_vec();
        vars.push(("JWT_SECRET", DEV_JWT_SECRET));
        vars.retain(|(k, v)| *k != "JWT_SECRET" || *v == DEV_JWT_SECRET);
        assert_eq!(config(&vars).unwrap_err().name, "JWT_SECRET");

        let mut vars = PRODUCTION.to_vec();
        vars.retain(|(k, _)| *k != "CORS_ALLOWED_ORIGINS");
        vars.push(("CORS_ALLOWED_ORIGINS", "*"));
        assert_eq!(config(&vars).unwrap_err().name, "CORS_ALLOWED_ORIGINS");

        let mut vars = PRODUCTION.to_vec();
        vars.push(("STRIPE_API_BASE", "http://127.0.0.1:12111"));
        assert_eq!(config(&vars).unwrap_err().name, "STRIPE_API_BASE");
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
            ("CORS_ALLOWED_ORIGINS", "app.example"),
            ("TRUST_FORWARDED_FOR", "maybe"),
            ("MIN_RESERVATION_MINUTES", "-5"),
            ("HOLD_MINUTES", "0"),
            ("RECONCILE_INTERVAL_SECONDS", "0"),
            ("WORKER_CONCURRENCY", "many"),
            ("SEARCH_CONCURRENCY", "0"),
            ("STRIPE_API_BASE", "localhost:12111"),
        ];
        for (name, value) in cases {
            let error = config(&[(name, value)]).unwrap_err();
            assert_eq!(error.name, name, "{error}");
            assert!(error.to_string().starts_with("configuration error: "));
        }
    }
}
