//! Parking spots: the meter importer, search by distance and time window (from the
//! replica's picture of the curb, kept current by the change feed), live availability
//! streams, and the operator routes.

pub mod curb;
pub mod db;
mod demo;
mod events;
pub mod feed;
pub mod import;
pub mod model;
mod paging;
pub mod picture;
mod routes;
mod rules;
mod streams;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub use db::NEAREST_SQL;

/// The live map page, outside the API's rate limits (it is static).
pub fn demo_router() -> OpenApiRouter<AppState> {
    demo::router()
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::search, routes::create))
        .routes(routes!(routes::detail, routes::update))
        .routes(routes!(events::stream))
}
