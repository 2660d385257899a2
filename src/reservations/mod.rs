//! Reservations: quotes, holds, confirmation with a saved card, changes, and Stripe's
//! webhook. Double booking is impossible by construction: an exclusion constraint over
//! live rows (see `migrations/0003_reservations.sql`).

mod access;
pub mod actions;
pub mod billing;
mod charges;
mod db;
mod guest_access;
pub mod lifecycle;
pub mod model;
pub mod notices;
mod payment;
pub mod quotes;
mod receipt;
mod recovery;
pub mod refunds;
pub mod reminders;
mod routes;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(quotes::quote))
        .routes(routes!(routes::book, routes::list))
        .routes(routes!(routes::show, routes::change))
        .routes(routes!(routes::confirm))
        .routes(routes!(routes::end))
        .routes(routes!(routes::cancel))
        .routes(routes!(recovery::show_payment))
        .routes(routes!(recovery::retry_payment))
        .routes(routes!(receipt::show_receipt))
        .routes(routes!(refunds::refund))
        .routes(routes!(guest_access::request_access))
        .routes(routes!(guest_access::exchange_access_code))
}

/// A reminder's one-tap extension: a page and its form, for people, authorised by the
/// link's signature rather than credentials (no `Idempotency-Key`: a link works once).
pub fn link_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(reminders::extension_page, reminders::extend))
}

/// Stripe's webhook: no rate limit by client and no idempotency keys (Stripe retries with
/// the same event id, which is deduplicated instead).
pub fn webhook_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(payment::stripe_webhook))
}
