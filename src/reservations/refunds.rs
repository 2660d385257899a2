//! Refunds by an operator: part or all of a paid bill given back through Stripe.
//!
//! A refund is written to PostgreSQL (`pending`) before Stripe is asked, under the
//! reservation's row lock; the trigger of `migrations/0010_returning_drivers.sql` counts it
//! in `refunded_cents`, whose check constraint refuses more than was paid, however many
//! operators refund at once. Stripe is then asked with the idempotency key `refund:{id}`,
//! so asking again (a lost answer, the reconciler) never refunds twice. Its answer, or
//! Stripe's `charge.refunded` webhook, or the reconciler settles the refund; the payer is
//! emailed when it succeeds.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::actions::Action;
use super::db;
use super::model::Reservation;
use super::notices::{self, Notice};
use crate::auth::Operator;
use crate::error::{AppError, AppResult, FieldError, ResultExt as _};
use crate::extract::{Json, Path};
use crate::links::AppLinks;
use crate::money::Cents;
use crate::payments::{
    PaymentError, PaymentIntentId, Refund as StripeRefund, RefundId,
    RefundRequest as StripeRefundRequest, RefundStatus,
};
use crate::state::AppState;

/// The longest reason an operator may give.
const MAX_REASON_CHARS: usize = 500;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// At most what is paid and not yet refunded.
    #[schema(minimum = 1, maximum = 100_000_000)]
    pub amount_cents: i64,
    /// Why, for support and the payment's record at Stripe (`metadata[reason]`).
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// `query_as!` for a [`StoredRefund`]: the SQL before its columns and the SQL after them.
macro_rules! query_refund {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            StoredRefund,
            $before
                + r#" id, reservation_id, amount_cents as "amount_cents: Cents", reason,
                      payment_intent_id as "payment_intent_id: PaymentIntentId",
                      stripe_refund_id as "stripe_refund_id: RefundId",
                      status as "status: RefundStatus", failure_reason, created_at,
                      updated_at "#
                + $after
            $(, $arg)*
        )
    };
}

/// A refund as stored.
#[derive(Debug, Clone)]
pub struct StoredRefund {
    pub id: Uuid,
    pub reservation_id: Uuid,
    pub amount_cents: Cents,
    pub reason: String,
    pub payment_intent_id: PaymentIntentId,
    pub stripe_refund_id: Option<RefundId>,
    pub status: RefundStatus,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundView {
    pub id: Uuid,
    pub reservation_id: Uuid,
    pub amount_cents: Cents,
    pub reason: String,
    /// `pending` until Stripe confirms it (its webhook or the reconciler settles it then);
    /// `failed` and `canceled` gave nothing back and count no more.
    pub status: RefundStatus,
    /// Stripe's `re_…`, once Stripe has answered.
    #[schema(required = true)]
    pub stripe_refund_id: Option<String>,
    /// Stripe's reason when the refund failed.
    #[schema(required = true)]
    pub failure_reason: Option<String>,
    /// The reservation's refunds so far (pending and succeeded), this one included.
    pub reservation_refunded_cents: Cents,
    /// What the reservation's payer paid.
    pub reservation_paid_cents: Cents,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RefundView {
    fn new(refund: &StoredRefund, reservation: &Reservation) -> Self {
        Self {
            id: refund.id,
            reservation_id: refund.reservation_id,
            amount_cents: refund.amount_cents,
            reason: refund.reason.clone(),
            status: refund.status,
            stripe_refund_id: refund.stripe_refund_id.as_ref().map(|id| id.to_string()),
            failure_reason: refund.failure_reason.clone(),
            reservation_refunded_cents: reservation.refunded_cents,
            reservation_paid_cents: reservation.amount_cents,
            created_at: refund.created_at,
            updated_at: refund.updated_at,
        }
    }
}

/// What Stripe says of one of our refunds: its answer to the request, a refund it lists,
/// or its refusal.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub refund_id: Uuid,
    pub status: RefundStatus,
    pub stripe_refund_id: Option<RefundId>,
    pub failure_reason: Option<String>,
}

impl Verdict {
    /// Stripe's refund, if it is one of ours (its `metadata[refund_id]`).
    pub fn of(refund: &StripeRefund) -> Option<Self> {
        Some(Self {
            refund_id: refund.refund_id?,
            status: refund.status,
            stripe_refund_id: Some(refund.id.clone()),
            failure_reason: refund.failure_reason.clone(),
        })
    }

