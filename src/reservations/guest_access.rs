//! Guests who lost their guest token (it is shown once, at booking) get back in by email:
//! they ask for links, each link carries a single-use code valid for 15 minutes, and the
//! code is exchanged for a new guest token; the old token stops working.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::db::query_reservation;
use super::model::{PaymentStatus, Reservation, ReservationView, Status};
use crate::auth::model::Email;
use crate::auth::token::{hash_access_code, new_access_code, new_guest_token};
use crate::email::outbox::{self, NewEmail};
use crate::error::{AppError, AppResult};
use crate::extract::{Json, Path};
use crate::jobs::job::Job;
use crate::money::Cents;
use crate::payments::{CustomerId, PaymentIntentId, PaymentMethodId, SetupIntentId};
use crate::rate_limit::client_ip;
use crate::state::AppState;

/// How long an emailed code can be exchanged, in minutes.
const CODE_LIFETIME_MINUTES: i32 = 15;
/// Reservations that ended longer ago than this get no link.
const RECENT_DAYS: i32 = 30;
/// Links in one email at most, newest reservations first.
const MAX_LINKS: i64 = 20;
/// Codes are 43 URL-safe characters; anything much longer is not one.
const CODE_MAX_LENGTH: usize = 64;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessRequest {
    #[schema(example = "driver@example.com", max_length = 254)]
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessRequested {
    /// The same whether or not the address has guest reservations.
    pub detail: &'static str,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessExchange {
    /// The code from the emailed link.
    #[schema(max_length = 64)]
    pub code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessGranted {
    /// The new guest token (`cg_…`), shown once; the previous one no longer works.
    pub guest_token: String,
    pub reservation: ReservationView,
}

const REQUESTED: &str = "If this address has guest reservations that are current or ended \
                         in the last 30 days, an email with a link to each is on its way.";

/// Counts an attempt against the per-address limit (`AUTH_RATE_LIMIT_PER_MINUTE`).
async fn limit_by_address(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> AppResult<()> {
    let ip = client_ip(headers, Some(peer), state.config.trust_forwarded_for);
    let limit = state.config.auth_rate_limit_per_minute;
    state
        .limiter
        .hit("guest-access-ip", &ip.to_string(), limit)
        .await
}

/// Email links to a guest's reservations. The answer never tells whether the address has any.
#[utoipa::path(
    post, path = "/v1/reservations/access", tag = "guest access",
    security(()),
    request_body = AccessRequest,
    responses(
        (status = 202, description = "Accepted; links are emailed if there is anything to link to", body = AccessRequested),
        (status = 422, description = "`validation_failed`: not an email address"),
        (status = 429, description = "`rate_limited`: too many requests from this address or for this email (`AUTH_RATE_LIMIT_PER_MINUTE`)"),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn request_access(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<AccessRequest>,
) -> AppResult<(StatusCode, axum::Json<AccessRequested>)> {
    limit_by_address(&state, &headers, peer).await?;
    let email = Email::parse(&body.email)?;
    let limit = state.config.auth_rate_limit_per_minute;
    state
        .limiter
        .hit("guest-access-email", email.as_str(), limit)
        .await?;

    let mut tx = state.db.begin().await?;
    let reservations = recent_guest_reservations(&mut tx, email.as_str()).await?;
    let outbox_id = if reservations.is_empty() {
        None
    } else {
        let mut links = Vec::with_capacity(reservations.len());
        for reservation in &reservations {
            let code = issue_code(&mut tx, reservation.id).await?;
            links.push(format!(
                "- Reservation {}\n  {}",
                reservation.id,
                state.links.access(reservation.id, &code)
            ));
        }
        let body = format!(
            "Someone (we hope you) asked for links to your Curbside guest reservations.\n\n{}\n\n\
             Each link works once, within 15 minutes, and replaces the old link to that \
             reservation. If you did not ask, ignore this email.\n",
            links.join("\n")
        );
        let id = outbox::insert(
            &mut tx,
            &NewEmail {
                reservation_id: None,
                kind: "guest_access",
                to_address: email.as_str(),
                subject: "Your links to your Curbside reservations",
                body: &body,
            },
        )
        .await?;
        Some(id)
    };
    tx.commit().await?;
    if let Some(outbox_id) = outbox_id
        && let Err(error) = state.jobs.enqueue(Job::SendEmail { outbox_id }).await
    {
        tracing::warn!(
            error = format!("{error:#}"),
            "cannot queue the access email; the reconciler will send it"
        );
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(AccessRequested { detail: REQUESTED }),
    ))
}

/// Exchange an emailed code for a new guest token.
#[utoipa::path(
    post, path = "/v1/reservations/{id}/access", tag = "guest access",
    security(()),
    params(("id" = Uuid, Path)),
    request_body = AccessExchange,
    responses(
        (status = 200, description = "A new guest token; the old one stops working", body = AccessGranted),
        (status = 422, description = "`validation_failed`: the code is wrong, expired (15 minutes) or used already, or not for this reservation"),
        (status = 429, description = "`rate_limited`: too many attempts from this address (`AUTH_RATE_LIMIT_PER_MINUTE`)"),
    )
)]
#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn exchange_access_code(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<AccessExchange>,
) -> AppResult<axum::Json<AccessGranted>> {
    limit_by_address(&state, &headers, peer).await?;
    let refused = || AppError::validation("code", "is wrong, expired or used already");
    if body.code.is_empty() || body.code.len() > CODE_MAX_LENGTH {
        return Err(refused());
    }
    let mut tx = state.db.begin().await?;
    if !use_code(&mut tx, id, &hash_access_code(&body.code)).await? {
        return Err(refused());
    }
    let (guest_token, hash) = new_guest_token();
    let reservation = replace_guest_token(&mut tx, id, &hash)
        .await?
        .ok_or_else(refused)?;
    tx.commit().await?;
    tracing::info!("guest token replaced");
    Ok(axum::Json(AccessGranted {
        guest_token,
        reservation: ReservationView::from(&reservation),
    }))
}

