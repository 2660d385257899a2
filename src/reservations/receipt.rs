//! Receipts of completed reservations: itemised JSON for apps, and the same as a printable
//! HTML page for browsers (`Accept: text/html`). The receipt email shows the same lines
//! (`notices::receipt_lines`).

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::America::New_York;
use html_escape::encode_text as escape;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::Caller;
use super::billing::billable_minutes;
use super::charges;
use super::db;
use super::model::{PaymentStatus, Reservation, Status};
use super::notices::{Place, receipt_lines};
use super::refunds::{self, StoredRefund};
use crate::error::{AppError, AppResult};
use crate::extract::Path;
use crate::money::Cents;
use crate::payments::RefundStatus;
use crate::spots;
use crate::state::AppState;

/// The time zone receipts show local times in: the city's.
const TIME_ZONE: &str = "America/New_York";

#[derive(Debug, Serialize, ToSchema)]
pub struct Receipt {
    pub reservation_id: Uuid,
    pub spot: ReceiptSpot,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// `time_zone` is always `America/New_York`, the city's.
    #[schema(example = "America/New_York")]
    pub time_zone: &'static str,
    /// `starts_at` in New York time, with its offset (RFC 3339).
    #[schema(example = "2026-12-02T09:00:00-05:00")]
    pub starts_at_local: String,
    #[schema(example = "2026-12-02T10:30:00-05:00")]
    pub ends_at_local: String,
    /// Minutes used, rounded up: what the amount is for.
    pub minutes_billed: i64,
    /// The rate locked at booking.
    pub rate_cents_per_hour: i32,
    pub amount_cents: Cents,
    #[schema(example = "usd")]
    pub currency: String,
    pub payment_status: PaymentStatus,
    /// The card charged; null when nothing was owed.
    #[schema(required = true)]
    pub card: Option<ReceiptCard>,
    /// The PaymentIntent of the latest attempt at the charge, as Stripe named its state
    /// (`succeeded`, `requires_action`, `failed`, `processing`); null when nothing was owed.
    #[schema(required = true)]
    pub payment_intent: Option<ReceiptPaymentIntent>,
    /// Given back by refunds that are pending or succeeded.
    pub refunded_cents: Cents,
    /// Every refund, oldest first, failed ones included.
    pub refunds: Vec<ReceiptRefund>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptRefund {
    pub amount_cents: Cents,
    pub status: RefundStatus,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptSpot {
    pub id: Uuid,
    pub meter_number: String,
    #[schema(required = true)]
    pub street: Option<String>,
    pub borough: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptCard {
    #[schema(example = "visa")]
    pub brand: Option<String>,
    #[schema(example = "4242")]
    pub last4: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptPaymentIntent {
    pub id: String,
    #[schema(example = "succeeded")]
    pub status: String,
}

/// The receipt of a completed reservation, as JSON or (`Accept: text/html`) a printable page.
#[utoipa::path(
    get, path = "/v1/reservations/{id}/receipt", tag = "payments",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The receipt", content(
            (Receipt = "application/json"),
            (String = "text/html"),
        )),
        (status = 404, description = "`not_found`: no such reservation, or not the caller's"),
        (status = 409, description = "`invalid_state`: the reservation is not completed (a receipt comes when it ends)"),
    )
)]
pub async fn show_receipt(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let mut conn = state.db.acquire().await?;
    let reservation = db::find_for(&mut conn, id, &caller)
        .await?
        .ok_or_else(|| AppError::NotFound("no such reservation".into()))?;
    if reservation.status != Status::Completed {
        return Err(AppError::conflict(
            "invalid_state",
            format!(
                "the reservation is {}; its receipt comes when it is completed",
                reservation.status.as_str()
            ),
        ));
    }
    let spot = spots::db::find(&mut conn, reservation.spot_id)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a reservation's spot is gone")))?;
    let latest = charges::latest_attempt(&mut conn, id).await?;
    let refunds = refunds::of_reservation(&mut conn, id).await?;
    let receipt = receipt(&reservation, spot, latest, &refunds);
    if wants_html(&headers) {
        return Ok(Html(page(&receipt, &reservation)).into_response());
    }
    Ok(axum::Json(receipt).into_response())
}