    /// Stripe refused to make the refund at all.
    fn refused(refund_id: Uuid, message: String) -> Self {
        Self {
            refund_id,
            status: RefundStatus::Failed,
            stripe_refund_id: None,
            failure_reason: Some(message),
        }
    }
}

/// The amount and reason, checked; every bad field named.
fn parse(body: RefundRequest) -> AppResult<(Cents, String)> {
    let mut errors = Vec::new();
    if !(1..=100_000_000).contains(&body.amount_cents) {
        errors.push(FieldError::new(
            "amount_cents",
            "must be between 1 and 100000000",
        ));
    }
    let reason = body.reason.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(|c| c.is_control() && c != '\n')
    {
        errors.push(FieldError::new(
            "reason",
            format!("must be 1 to {MAX_REASON_CHARS} characters of text"),
        ));
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    Ok((Cents(body.amount_cents), reason.to_owned()))
}

/// Give back part or all of a paid bill (operators only).
#[utoipa::path(
    post, path = "/v1/reservations/{id}/refunds", tag = "refunds",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = RefundRequest,
    responses(
        (status = 201, description = "Refunded (`succeeded`), or accepted and awaiting Stripe (`pending`, e.g. while Stripe is unreachable; settled later without another request)", body = RefundView),
        (status = 403, description = "`forbidden`: the caller is not an operator (drivers and guests)"),
        (status = 404, description = "`not_found`: no such reservation"),
        (status = 409, description = "`invalid_state`: the bill is not paid (nothing to refund) or is refunded in full; `refund_exceeds_payment`: more than what is paid and not yet refunded"),
        (status = 422, description = "`validation_failed`: an amount or reason out of bounds"),
        (status = 502, description = "`bad_gateway`: Stripe refused the refund; it is recorded as `failed` and counts no more"),
    )
)]
#[tracing::instrument(skip_all, fields(reservation.id = %id))]
pub async fn refund(
    State(state): State<AppState>,
    Operator(operator): Operator,
    Path(id): Path<Uuid>,
    Json(body): Json<RefundRequest>,
) -> AppResult<(StatusCode, axum::Json<RefundView>)> {
    let (amount, reason) = parse(body)?;
    let pending = record(&state, id, operator.user_id, amount, &reason).await?;
    tracing::info!(refund.id = %pending.id, amount_cents = amount.0, "refund recorded");
    let refund = match ask_stripe(&state, &pending).await {
        Ok(Some(verdict)) => settle(&state, &verdict).await?.unwrap_or(pending),
        Ok(None) => pending,
        Err(rejected) => {
            settle(&state, &Verdict::refused(pending.id, rejected.clone())).await?;
            return Err(AppError::BadGateway(format!(
                "Stripe refused the refund: {rejected}"
            )));
        }
    };
    let reservation = db::get(&mut *state.db.acquire().await?, id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(RefundView::new(&refund, &reservation)),
    ))
}

/// Writes the refund as pending, counted against the payment, under the reservation's lock.
async fn record(
    state: &AppState,
    reservation_id: Uuid,
    operator_id: Uuid,
    amount: Cents,
    reason: &str,
) -> AppResult<StoredRefund> {
    let mut tx = state.db.begin().await?;
    let reservation = db::lock(&mut tx, reservation_id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such reservation".into()))?;
    reservation.check(Action::Refund, Utc::now())?;
    let refundable = reservation.amount_cents - reservation.refunded_cents;
    if amount > refundable {
        return Err(exceeds(refundable));
    }
    let payment_intent_id = reservation
        .stripe_payment_intent_id
        .clone()
        .ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("a paid reservation has no PaymentIntent"))
        })?;
    let refund = query_refund!(
        "insert into refunds (id, reservation_id, amount_cents, reason, requested_by,
                              payment_intent_id)
         values ($1, $2, $3, $4, $5, $6)
         returning",
        "",
        Uuid::new_v4(),
        reservation_id,
        amount as Cents,
        reason,
        operator_id,
        payment_intent_id as PaymentIntentId,
    )
    .fetch_one(&mut *tx)
    .await
    // The guarantee itself; the check above only words the common case.
    .on_constraint("reservations_refund_within_payment", || exceeds(refundable))?;
    tx.commit().await?;
    Ok(refund)
}

fn exceeds(refundable: Cents) -> AppError {
    AppError::conflict(
        "refund_exceeds_payment",
        format!(
            "at most {} is paid and not yet refunded",
            refundable.dollars()
        ),
    )
}

