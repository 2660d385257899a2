//! `Idempotency-Key` on POST and PATCH, kept in PostgreSQL so it holds across replicas.
//!
//! The first request with a key runs; its response (unless a 5xx, which may be retried) is
//! kept for 24 hours and replayed to the same caller sending the same request with the same
//! key. The same key with another request is 422; while the first is still running, 409.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

use crate::app::AppState;
use crate::error::AppError;
use crate::extract::BODY_LIMIT_BYTES;
use crate::rate_limit::client_ip;

/// Responses larger than this are not kept (none of ours come near it).
const MAX_STORED_RESPONSE_BYTES: usize = 1024 * 1024;

enum Claim {
    /// No one used this key: run the request.
    Fresh,
    /// The key's first response, to send again.
    Replay {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    InFlight,
    OtherRequest,
}

pub async fn idempotent(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::POST | Method::PATCH) {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get("idempotency-key") else {
        return next.run(request).await;
    };
    let key = match key.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            key.to_owned()
        }
        _ => {
            return AppError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
            .into_response();
        }
    };
    let caller = caller_identity(&state, &request);
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT_BYTES).await else {
        return AppError::PayloadTooLarge {
            limit_bytes: BODY_LIMIT_BYTES,
        }
        .into_response();
    };
    let fingerprint = fingerprint(
        &parts.method,
        parts.uri.path_and_query().map_or("", |p| p.as_str()),
        &body,
    );

    match claim(&state.db, &caller, &key, &fingerprint).await {
        Err(error) => AppError::from(error).into_response(),
        Ok(Claim::InFlight) => AppError::conflict(
            "idempotency_key_in_flight",
            "a request with this Idempotency-Key is still being processed",
        )
        .into_response(),
        Ok(Claim::OtherRequest) => AppError::Validation(vec![crate::error::FieldError::new(
            "Idempotency-Key",
            "was already used for a different request",
        )])
        .into_response(),
        Ok(Claim::Replay {
            status,
            content_type,
            body,
        }) => replay(status, content_type, body),
        Ok(Claim::Fresh) => {
            let response = next.run(Request::from_parts(parts, Body::from(body))).await;
            keep(&state.db, &caller, &key, response).await
        }
    }
}

/// Who is asking: the signed-in user, the holder of a token, or else the client address.
fn caller_identity(state: &AppState, request: &Request) -> String {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match bearer {
        Some(token) => match state.jwt.verify(token) {
            Some(claims) => format!("user:{}", claims.sub),
            None => format!("token:{}", hex(&Sha256::digest(token.as_bytes()))),
        },
        None => {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            format!(
                "ip:{}",
                client_ip(request.headers(), peer, state.config.trust_forwarded_for)
            )
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fingerprint(method: &Method, path: &str, body: &Bytes) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str());
    hasher.update([0]);
    hasher.update(path);
    hasher.update([0]);
    hasher.update(body);
    hasher.finalize().to_vec()
}

async fn claim(db: &PgPool, caller: &str, key: &str, fingerprint: &[u8]) -> sqlx::Result<Claim> {
    let mut tx = db.begin().await?;
    // A key older than a day is forgotten; one left in flight by a crashed process for
    // longer than any request may run is taken over.
    sqlx::query(
        "delete from idempotency_keys where caller = $1 and key = $2
           and (created_at < now() - interval '24 hours'
                or (response_status is null and created_at < now() - interval '2 minutes'))",
    )
    .bind(caller)
    .bind(key)
    .execute(&mut *tx)
    .await?;
    let inserted = sqlx::query(
        "insert into idempotency_keys (caller, key, request_fingerprint) values ($1, $2, $3)
         on conflict do nothing",
    )
    .bind(caller)
    .bind(key)
    .bind(fingerprint)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 1 {
        tx.commit().await?;
        return Ok(Claim::Fresh);
    }
    let (stored_fingerprint, status, content_type, body): (
        Vec<u8>,
        Option<i16>,
        Option<String>,
        Option<Vec<u8>>,
    ) = sqlx::query_as(
        "select request_fingerprint, response_status, response_content_type, response_body
             from idempotency_keys where caller = $1 and key = $2",
    )
    .bind(caller)
    .bind(key)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(match status {
        _ if stored_fingerprint != fingerprint => Claim::OtherRequest,
        None => Claim::InFlight,
        Some(status) => Claim::Replay {
            status: status as u16,
            content_type,
            body: body.unwrap_or_default(),
        },
    })
}

/// Stores the first response for replay, or frees the key after a server error so the
/// client can retry with it.
async fn keep(db: &PgPool, caller: &str, key: &str, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let body = match axum::body::to_bytes(body, MAX_STORED_RESPONSE_BYTES).await {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "cannot buffer a response to keep it for Idempotency-Key");
            release(db, caller, key).await;
            return AppError::Internal(anyhow::anyhow!("response too large to keep"))
                .into_response();
        }
    };
    if status.is_server_error() {
        release(db, caller, key).await;
    } else {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let stored = sqlx::query(
            "update idempotency_keys set response_status = $3, response_content_type = $4, response_body = $5
             where caller = $1 and key = $2",
        )
        .bind(caller)
        .bind(key)
        .bind(status.as_u16() as i16)
        .bind(content_type)
        .bind(body.as_ref())
        .execute(db)
        .await;
        if let Err(error) = stored {
            // The change itself is committed; only the replay is lost. Say so, loudly.
            tracing::error!(%error, "cannot keep the response of an Idempotency-Key request");
        }
    }
    Response::from_parts(parts, Body::from(body))
}

async fn release(db: &PgPool, caller: &str, key: &str) {
    let released = sqlx::query("delete from idempotency_keys where caller = $1 and key = $2")
        .bind(caller)
        .bind(key)
        .execute(db)
        .await;
    if let Err(error) = released {
        tracing::error!(%error, "cannot release an Idempotency-Key after a failed request");
    }
}

fn replay(status: u16, content_type: Option<String>, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Some(value) = content_type.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}
