//! The reconciler: every `RECONCILE_INTERVAL_SECONDS` it finds, in PostgreSQL alone, the work
//! that a lost or failed job left undone (reservations past their end, lapsed holds, charges
//! stuck pending, unsent emails, refunds Stripe has not settled, reminders due) and does it, and deletes
//! quotes a day after they expired and the change feed's rows after its hour (an expired
//! hold reaches the feed here too, when its job was lost). Redis may lose every job; the system still
//! converges. Every step is idempotent and locks its row, so several reconcilers (one per
//! worker process) and the jobs themselves can overlap safely.

use std::time::Duration;

use crate::email::outbox;
use crate::reservations::lifecycle::{self, ChargeAttempt, Due};
use crate::reservations::{quotes, refunds, reminders};
use crate::spots;
use crate::state::AppState;

/// Rows handled per kind of work and pass; a larger backlog takes several passes.
const BATCH: i64 = 500;

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub completed: usize,
    pub expired: usize,
    pub charges_tried: usize,
    pub emails_tried: usize,
    pub refunds_tried: usize,
    pub reminded: usize,
    pub quotes_forgotten: u64,
    pub changes_forgotten: u64,
}

impl Reconciled {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One pass over everything overdue.
pub async fn reconcile(state: &AppState) -> anyhow::Result<Reconciled> {
    let mut conn = state.db.acquire().await?;
    let (ended, lapsed, charges) =
        crate::reservations::lifecycle::overdue(&mut conn, BATCH).await?;
    let emails = outbox::due(&mut conn, BATCH).await?;
    let unsettled_refunds = refunds::unsettled(&mut conn, BATCH).await?;
    let due_reminders =
        lifecycle::due_reminders(&mut conn, state.config.reminder_lead(), BATCH).await?;
    let quotes_forgotten = quotes::forget_expired(&mut conn).await?;
    let changes_forgotten = spots::db::forget_changes(&mut conn, spots::feed::RETENTION).await?;
    drop(conn);

    let mut done = Reconciled {
        quotes_forgotten,
        changes_forgotten,
        ..Reconciled::default()
    };
    for id in ended {
        if lifecycle::complete(state, id, None).await? == Due::Done {
            done.completed += 1;
        }
    }
    for id in lapsed {
        if lifecycle::expire_hold(state, id).await? == Due::Done {
            done.expired += 1;
        }
    }
    for id in charges {
        done.charges_tried += 1;
        let failure = match lifecycle::charge(state, id).await {
            Ok(ChargeAttempt::Settled) => continue,
            Ok(ChargeAttempt::ProviderUnavailable(message)) => {
                format!("Stripe is unavailable: {message}")
            }
            Ok(ChargeAttempt::Unknown(error)) | Err(error) => format!("{error:#}"),
        };
        tracing::warn!(reservation.id = %id, error = %failure, "overdue charge still failing");
    }
    for id in emails {
        done.emails_tried += 1;
        if let Err(error) = crate::email::deliver(&state.db, &state.mailer, id).await {
            tracing::warn!(outbox.id = %id, error = format!("{error:#}"), "overdue email still failing");
        }
    }
    for (id, version) in due_reminders {
        if reminders::remind(state, id, version).await? == Due::Done {
            done.reminded += 1;
        }
    }
    for refund in unsettled_refunds {
        done.refunds_tried += 1;
        if let Err(error) = refunds::follow_up(state, &refund).await {
            tracing::warn!(refund.id = %refund.id, error = format!("{error:#}"), "unsettled refund still failing");
        }
    }
    Ok(done)
}

/// Reconciles every `interval` until `shutdown` resolves. A failed pass is logged and the
/// next one tries again.
pub async fn run(state: AppState, interval: Duration, shutdown: impl Future<Output = ()>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        match reconcile(&state).await {
            Ok(done) if done.is_empty() => tracing::debug!("reconciler: nothing overdue"),
            Ok(done) => tracing::info!(?done, "reconciler finished overdue work"),
            Err(error) => tracing::error!(error = format!("{error:#}"), "reconciler pass failed"),
        }
    }
}
