//! Builds the application: the route table over the features and the middleware stack.
//!
//! `main` only parses the command line; tests build the very same `Application` on port 0.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::{Modify as _, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::{Config, CorsOrigins};
use crate::extract::BODY_LIMIT_BYTES;
use crate::openapi::{ApiDoc, StandardResponses};
use crate::state::AppState;
use crate::{
    auth, client_settings, health, middleware, openapi, reservations, spots, telemetry, wallet,
};

/// How long one request may take before the client gets a 503 (retry).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound listener and the app that will serve on it.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    /// Binds `BIND_ADDR` (port 0 picks a free port), wires the app and starts following the
    /// change feed (the picture of the curb loads in the background).
    pub async fn build(config: Config, db: PgPool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("cannot listen on BIND_ADDR {}", config.bind_addr))?;
        let state = AppState::new(config, db)?;
        tokio::spawn(spots::feed::run(state.clone()));
        let router = router(state.clone());
        Ok(Self {
            listener,
            router,
            state,
        })
    }

    /// The state the app serves with, for running job workers in the same process.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then lets requests in flight finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = crate::server::Limits {
            max_connections: self.state.config.max_connections as usize,
            header_read_timeout: self.state.config.header_read_timeout,
        };
        let curb = self.state.curb.clone();
        let shutdown = async move {
            shutdown.await;
            curb.close_streams();
        };
        crate::server::serve(self.listener, self.router, limits, shutdown).await
    }
}

/// The whole route table with its middleware.
pub fn router(state: AppState) -> Router {
    // Idempotency keys cover what changes bookings and spots; sign-in responses (tokens)
    // are never stored.
    let idempotent = OpenApiRouter::new()
        .merge(spots::router())
        .merge(reservations::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::idempotency::idempotent,
        ));
    let idempotent_paths = openapi::paths(idempotent.get_openapi());
    let api = OpenApiRouter::new()
        .merge(auth::router())
        .merge(client_settings::router())
        .merge(wallet::router())
        .merge(reservations::link_router())
        .merge(idempotent)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::rate_limit::limit_every_route,
        ));
    let rate_limited_paths = openapi::paths(api.get_openapi());
    let (routes, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api)
        .merge(reservations::webhook_router())
        .merge(health::router())
        .merge(spots::demo_router())
        .split_for_parts();
    // The problems each operation owes to the layers above, which only these routers know.
    StandardResponses {
        rate_limited: rate_limited_paths,
        idempotent: idempotent_paths,
    }
    .modify(&mut document);

    let request_id = HeaderName::from_static("x-request-id");
    let layers = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(telemetry::request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(axum::middleware::from_fn(middleware::security_headers))
        // Outside the problem rewriting, so every body it sends is compressed as declared.
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn(middleware::problem_responses))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::metrics::record,
        ))
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(cors(&state.config))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES));

    routes
        .merge(SwaggerUi::new("/docs").url("/openapi.json", document))
        .fallback(middleware::not_found)
        .layer(layers)
        .with_state(state)
}

fn cors(config: &Config) -> CorsLayer {
    let origins = match &config.cors_allowed_origins {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(origins) => AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        ),
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(Duration::from_secs(3600))
}
