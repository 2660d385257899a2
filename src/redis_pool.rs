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
