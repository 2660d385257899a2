//! Running jobs: [`FETCHERS_PER_LANE`] apalis workers per process and [`Lane`], with our own
//! retry policy, panic isolation and graceful shutdown around them.
//!
//! How apalis-redis 1.0 behaves, and what we do about it:
//! - A worker promotes due jobs when it polls; we poll every second ([`POLL_INTERVAL`]), or a
//!   due job would wait for the next heartbeat.
//! - Each worker registers under a unique name and heartbeats every [`HEARTBEAT_INTERVAL`];
//!   another worker's heartbeat re-queues the jobs of a worker silent for
//!   [`MISSED_HEARTBEATS`] intervals. So a killed process's jobs run again elsewhere within
//!   about 6–8 s (measured: 6.0 s), and a job can run twice: every job must be idempotent.
//! - Its own retries (any error but `AbortError`) come back after `attempt` seconds, up to 25
//!   times whatever `max_attempts` says (apalis-dev/apalis#503). We rather push a fresh copy
//!   of the job with an exponential delay and the attempt count, and stop after
//!   [`MAX_ATTEMPTS`]; the backend's retry is only the fallback when that push fails.
//! - A worker fetches one job at a time (`batch_size` 1): fetched jobs waiting in its buffer
//!   would stop its heartbeats while every slot is busy, and then get taken over. So each
//!   lane runs [`FETCHERS_PER_LANE`] workers, whose fetches overlap.
//! - A worker whose Redis calls fail (Redis down, or its registration reaped after a long
//!   stall) stops; we let its running jobs finish and start a new one under a new name.
//! - Finished jobs stay in Redis (`…:data`, `…:meta:<id>`, `…:done`, `…:dead`): nothing here
//!   removes them yet. apalis-core's `Vacuum::vacuum_before` deletes the data and metadata of
//!   finished jobs (not the two sets); running it now and then is left to do.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use apalis::prelude::{
    AbortError, BackendExt as _, BoxDynError, Event, Task, TaskBuilder, WorkerBuilder,
    WorkerBuilderExt as _, WorkerContext,
};
use apalis_redis::{Config, RedisStorage};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt as _, StreamExt as _};
use redis::aio::ConnectionManager;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tower::Service;
use tracing::Instrument as _;

use super::job::{Job, JobFailure};
use super::queue::{Lane, storage_config};

/// How often an idle worker looks for due jobs.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often a worker tells Redis it is alive (and re-queues the jobs of dead workers).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// Heartbeats a worker may miss before its jobs are given to others (2 s × 3 = 6 s). Small,
/// so a killed worker's jobs resume quickly; not 1, as heartbeats are whole seconds.
pub const MISSED_HEARTBEATS: usize = 3;
/// apalis workers per lane and process. Each fetches one job per Redis round trip, so one
/// alone was the bound in a burst of 10,000 endings a minute (BENCHMARKS.md).
pub const FETCHERS_PER_LANE: usize = 4;
/// Runs of one job, first included, before a `Retry` is treated as final.
pub const MAX_ATTEMPTS: usize = 10;
/// The longest wait between two runs of a failing job.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// How long shutdown waits for running jobs; those still running are dropped then, and
/// re-run by another worker once this one's heartbeats have stopped.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The domain side of the worker: runs one job.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Runs `job` once. It may be a repeat (delivery is at-least-once) or stale (no
    /// cancel): check PostgreSQL first.
    async fn handle(&self, job: Job) -> Result<(), JobFailure>;
}

/// Any `async` closure over a job is a handler (handy in tests).
#[async_trait::async_trait]
impl<F, Fut> JobHandler for F
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobFailure>> + Send + 'static,
{
    async fn handle(&self, job: Job) -> Result<(), JobFailure> {
        self(job).await
    }
}

