//! What each job does: one business step of `reservations::lifecycle`, which re-reads
//! PostgreSQL and acts only if the step is still due.

use super::{Job, JobFailure};
use crate::app::AppState;
use crate::reservations::lifecycle::{self, Due};

pub async fn run(state: &AppState, job: Job) -> Result<(), JobFailure> {
    match job {
        Job::EndReservation {
            reservation_id,
            version,
        } => time_triggered(lifecycle::complete(state, reservation_id, Some(version)).await),
        // The version is informational here: a held reservation expires at its
        // `hold_expires_at` whatever changed, which the step reads from the row.
        Job::ExpireHold { reservation_id, .. } => {
            time_triggered(lifecycle::expire_hold(state, reservation_id).await)
        }
        Job::Charge { reservation_id } => lifecycle::charge(state, reservation_id).await,
        Job::SendEmail { outbox_id } => lifecycle::deliver_email(state, outbox_id).await,
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
