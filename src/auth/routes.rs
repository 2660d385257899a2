//! Sign-up, sign-in, token refresh, sign-out, password change and `GET /v1/me`.

use anyhow::Context as _;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AuthUser;
use super::db::{self, RefreshOutcome};
use super::model::{Email, Password, User, UserName};
use super::token::ACCESS_TOKEN_TTL;
use crate::error::{AppError, AppResult, FieldError};
use crate::extract::Json;
use crate::rate_limit::client_ip;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    /// Trimmed and compared case-insensitively.
    #[schema(example = "ada@example.com", format = Email, max_length = 254)]
    email: String,
    /// 8 to 128 characters.
    #[schema(format = Password, min_length = 8, max_length = 128)]
    password: String,
    /// Trimmed; 1 to 100 characters without control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    #[schema(example = "ada@example.com", format = Email, max_length = 254)]
    email: String,
    #[schema(format = Password, min_length = 8, max_length = 128)]
    password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(format = Password, min_length = 8, max_length = 128)]
    current_password: String,
    /// 8 to 128 characters.
    #[schema(format = Password, min_length = 8, max_length = 128)]
    new_password: String,
}

/// A signed-in session: a short-lived access token and a single-use refresh token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    user: User,
    /// Send as `Authorization: Bearer <access_token>`.
    access_token: String,
    /// Single use: exchange it at `/v1/auth/refresh` for a new pair.
    refresh_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Lifetime of the access token in seconds.
    #[schema(example = 900)]
    expires_in: i64,
}

/// Collects every field error of a request before answering, so a client fixes them all at once.
fn collect<T>(result: Result<T, FieldError>, errors: &mut Vec<FieldError>) -> Option<T> {
    result.map_err(|error| errors.push(error)).ok()
}

fn validated<T>(value: Option<T>, errors: Vec<FieldError>) -> AppResult<T> {
    match value {
        Some(value) if errors.is_empty() => Ok(value),
        _ => Err(AppError::Validation(errors)),
    }
}

