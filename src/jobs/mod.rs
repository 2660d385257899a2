//! Background work: delayed jobs in Redis (apalis), run by workers inside `curbside serve`
//! or in `curbside worker` processes, and the reconciler that redoes from PostgreSQL alone
//! whatever a lost job left undone. Every apalis type stays inside this module.

mod handlers;
pub mod queue;
pub mod reconciler;
pub mod worker;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::AppState;

/// Every background job. Serialized as JSON into Redis. Each must be idempotent: delivery is
/// at-least-once, and handlers re-read PostgreSQL before acting.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// At `ends_at`: complete the reservation if its version still matches.
    EndReservation {
        reservation_id: uuid::Uuid,
        version: i32,
    },
    /// At `hold_expires_at`: expire a still-held reservation.
    ExpireHold {
        reservation_id: uuid::Uuid,
        version: i32,
    },
    /// Charge the final bill off-session.
    Charge { reservation_id: uuid::Uuid },
    /// Deliver one outbox email.
    SendEmail { outbox_id: uuid::Uuid },
}

/// What a handler tells the worker.
#[derive(Debug, thiserror::Error)]
pub enum JobFailure {
    /// Try again later (after a backoff); e.g. SMTP or Stripe down.
    #[error("retry: {0}")]
    Retry(anyhow::Error),
    /// Never try again; e.g. the row is gone. (The reconciler in PostgreSQL is the safety net.)
    #[error("abort: {0}")]
    Abort(anyhow::Error),
}

/// Runs the job workers and the reconciler until `stop` is cancelled, then lets running
/// jobs finish.
pub async fn run(state: AppState, stop: CancellationToken) {
    let handler: Arc<dyn worker::JobHandler> = Arc::new(StateHandler(state.clone()));
    let workers = worker::run_workers(
        state.redis.clone(),
        &state.config.redis_key_prefix,
        "curbside",
        state.config.worker_concurrency as usize,
        handler,
        stop.clone().cancelled_owned(),
    );
    let reconciler = reconciler::run(
        state.clone(),
        state.config.reconcile_interval,
        stop.cancelled(),
    );
    let (workers, ()) = tokio::join!(workers, reconciler);
    if let Err(error) = workers {
        tracing::error!(error = format!("{error:#}"), "the job workers stopped");
    }
}

/// Runs each job against the application's state.
struct StateHandler(AppState);

#[async_trait::async_trait]
impl worker::JobHandler for StateHandler {
    async fn handle(&self, job: Job) -> Result<(), JobFailure> {
        handlers::run(&self.0, job).await
    }
}
