//! The OpenAPI 3.1 description. Paths and schemas come from the handlers' annotations
//! (collected by `utoipa_axum`); this adds what is global: info, tags, security, and the
//! responses an operation owes to the middleware and extractors it passes through rather
//! than to what it does ([`StandardResponses`]).

use std::collections::{BTreeMap, BTreeSet};

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::content::Content;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Required};

use crate::error::{FieldError, PROBLEM_JSON, Problem};
use crate::reservations::model::Scope;
use crate::spots::model::{AvailabilityFilter, DistanceUnit};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Curbside API",
        description = "Find, reserve and pay for on-street parking. Errors are RFC 9457 \
                       `application/problem+json` with a stable `code`. Every time the API \
                       takes is RFC 3339 with an offset, between 2000-01-01T00:00:00Z and \
                       2100-01-01T00:00:00Z; every time it returns is UTC.",
    ),
    // The query parameters' enums: `IntoParams` refers to them without registering them.
    components(schemas(Problem, FieldError, DistanceUnit, AvailabilityFilter, Scope)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts, sign-in and sessions"),
        (name = "spots", description = "Parking spots: search, detail, operator changes"),
        (name = "reservations", description = "Quotes, bookings, changes and Stripe's webhook"),
        (name = "payments", description = "A reservation's payment: what to do next, paying a failed bill, receipts"),
        (name = "guest access", description = "Guests who lost their guest token get a new one by email"),
        (name = "saved cards", description = "A driver's cards saved on their Stripe customer: list, remove, choose the default; book with one in one step"),
        (name = "refunds", description = "Operators give back part or all of a paid bill"),
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

const RETRY_AFTER: &str = "Retry-After";
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// A problem every operation of some kind may answer, declared once as a reusable response.
struct StandardProblem {
    /// Its name under `components.responses`.
    name: &'static str,
    status: u16,
    /// What the client should know: the `code`s and what they mean.
    description: &'static str,
    /// Sent with `Retry-After`, in seconds.
    retry_after: bool,
}

impl StandardProblem {
    const fn new(name: &'static str, status: u16, description: &'static str) -> Self {
        Self {
            name,
            status,
            description,
            retry_after: false,
        }
    }

    const fn with_retry_after(self) -> Self {
        Self {
            retry_after: true,
            ..self
        }
    }
}

// Anything, anywhere: a bug (`CatchPanicLayer` too), a dependency down, the request timeout.
const INTERNAL_ERROR: StandardProblem = StandardProblem::new(
    "InternalError",
    500,
    "`internal_error`: an unexpected error; it has been logged, the detail says nothing more",
);
const SERVICE_UNAVAILABLE: StandardProblem = StandardProblem::new(
    "ServiceUnavailable",
    503,
    "`service_unavailable`: a dependency (PostgreSQL, Redis or Stripe) is unreachable, or a \
     deadlock was broken; `timeout`: the request took longer than 30 seconds and was \
     abandoned. Retry after `Retry-After` seconds",
)
.with_retry_after();
// `middleware::rate_limit::limit_every_route`.
const RATE_LIMITED: StandardProblem = StandardProblem::new(
    "RateLimited",
    429,
    "`rate_limited`: too many requests from this client address this minute \
     (`RATE_LIMIT_PER_MINUTE`); retry after `Retry-After` seconds",
)
.with_retry_after();
// `extract::Json`.
const MALFORMED_BODY: StandardProblem = StandardProblem::new(
    "MalformedBody",
    400,
    "`malformed_json`: the body is not JSON; `unreadable_body`: the body could not be read",
);
const INVALID_BODY: StandardProblem = StandardProblem::new(
    "InvalidBody",
    422,
    "`validation_failed`: the body is JSON of the wrong shape (a missing or unknown field, \
     a value of the wrong type); `errors` names each field",
);
const PAYLOAD_TOO_LARGE: StandardProblem = StandardProblem::new(
    "PayloadTooLarge",
    413,
    "`payload_too_large`: the body is larger than 64 KiB",
);
const UNSUPPORTED_MEDIA_TYPE: StandardProblem = StandardProblem::new(
    "UnsupportedMediaType",
    415,
    "`unsupported_media_type`: the body is not `application/json`",
);
// `extract::Query` and `extract::Path`.
const INVALID_QUERY: StandardProblem = StandardProblem::new(
    "InvalidQuery",
    422,
    "`validation_failed`: a query parameter is not of its type; `errors` names it",
);
const INVALID_PATH: StandardProblem = StandardProblem::new(
    "InvalidPath",
    400,
    "`invalid_path`: a path parameter is not of its type (say, an id that is not a UUID)",
);
// `auth::AuthUser`, for the routes that declare `security`.
const UNAUTHORIZED: StandardProblem = StandardProblem::new(
    "Unauthorized",
    401,
    "`missing_credentials`: no `Authorization: Bearer` token where one is required; \
     `invalid_token`: the access token is malformed, badly signed or expired, its session \
     was signed out or revoked (a password change, a reused refresh token), or its account \
     is gone",
);
// `middleware::idempotency::idempotent`.
const INVALID_IDEMPOTENCY_KEY: StandardProblem = StandardProblem::new(
    "InvalidIdempotencyKey",
    400,
    "`invalid_idempotency_key`: the `Idempotency-Key` header is not an acceptable key",
);
const IDEMPOTENCY_KEY_IN_FLIGHT: StandardProblem = StandardProblem::new(
    "IdempotencyKeyInFlight",
    409,
    "`idempotency_key_in_flight`: the first request with this `Idempotency-Key` is still \
     running; retry it later to get its response",
);
const IDEMPOTENCY_KEY_REUSED: StandardProblem = StandardProblem::new(
    "IdempotencyKeyReused",
    422,
    "`validation_failed` naming `Idempotency-Key`: the key was used, within 24 hours, for \
     another request",
);

const ALL_STANDARD: [&StandardProblem; 13] = [
    &INTERNAL_ERROR,
    &SERVICE_UNAVAILABLE,
    &RATE_LIMITED,
    &MALFORMED_BODY,
    &INVALID_BODY,
    &PAYLOAD_TOO_LARGE,
    &UNSUPPORTED_MEDIA_TYPE,
    &INVALID_QUERY,
    &INVALID_PATH,
    &UNAUTHORIZED,
    &INVALID_IDEMPOTENCY_KEY,
    &IDEMPOTENCY_KEY_IN_FLIGHT,
    &IDEMPOTENCY_KEY_REUSED,
];

/// Adds to every operation the problems it can answer because of what it is, so that the
/// handlers' annotations say only what is their own (a success body, a 404, a 409 with its
/// meaning), and every status the server can send is documented:
///
/// - every operation: 500 and 503 (a dependency down, or the 30-second request timeout);
/// - behind the per-client rate limit: 429;
/// - with a JSON body: 400, 413, 415 and 422 (a raw body, documented as a string, only 413);
/// - with query parameters: 422; with path parameters: 400;
/// - with `security`, or behind the idempotency middleware: 401;
/// - POST and PATCH behind the idempotency middleware: the `Idempotency-Key` parameter,
///   its 400, 409 and 422, and `Idempotent-Replayed` on success.
///
/// A status the operation documents itself keeps its description, with the standard
/// meanings listed after it; one documented with a body of its own (`/readyz`'s 503) is
/// left alone. Every 4xx and 5xx without a body gets the `Problem` body.
///
/// It runs on the finished document, since only the routers know which middleware covers
/// which paths (see `app::router`).
pub struct StandardResponses {
    /// Paths behind `middleware::rate_limit::limit_every_route`.
    pub rate_limited: BTreeSet<String>,
    /// Paths behind `middleware::idempotency::idempotent`, which acts on their POST and PATCH.
    pub idempotent: BTreeSet<String>,
}

/// The paths a router's part of the document describes.
pub fn paths(openapi: &utoipa::openapi::OpenApi) -> BTreeSet<String> {
    openapi.paths.paths.keys().cloned().collect()
}

impl Modify for StandardResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for problem in ALL_STANDARD {
            components
                .responses
                .insert(problem.name.to_owned(), problem_response(problem).into());
        }
        components
            .headers
            .insert(RETRY_AFTER.to_owned(), retry_after_header().into());
        components.headers.insert(
            IDEMPOTENT_REPLAYED.to_owned(),
            idempotent_replayed_header().into(),
        );
        components.parameters.insert(
            IDEMPOTENCY_KEY.to_owned(),
            idempotency_key_parameter().into(),
        );

        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in operations_mut(item) {
                let idempotent =
                    self.idempotent.contains(path) && matches!(method, "post" | "patch");
                if idempotent {
                    add_idempotency(operation);
                }
                give_problems_their_body(operation);
                let standard = self.standard_problems(path, idempotent, operation);
                add_standard(operation, &standard);
            }
        }
    }
}

