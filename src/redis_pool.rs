//! The shared Redis connection.
//!
//! A `ConnectionManager` multiplexes every request over one connection and reconnects by
//! itself. It is created lazily, so the API starts (and `/readyz` reports the outage) while
//! Redis is down, and short timeouts keep a dead Redis from holding requests up.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret as _;

use crate::config::Config;

pub fn connect(config: &Config) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(config.redis_url.expose_secret())
        .context("REDIS_URL is not a valid Redis URL")?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1);
    ConnectionManager::new_lazy_with_config(client, manager_config)
        .context("cannot set up the Redis connection")
}

/// Logs a warning when Redis does not answer at start-up. The process starts anyway (jobs
/// wait, the reconciler redoes them from PostgreSQL, `/readyz` reports it), but an operator
/// should hear of it at once rather than from the first failing request.
pub async fn warn_if_unreachable(config: &Config, redis: &ConnectionManager) {
    let mut conn = redis.clone();
    let ping = redis::cmd("PING").query_async::<String>(&mut conn).await;
    if let Err(error) = ping {
        let server = redis::Client::open(config.redis_url.expose_secret())
            .map(|client| client.get_connection_info().addr().to_string())
            .unwrap_or_else(|_| "REDIS_URL".into());
        tracing::warn!(%server, %error, "Redis does not answer; jobs and rate limits wait for it");
    }
}