/// Runs jobs from the queues under `prefix` with `handler`, up to `concurrency` at once in
/// each lane, until `shutdown` resolves; then takes no new job, lets running ones finish (at
/// most [`SHUTDOWN_TIMEOUT`]) and returns.
///
/// Each worker registers as `{worker_name}-{lane}-{random}`, a new name each time it
/// (re)starts, as apalis refuses a name whose heartbeats are recent. Errors from Redis
/// restart the worker after a backoff instead of ending this function: a worker process
/// should outlive a Redis outage.
pub async fn run_workers(
    redis: ConnectionManager,
    prefix: &str,
    worker_name: &str,
    concurrency: usize,
    handler: Arc<dyn JobHandler>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        concurrency > 0,
        "a worker needs a concurrency of at least 1"
    );
    let shutdown = shutdown.boxed().shared();
    let fetchers = FETCHERS_PER_LANE.min(concurrency);
    let workers = Lane::ALL
        .into_iter()
        .flat_map(|lane| (0..fetchers).map(move |n| (lane, n)));
    let workers = workers.map(|(lane, n)| {
        run_lane(
            redis.clone(),
            storage_config(prefix, lane),
            format!("{worker_name}-{}", lane.name()),
            // The lane's `concurrency` shared out among its workers.
            concurrency / fetchers + usize::from(n < concurrency % fetchers),
            handler.clone(),
            shutdown.clone(),
        )
    });
    futures_util::future::join_all(workers).await;
    Ok(())
}

/// Runs one lane's worker until `shutdown`, restarting it when Redis fails it.
async fn run_lane(
    redis: ConnectionManager,
    config: Config,
    worker_name: String,
    concurrency: usize,
    handler: Arc<dyn JobHandler>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut shutdown = pin!(shutdown);
    let mut restart_delay = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let worker = WorkerRun {
            redis: redis.clone(),
            config: config
                .clone()
                .heartbeat_interval(HEARTBEAT_INTERVAL)
                .missed_heartbeats(MISSED_HEARTBEATS)
                .batch_size(1),
            name: format!(
                "{worker_name}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            concurrency,
            handler: handler.clone(),
        };
        if let Ended::ShutDown = worker.run(shutdown.as_mut()).await {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            restart_delay = Duration::from_secs(1);
        }
        tracing::warn!(
            delay_s = restart_delay.as_secs(),
            "restarting the job worker"
        );
        tokio::select! {
            () = shutdown.as_mut() => return,
            () = tokio::time::sleep(restart_delay) => {}
        }
        restart_delay = (restart_delay * 2).min(Duration::from_secs(30));
    }
}

/// One registration of a worker with Redis, from start to stop.
struct WorkerRun {
    redis: ConnectionManager,
    config: Config,
    name: String,
    concurrency: usize,
    handler: Arc<dyn JobHandler>,
}

enum Ended {
    /// Shutdown was requested; the caller should return.
    ShutDown,
    /// The worker failed (Redis); the caller should start another.
    Failed,
}

impl WorkerRun {
    async fn run(self, shutdown: Pin<&mut (impl Future<Output = ()> + Send)>) -> Ended {
        let span = tracing::info_span!("job_worker", worker = %self.name);
        self.run_in_span(shutdown).instrument(span).await
    }