impl StandardResponses {
    fn standard_problems(
        &self,
        path: &str,
        idempotent: bool,
        operation: &Operation,
    ) -> Vec<&'static StandardProblem> {
        let mut problems = vec![&INTERNAL_ERROR, &SERVICE_UNAVAILABLE];
        if self.rate_limited.contains(path) {
            problems.push(&RATE_LIMITED);
        }
        match body_kind(operation) {
            Some(BodyKind::Json) => problems.extend([
                &MALFORMED_BODY,
                &PAYLOAD_TOO_LARGE,
                &UNSUPPORTED_MEDIA_TYPE,
                &INVALID_BODY,
            ]),
            Some(BodyKind::Raw) => problems.push(&PAYLOAD_TOO_LARGE),
            None => {}
        }
        if has_parameter_in(operation, ParameterIn::Query) {
            problems.push(&INVALID_QUERY);
        }
        if has_parameter_in(operation, ParameterIn::Path) {
            problems.push(&INVALID_PATH);
        }
        // Credentials sent with an Idempotency-Key are checked before anything is replayed.
        if idempotent || operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
            problems.push(&UNAUTHORIZED);
        }
        if idempotent {
            problems.extend([
                &INVALID_IDEMPOTENCY_KEY,
                &IDEMPOTENCY_KEY_IN_FLIGHT,
                &IDEMPOTENCY_KEY_REUSED,
            ]);
        }
        problems
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
        ("head", &mut item.head),
        ("options", &mut item.options),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|op| (method, op)))
}

