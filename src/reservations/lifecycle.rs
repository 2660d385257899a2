//! What happens to a reservation after booking, without a client: it ends at `ends_at`,
//! a lapsed hold expires, the final bill is charged off-session, and Stripe's payment events
//! settle charges. Jobs and the reconciler call these steps; every one re-reads PostgreSQL,
//! locks the row and checks it is still due, so running one twice changes nothing.

use anyhow::Context as _;
use chrono::Utc;
use sqlx::PgConnection;
use uuid::Uuid;

use super::actions::{Action, Refusal};
use super::billing::bill;
use super::charges;
use super::db;
use super::model::{PaymentStatus, Reservation, Status};
use super::notices::{self, Notice};
use crate::jobs::job::Job;
use crate::links::AppLinks;
use crate::payments::{Card, ChargeOutcome, ChargeRequest, PaymentError, PaymentMethodId};
use crate::state::AppState;

/// After a change commits, schedules the jobs it needs: its end or its hold's expiry, its
/// charge, and the delivery of its unsent emails. Redis losing them is harmless: the
/// reconciler finds the same work in PostgreSQL.
pub async fn schedule_follow_up(state: &AppState, reservation: &Reservation) {
    let emails = match state.db.acquire().await {
        Ok(mut conn) => db::unsent_emails(&mut conn, reservation.id).await,
        Err(error) => Err(error),
    };
    let emails = emails.unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot list unsent emails; the reconciler will send them");
        Vec::new()
    });
    schedule_with_emails(state, reservation, &emails).await;
}

/// [`schedule_follow_up`] for a caller that knows the only emails it wrote (a booking):
/// one query fewer on the busiest path.
pub async fn schedule_with_emails(state: &AppState, reservation: &Reservation, emails: &[Uuid]) {
    let job = match reservation.status {
        Status::Confirmed => Some((
            Job::EndReservation {
                reservation_id: reservation.id,
                version: reservation.version,
            },
            reservation.ends_at,
        )),
        Status::Held => reservation.hold_expires_at.map(|at| {
            (
                Job::ExpireHold {
                    reservation_id: reservation.id,
                    version: reservation.version,
                },
                at,
            )
        }),
        _ => None,
    };
    let reminder = reservation
        .remind_at(state.config.reminder_lead())
        .map(|at| {
            (
                Job::RemindReservation {
                    reservation_id: reservation.id,
                    version: reservation.version,
                },
                at,
            )
        });
    for (job, at) in job.into_iter().chain(reminder) {
        if let Err(error) = state.jobs.schedule(job, at).await {
            tracing::warn!(reservation.id = %reservation.id, error = format!("{error:#}"), "cannot schedule a job; the reconciler will do it");
        }
    }
    if reservation.payment_status == PaymentStatus::ChargePending {
        let charge = Job::Charge {
            reservation_id: reservation.id,
        };
        if let Err(error) = state.jobs.enqueue(charge).await {
            tracing::warn!(reservation.id = %reservation.id, error = format!("{error:#}"), "cannot queue the charge; the reconciler will do it");
        }
    }
    send_emails(state, emails).await;
}

/// Queues the delivery of outbox emails that a committed transaction wrote.
pub async fn send_emails(state: &AppState, emails: &[Uuid]) {
    for &outbox_id in emails {
        if let Err(error) = state.jobs.enqueue(Job::SendEmail { outbox_id }).await {
            tracing::warn!(%outbox_id, error = format!("{error:#}"), "cannot queue an email; the reconciler will send it");
        }
    }
}

/// What a time-triggered step found.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// It acted.
    Done,
    /// Its time has not come (a job that fired early, or a clock a little behind).
    NotYet,
    /// Nothing to do: changed, confirmed, cancelled or already done meanwhile.
    Moot,
}

/// Completes a confirmed reservation whose end has come, with its final bill. A job passes
/// the version it was scheduled for, and does nothing if the reservation changed since (the
/// change scheduled its own job); the reconciler passes `None`.
pub async fn complete(state: &AppState, id: Uuid, version: Option<i32>) -> anyhow::Result<Due> {
    let mut tx = state.db.begin().await?;
    let Some(reservation) = db::lock(&mut tx, id).await? else {
        return Ok(Due::Moot);
    };
    if version.is_some_and(|v| v != reservation.version) {
        return Ok(Due::Moot);
    }
    match reservation.check(Action::Complete, Utc::now()) {
        Ok(()) => {}
        Err(Refusal::NotYet) => return Ok(Due::NotYet),
        Err(_) => return Ok(Due::Moot),
    }
    let completed = finish(&mut tx, &state.links, &reservation, reservation.ends_at).await?;
    tx.commit().await?;
    tracing::info!(reservation.id = %id, amount_cents = completed.amount_cents.0, "reservation completed");
    schedule_follow_up(state, &completed).await;
    Ok(Due::Done)
}

