//! Parking spots: the meter importer, search by distance and time window, and the
//! operator routes.

pub mod db;
pub mod import;
pub mod model;
mod routes;
mod rules;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub use db::NEAREST_SQL;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::search, routes::create))
        .routes(routes!(routes::detail, routes::update))
}