    async fn run_in_span(self, mut shutdown: Pin<&mut (impl Future<Output = ()> + Send)>) -> Ended {
        let running = Arc::new(watch::channel(0_usize).0);
        let mut idle = running.subscribe();
        let service = JobService {
            handler: self.handler,
            retries: RetryQueue {
                redis: self.redis.clone(),
                config: self.config.clone(),
            },
            running: running.clone(),
        };
        let backend = RedisStorage::<Value>::new(self.redis)
            .with_config(self.config)
            .poll_with_interval(POLL_INTERVAL);
        // We keep a handle on the worker's state to pause and stop it.
        let context = WorkerContext::new(&self.name);
        let worker = WorkerBuilder::new(&context)
            .backend(backend)
            .concurrency(self.concurrency)
            .build(service);
        let mut events = pin!(worker.stream());
        // `Some` once shutdown was requested: when we stop waiting for running jobs.
        let mut deadline: Option<Instant> = None;
        // Once told to stop, the apalis worker lets running jobs finish, hands back the ones
        // it fetched but did not start, and ends its stream. After an error while stopping it
        // must not be polled again.
        let mut stopping = false;
        loop {
            tokio::select! {
                biased;
                event = events.next() => match event {
                    None => break,
                    Some(Ok(Event::Start)) => tracing::info!("job worker started"),
                    Some(Ok(Event::Exit)) => tracing::info!("job worker stopped"),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        tracing::error!(error = %error, "job worker failed");
                        if stopping || context.stop().is_err() {
                            break;
                        }
                        stopping = true;
                    }
                },
                () = shutdown.as_mut(), if deadline.is_none() => {
                    tracing::info!("shutting down: finishing the jobs in flight");
                    deadline = Some(Instant::now() + SHUTDOWN_TIMEOUT);
                    // Paused, it takes no new job but keeps heartbeating, so a job that takes a
                    // while is not given to another worker meanwhile (stopped, it would not).
                    if !stopping && context.pause().is_err() {
                        if context.stop().is_err() {
                            break; // never started
                        }
                        stopping = true;
                    }
                }
                () = all_done(&mut idle), if deadline.is_some() && !stopping => {
                    stopping = true;
                    if context.stop().is_err() {
                        break;
                    }
                }
                () = sleep_until(deadline) => {
                    tracing::warn!(
                        running = *running.borrow(),
                        "shutdown timeout: abandoning the jobs in flight to other workers"
                    );
                    break;
                }
            }
        }
        if deadline.is_some() {
            Ended::ShutDown
        } else {
            Ended::Failed
        }
    }
}

/// Resolves when no job is running.
async fn all_done(running: &mut watch::Receiver<usize>) {
    if running.wait_for(|&n| n == 0).await.is_err() {
        std::future::pending().await // unreachable: the sender lives as long as the worker
    }
}

/// Resolves at `deadline`, never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What a run of a job left in apalis' result record (visible in its dashboard).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum JobOutcome {
    Done,
    /// Failed; a new task runs it again at `run_at` (Unix seconds).
    RetryScheduled {
        run_at: u64,
    },
}

/// The tower service apalis calls with each task: decodes the job, runs the handler on a task
/// of its own and turns its answer into apalis' terms.
struct JobService {
    handler: Arc<dyn JobHandler>,
    retries: RetryQueue,
    /// Jobs being run, so shutdown knows when they are done.
    running: Arc<watch::Sender<usize>>,
}

impl Service<Task<Value>> for JobService {
    type Response = JobOutcome;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<JobOutcome, BoxDynError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // apalis' concurrency limit, outside this service, decides when a job may start.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<Value>) -> Self::Future {
        let running = RunningGuard::new(self.running.clone());
        // apalis counts the attempt when it first polls the future: this is the next one.
        let attempt = task.ctx().attempt() + 1;
        let task_id = task
            .ctx()
            .task_id()
            .map(ToString::to_string)
            .unwrap_or_default();
        let payload = task.args;
        let kind = payload
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let span = tracing::info_span!(
            "job",
            job.kind = %kind,
            job.attempt = attempt,
            job.task_id = %task_id,
        );
        let handler = self.handler.clone();
        let retries = self.retries.clone();
        async move {
            let _running = running;
            let started = Instant::now();
            let result = run_handler(handler, payload.clone()).await;
            let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            match result {
                Ok(()) => {
                    tracing::info!(elapsed_ms, "job done");
                    Ok(JobOutcome::Done)
                }
                Err(JobFailure::Abort(error)) => {
                    tracing::warn!(elapsed_ms, error = format!("{error:#}"), "job aborted");
                    Err(AbortError::new(error).into())
                }
                Err(JobFailure::Retry(error)) => {
                    let Some(delay) = retry_delay(attempt) else {
                        tracing::error!(
                            elapsed_ms,
                            error = format!("{error:#}"),
                            "job failed {attempt} times; giving up"
                        );
                        return Err(AbortError::new(error).into());
                    };
                    match retries.push(&payload, attempt, delay).await {
                        Ok(run_at) => {
                            tracing::warn!(
                                elapsed_ms,
                                error = format!("{error:#}"),
                                retry_in_s = delay.as_secs(),
                                "job failed; will retry"
                            );
                            Ok(JobOutcome::RetryScheduled { run_at })
                        }
                        Err(push_error) => {
                            // A plain error: apalis-redis retries it itself, `attempt` seconds
                            // later, and the attempt count carries on.
                            tracing::error!(
                                elapsed_ms,
                                error = format!("{error:#}"),
                                push_error = format!("{push_error:#}"),
                                "job failed and its retry cannot be queued; leaving it to apalis"
                            );
                            Err(error.into())
                        }
                    }
                }
            }
        }
        .instrument(span)
        .boxed()
    }
}

