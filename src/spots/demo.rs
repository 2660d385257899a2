//! The live map page (`/demo`): static files compiled into the binary, so it runs with no
//! build step and no files beside the server. It is the example of using the stream.

use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

const PAGE: &str = include_str!("../../demo/index.html");
const SCRIPT: &str = include_str!("../../demo/demo.js");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(script))
}

/// The live map: spots around a point (`?lat=&lng=&radius=` in km, default Times Square),
/// coloured by availability and kept current by `GET /v1/spots/events`.
#[utoipa::path(get, path = "/demo", tag = "spots",
    responses((status = 200, description = "The page", body = String, content_type = "text/html")))]
pub async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
}

/// The page's script: one `EventSource` and a dot per spot, to copy.
#[utoipa::path(get, path = "/demo/demo.js", tag = "spots",
    responses((status = 200, description = "The script", body = String, content_type = "text/javascript")))]
pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}
