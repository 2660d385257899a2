//! The OpenAPI 3.1 description. Paths and schemas come from the handlers' annotations
//! (collected by `utoipa_axum`); this adds what is global: info, tags and security.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::error::{FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Curbside API",
        description = "Find, reserve and pay for on-street parking. Errors are RFC 9457 \
                       `application/problem+json` with a stable `code`.",
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts, sign-in and sessions"),
        (name = "spots", description = "Parking spots: search, detail, operator changes"),
        (name = "reservations", description = "Quotes, bookings, changes and Stripe's webhook"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the authenticated routes refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
