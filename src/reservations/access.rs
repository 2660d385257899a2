//! Who may see and change a reservation: the driver who booked it, or whoever holds the
//! guest token issued with it. Everyone else (other drivers, other guests, operators) is
//! told it does not exist.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{AuthUser, bearer_token};
use crate::error::AppError;

/// Guest tokens carry this prefix, which tells them from access tokens (JWTs) at a glance.
const GUEST_TOKEN_PREFIX: &str = "cg_";

/// A new guest token (256 random bits) and the hash that is stored.
pub fn new_guest_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{GUEST_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_guest_token(&token);
    (token, hash)
}

fn hash_guest_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The caller of a reservation route.
#[derive(Debug, Clone)]
pub enum Caller {
    User(AuthUser),
    /// The SHA-256 of the presented guest token.
    Guest(Vec<u8>),
}

impl Caller {
    /// What `find_for` matches on: the user id, or the guest token hash.
    pub fn keys(&self) -> (Option<Uuid>, Option<&[u8]>) {
        match self {
            Self::User(user) => (Some(user.user_id), None),
            Self::Guest(hash) => (None, Some(hash)),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match bearer_token(parts) {
            Some(token) if token.starts_with(GUEST_TOKEN_PREFIX) => {
                Ok(Self::Guest(hash_guest_token(token)))
            }
            _ => AuthUser::from_request_parts(parts, state)
                .await
                .map(Self::User),
        }
    }
}

/// The booker: a signed-in driver, or a guest (no credentials, or a guest token, which
/// opens only its own reservation and so says nothing about a new one).
#[derive(Debug, Clone, Copy)]
pub struct Booker(pub Option<AuthUser>);

impl FromRequestParts<AppState> for Booker {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match bearer_token(parts) {
            None => Ok(Self(None)),
            Some(token) if token.starts_with(GUEST_TOKEN_PREFIX) => Ok(Self(None)),
            Some(_) => AuthUser::from_request_parts(parts, state)
                .await
                .map(|user| Self(Some(user))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_tokens_are_random_prefixed_and_hashed() {
        let (a, hash_a) = new_guest_token();
        let (b, _) = new_guest_token();
        assert_ne!(a, b);
        assert!(a.starts_with("cg_") && a.len() == 46);
        assert_eq!(hash_guest_token(&a), hash_a);
    }
}