/// Asks Stripe to make the refund. `Ok(None)` when Stripe could not be reached or its answer
/// not read: the refund stays pending and the reconciler asks again with the same key.
/// `Err` with Stripe's message when Stripe refused it.
async fn ask_stripe(state: &AppState, refund: &StoredRefund) -> Result<Option<Verdict>, String> {
    let request = StripeRefundRequest {
        payment_intent_id: refund.payment_intent_id.clone(),
        amount_cents: refund.amount_cents,
        refund_id: refund.id,
        reservation_id: refund.reservation_id,
        reason: refund.reason.clone(),
        idempotency_key: format!("refund:{}", refund.id),
    };
    match state.payments.create_refund(&request).await {
        Ok(answer) => Ok(Some(Verdict {
            refund_id: refund.id,
            status: answer.status,
            stripe_refund_id: Some(answer.id),
            failure_reason: answer.failure_reason,
        })),
        Err(PaymentError::Rejected { message, .. }) => Err(message),
        Err(error) => {
            tracing::warn!(refund.id = %refund.id, %error, "refund not confirmed by Stripe yet; the reconciler asks again");
            Ok(None)
        }
    }
}

/// Records what Stripe says of one of our refunds, with the payer's email when it has just
/// succeeded; the settled refund, or `None` if it is not ours or nothing changed.
async fn settle(state: &AppState, verdict: &Verdict) -> AppResult<Option<StoredRefund>> {
    let mut tx = state.db.begin().await?;
    let settled = settle_in(&mut tx, &state.links, verdict).await?;
    tx.commit().await?;
    if let Some((_, reservation)) = &settled {
        super::lifecycle::schedule_follow_up(state, reservation).await;
    }
    Ok(settled.map(|(refund, _)| refund))
}

/// [`settle`] in the caller's transaction (the webhook's), returning the refund and its
/// reservation when it changed. A refund moves from `pending` to Stripe's verdict, and from
/// `succeeded` to `failed` or `canceled` (Stripe can fail a refund after the fact); a
/// verdict never moves back to `pending`.
pub async fn settle_in(
    conn: &mut PgConnection,
    links: &AppLinks,
    verdict: &Verdict,
) -> AppResult<Option<(StoredRefund, Reservation)>> {
    let Some(current) = sqlx::query_scalar!(
        r#"select status as "status: RefundStatus" from refunds where id = $1 for update"#,
        verdict.refund_id,
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let moves = match (current, verdict.status) {
        (from, to) if from == to => false,
        (RefundStatus::Pending, _) => true,
        (RefundStatus::Succeeded, RefundStatus::Failed | RefundStatus::Canceled) => true,
        _ => false,
    };
    if !moves {
        return Ok(None);
    }
    let refund = query_refund!(
        "update refunds set status = $2, stripe_refund_id = coalesce($3, stripe_refund_id),
                            failure_reason = $4
         where id = $1
         returning",
        "",
        verdict.refund_id,
        verdict.status as RefundStatus,
        verdict.stripe_refund_id.as_ref() as Option<&RefundId>,
        verdict.failure_reason,
    )
    .fetch_one(&mut *conn)
    .await?;
    let reservation = db::get(&mut *conn, refund.reservation_id).await?;
    if refund.status == RefundStatus::Succeeded {
        notices::write(
            conn,
            links,
            &reservation,
            &Notice::Refunded {
                amount: refund.amount_cents,
            },
        )
        .await?;
    }
    tracing::info!(refund.id = %refund.id, status = ?refund.status, "refund settled");
    Ok(Some((refund, reservation)))
}

/// The refunds Stripe has not settled a minute after they were asked, for the reconciler.
pub async fn unsettled(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<StoredRefund>> {
    query_refund!(
        "select",
        "from refunds where status = 'pending' and created_at <= now() - interval '60 seconds'
         order by created_at limit $1",
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Settles a refund that is still pending: asks Stripe to make it again if Stripe never
/// answered (the same key: made at most once), or reads the PaymentIntent's refunds if it
/// did. An error is trouble reaching PostgreSQL or Stripe; the next pass tries again.
pub async fn follow_up(state: &AppState, refund: &StoredRefund) -> anyhow::Result<()> {
    let verdict = match refund.stripe_refund_id {
        None => match ask_stripe(state, refund).await {
            Ok(verdict) => verdict,
            Err(rejected) => Some(Verdict::refused(refund.id, rejected)),
        },
        Some(_) => state
            .payments
            .refunds_of(&refund.payment_intent_id)
            .await?
            .iter()
            .filter_map(Verdict::of)
            .find(|verdict| verdict.refund_id == refund.id),
    };
    if let Some(verdict) = verdict {
        settle(state, &verdict).await?;
    }
    Ok(())
}

/// The reservation's refunds, oldest first, for the receipt.
pub async fn of_reservation(
    conn: &mut PgConnection,
    reservation_id: Uuid,
) -> sqlx::Result<Vec<StoredRefund>> {
    query_refund!(
        "select",
        "from refunds where reservation_id = $1 order by created_at, id",
        reservation_id,
    )
    .fetch_all(conn)
    .await
}
