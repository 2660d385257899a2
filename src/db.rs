//! The PostgreSQL pool and the embedded migrations.

use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use sqlx::PgPool;
use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::Config;

/// The migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects to `DATABASE_URL`. Ten connections: measured here, larger pools were slower on
/// two cores (see PERFORMANCE.md).
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    pool_options()
        .connect_with(connect_options(config.database_url(), "DATABASE_URL")?)
        .await
        .context("cannot connect to PostgreSQL at DATABASE_URL")
}

/// Every query of the app is a prepared statement whose generic plan is as good as a
/// custom one; PostgreSQL would otherwise keep re-planning the spot search (its generic
/// plan's cost estimate is pessimistic), which costs more than running it (BENCHMARKS.md).
fn connect_options(url: &str, name: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)
        .with_context(|| format!("{name} is not a valid PostgreSQL URL"))?;
    Ok(options.options([("plan_cache_mode", "force_generic_plan")]))
}

/// The pool for read-only queries: the replica at `DATABASE_READ_URL`, or the primary.
/// Lazy, so a replica that is down does not stop the API from starting.
pub fn connect_read(config: &Config, primary: &PgPool) -> anyhow::Result<PgPool> {
    match &config.database_read_url {
        Some(url) => Ok(pool_options()
            .connect_lazy_with(connect_options(url.expose_secret(), "DATABASE_READ_URL")?)),
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