/// Completes a locked, confirmed reservation at `ends_at` with its final bill, and writes
/// the receipt now when nothing is owed (otherwise the charge's outcome writes it). The
/// end job and an early end by the driver both finish through here.
pub async fn finish(
    conn: &mut PgConnection,
    links: &AppLinks,
    reservation: &Reservation,
    ends_at: chrono::DateTime<Utc>,
) -> anyhow::Result<Reservation> {
    let final_bill = bill(
        reservation.starts_at,
        ends_at,
        reservation.rate_cents_per_hour,
    );
    let completed = db::complete(conn, reservation.id, ends_at, final_bill).await?;
    if completed.payment_status == PaymentStatus::NotRequired {
        notices::write(conn, links, &completed, &Notice::Receipt).await?;
    }
    Ok(completed)
}

/// Expires a hold whose time is up and that no card confirmed.
pub async fn expire_hold(state: &AppState, id: Uuid) -> anyhow::Result<Due> {
    let mut tx = state.db.begin().await?;
    let Some(reservation) = db::lock(&mut tx, id).await? else {
        return Ok(Due::Moot);
    };
    match reservation.check(Action::Expire, Utc::now()) {
        Ok(()) => {}
        Err(Refusal::NotYet) => return Ok(Due::NotYet),
        Err(_) => return Ok(Due::Moot),
    }
    let expired = db::expire(&mut tx, id).await?;
    notices::write(&mut tx, &state.links, &expired, &Notice::HoldExpired).await?;
    tx.commit().await?;
    tracing::info!(reservation.id = %id, "hold expired");
    schedule_follow_up(state, &expired).await;
    Ok(Due::Done)
}

/// How an attempt at the final charge ended, for whoever runs it to decide what comes next.
#[derive(Debug)]
pub enum ChargeAttempt {
    /// Stripe answered (paid, declined, authentication asked, processing) and it is
    /// recorded, or there was nothing to charge.
    Settled,
    /// Stripe could not be reached: the same attempt, with the same idempotency key, may
    /// succeed later.
    ProviderUnavailable(String),
    /// Stripe's answer could not be read: the charge's fate is unknown. It stays pending;
    /// the reconciler asks again later with the same key, which can only return the same
    /// PaymentIntent.
    Unknown(anyhow::Error),
}

/// Charges the final bill off-session, once per attempt. The idempotency key is the same
/// every time one attempt runs, so Stripe charges at most once however often this runs; a
/// new attempt (another card, after a failure) has its own. An error is trouble with
/// PostgreSQL.
pub async fn charge(state: &AppState, id: Uuid) -> anyhow::Result<ChargeAttempt> {
    let reservation = db::get(&mut *state.db.acquire().await?, id).await?;
    if reservation.check(Action::Charge, Utc::now()).is_err() {
        return Ok(ChargeAttempt::Settled);
    }
    let (Some(customer), Some(payment_method)) = (
        reservation.stripe_customer_id.clone(),
        reservation.stripe_payment_method_id.clone(),
    ) else {
        let outcome = ChargeOutcome::Declined {
            payment_intent_id: None,
            code: "no_saved_card".into(),
            decline_code: None,
            message: "no card was saved for this reservation".into(),
        };
        settle(state, id, &outcome).await?;
        return Ok(ChargeAttempt::Settled);
    };
    // Read before charging, so the receipt has it whichever answer settles the charge first:
    // this job's, or Stripe's webhook.
    if reservation.card_last4.is_none()
        && let Some(card) = card_details(state, &payment_method).await
    {
        charges::set_card(&mut *state.db.acquire().await?, id, &card).await?;
    }
    let request = ChargeRequest {
        customer_id: customer,
        payment_method_id: payment_method,
        amount_cents: reservation.amount_cents,
        currency: reservation.currency.clone(),
        reservation_id: id,
        idempotency_key: charges::charge_key(id, reservation.charge_attempt),
    };
    let outcome = match state.payments.charge_off_session(&request).await {
        Ok(outcome) => outcome,
        Err(PaymentError::Unavailable(message)) => {
            db::count_charge_attempt(&mut *state.db.acquire().await?, id).await?;
            return Ok(ChargeAttempt::ProviderUnavailable(message));
        }
        Err(error @ PaymentError::Unexpected(_)) => {
            return Ok(ChargeAttempt::Unknown(
                anyhow::Error::new(error).context("unreadable answer to a charge"),
            ));
        }
        Err(PaymentError::Rejected { code, message, .. }) => {
            tracing::error!(reservation.id = %id, %code, %message, "Stripe refused the charge request");
            ChargeOutcome::Declined {
                payment_intent_id: None,
                code,
                decline_code: None,
                message,
            }
        }
    };
    settle(state, id, &outcome).await?;
    Ok(ChargeAttempt::Settled)
}

