//! Fixed-window rate limits kept in Redis, so a limit holds across every API replica.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use redis::aio::ConnectionManager;
use sha2::{Digest as _, Sha256};

use crate::error::AppError;

const WINDOW_SECONDS: u64 = 60;

#[derive(Clone)]
pub struct RateLimiter {
    redis: ConnectionManager,
    prefix: String,
}

impl RateLimiter {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
        }
    }

    /// Counts one request for `key` in `bucket` and refuses it once the current minute has
    /// seen more than `limit`. Keys are hashed, so no email address is stored in Redis.
    pub async fn hit(&self, bucket: &str, key: &str, limit: u32) -> Result<(), AppError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let window = now / WINDOW_SECONDS;
        let digest = Sha256::digest(key.as_bytes());
        let redis_key = format!(
            "{}:rate:{bucket}:{}:{window}",
            self.prefix,
            hex::encode(&digest[..16])
        );
        let (count,): (u64,) = redis::pipe()
            .incr(&redis_key, 1)
            .expire(&redis_key, (WINDOW_SECONDS + 1) as i64)
            .ignore()
            .query_async(&mut self.redis.clone())
            .await
            .map_err(|error| {
                tracing::warn!(%error, "rate limiter cannot reach Redis");
                AppError::ServiceUnavailable(
                    "the rate limiter is unavailable; retry shortly".into(),
                )
            })?;
        if count > u64::from(limit) {
            return Err(AppError::TooManyRequests {
                retry_after: Duration::from_secs(WINDOW_SECONDS - now % WINDOW_SECONDS),
            });
        }
        Ok(())
    }
}

/// The address a request came from: the TCP peer, or behind a trusted proxy the last
/// `X-Forwarded-For` entry (the one the proxy itself appended).
pub fn client_ip(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trust_forwarded_for: bool,
) -> IpAddr {
    let forwarded = trust_forwarded_for
        .then(|| {
            headers
                .get("x-forwarded-for")?
                .to_str()
                .ok()?
                .rsplit(',')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .flatten();
    forwarded
        .or(peer.map(|addr| addr.ip()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_used_only_when_trusted() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        let peer = Some(SocketAddr::from(([127, 0, 0, 1], 4000)));
        assert_eq!(
            client_ip(&headers, peer, false),
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(client_ip(&headers, peer, true), IpAddr::from([2, 2, 2, 2]));
        assert_eq!(
            client_ip(&HeaderMap::new(), peer, true),
            IpAddr::from([127, 0, 0, 1])
        );
    }
}
