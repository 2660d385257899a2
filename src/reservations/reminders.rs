//! Reminders before time runs out, with a one-tap extension.
//!
//! `REMINDER_MINUTES` before `ends_at` a confirmed reservation's driver is emailed a link
//! signed for that reservation's `version`, valid until `ends_at`. The link opens a page
//! (`GET`, which never changes anything: mail scanners fetch links) whose buttons `POST` an
//! extension by a chosen step. The extension goes through the same rules as `PATCH` (the
//! spot's maximum stay, the exclusion constraint, the one billing function) and bumps the
//! version, so a link works once, and a reservation changed since its reminder is reminded
//! of its new end only.
//!
//! Which reservations are reminded, and when, is `Reservation::remind_at`.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::America::New_York;
use hmac::{Hmac, Mac};
use html_escape::encode_text as escape;
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use sha2::Sha256;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::actions::Action;
use super::db;
use super::lifecycle::Due;
use super::model::Reservation;
use super::notices::{self, Notice};
use super::routes::{Locked, move_end};
use crate::error::{AppError, Problem};
use crate::extract::{Path, Query};
use crate::state::AppState;

/// The extensions a reminder offers, in minutes; those beyond the spot's maximum stay are
/// left out.
pub const STEPS: [i64; 3] = [15, 30, 60];

