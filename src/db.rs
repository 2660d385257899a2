//! The PostgreSQL pool and the embedded migrations.

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool};

use crate::config::Config;

/// The migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long start-up waits for PostgreSQL's first answer.
const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `DATABASE_URL`. Ten connections: measured here, larger pools were slower on
/// two cores (see PERFORMANCE.md).
pub async fn connect(config: &Config) -> anyhow::Result<PgPool> {
    let options = connect_options(config.database_url(), "DATABASE_URL")?;
    check_reachable(&options).await?;
    pool_options()
        .connect_with(options)
        .await
        .context("cannot connect to PostgreSQL at DATABASE_URL")
}

/// One direct connection first: a pool that cannot connect only says "pool timed out",
/// while this names the server and the cause, once.
async fn check_reachable(options: &PgConnectOptions) -> anyhow::Result<()> {
    let server = format!(
        "{}:{} (database {}, DATABASE_URL)",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    );
    match tokio::time::timeout(FIRST_CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Err(_) => anyhow::bail!(
            "cannot connect to PostgreSQL at {server}: no answer within {} s",
            FIRST_CONNECT_TIMEOUT.as_secs()
        ),
        Ok(Err(error)) => {
            Err(anyhow::Error::new(error)
                .context(format!("cannot connect to PostgreSQL at {server}")))
        }
        Ok(Ok(connection)) => {
            // Closing politely is a courtesy; the pool opens its own connections.
            let _ = connection.close().await;
            Ok(())
        }
    }
}

/// Session settings for every connection of the server, measured on the spot search
/// (BENCHMARKS.md):
/// - generic plans: every query of the app is a prepared statement whose generic plan is as
///   good as a custom one, and PostgreSQL would otherwise re-plan the search on every call
///   (its generic cost estimate looks worse on paper), spending more planning than running;
/// - no JIT: with a million spots that pessimistic estimate crosses `jit_above_cost`, and
///   compiling the query took 400 ms of a 1 ms search;
/// - changes to the curb not announced with `NOTIFY`: it would make every booking commit
///   alone (migration 0013); the replicas' feed readers poll the change log instead.
pub fn with_session_settings(options: PgConnectOptions) -> PgConnectOptions {
    options.options([
        ("plan_cache_mode", "force_generic_plan"),
        ("jit", "off"),
        ("curbside.announce_changes", "off"),
    ])
}

fn connect_options(url: &str, name: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)
        .with_context(|| format!("{name} is not a valid PostgreSQL URL"))?;
    Ok(with_session_settings(options))
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
