//! Prometheus metrics, owned by the application state rather than a global registry, so
//! that every app built in one process (as the tests do) counts only its own requests.

use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::app::AppState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    /// The route template (`/v1/spots/{id}`), never the raw path, to bound cardinality.
    route: String,
    status: u16,
}

type HistogramFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    /// Behind a mutex only because encoding needs `&Registry`; it is written once at start.
    registry: Mutex<Registry>,
    requests: Family<HttpLabels, Counter>,
    latency: HistogramFamily,
    /// Read from PostgreSQL at each scrape: any worker process may be the one that gave up,
    /// and workers serve no `/metrics` of their own.
    emails_failed: Gauge,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~4 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<HttpLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, route and status",
            latency.clone(),
        );
        let emails_failed = Gauge::default();
        registry.register(
            "curbside_outbox_emails_failed",
            "Emails given up on after their last attempt (see email_outbox.failed_at)",
            emails_failed.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            emails_failed,
        }
    }
}

impl Metrics {
    pub fn set_emails_failed(&self, count: i64) {
        self.emails_failed.set(count);
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Counts every request and records its latency, labelled by the matched route.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let labels = HttpLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    state.metrics.requests.get_or_create(&labels).inc();
    state
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}