/// Sends the reminder of this version of the reservation, once.
pub async fn remind(state: &AppState, id: Uuid, version: i32) -> anyhow::Result<Due> {
    let lead = state.config.reminder_lead();
    let now = Utc::now();
    let mut tx = state.db.begin().await?;
    let Some(reservation) = db::lock(&mut tx, id).await? else {
        return Ok(Due::Moot);
    };
    let Some(at) = reservation.remind_at(lead) else {
        return Ok(Due::Moot);
    };
    if reservation.version != version || reservation.ends_at <= now {
        return Ok(Due::Moot);
    }
    if now < at {
        return Ok(Due::NotYet);
    }
    if !db::mark_reminded(&mut tx, id, version).await? {
        return Ok(Due::Moot);
    }
    let link = state.links.extend(id, &sign(state, &reservation));
    let email = notices::write(
        &mut tx,
        &state.links,
        &reservation,
        &Notice::Reminder { link },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(reservation.id = %id, version, "reminder written");
    super::lifecycle::send_emails(state, &[email]).await;
    Ok(Due::Done)
}

type HmacSha256 = Hmac<Sha256>;

/// The link's signing key: HMAC-SHA256 under a key from HKDF-SHA256 over `JWT_SECRET`
/// (the server's one secret; the salt keeps this use apart from tokens and stored responses).
fn signer(state: &AppState) -> HmacSha256 {
    let hkdf = hkdf::Hkdf::<Sha256>::new(
        Some(b"curbside extension link v1"),
        state.config.jwt_secret.expose_secret().as_bytes(),
    );
    let mut key = [0u8; 32];
    hkdf.expand(b"hmac", &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length")
}

fn signed_text(id: Uuid, version: i32, expires: i64) -> String {
    format!("{id}.{version}.{expires}")
}

/// `{version}.{expires}.{mac}`: valid for this version of the reservation until its end.
fn sign(state: &AppState, reservation: &Reservation) -> String {
    let expires = reservation.ends_at.timestamp();
    let mut mac = signer(state);
    mac.update(signed_text(reservation.id, reservation.version, expires).as_bytes());
    let mac = hex::encode(mac.finalize().into_bytes());
    format!("{}.{expires}.{mac}", reservation.version)
}

/// Why a link does not open an extension.
enum LinkRefusal {
    /// Not a link this server signed (or not for this reservation).
    Forged,
    /// Signed, but used, outdated by a change, or past the reservation's end.
    Spent,
}

/// The version a link was signed for, if it is a valid link for reservation `id` now.
fn verify(state: &AppState, id: Uuid, token: &str, now: DateTime<Utc>) -> Result<i32, LinkRefusal> {
    let mut parts = token.splitn(3, '.');
    let (Some(version), Some(expires), Some(mac)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(LinkRefusal::Forged);
    };
    let (Ok(version), Ok(expires), Ok(mac)) = (
        version.parse::<i32>(),
        expires.parse::<i64>(),
        hex::decode(mac),
    ) else {
        return Err(LinkRefusal::Forged);
    };
    let mut expected = signer(state);
    expected.update(signed_text(id, version, expires).as_bytes());
    expected
        .verify_slice(&mac)
        .map_err(|_| LinkRefusal::Forged)?;
    if now.timestamp() >= expires {
        return Err(LinkRefusal::Spent);
    }
    Ok(version)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// The token of the reminder's link.
    #[param(max_length = 200)]
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ExtendForm {
    /// The token of the reminder's link.
    #[schema(max_length = 200)]
    pub token: String,
    /// One of the steps the page offers: 15, 30 or 60.
    pub minutes: i64,
}

/// The page a reminder links to: the reservation's end and a button per extension that
/// fits its maximum stay. Changes nothing.
#[utoipa::path(
    get, path = "/v1/reservations/{id}/extend", tag = "reservations",
    params(("id" = Uuid, Path), LinkQuery),
    responses(
        (status = 200, description = "The page, with a button per extension (`POST` with `token` and `minutes`)", body = String, content_type = "text/html"),
        (status = 404, description = "Not a link this server signed", body = String, content_type = "text/html"),
        (status = 410, description = "The link was used, the reservation changed since, or it is over", body = String, content_type = "text/html"),
    )
)]
pub async fn extension_page(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(query): Query<LinkQuery>,
) -> Result<Response, AppError> {
    let now = Utc::now();
    let version = match verify(&state, id, &query.token, now) {
        Ok(version) => version,
        Err(refusal) => return Ok(refused_page(refusal)),
    };
    let Some(reservation) = db::get_optional(&mut *state.db.acquire().await?, id).await? else {
        return Ok(refused_page(LinkRefusal::Forged));
    };
    if reservation.version != version || reservation.check(Action::Change, now).is_err() {
        return Ok(refused_page(LinkRefusal::Spent));
    }
    let spot = crate::spots::db::find(&mut *state.db.acquire().await?, reservation.spot_id)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a reservation's spot is gone")))?;
    let max_end = reservation.starts_at + Duration::minutes(i64::from(spot.max_stay_minutes));
    let buttons: String = STEPS
        .iter()
        .filter(|&&minutes| reservation.ends_at + Duration::minutes(minutes) <= max_end)
        .map(|minutes| {
            format!(
                "<form method=\"post\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
                 <input type=\"hidden\" name=\"minutes\" value=\"{minutes}\">\
                 <button type=\"submit\">Extend by {minutes} minutes</button></form>\n",
                token = html_escape::encode_double_quoted_attribute(&query.token),
            )
        })
        .collect();
    let body = if buttons.is_empty() {
        "<p>This spot allows no longer stay.</p>".to_owned()
    } else {
        buttons
    };
    Ok(page(
        StatusCode::OK,
        "Extend your parking",
        &format!(
            "<p>Your parking ends {}.</p>\n{body}",
            escape(&new_york(reservation.ends_at))
        ),
    ))
}

/// Extends the reservation by the chosen step, once per link, under the rules of `PATCH`.
#[utoipa::path(
    post, path = "/v1/reservations/{id}/extend", tag = "reservations",
    params(("id" = Uuid, Path)),
    request_body(content = ExtendForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Extended; the page says until when", body = String, content_type = "text/html"),
        (status = 404, description = "Not a link this server signed", body = String, content_type = "text/html"),
        (status = 409, description = "The spot is booked by someone else for part of the extension", body = String, content_type = "text/html"),
        (status = 410, description = "The link was used, the reservation changed since, or it is over", body = String, content_type = "text/html"),
        (status = 422, description = "A step the page does not offer, or one beyond the spot's maximum stay (a page); a form without `token` or a whole `minutes` (a problem)", content(
            (String = "text/html"),
            (Problem = "application/problem+json"),
        )),
    )
)]
#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn extend(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    form: Result<Form<ExtendForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Form(form) = form.map_err(form_problem)?;
    let now = Utc::now();
    let version = match verify(&state, id, &form.token, now) {
        Ok(version) => version,
        Err(refusal) => return Ok(refused_page(refusal)),
    };
    if !STEPS.contains(&form.minutes) {
        return Ok(page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not extended",
            "<p>Choose one of the extensions the page offers.</p>",
        ));
    }
    let locked = match Locked::take_by_link(&state, id, Action::Change, now).await {
        Ok(locked) if locked.reservation.version == version => locked,
        Ok(_) | Err(AppError::Conflict { .. }) => return Ok(refused_page(LinkRefusal::Spent)),
        Err(AppError::NotFound(_)) => return Ok(refused_page(LinkRefusal::Forged)),
        Err(error) => return Err(error),
    };
    let requested = locked.reservation.ends_at + Duration::minutes(form.minutes);
    match move_end(&state, locked, requested, now).await {
        Ok(changed) => Ok(page(
            StatusCode::OK,
            "Extended",
            &format!(
                "<p>Your parking now ends {}. The new quote is {}.</p>",
                escape(&new_york(changed.ends_at)),
                changed.amount_cents.dollars()
            ),
        )),
        Err(AppError::Conflict { .. }) => Ok(page(
            StatusCode::CONFLICT,
            "Not extended",
            "<p>The spot is booked by someone else for part of that time.</p>",
        )),
        Err(AppError::Validation(errors)) => Ok(page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not extended",
            &format!(
                "<p>{}</p>",
                escape(
                    &errors
                        .first()
                        .map_or_else(String::new, |e| e.message.clone())
                )
            ),
        )),
        Err(error) => Err(error),
    }
}

/// A form the page never sends is bad input like any other: a problem, not a page.
fn form_problem(rejection: FormRejection) -> AppError {
    match rejection {
        FormRejection::InvalidFormContentType(_) => AppError::UnsupportedMediaType(
            "send the page's form, as application/x-www-form-urlencoded".into(),
        ),
        other => AppError::validation("form", other.body_text()),
    }
}

fn refused_page(refusal: LinkRefusal) -> Response {
    match refusal {
        LinkRefusal::Forged => page(
            StatusCode::NOT_FOUND,
            "Link not found",
            "<p>This link is not valid.</p>",
        ),
        LinkRefusal::Spent => page(
            StatusCode::GONE,
            "Link expired",
            "<p>This link was used already, the reservation changed since it was sent, or \
             the reservation is over.</p>",
        ),
    }
}

fn new_york(at: DateTime<Utc>) -> String {
    at.with_timezone(&New_York)
        .format("at %-I:%M %p %Z on %a %b %-d")
        .to_string()
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:30em;margin:2em auto}}\
         button{{font-size:1.2em;margin:.3em 0;padding:.4em 1em}}</style></head><body>\n\
         <h1>{title}</h1>\n{body}\n</body></html>\n"
    );
    (status, Html(html)).into_response()
}
