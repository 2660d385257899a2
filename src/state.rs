//! The state every handler, middleware and job shares: connections, clients and limits,
//! built once at start-up from the configuration. It sits below the features, which take
//! from it what they use; the route table that serves them is in `app`, above them.

use std::sync::Arc;

use anyhow::Context as _;
use redis::aio::ConnectionManager;
use secrecy::ExposeSecret as _;
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::auth::password::PasswordHasher;
use crate::auth::token::JwtKeys;
use crate::config::Config;
use crate::email::Mailer;
use crate::jobs::queue::JobQueue;
use crate::links::AppLinks;
use crate::metrics::Metrics;
use crate::payments::{PaymentGateway, PaymentsConfig, StripeGateway};
use crate::rate_limit::RateLimiter;
use crate::spots::curb::Curb;

/// State shared by every handler and job. Cloning it is one reference count: every
/// middleware and extractor takes a clone on every request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Clone)]
pub struct Shared {
    /// The settings, read once at start-up.
    pub config: Arc<Config>,
    /// The source of truth for every state. Ten connections (larger pools were slower on
    /// two cores); the job workers inside `serve` get a pool of their own.
    pub db: PgPool,
    /// Spot search reads here: a replica when `DATABASE_READ_URL` is set, else `db`.
    pub db_read: PgPool,
    /// One multiplexed, self-reconnecting connection (see `redis_pool`), shared by the rate
    /// limiter and the job queue.
    pub redis: ConnectionManager,
    /// Rate limits live in Redis so they hold across replicas.
    pub limiter: RateLimiter,
    /// Signs and checks access tokens (`JWT_SECRET`).
    pub jwt: Arc<JwtKeys>,
    /// Bounds concurrent argon2 work to the number of cores, so sign-ins cannot starve the
    /// async runtime.
    pub hasher: PasswordHasher,
    /// Bounds the spot searches PostgreSQL runs at once (`SEARCH_CONCURRENCY`), so the jobs
    /// that end reservations keep CPU during a burst of searches.
    pub search_permits: Arc<Semaphore>,
    /// Request counts and latencies, owned here rather than globally so each app built in
    /// one process (as the tests do) counts only its own.
    pub metrics: Arc<Metrics>,
    /// Stripe, or whatever speaks its API at `STRIPE_API_BASE`.
    pub payments: Arc<dyn PaymentGateway>,
    /// Delayed and background jobs, in Redis. Losing them is harmless: the reconciler
    /// finds the same work in PostgreSQL.
    pub jobs: JobQueue,
    /// Delivers outbox emails (SMTP, or files in development).
    pub mailer: Mailer,
    /// The web app's pages that emails link to (`PUBLIC_APP_URL`).
    pub links: AppLinks,
    /// This replica's picture of the curb and its live streams, kept current by the change
    /// feed that `serve` runs (`spots::feed`).
    pub curb: Arc<Curb>,
}

impl AppState {
    pub fn new(config: Config, db: PgPool) -> anyhow::Result<Self> {
        let redis = crate::redis_pool::connect(&config)?;
        let db_read = crate::db::connect_read(&config, &db)?;
        let payments = StripeGateway::new(
            &PaymentsConfig::new(
                config.stripe_secret_key.expose_secret(),
                config.stripe_webhook_secret.expose_secret(),
            )
            .with_api_base(&config.stripe_api_base),
        )
        .context("cannot set up the Stripe client")?;
        let mailer = Mailer::new(&config.mail, &config.email_from)?;
        Ok(Self(Arc::new(Shared {
            jobs: JobQueue::new(redis.clone(), &config.redis_key_prefix),
            mailer,
            links: AppLinks::new(&config.public_app_url, &config.public_base_url),
            payments: Arc::new(payments),
            db_read,
            limiter: RateLimiter::new(redis.clone(), &config.redis_key_prefix),
            jwt: Arc::new(JwtKeys::new(&config)),
            hasher: PasswordHasher::default(),
            search_permits: Arc::new(Semaphore::new(config.search_concurrency as usize)),
            curb: Arc::new(Curb::new(config.max_streams, config.max_streams_per_client)),
            metrics: Arc::new(Metrics::default()),
            config: Arc::new(config),
            db,
            redis,
        })))
    }

    /// The same state over another PostgreSQL pool: workers inside `serve` get their own,
    /// so a burst of requests queueing for connections cannot delay the jobs, nor the jobs
    /// the requests.
    pub fn with_pool(&self, db: PgPool) -> Self {
        Self(Arc::new(Shared {
            db,
            ..Shared::clone(&self.0)
        }))
    }
}
