//! `Idempotency-Key` on POST and PATCH, kept in PostgreSQL so it holds across replicas.
//!
//! The first request with a key runs; its response (unless a 5xx, which may be retried) is
//! kept for 24 hours and replayed to the same caller sending the same request with the same
//! key. The same key with another request is 422; while the first is still running, 409.
//!
//! Who the caller is comes first: credentials sent with a key are checked before anything is
//! replayed (a signed-out or expired token gets 401, never the stored response). A caller
//! without credentials is known only by its address, which others may share, so its key is
//! its proof: it must carry at least 122 random bits (a version-4 UUID, or 32 URL-safe
//! characters). A stored response can hold a secret (a guest token is shown once), so it is
//! kept encrypted under a key derived from the Idempotency-Key and the server's secret: the
//! database alone never holds it readable.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts as _, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chacha20poly1305::aead::{Aead as _, AeadCore as _, KeyInit as _, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use secrecy::ExposeSecret as _;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

use crate::auth::token::{GUEST_TOKEN_PREFIX, hash_guest_token};
use crate::auth::{AuthUser, bearer_token};
use crate::error::AppError;
use crate::extract::BODY_LIMIT_BYTES;
use crate::rate_limit::client_ip;
use crate::state::AppState;

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

/// The shortest key a caller without credentials may use (32 URL-safe characters carry at
/// least 128 bits when random; a version-4 UUID carries 122).
const MIN_ANONYMOUS_KEY_CHARS: usize = 32;

pub async fn idempotent(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::POST | Method::PATCH) {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get("idempotency-key") else {
        return next.run(request).await;
    };
    let Some(key) = key
        .to_str()
        .ok()
        .filter(|key| (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
    else {
        return AppError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
        .into_response();
    };
    let (mut parts, body) = request.into_parts();
    let caller = match caller_identity(&state, &mut parts).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    if caller.starts_with("ip:") && !is_strong_key(&key) {
        return AppError::bad_request(
            "invalid_idempotency_key",
            "without credentials, Idempotency-Key must be a random UUID (version 4) or at \
             least 32 letters, digits, `-` or `_`",
        )
        .into_response();
    }
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
    let sealer = Sealer::new(&state, &caller, &key);

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
        }) => match sealer.open(&body) {
            Some(body) => replay(status, content_type, body),
            // Sealed under another server secret (it was rotated): the first response
            // cannot be given back, and running the request again could do it twice.
            None => AppError::conflict(
                "idempotency_key_unreadable",
                "the first response to this Idempotency-Key cannot be read back; use a new key",
            )
            .into_response(),
        },
        Ok(Claim::Fresh) => {
            let response = next.run(Request::from_parts(parts, Body::from(body))).await;
            keep(&state.db, &caller, &key, &sealer, response).await
        }
    }
}

/// Who is asking, checked: the signed-in user or the holder of a live guest token (invalid,
/// expired or revoked credentials are a 401 here, before any replay), or else the client
/// address.
async fn caller_identity(state: &AppState, parts: &mut Parts) -> Result<String, AppError> {
    match bearer_token(parts) {
        Some(token) if token.starts_with(GUEST_TOKEN_PREFIX) => {
            let hash = hash_guest_token(token);
            let live = crate::auth::db::guest_token_is_live(&mut *state.db.acquire().await?, &hash)
                .await?;
            if !live {
                return Err(AppError::unauthorized(
                    "invalid_token",
                    "the guest token opens no reservation",
                ));
            }
            Ok(format!("guest:{}", hex::encode(hash)))
        }
        Some(_) => {
            let user = AuthUser::from_request_parts(parts, state).await?;
            Ok(format!("user:{}", user.user_id))
        }
        None => {
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            Ok(format!(
                "ip:{}",
                client_ip(&parts.headers, peer, state.config.trust_forwarded_for)
            ))
        }
    }
}

/// Enough randomness that nobody sharing the caller's address can guess it: a UUID must be
/// a random one (a time-based UUID is mostly its timestamp), anything else at least 32
/// URL-safe characters that are not a run of a few repeated ones.
fn is_strong_key(key: &str) -> bool {
    if let Ok(uuid) = uuid::Uuid::try_parse(key) {
        return uuid.get_version() == Some(uuid::Version::Random);
    }
    key.len() >= MIN_ANONYMOUS_KEY_CHARS
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && key.bytes().collect::<std::collections::HashSet<_>>().len() > 8
}

