//! Prometheus metrics, owned by the application state rather than a global registry, so
//! that every app built in one process (as the tests do) counts only its own requests.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
    /// This replica's picture of the curb and its streams, read at each scrape.
    curb_spots: Gauge,
    curb_current: Gauge,
    streams_open: Gauge,
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
        let curb_spots = Gauge::default();
        registry.register(
            "curbside_curb_spots",
            "Spots in this replica's picture of the curb (0 until it is loaded)",
            curb_spots.clone(),
        );
        let curb_current = Gauge::default();
        registry.register(
            "curbside_curb_current",
            "1 while the change feed keeps the picture current (search answers from it), else 0",
            curb_current.clone(),
        );
        let streams_open = Gauge::default();
        registry.register(
            "curbside_streams_open",
            "Live availability streams this process serves",
            streams_open.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            emails_failed,
            curb_spots,
            curb_current,
            streams_open,
        }
    }
}

impl Metrics {
    /// Counts one request and records its latency, labelled by the matched route.
    pub fn observe_request(&self, method: String, route: String, status: u16, took: Duration) {
        let labels = HttpLabels {
            method,
            route,
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn set_emails_failed(&self, count: i64) {
        self.emails_failed.set(count);
    }

    pub fn set_curb(&self, spots: usize, current: bool, streams_open: usize) {
        self.curb_spots
            .set(i64::try_from(spots).unwrap_or(i64::MAX));
        self.curb_current.set(i64::from(current));
        self.streams_open
            .set(i64::try_from(streams_open).unwrap_or(i64::MAX));
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