/// The card's brand and last four digits for the receipt; a receipt without them beats none.
async fn card_details(state: &AppState, payment_method: &PaymentMethodId) -> Option<Card> {
    match state.payments.card(payment_method).await {
        Ok(card) => card,
        Err(error) => {
            tracing::warn!(%error, "cannot read the card's brand and digits for the receipt");
            None
        }
    }
}

/// Records how a charge ended (from the charge job or Stripe's webhook), with its email, if
/// the reservation is still waiting for that answer.
pub async fn settle(state: &AppState, id: Uuid, outcome: &ChargeOutcome) -> anyhow::Result<()> {
    let mut tx = state.db.begin().await?;
    let settled = settle_in(&mut tx, &state.links, id, outcome).await?;
    tx.commit().await?;
    if let Some(settled) = settled {
        schedule_follow_up(state, &settled).await;
    }
    Ok(())
}

/// [`settle`] inside the caller's transaction; the changed reservation, if it changed.
/// The caller schedules its follow-up once the transaction commits.
pub async fn settle_in(
    conn: &mut PgConnection,
    links: &AppLinks,
    id: Uuid,
    outcome: &ChargeOutcome,
) -> anyhow::Result<Option<Reservation>> {
    let reservation = db::lock(conn, id)
        .await?
        .context("the charged reservation is gone")?;
    if !reservation.awaits_payment_result() {
        return Ok(None);
    }
    let (status, payment_intent, error, notice) = match outcome {
        ChargeOutcome::Succeeded { payment_intent_id } => (
            PaymentStatus::Paid,
            Some(payment_intent_id),
            None,
            Some(Notice::Receipt),
        ),
        ChargeOutcome::Processing { payment_intent_id } => (
            PaymentStatus::ChargePending,
            Some(payment_intent_id),
            None,
            None,
        ),
        ChargeOutcome::Declined {
            payment_intent_id,
            message,
            ..
        } => (
            PaymentStatus::Failed,
            payment_intent_id.as_ref(),
            Some(message.clone()),
            Some(Notice::PaymentFailed {
                reason: message.clone(),
                requires_action: false,
            }),
        ),
        ChargeOutcome::RequiresAction { payment_intent_id } => (
            PaymentStatus::RequiresAction,
            Some(payment_intent_id),
            Some("the bank asks the card holder to authenticate".to_owned()),
            Some(Notice::PaymentFailed {
                reason: "your bank asks you to confirm the payment".into(),
                requires_action: true,
            }),
        ),
    };
    if status == reservation.payment_status {
        return Ok(None);
    }
    if let Some(payment_intent_id) = payment_intent {
        charges::record_attempt(
            conn,
            &reservation,
            payment_intent_id,
            charges::attempt_status(status),
        )
        .await?;
    }
    let settled = db::record_payment(conn, id, status, payment_intent, error.as_deref()).await?;
    if let Some(notice) = notice {
        notices::write(conn, links, &settled, &notice).await?;
    }
    tracing::info!(reservation.id = %id, payment_status = ?status, "charge settled");
    Ok(Some(settled))
}

/// Reminders due and not written, for the reconciler: (id, version).
pub async fn due_reminders(
    conn: &mut PgConnection,
    lead: chrono::Duration,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, i32)>> {
    db::due_reminders(conn, lead, limit).await
}

/// Overdue work for the reconciler: (ended, lapsed holds, charges stuck pending).
pub async fn overdue(
    conn: &mut PgConnection,
    limit: i64,
) -> sqlx::Result<(Vec<Uuid>, Vec<Uuid>, Vec<Uuid>)> {
    db::overdue(conn, limit).await
}