/// Encrypts stored responses under a key that only this server's secret and the client's
/// Idempotency-Key together give: ChaCha20-Poly1305, with a key from HKDF-SHA256 over
/// `JWT_SECRET` (the server's one secret; the `info` keeps this use apart from signing).
struct Sealer(ChaCha20Poly1305);

/// Nonce length of ChaCha20-Poly1305, stored in front of each ciphertext.
const NONCE_BYTES: usize = 12;

impl Sealer {
    fn new(state: &AppState, caller: &str, key: &str) -> Self {
        let hkdf = hkdf::Hkdf::<Sha256>::new(
            Some(b"curbside idempotency response v1"),
            state.config.jwt_secret.expose_secret().as_bytes(),
        );
        let mut derived = [0u8; 32];
        let info = [caller.as_bytes(), b"\0", key.as_bytes()].concat();
        hkdf.expand(&info, &mut derived)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self(ChaCha20Poly1305::new(&derived.into()))
    }

    fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .0
            .encrypt(&nonce, plain)
            .expect("encrypting a response in memory cannot fail");
        [&nonce[..], &sealed].concat()
    }

    fn open(&self, stored: &[u8]) -> Option<Vec<u8>> {
        let (nonce, sealed) = stored.split_at_checked(NONCE_BYTES)?;
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        self.0.decrypt(&Nonce::from(nonce), sealed).ok()
    }
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
    sqlx::query!(
        "delete from idempotency_keys where caller = $1 and key = $2
           and (created_at < now() - interval '24 hours'
                or (response_status is null and created_at < now() - interval '2 minutes'))",
        caller,
        key,
    )
    .execute(&mut *tx)
    .await?;
    let inserted = sqlx::query!(
        "insert into idempotency_keys (caller, key, request_fingerprint) values ($1, $2, $3)
         on conflict do nothing",
        caller,
        key,
        fingerprint,
    )
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 1 {
        tx.commit().await?;
        return Ok(Claim::Fresh);
    }
    let stored = sqlx::query!(
        "select request_fingerprint, response_status, response_content_type, response_body
             from idempotency_keys where caller = $1 and key = $2",
        caller,
        key,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(match stored.response_status {
        _ if stored.request_fingerprint != fingerprint => Claim::OtherRequest,
        None => Claim::InFlight,
        Some(status) => Claim::Replay {
            status: status as u16,
            content_type: stored.response_content_type,
            body: stored.response_body.unwrap_or_default(),
        },
    })
}

/// Stores the first response for replay, or frees the key after a server error (or a wrong
/// method) so the client can retry with it.
async fn keep(
    db: &PgPool,
    caller: &str,
    key: &str,
    sealer: &Sealer,
    response: Response,
) -> Response {
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
    // A server error may be retried with the same key; a 405 never reached a handler (the
    // route exists, not for that method), so it is no answer to keep either.
    if status.is_server_error() || status == StatusCode::METHOD_NOT_ALLOWED {
        release(db, caller, key).await;
    } else {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let stored = sqlx::query!(
            "update idempotency_keys
             set response_status = $3, response_content_type = $4, response_body = $5
             where caller = $1 and key = $2",
            caller,
            key,
            status.as_u16() as i16,
            content_type,
            sealer.seal(&body),
        )
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
    let released = sqlx::query!(
        "delete from idempotency_keys where caller = $1 and key = $2",
        caller,
        key,
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_keys_must_be_hard_to_guess() {
        assert!(is_strong_key("c3d7a1f0-6b2e-4d58-9a7c-1e0f2b3c4d5e"));
        assert!(is_strong_key("Zk3_q9-Lr0PmX2vT8sYw4bN6cHd1eGfA"));
        for weak in [
            "abc",
            "retry-me",
            "01936b2e-1e3a-7c4d-8e5f-0a1b2c3d4e5f",
            "00000000-0000-0000-0000-000000000000",
            &"ab".repeat(20),
            "Zk3_q9-Lr0PmX2vT8sYw4bN6cHd1eGf",
            "Zk3_q9-Lr0PmX2vT8sYw4bN6cHd1eGfA!",
        ] {
            assert!(!is_strong_key(weak), "{weak}");
        }
    }
}
