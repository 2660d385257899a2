//! Background work: delayed jobs in Redis (apalis), run by workers inside `curbside serve`
//! or in `curbside worker` processes, and the reconciler that redoes from PostgreSQL alone
//! whatever a lost job left undone. Every apalis type stays inside this module.

mod handlers;
pub mod job;
pub mod queue;
pub mod reconciler;
pub mod worker;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::state::AppState;
pub use job::{Job, JobFailure};

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