/// The guest's reservations that are current or ended recently, newest first.
async fn recent_guest_reservations(
    conn: &mut PgConnection,
    email: &str,
) -> sqlx::Result<Vec<Reservation>> {
    query_reservation!(
        "select",
        "from reservations
         where email = $1 and user_id is null
           and status in ('held', 'confirmed', 'completed')
           and ends_at > now() - make_interval(days => $2)
         order by starts_at desc limit $3",
        email,
        RECENT_DAYS,
        MAX_LINKS,
    )
    .fetch_all(conn)
    .await
}

/// A new code for the reservation; only its hash is stored.
async fn issue_code(conn: &mut PgConnection, reservation_id: Uuid) -> sqlx::Result<String> {
    let (code, hash) = new_access_code();
    sqlx::query!(
        "insert into guest_access_codes (code_hash, reservation_id, expires_at)
         values ($1, $2, now() + make_interval(mins => $3))",
        hash,
        reservation_id,
        CODE_LIFETIME_MINUTES,
    )
    .execute(conn)
    .await?;
    Ok(code)
}

/// Uses the code if it is the reservation's, unexpired and unused; every other code of the
/// reservation is used up with it, so one exchange ends all outstanding links.
async fn use_code(
    conn: &mut PgConnection,
    reservation_id: Uuid,
    hash: &[u8],
) -> sqlx::Result<bool> {
    let used = sqlx::query!(
        "update guest_access_codes set used_at = now()
         where code_hash = $1 and reservation_id = $2 and used_at is null and expires_at > now()",
        hash,
        reservation_id,
    )
    .execute(&mut *conn)
    .await?;
    if used.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query!(
        "update guest_access_codes set used_at = now() where reservation_id = $1 and used_at is null",
        reservation_id,
    )
    .execute(conn)
    .await?;
    Ok(true)
}

async fn replace_guest_token(
    conn: &mut PgConnection,
    id: Uuid,
    hash: &[u8],
) -> sqlx::Result<Option<Reservation>> {
    query_reservation!(
        "update reservations set guest_token_hash = $2 where id = $1 and user_id is null
         returning",
        "",
        id,
        hash,
    )
    .fetch_optional(conn)
    .await
}
