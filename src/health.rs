//! Liveness, readiness and metrics for the load balancer and Prometheus.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The process is up. Touches nothing else, so it stays fast under any load.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ok")]
    status: &'static str,
    postgres: &'static str,
    redis: &'static str,
}

/// PostgreSQL and Redis both answer: the process can serve traffic.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is unreachable", body = Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<Readiness>) {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let postgres = async {
        sqlx::query!("select 1 as up")
            .fetch_one(&state.db)
            .await
            .is_ok()
    };
    let redis = async {
        let mut conn = state.redis.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    };
    let (postgres, redis) = tokio::join!(
        tokio::time::timeout(TIMEOUT, postgres),
        tokio::time::timeout(TIMEOUT, redis)
    );
    let (postgres, redis) = (postgres.unwrap_or(false), redis.unwrap_or(false));
    let word = |up: bool| if up { "ok" } else { "unreachable" };
    let status = if postgres && redis {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if status == StatusCode::OK {
            "ok"
        } else {
            "unavailable"
        },
        postgres: word(postgres),
        redis: word(redis),
    };
    (status, axum::Json(body))
}

/// Prometheus text exposition: request counts and latency histograms by route and status,
/// and the emails the outbox gave up on.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text format", body = String, content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // A scrape while PostgreSQL is down keeps the last count rather than failing.
    let failed = async {
        let mut conn = state.db.acquire().await.ok()?;
        crate::email::outbox::count_failed(&mut conn).await.ok()
    };
    if let Ok(Some(count)) = tokio::time::timeout(Duration::from_secs(1), failed).await {
        state.metrics.set_emails_failed(count);
    }
    let spots = state.curb.picture().len();
    state
        .metrics
        .set_curb(spots, state.curb.is_current(), state.curb.streams.open());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// `curbside healthcheck`: asks this machine's server for `/healthz`, for container health
/// checks in an image that has no curl. The server listens on `bind_addr`; a wildcard
/// address is reached over loopback.
pub async fn probe(bind_addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let ip = match bind_addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let url = format!(
        "http://{}/healthz",
        std::net::SocketAddr::new(ip, bind_addr.port())
    );
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?
        .get(&url)
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("{url} did not answer: {error}"))?;
    anyhow::ensure!(
        response.status() == StatusCode::OK,
        "{url} answered {}",
        response.status()
    );
    Ok(())
}
