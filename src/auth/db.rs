//! Queries for users, sessions and refresh tokens. Each takes a connection, so the caller
//! decides what runs in one transaction.

use chrono::Utc;
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{Email, Role, User, UserName};
use super::token::{REFRESH_TOKEN_TTL, hash_refresh_token, new_refresh_token};
use crate::error::{AppError, AppResult, ResultExt as _};

pub async fn insert_user(
    conn: &mut PgConnection,
    email: &Email,
    name: Option<&UserName>,
    password_hash: &str,
) -> AppResult<User> {
    sqlx::query_as!(
        User,
        r#"insert into users (id, email, name, password_hash)
           values ($1, $2, $3, $4)
           returning id, email, name, role as "role: Role", created_at"#,
        Uuid::now_v7(),
        email.as_str(),
        name.map(UserName::as_str),
        password_hash,
    )
    .fetch_one(conn)
    .await
    .on_constraint("users_email_key", || {
        AppError::conflict("email_taken", "an account with this email already exists")
    })
}

/// The user with this email and their password hash, if there is one.
pub async fn find_by_email(
    conn: &mut PgConnection,
    email: &Email,
) -> sqlx::Result<Option<(User, String)>> {
    let row = sqlx::query!(
        r#"select id, email, name, role as "role: Role", created_at, password_hash
           from users where email = $1"#,
        email.as_str(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| {
        let user = User {
            id: row.id,
            email: row.email,
            name: row.name,
            role: row.role,
            created_at: row.created_at,
        };
        (user, row.password_hash)
    }))
}

pub async fn find_by_id(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"select id, email, name, role as "role: Role", created_at from users where id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await
}

pub async fn password_hash(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<String> {
    sqlx::query_scalar!("select password_hash from users where id = $1", user_id)
        .fetch_one(conn)
        .await
}

pub async fn set_password_hash(
    conn: &mut PgConnection,
    user_id: Uuid,
    password_hash: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update users set password_hash = $2 where id = $1",
        user_id,
        password_hash,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives an existing account the operator role; false when there is no such account.
pub async fn make_operator(conn: &mut PgConnection, email: &Email) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "update users set role = 'operator' where email = $1",
        email.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

pub async fn create_session(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<Uuid> {
    let session_id = Uuid::new_v4();
    sqlx::query!(
        "insert into sessions (id, user_id) values ($1, $2)",
        session_id,
        user_id,
    )
    .execute(conn)
    .await?;
    Ok(session_id)
}

/// Stores a new refresh token for the session and returns it (the only time it is seen).
pub async fn issue_refresh_token(
    conn: &mut PgConnection,
    session_id: Uuid,
) -> sqlx::Result<String> {
    let token = new_refresh_token();
    sqlx::query!(
        "insert into refresh_tokens (token_hash, session_id, expires_at) values ($1, $2, $3)",
        hash_refresh_token(&token),
        session_id,
        Utc::now() + REFRESH_TOKEN_TTL,
    )
    .execute(conn)
    .await?;
    Ok(token)
}

/// What presenting a refresh token found.
pub enum RefreshOutcome {
    /// The token was live and is now used up; here is its session and user.
    Rotated { session_id: Uuid, user_id: Uuid },
    /// The token had been used before: someone holds a copy. The session is now revoked.
    Reused,
    /// Unknown, expired, or of a revoked session.
    Invalid,
}

/// Marks a refresh token used, atomically, so two concurrent refreshes with one token
/// cannot both succeed.
pub async fn use_refresh_token(
    conn: &mut PgConnection,
    token: &str,
) -> sqlx::Result<RefreshOutcome> {
    let hash = hash_refresh_token(token);
    let rotated = sqlx::query!(
        "update refresh_tokens t set used_at = now()
         from sessions s
         where t.token_hash = $1 and s.id = t.session_id
           and t.used_at is null and t.expires_at > now() and s.revoked_at is null
         returning s.id as session_id, s.user_id",
        &hash,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(rotated) = rotated {
        return Ok(RefreshOutcome::Rotated {
            session_id: rotated.session_id,
            user_id: rotated.user_id,
        });
    }
    let reused = sqlx::query_scalar!(
        "select session_id from refresh_tokens where token_hash = $1 and used_at is not null",
        &hash,
    )
    .fetch_optional(&mut *conn)
    .await?;
    match reused {
        Some(session_id) => {
            revoke_session(conn, session_id).await?;
            Ok(RefreshOutcome::Reused)
        }
        None => Ok(RefreshOutcome::Invalid),
    }
}

pub async fn revoke_session(conn: &mut PgConnection, session_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "update sessions set revoked_at = now() where id = $1 and revoked_at is null",
        session_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn revoke_other_sessions(
    conn: &mut PgConnection,
    user_id: Uuid,
    keep: Uuid,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update sessions set revoked_at = now()
         where user_id = $1 and id <> $2 and revoked_at is null",
        user_id,
        keep,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The role of the session's user, if the session is live.
pub async fn live_session_role(
    conn: &mut PgConnection,
    session_id: Uuid,
    user_id: Uuid,
) -> sqlx::Result<Option<Role>> {
    sqlx::query_scalar!(
        r#"select u.role as "role: Role" from sessions s join users u on u.id = s.user_id
           where s.id = $1 and s.user_id = $2 and s.revoked_at is null"#,
        session_id,
        user_id,
    )
    .fetch_optional(conn)
    .await
}

/// Whether a guest token still opens a reservation (one replaced since opens none).
pub async fn guest_token_is_live(conn: &mut PgConnection, hash: &[u8]) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from reservations where guest_token_hash = $1) as "live!""#,
        hash,
    )
    .fetch_one(conn)
    .await
}
