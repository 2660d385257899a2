//! The PostgreSQL pool and the embedded migrations.

use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::Config;

/// The migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects to `DATABASE_URL`. Ten connections: measured here, larger pools were slower on
/// two cores (see PERFORMANCE.md).
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    pool_options()
        .connect(config.database_url())
        .await
        .context("cannot connect to PostgreSQL at DATABASE_URL")
}

/// The pool for read-only queries: the replica at `DATABASE_READ_URL`, or the primary.
/// Lazy, so a replica that is down does not stop the API from starting.
pub fn connect_read(config: &Config, primary: &PgPool) -> anyhow::Result<PgPool> {
    match &config.database_read_url {
        Some(url) => pool_options()
            .connect_lazy(url.expose_secret())
            .context("DATABASE_READ_URL is not a valid PostgreSQL URL"),
        None => Ok(primary.clone()),
    }
}

fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(5))
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("cannot apply database migrations")
}
