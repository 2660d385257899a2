//! Accounts: sign-up, sign-in, sessions and the `AuthUser` extractor other features use.

pub mod db;
pub mod model;
pub mod password;
mod routes;
pub mod token;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::AppError;
use crate::state::AppState;
use model::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::sign_up))
        .routes(routes!(routes::sign_in))
        .routes(routes!(routes::refresh))
        .routes(routes!(routes::sign_out))
        .routes(routes!(routes::change_password))
        .routes(routes!(routes::me))
}

/// A caller with a valid access token of a live session.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
}

/// The token of an `Authorization: Bearer …` header, if there is one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    /// Checks the signature and claims, then that the session is still live, so that a
    /// signed-out or password-changed session is refused on its very next request.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer_token(parts).ok_or_else(|| {
            AppError::unauthorized("missing_credentials", "an access token is required")
        })?;
        let invalid =
            || AppError::unauthorized("invalid_token", "the access token is invalid or expired");
        let claims = state.jwt.verify(token).ok_or_else(invalid)?;
        let role = db::live_session_role(&mut *state.db.acquire().await?, claims.sid, claims.sub)
            .await?
            .ok_or_else(invalid)?;
        Ok(Self {
            user_id: claims.sub,
            session_id: claims.sid,
            role,
        })
    }
}

/// A caller with the operator role: 401 without a valid token, 403 for a driver or a guest
/// (a guest token opens one reservation, never an operator's route).
#[derive(Debug, Clone, Copy)]
pub struct Operator(pub AuthUser);

impl FromRequestParts<AppState> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if bearer_token(parts).is_some_and(|token| token.starts_with(token::GUEST_TOKEN_PREFIX)) {
            return Err(AppError::Forbidden("operator"));
        }
        let user = AuthUser::from_request_parts(parts, state).await?;
        match user.role {
            Role::Operator => Ok(Self(user)),
            Role::Driver => Err(AppError::Forbidden("operator")),
        }
    }
}
