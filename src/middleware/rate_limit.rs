//! The per-client limit on every `/v1` route (`RATE_LIMIT_PER_MINUTE`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::rate_limit::client_ip;
use crate::state::AppState;

/// Counts the request against its client's limit. Unlike the sign-in limit
/// it fails open: losing Redis should not take the whole API down with it.
pub async fn limit_every_route(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let ip = client_ip(request.headers(), peer, state.config.trust_forwarded_for);
    match state
        .limiter
        .hit(
            "client",
            &ip.to_string(),
            state.config.rate_limit_per_minute,
        )
        .await
    {
        Err(error @ AppError::TooManyRequests { .. }) => error.into_response(),
        _ => next.run(request).await,
    }
}
