//! Who may see and change a reservation: the driver who booked it, or whoever holds the
//! guest token issued with it. Everyone else (other drivers, other guests, operators) is
//! told it does not exist.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::auth::token::{GUEST_TOKEN_PREFIX, hash_guest_token};
use crate::auth::{AuthUser, bearer_token};
use crate::error::AppError;
use crate::state::AppState;

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
