//! What each job does: one business step, which re-reads PostgreSQL and acts only if the
//! step is still due; and what the worker should do when a step did not finish.

use super::job::{Job, JobFailure};
use crate::reservations::lifecycle::{self, ChargeAttempt, Due};
use crate::reservations::reminders;
use crate::state::AppState;

pub async fn run(state: &AppState, job: Job) -> Result<(), JobFailure> {
    match job {
        Job::EndReservation {
            reservation_id,
            version,
        } => time_triggered(lifecycle::complete(state, reservation_id, Some(version)).await),
        Job::RemindReservation {
            reservation_id,
            version,
        } => time_triggered(reminders::remind(state, reservation_id, version).await),
        // The version is informational here: a held reservation expires at its
        // `hold_expires_at` whatever changed, which the step reads from the row.
        Job::ExpireHold { reservation_id, .. } => {
            time_triggered(lifecycle::expire_hold(state, reservation_id).await)
        }
        Job::Charge { reservation_id } => match lifecycle::charge(state, reservation_id).await {
            Ok(ChargeAttempt::Settled) => Ok(()),
            Ok(ChargeAttempt::ProviderUnavailable(message)) => Err(JobFailure::Retry(
                anyhow::anyhow!("Stripe is unavailable: {message}"),
            )),
            // Retrying blindly could not tell more; the reconciler asks again later.
            Ok(ChargeAttempt::Unknown(error)) => Err(JobFailure::Abort(error)),
            Err(error) => Err(JobFailure::Retry(error)),
        },
        Job::SendEmail { outbox_id } => crate::email::deliver(&state.db, &state.mailer, outbox_id)
            .await
            .map_err(JobFailure::Retry),
    }
}

/// A job that ran before its time (clocks differ by a little) tries again shortly.
fn time_triggered(result: anyhow::Result<Due>) -> Result<(), JobFailure> {
    match result {
        Ok(Due::Done | Due::Moot) => Ok(()),
        Ok(Due::NotYet) => Err(JobFailure::Retry(anyhow::anyhow!("not due yet"))),
        Err(error) => Err(JobFailure::Retry(error)),
    }
}
