//! Cross-cutting request and response handling, applied in `app::router`: one problem+json
//! shape for every error and one log line for every server error, browser safety headers,
//! the per-client rate limit, metrics, and `Idempotency-Key`.

pub mod idempotency;
pub mod metrics;
pub mod rate_limit;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{AppError, PROBLEM_JSON, ServerErrorCause};

/// Gives error responses produced outside our handlers (axum's 405, tower-http's timeout
/// and panic responses) the same problem+json body as ours, and logs every 5xx once with
/// its cause, inside the request's span.
pub async fn problem_responses(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if let Some(ServerErrorCause(cause)) = response.extensions().get::<ServerErrorCause>() {
        tracing::error!(error = ?cause, "request failed");
    }
    if !(status.is_client_error() || status.is_server_error()) || is_written_body(&response) {
        return response;
    }
    if status.is_server_error() {
        tracing::error!(%status, "request failed outside a handler");
    }
    let (parts, _) = response.into_parts();
    let error = error_for_status(status);
    // The layer's timeout answers 408 internally; the client is told 503 (retry), since it
    // was the server, not the client, that took too long. Other statuses keep their number.
    let keep_status = !matches!(error, AppError::Timeout);
    let mut problem = error.into_response();
    for (name, value) in &parts.headers {
        // The old body's framing and encoding do not describe the new one.
        let describes_body = [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::TRANSFER_ENCODING,
        ]
        .contains(name);
        if !describes_body {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    if keep_status {
        *problem.status_mut() = status;
    }
    problem
}

/// Our own error bodies are JSON already: problem+json from `AppError`, or a JSON report
/// such as `/readyz`'s. Only bodies from outside (plain text, empty) are replaced.
/// A body a handler wrote on purpose: a problem or JSON, or a page for people (a
/// reminder's link says in HTML why it cannot extend).
fn is_written_body(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with(PROBLEM_JSON)
                || value.starts_with("application/json")
                || value.starts_with("text/html")
        })
}

fn error_for_status(status: StatusCode) -> AppError {
    match status {
        StatusCode::NOT_FOUND => AppError::NotFound("no such resource".into()),
        StatusCode::METHOD_NOT_ALLOWED => AppError::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => AppError::Timeout,
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge {
            limit_bytes: crate::extract::BODY_LIMIT_BYTES,
        },
        StatusCode::SERVICE_UNAVAILABLE => {
            AppError::ServiceUnavailable("the service is unavailable; retry shortly".into())
        }
        status if status.is_server_error() => {
            AppError::Internal(anyhow::anyhow!("{status} produced outside a handler"))
        }
        status => AppError::bad_request(
            "bad_request",
            status.canonical_reason().unwrap_or("bad request"),
        ),
    }
}

/// Headers every response carries for browsers: no MIME sniffing, no referrer, no framing;
/// and `Cache-Control: no-store` on whatever may hold a secret or personal data (answers to
/// authenticated requests, and to every request that is not a GET: sign-in and booking
/// answers carry tokens), unless the handler chose its own caching.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let private = request.headers().contains_key(header::AUTHORIZATION)
        || request.method() != axum::http::Method::GET;
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if private && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Unknown routes.
pub async fn not_found() -> AppError {
    AppError::NotFound("no such route".into())
}