enum BodyKind {
    /// Read by `extract::Json`.
    Json,
    /// Read as bytes (Stripe's webhook verifies its signature over them).
    Raw,
}

fn body_kind(operation: &Operation) -> Option<BodyKind> {
    let RefOr::T(RequestBody { content, .. }) = operation.request_body.as_ref()? else {
        return Some(BodyKind::Json);
    };
    let raw = content.values().all(|content| match content {
        RefOr::T(Content {
            schema: Some(RefOr::T(Schema::Object(object))),
            ..
        }) => object.schema_type == SchemaType::Type(Type::String),
        _ => false,
    });
    Some(if raw { BodyKind::Raw } else { BodyKind::Json })
}

fn has_parameter_in(operation: &Operation, place: ParameterIn) -> bool {
    operation.parameters.iter().flatten().any(|parameter| {
        matches!(parameter, RefOr::T(Parameter { parameter_in, .. }) if *parameter_in == place)
    })
}

fn is_problem_status(status: &str) -> bool {
    status.starts_with('4') || status.starts_with('5')
}

fn problem_content() -> Content {
    Content::new(Some(Ref::from_schema_name("Problem")))
}

fn problem_response(problem: &StandardProblem) -> Response {
    merged(Response::new(""), &[problem])
}

fn header_ref(name: &str) -> RefOr<Header> {
    RefOr::Ref(Ref::new(format!("#/components/headers/{name}")))
}