/// Whether the client asked for a page rather than JSON: a browser's `Accept` names
/// `text/html` before any JSON type.
fn wants_html(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    match (accept.find("text/html"), accept.find("json")) {
        (Some(html), Some(json)) => html < json,
        (Some(_), None) => true,
        _ => false,
    }
}

fn local(at: DateTime<Utc>) -> String {
    at.with_timezone(&New_York)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn receipt(
    reservation: &Reservation,
    spot: spots::model::Spot,
    latest: Option<(String, String)>,
    refunds: &[StoredRefund],
) -> Receipt {
    let owed = reservation.amount_cents > Cents::ZERO;
    Receipt {
        reservation_id: reservation.id,
        spot: ReceiptSpot {
            id: spot.id,
            meter_number: spot.meter_number,
            street: spot.street,
            borough: spot.borough,
        },
        starts_at: reservation.starts_at,
        ends_at: reservation.ends_at,
        time_zone: TIME_ZONE,
        starts_at_local: local(reservation.starts_at),
        ends_at_local: local(reservation.ends_at),
        minutes_billed: billable_minutes(reservation.starts_at, reservation.ends_at),
        rate_cents_per_hour: reservation.rate_cents_per_hour,
        amount_cents: reservation.amount_cents,
        currency: reservation.currency.clone(),
        payment_status: reservation.payment_status,
        card: reservation
            .card_last4
            .clone()
            .filter(|_| owed)
            .map(|last4| ReceiptCard {
                brand: reservation.card_brand.clone(),
                last4,
            }),
        payment_intent: latest
            .filter(|_| owed)
            .map(|(id, status)| ReceiptPaymentIntent { id, status }),
        refunded_cents: reservation.refunded_cents,
        refunds: refunds
            .iter()
            .map(|refund| ReceiptRefund {
                amount_cents: refund.amount_cents,
                status: refund.status,
                created_at: refund.created_at,
            })
            .collect(),
    }
}

/// The printable page: the receipt's lines, as the email has them, and its details.
fn page(receipt: &Receipt, reservation: &Reservation) -> String {
    let place = Place {
        meter_number: receipt.spot.meter_number.clone(),
        street: receipt.spot.street.clone(),
        borough: receipt.spot.borough.clone(),
    };
    let payment = receipt.payment_intent.as_ref().map_or_else(
        || "none".to_owned(),
        |pi| format!("{} ({})", pi.id, pi.status),
    );
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Curbside receipt {id}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:2em auto}}\
         th{{text-align:left;padding-right:1em}}pre{{font:inherit}}</style></head><body>\n\
         <h1>Parking receipt</h1>\n<table>\n\
         <tr><th>Reservation</th><td>{id}</td></tr>\n\
         <tr><th>Where</th><td>{place}</td></tr>\n\
         <tr><th>From</th><td>{starts} ({zone})</td></tr>\n\
         <tr><th>To</th><td>{ends} ({zone})</td></tr>\n\
         <tr><th>Payment</th><td>{status} · {payment}</td></tr>\n\
         </table>\n<pre>{lines}</pre>\n</body></html>\n",
        id = receipt.reservation_id,
        place = escape(&place.to_string()),
        starts = escape(&receipt.starts_at_local),
        ends = escape(&receipt.ends_at_local),
        zone = TIME_ZONE,
        status = serde_json::to_value(receipt.payment_status)
            .ok()
            .and_then(|status| status.as_str().map(str::to_owned))
            .unwrap_or_default(),
        payment = escape(&payment),
        lines = escape(&receipt_lines(reservation)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_the_page_and_apps_get_json() {
        let accept = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, value.parse().unwrap());
            wants_html(&headers)
        };
        assert!(accept("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert!(!accept("application/json"));
        assert!(!accept("application/json, text/html"));
        assert!(!accept("*/*"));
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[test]
    fn local_times_carry_new_yorks_offset() {
        let at = DateTime::parse_from_rfc3339("2026-07-04T23:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(local(at), "2026-07-04T19:30:00-04:00");
    }
}
