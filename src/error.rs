//! The one error type of the HTTP API, rendered as RFC 9457 `application/problem+json`.
//!
//! Every handler, extractor and fallback returns [`AppError`], so a client sees one shape for
//! every failure. Internal errors keep their cause for the log (see
//! [`crate::middleware::log_server_errors`]) and never show it to the client.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What a 503 asks clients to wait: a dependency that is down (a restarting PostgreSQL or
/// Redis, Stripe's hiccup) is usually back within seconds, and hammering it sooner helps no
/// one. The same as Nginx's answer when no API replica is up.
pub const SERVICE_UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// One invalid field of a request, named as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request could not be parsed at all (malformed JSON, a bad path parameter).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// Missing, malformed, expired or revoked credentials.
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    /// Authenticated, but the role does not allow it.
    #[error("this action needs the {0} role")]
    Forbidden(&'static str),
    /// No such resource, or one the caller may not see (never revealing which).
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request conflicts with the current state (a taken email, an overlapping booking).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// The payer (by email or account) has a bill that failed or awaits authentication: no
    /// new booking until it is paid.
    #[error(
        "reservation {reservation_id} has an unpaid bill; pay it (GET /v1/reservations/{reservation_id}/payment) before booking again"
    )]
    UnpaidBalance { reservation_id: uuid::Uuid },
    /// A saved card that a current reservation (or a bill being paid) relies on.
    #[error(
        "reservation {reservation_id} relies on this card; remove it once that reservation is over and paid"
    )]
    PaymentMethodInUse { reservation_id: uuid::Uuid },
    #[error("the request body is larger than the limit of {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed input that fails validation; every bad field is listed.
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error("too many requests; retry after {} seconds", retry_after.as_secs())]
    TooManyRequests { retry_after: Duration },
    /// A dependency (Stripe) answered, but not usefully; nothing was changed.
    #[error("{0}")]
    BadGateway(String),
    /// A dependency (Redis, Stripe) is down; the client may retry.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// The server could not finish in time (a dependency hangs): the client may retry.
    #[error("the request took longer than the server allows; retry shortly")]
    Timeout,
    /// Anything unexpected. The cause is logged, never sent.
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// The RFC 9457 body. `type` is a stable URI per `code`, relative to the API.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable snake_case machine-readable code.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// `unpaid_balance`: the reservation whose bill must be paid first;
    /// `payment_method_in_use`: the reservation that relies on the card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<uuid::Uuid>,
}

impl AppError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Unauthorized {
            code,
            detail: detail.into(),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. }
            | Self::UnpaidBalance { .. }
            | Self::PaymentMethodInUse { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Conflict { code, .. } => code,
            Self::Forbidden(_) => "forbidden",
            Self::UnpaidBalance { .. } => "unpaid_balance",
            Self::PaymentMethodInUse { .. } => "payment_method_in_use",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Validation(_) => "validation_failed",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::BadGateway(_) => "bad_gateway",
            Self::ServiceUnavailable(_) => "service_unavailable",
            Self::Timeout => "timeout",
            Self::Internal(_) => "internal_error",
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            Self::Internal(_) => "an unexpected error occurred; it has been logged".to_owned(),
            other => other.to_string(),
        };
        let errors = match self {
            Self::Validation(errors) => Some(errors.clone()),
            _ => None,
        };
        Problem {
            kind: format!("/problems/{}", self.code().replace('_', "-")),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: self.code().to_owned(),
            errors,
            reservation_id: match self {
                Self::UnpaidBalance { reservation_id }
                | Self::PaymentMethodInUse { reservation_id } => Some(*reservation_id),
                _ => None,
            },
        }
    }
}

/// The cause of a 5xx, carried in the response extensions so the logging middleware can
/// record it once, with the request's span, without it ever reaching the body.
#[derive(Clone)]
pub struct ServerErrorCause(pub Arc<anyhow::Error>);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let mut response = (self.status(), axum::Json(problem)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        let retry_after = match &self {
            Self::TooManyRequests { retry_after } => Some(*retry_after),
            Self::ServiceUnavailable(_) | Self::Timeout => Some(SERVICE_UNAVAILABLE_RETRY_AFTER),
            _ => None,
        };
        if let Some(retry_after) = retry_after {
            let seconds = retry_after.as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Self::Internal(cause) = self {
            response
                .extensions_mut()
                .insert(ServerErrorCause(Arc::new(cause)));
        }
        response
    }
}

impl From<FieldError> for AppError {
    fn from(error: FieldError) -> Self {
        Self::Validation(vec![error])
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        if database_unavailable(&error) {
            return database_down(&error);
        }
        Self::Internal(anyhow::Error::new(error).context("database query failed"))
    }
}

impl From<anyhow::Error> for AppError {
    /// A step that failed because PostgreSQL is out of reach is a 503 whatever wrapped it.
    fn from(error: anyhow::Error) -> Self {
        let unavailable = error
            .chain()
            .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
            .find(|cause| database_unavailable(cause));
        match unavailable {
            Some(cause) => database_down(cause),
            None => Self::Internal(error),
        }
    }
}

/// Errors that say PostgreSQL cannot answer now, not that the query was wrong: no
/// connection within the pool's timeout, a connection cut (mid-query, or while it was being
/// opened, which the driver reports as a protocol error), the server shutting down or
/// refusing connections, or a transaction PostgreSQL aborted only to let another finish
/// (a deadlock or serialisation failure). Trying again shortly may succeed.
pub fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01–03: shutdown, crash, starting up;
            // 53300: too many connections; 40001/40P01: serialisation failure, deadlock.
            code.starts_with("08")
                || matches!(
                    &*code,
                    "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
                )
        }),
        _ => false,
    }
}

fn database_down(cause: &sqlx::Error) -> AppError {
    tracing::warn!(error = %cause, "PostgreSQL is unavailable; answering 503");
    AppError::ServiceUnavailable("the database is unavailable; retry shortly".into())
}

/// Turns a named database constraint into a client error at the call site, so the
/// database stays the one place that enforces uniqueness and exclusion.
pub trait ResultExt<T> {
    fn on_constraint(self, name: &str, to_error: impl FnOnce() -> AppError) -> Result<T, AppError>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn on_constraint(self, name: &str, to_error: impl FnOnce() -> AppError) -> Result<T, AppError> {
        self.map_err(|error| match &error {
            sqlx::Error::Database(db) if db.constraint() == Some(name) => to_error(),
            _ => error.into(),
        })
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let error = AppError::Internal(anyhow::anyhow!("password for db is hunter2"));
        let problem = error.problem();
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.contains("hunter2"));
        assert_eq!(problem.code, "internal_error");
    }

    #[test]
    fn rate_limits_and_outages_say_when_to_retry() {
        let limited = AppError::TooManyRequests {
            retry_after: Duration::from_secs(12),
        }
        .into_response();
        assert_eq!(limited.headers()[header::RETRY_AFTER], "12");
        let down = AppError::ServiceUnavailable("Redis is down".into()).into_response();
        assert_eq!(down.headers()[header::RETRY_AFTER], "5");
        let missing = AppError::NotFound("no such spot".into()).into_response();
        assert!(!missing.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn validation_lists_fields() {
        let problem = AppError::validation("email", "is not an email address").problem();
        assert_eq!(problem.status, 422);
        assert_eq!(
            problem.errors,
            Some(vec![FieldError::new("email", "is not an email address")])
        );
        assert_eq!(problem.kind, "/problems/validation-failed");
    }
}