/// Decodes and runs one job on a Tokio task of its own: jobs of one worker run in parallel
/// on all cores, and a panic ends that task only (it counts as a failed attempt).
async fn run_handler(handler: Arc<dyn JobHandler>, payload: Value) -> Result<(), JobFailure> {
    // A job this build does not know (e.g. from a newer build during a rolling deploy) is
    // retried, so a worker that knows it can take it; the attempt limit ends real garbage.
    let job: Job = serde_json::from_value(payload)
        .map_err(|error| JobFailure::Retry(anyhow!(error).context("cannot decode the job")))?;
    let mut task = AbortOnDrop(tokio::spawn(
        async move { handler.handle(job).await }.in_current_span(),
    ));
    match (&mut task.0).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => {
            let panic = error.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(JobFailure::Retry(anyhow!(
                "the job handler panicked: {message}"
            )))
        }
        Err(error) => Err(JobFailure::Retry(anyhow!(error))),
    }
}

/// Aborts the handler's task when the worker drops the job (a shutdown past its timeout, or
/// the worker itself dropped), as a killed process would: the job runs again elsewhere.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts a job as running for as long as it lives.
struct RunningGuard(Arc<watch::Sender<usize>>);

impl RunningGuard {
    fn new(running: Arc<watch::Sender<usize>>) -> Self {
        running.send_modify(|n| *n += 1);
        Self(running)
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// The wait before the next run of a job whose `attempt`-th run asked for a retry: 1 s,
/// 2 s, 4 s … up to [`MAX_RETRY_DELAY`]; `None` once [`MAX_ATTEMPTS`] runs have failed.
/// (Rounding up to whole seconds and the poll add up to 2 s: measured 2–3 s, then 3 s.)
fn retry_delay(attempt: usize) -> Option<Duration> {
    if attempt >= MAX_ATTEMPTS {
        return None;
    }
    let exponent = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(16);
    Some(Duration::from_secs(1 << exponent).min(MAX_RETRY_DELAY))
}

/// Pushes the retry of a failed job: a new task with the same payload, the attempt count so
/// far and a later run time.
#[derive(Clone)]
struct RetryQueue {
    redis: ConnectionManager,
    config: Config,
}

impl RetryQueue {
    /// Returns the run time (Unix seconds, rounded up so the delay is never shortened).
    async fn push(&self, payload: &Value, attempt: usize, delay: Duration) -> anyhow::Result<u64> {
        let since_epoch = (SystemTime::now() + delay).duration_since(UNIX_EPOCH)?;
        let run_at = since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0);
        let task = TaskBuilder::new(serde_json::to_vec(payload)?)
            .attempt(attempt)
            .run_at_timestamp(run_at)
            .build();
        let mut redis = self.redis.clone();
        apalis_redis::queries::push_tasks(&mut redis, &self.config, &[task]).await?;
        Ok(run_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_a_minute_then_stop() {
        let delays: Vec<_> = (1..=MAX_ATTEMPTS)
            .map(|attempt| retry_delay(attempt).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            delays,
            [
                Some(1),
                Some(2),
                Some(4),
                Some(8),
                Some(16),
                Some(32),
                Some(60),
                Some(60),
                Some(60),
                None
            ]
        );
        assert_eq!(retry_delay(MAX_ATTEMPTS + 5), None);
    }
}