/// Counts a sign-in or sign-up attempt against the limit for the client's address.
async fn limit_by_address(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> AppResult<()> {
    let ip = client_ip(headers, Some(peer), state.config.trust_forwarded_for);
    let limit = state.config.auth_rate_limit_per_minute;
    state.limiter.hit("auth-ip", &ip.to_string(), limit).await
}

/// Counts an attempt against the limit for the email it names, wherever it comes from.
async fn limit_by_email(state: &AppState, email: &Email) -> AppResult<()> {
    let limit = state.config.auth_rate_limit_per_minute;
    state.limiter.hit("auth-email", email.as_str(), limit).await
}

/// Opens a session for the user and returns its first token pair.
async fn start_session(state: &AppState, user: User) -> AppResult<TokenResponse> {
    let mut tx = state.db.begin().await?;
    let session_id = db::create_session(&mut tx, user.id).await?;
    let refresh_token = db::issue_refresh_token(&mut tx, session_id).await?;
    tx.commit().await?;
    token_response(state, user, session_id, refresh_token)
}

fn token_response(
    state: &AppState,
    user: User,
    session_id: Uuid,
    refresh_token: String,
) -> AppResult<TokenResponse> {
    Ok(TokenResponse {
        access_token: state.jwt.issue(user.id, session_id)?,
        user,
        refresh_token,
        token_type: "Bearer",
        expires_in: ACCESS_TOKEN_TTL.num_seconds(),
    })
}

/// Create an account and sign in.
#[utoipa::path(
    post, path = "/v1/auth/sign-up", tag = "auth",
    request_body = SignUpRequest,
    responses(
        (status = 201, description = "Account created and signed in", body = TokenResponse),
        (status = 409, description = "`email_taken`: an account has this email"),
        (status = 422, description = "`validation_failed`: an invalid email, a password of the wrong length or an invalid name"),
        (status = 429, description = "`rate_limited`: too many attempts from this address or for this email (`AUTH_RATE_LIMIT_PER_MINUTE`)"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn sign_up(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<SignUpRequest>,
) -> AppResult<(StatusCode, axum::Json<TokenResponse>)> {
    limit_by_address(&state, &headers, peer).await?;
    let mut errors = Vec::new();
    let email = collect(Email::parse(&body.email), &mut errors);
    let password = collect(Password::parse("password", body.password), &mut errors);
    let name = match body.name.as_deref() {
        Some(raw) => collect(UserName::parse(raw), &mut errors).map(Some),
        None => Some(None),
    };
    let (email, password, name) = validated(
        email.zip(password).zip(name).map(|((e, p), n)| (e, p, n)),
        errors,
    )?;
    limit_by_email(&state, &email).await?;

    let password_hash = state.hasher.hash(&password).await?;
    let user = db::insert_user(
        &mut *state.db.acquire().await?,
        &email,
        name.as_ref(),
        &password_hash,
    )
    .await?;
    tracing::info!(user.id = %user.id, "account created");
    let tokens = start_session(&state, user).await?;
    Ok((StatusCode::CREATED, axum::Json(tokens)))
}

/// Sign in with email and password.
#[utoipa::path(
    post, path = "/v1/auth/sign-in", tag = "auth",
    request_body = SignInRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "`invalid_credentials`: the same answer for an unknown email and a wrong password"),
        (status = 422, description = "`validation_failed`: an invalid email, or a password of the wrong length"),
        (status = 429, description = "`rate_limited`: too many attempts from this address or for this email (`AUTH_RATE_LIMIT_PER_MINUTE`)"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<SignInRequest>,
) -> AppResult<axum::Json<TokenResponse>> {
    limit_by_address(&state, &headers, peer).await?;
    let mut errors = Vec::new();
    let email = collect(Email::parse(&body.email), &mut errors);
    let password = collect(Password::parse("password", body.password), &mut errors);
    let (email, password) = validated(email.zip(password), errors)?;
    limit_by_email(&state, &email).await?;

    let found = db::find_by_email(&mut *state.db.acquire().await?, &email).await?;
    let (user, stored_hash) = found.unzip();
    let valid = state.hasher.verify(&password, stored_hash).await?;
    let user = user
        .filter(|_| valid)
        .ok_or_else(|| AppError::unauthorized("invalid_credentials", "wrong email or password"))?;
    Ok(axum::Json(start_session(&state, user).await?))
}

/// Exchange a refresh token for a new pair. Each refresh token works once; presenting a
/// used one again revokes its session.
#[utoipa::path(
    post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = TokenResponse),
        (status = 401, description = "`invalid_refresh_token`: unknown, expired or revoked; `refresh_token_reused`: used before, and the session is now revoked"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> AppResult<axum::Json<TokenResponse>> {
    let mut tx = state.db.begin().await?;
    let outcome = db::use_refresh_token(&mut tx, &body.refresh_token).await?;
    match outcome {
        RefreshOutcome::Rotated {
            session_id,
            user_id,
        } => {
            let refresh_token = db::issue_refresh_token(&mut tx, session_id).await?;
            let user = db::find_by_id(&mut tx, user_id)
                .await?
                .context("a live session has no user")?;
            tx.commit().await?;
            Ok(axum::Json(token_response(
                &state,
                user,
                session_id,
                refresh_token,
            )?))
        }
        RefreshOutcome::Reused => {
            // The revocation must stick even though the request fails.
            tx.commit().await?;
            tracing::warn!("a used refresh token was presented again; session revoked");
            Err(AppError::unauthorized(
                "refresh_token_reused",
                "this refresh token was already used; the session has been signed out",
            ))
        }
        RefreshOutcome::Invalid => Err(AppError::unauthorized(
            "invalid_refresh_token",
            "the refresh token is unknown, expired or revoked",
        )),
    }
}

/// Sign out: this session's access and refresh tokens stop working at once.
#[utoipa::path(
    post, path = "/v1/auth/sign-out", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
    )
)]
#[tracing::instrument(skip_all, fields(user.id = %user.user_id))]
pub async fn sign_out(State(state): State<AppState>, user: AuthUser) -> AppResult<StatusCode> {
    db::revoke_session(&mut *state.db.acquire().await?, user.session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the password; every other session is signed out.
#[utoipa::path(
    put, path = "/v1/auth/password", tag = "auth",
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Password changed; other sessions revoked"),
        (status = 422, description = "`validation_failed`: a wrong current password, or a password of the wrong length"),
        (status = 429, description = "`rate_limited`: too many attempts for this account (`AUTH_RATE_LIMIT_PER_MINUTE`)"),
    )
)]
#[tracing::instrument(skip_all, fields(user.id = %user.user_id))]
pub async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<ChangePasswordRequest>,
) -> AppResult<StatusCode> {
    let mut errors = Vec::new();
    let current = collect(
        Password::parse("current_password", body.current_password),
        &mut errors,
    );
    let new = collect(
        Password::parse("new_password", body.new_password),
        &mut errors,
    );
    let (current, new) = validated(current.zip(new), errors)?;
    // Guessing the current password with a stolen access token is limited like sign-in.
    state
        .limiter
        .hit(
            "password-change",
            &user.user_id.to_string(),
            state.config.auth_rate_limit_per_minute,
        )
        .await?;

    let stored = db::password_hash(&mut *state.db.acquire().await?, user.user_id).await?;
    if !state.hasher.verify(&current, Some(stored)).await? {
        return Err(AppError::validation(
            "current_password",
            "is not the current password",
        ));
    }
    let new_hash = state.hasher.hash(&new).await?;
    let mut tx = state.db.begin().await?;
    db::set_password_hash(&mut tx, user.user_id, &new_hash).await?;
    db::revoke_other_sessions(&mut tx, user.user_id, user.session_id).await?;
    tx.commit().await?;
    tracing::info!("password changed; other sessions revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(
    get, path = "/v1/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in user", body = User),
    )
)]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> AppResult<axum::Json<User>> {
    let found = db::find_by_id(&mut *state.db.acquire().await?, user.user_id)
        .await?
        .context("a live session has no user")?;
    Ok(axum::Json(found))
}
