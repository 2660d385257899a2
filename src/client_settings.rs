//! `GET /v1/config`: what a web or mobile client needs to know of this deployment before
//! its first booking: Stripe's publishable key (Stripe.js needs it to save a card) and the
//! booking rules it should show. Nothing in it is secret.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::reservations::model::MAX_DAYS_AHEAD;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(client_settings))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientSettings {
    /// For `Stripe(publishableKey)` in Stripe.js (`pk_test_…` or `pk_live_…`).
    #[schema(example = "pk_test_curbside_development")]
    pub stripe_publishable_key: String,
    /// Every amount of this deployment is in this currency, in cents.
    #[schema(example = "usd")]
    pub currency: &'static str,
    /// How long a booking holds its spot while the card is being saved.
    #[schema(example = 15)]
    pub hold_minutes: u32,
    /// The shortest booking; also the default length of a search window.
    #[schema(example = 5)]
    pub min_reservation_minutes: u32,
    /// How many days ahead a booking may start.
    #[schema(example = 30)]
    pub max_days_ahead: i64,
}

/// The deployment's public settings.
#[utoipa::path(get, path = "/v1/config", tag = "operations",
    responses((status = 200, description = "Public settings for clients", body = ClientSettings)))]
pub async fn client_settings(State(state): State<AppState>) -> impl IntoResponse {
    let config = &state.config;
    (
        // They change only with a redeploy; a client may keep them for a few minutes.
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(ClientSettings {
            stripe_publishable_key: config.stripe_publishable_key.clone(),
            currency: "usd",
            hold_minutes: config.hold_minutes,
            min_reservation_minutes: config.min_reservation_minutes,
            max_days_ahead: MAX_DAYS_AHEAD,
        }),
    )
}