fn retry_after_header() -> Header {
    HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        ))
        .description(Some("Seconds to wait before trying again."))
        .build()
}

fn idempotent_replayed_header() -> Header {
    HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["true"])),
        ))
        .description(Some(
            "`true` when this is the stored response of an earlier request with the same \
             `Idempotency-Key`, sent again; absent otherwise.",
        ))
        .build()
}

fn idempotency_key_parameter() -> Parameter {
    ParameterBuilder::new()
        .name(IDEMPOTENCY_KEY)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes a retry safe: the same caller sending the same request with the same key \
             within 24 hours gets the first response again, with `Idempotent-Replayed: true`, \
             whatever its status (except a 5xx, after which the key is free again). 1 to 255 \
             visible ASCII characters; a caller without credentials should send a random \
             UUID v4, or at least 32 URL-safe characters (`A-Z a-z 0-9 - _`), which others \
             cannot guess.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[!-~]+$")),
        ))
        .build()
}

/// The header parameter and the replay marker of the idempotency middleware.
fn add_idempotency(operation: &mut Operation) {
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::Ref(Ref::new(format!(
            "#/components/parameters/{IDEMPOTENCY_KEY}"
        ))));
    for (status, response) in &mut operation.responses.responses {
        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
            response.headers.insert(
                IDEMPOTENT_REPLAYED.to_owned(),
                header_ref(IDEMPOTENT_REPLAYED),
            );
        }
    }
}

/// Every error is a problem: an annotation gives its status and meaning, this its body.
fn give_problems_their_body(operation: &mut Operation) {
    for (status, response) in &mut operation.responses.responses {
        if let (true, RefOr::T(response)) = (is_problem_status(status), response)
            && response.content.is_empty()
        {
            response
                .content
                .insert(PROBLEM_JSON.to_owned(), problem_content().into());
        }
    }
}

fn add_standard(operation: &mut Operation, problems: &[&'static StandardProblem]) {
    let mut by_status: BTreeMap<u16, Vec<&StandardProblem>> = BTreeMap::new();
    for problem in problems {
        by_status.entry(problem.status).or_default().push(problem);
    }
    for (status, problems) in by_status {
        let responses = &mut operation.responses.responses;
        match responses.get_mut(&status.to_string()) {
            None => {
                let response = match problems.as_slice() {
                    [one] => RefOr::Ref(Ref::from_response_name(one.name)),
                    several => RefOr::T(merged(Response::new(""), several)),
                };
                responses.insert(status.to_string(), response);
            }
            Some(RefOr::T(own)) if own.content.contains_key(PROBLEM_JSON) => {
                let own = std::mem::replace(own, Response::new(""));
                responses.insert(status.to_string(), RefOr::T(merged(own, &problems)));
            }
            // A body of its own (not a problem), or a standard response already.
            Some(_) => {}
        }
    }
}

/// The response with the standard meanings listed after its own, and their headers.
fn merged(mut response: Response, problems: &[&StandardProblem]) -> Response {
    let mut meanings: Vec<&str> = Vec::new();
    if !response.description.is_empty() {
        meanings.push(&response.description);
    }
    meanings.extend(problems.iter().map(|problem| problem.description));
    let description = match meanings.as_slice() {
        [one] => (*one).to_owned(),
        several => several
            .iter()
            .map(|meaning| format!("- {meaning}"))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    response.description = description;
    response
        .content
        .entry(PROBLEM_JSON.to_owned())
        .or_insert_with(|| problem_content().into());
    if problems.iter().any(|problem| problem.retry_after) {
        response
            .headers
            .insert(RETRY_AFTER.to_owned(), header_ref(RETRY_AFTER));
    }
    response
}
