//! The job queue and workers against the real Redis, each test under a key prefix of its own
//! (removed at the end). No database: the handlers here only record what they were given.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use curbside::jobs::queue::{JobQueue, Lane};
use curbside::jobs::worker::{JobHandler, run_workers};
use curbside::jobs::{Job, JobFailure};
use redis::Commands as _;
use redis::aio::ConnectionManager;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh prefix with its Redis connection; deletes the prefix's keys when dropped.
struct TestRedis {
    prefix: String,
    redis: ConnectionManager,
}

impl TestRedis {
    async fn new() -> Self {
        let client = redis::Client::open(redis_url()).expect("REDIS_URL is valid");
        let redis = client
            .get_connection_manager()
            .await
            .expect("Redis is reachable");
        Self {
            prefix: format!("curbside-test-{}", Uuid::new_v4()),
            redis,
        }
    }

    fn queue(&self) -> JobQueue {
        JobQueue::new(self.redis.clone(), &self.prefix)
    }

    fn worker(&self, concurrency: usize, handler: Arc<dyn JobHandler>) -> TestWorker {
        TestWorker::start(self.redis.clone(), &self.prefix, concurrency, handler)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) else {
            return;
        };
        let keys: Vec<String> = conn
            .scan_match::<_, String>(format!("{}:*", self.prefix))
            .map(|keys| keys.filter_map(Result::ok).collect())
            .unwrap_or_default();
        for key in keys {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(key).query(&mut conn);
        }
        // apalis lists every queue it has seen for its dashboard.
        for lane in Lane::ALL {
            let _: redis::RedisResult<()> = redis::cmd("ZREM")
                .arg("core:apalis:queues:list")
                .arg(format!("{}:jobs:{}:workers", self.prefix, lane.name()))
                .query(&mut conn);
        }
    }
}

/// A worker process stand-in: `run_workers` on a Tokio task of its own.
struct TestWorker {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestWorker {
    fn start(
        redis: ConnectionManager,
        prefix: &str,
        concurrency: usize,
        handler: Arc<dyn JobHandler>,
    ) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let prefix = prefix.to_owned();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            run_workers(redis, &prefix, "test", concurrency, handler, shutdown).await
        });
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Graceful shutdown, as on SIGTERM.
    async fn shut_down(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().expect("not stopped yet").send(());
        (&mut self.task)
            .await
            .expect("the worker task did not panic")
    }

    /// As SIGKILL: the worker and its jobs just stop, with no word to Redis.
    fn kill(self) {
        self.task.abort();
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A run of a job as a handler saw it.
#[derive(Debug, Clone)]
struct Run {
    job: Job,
    at: DateTime<Utc>,
    instant: Instant,
}

/// Records every run; the handler answers from `outcome` (given the run's number for that
/// job, from 1).
struct Recorder {
    runs: watch::Sender<Vec<Run>>,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            runs: watch::channel(Vec::new()).0,
        })
    }

    /// A handler that records the run, then answers with `outcome(job, nth run of it)`.
    fn handler(
        self: &Arc<Self>,
        outcome: impl Fn(&Job, usize) -> Result<(), JobFailure> + Send + Sync + 'static,
    ) -> Arc<dyn JobHandler> {
        let recorder = self.clone();
        let outcome = Arc::new(outcome);
        Arc::new(move |job: Job| {
            let recorder = recorder.clone();
            let outcome = outcome.clone();
            async move {
                let nth = recorder.record(&job);
                outcome(&job, nth)
            }
        })
    }

    fn record(&self, job: &Job) -> usize {
        let mut nth = 0;
        self.runs.send_modify(|runs| {
            runs.push(Run {
                job: job.clone(),
                at: Utc::now(),
                instant: Instant::now(),
            });
            nth = runs.iter().filter(|run| run.job == *job).count();
        });
        nth
    }

    /// Waits until `n` runs were recorded, at most `limit`.
    async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Run> {
        let mut runs = self.runs.subscribe();
        timeout(limit, runs.wait_for(|runs| runs.len() >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} runs within {limit:?}; got {:?}", self.runs()))
            .expect("the recorder lives");
        self.runs()
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.borrow().clone()
    }
}

fn ok(_: &Job, _: usize) -> Result<(), JobFailure> {
    Ok(())
}

fn email() -> Job {
    Job::SendEmail {
        outbox_id: Uuid::new_v4(),
    }
}

#[tokio::test]
async fn an_enqueued_job_runs_promptly() {
    let redis = TestRedis::new().await;
    let recorder = Recorder::new();
    let _worker = redis.worker(2, recorder.handler(ok));
    // A first job, then a pause, so the second finds the worker idle, between two polls.
    redis.queue().enqueue(email()).await.unwrap();
    recorder.wait_for(1, Duration::from_secs(5)).await;
    sleep(Duration::from_millis(1300)).await;
    let job = email();

    let enqueued = Instant::now();
    redis.queue().enqueue(job.clone()).await.unwrap();

    let runs = recorder.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(runs[1].job, job);
    let latency = runs[1].instant - enqueued;
    assert!(
        latency < Duration::from_millis(1500),
        "ran after {latency:?}"
    );
}

/// Ends and hold expiries have workers of their own: a backlog of slow charges and emails
/// does not make a reservation end late.
#[tokio::test]
async fn a_backlog_of_follow_ups_does_not_delay_an_end() {
    let redis = TestRedis::new().await;
    let recorder = Recorder::new();
    let slow_recorder = recorder.clone();
    let handler: Arc<dyn JobHandler> = Arc::new(move |job: Job| {
        let recorder = slow_recorder.clone();
        async move {
            if matches!(job, Job::SendEmail { .. }) {
                sleep(Duration::from_millis(500)).await;
            }
            recorder.record(&job);
            Ok(())
        }
    });
    let _worker = redis.worker(1, handler);
    for _ in 0..10 {
        redis.queue().enqueue(email()).await.unwrap();
    }
    let end = Job::EndReservation {
        reservation_id: Uuid::new_v4(),
        version: 1,
    };
    let enqueued = Instant::now();
    redis.queue().enqueue(end.clone()).await.unwrap();

    // In one queue the end would run after the ten emails, 5 s from now.
    let runs = recorder.wait_for(11, Duration::from_secs(10)).await;
    let position = runs.iter().position(|run| run.job == end).unwrap();
    let latency = runs[position].instant - enqueued;
    assert!(
        latency < Duration::from_millis(2500) && position < 5,
        "ran after {latency:?}, behind {position} emails"
    );
}

#[tokio::test]
async fn a_scheduled_job_runs_at_its_time_never_before() {
    let redis = TestRedis::new().await;
    let queue = redis.queue();
    let recorder = Recorder::new();
    let _worker = redis.worker(2, recorder.handler(ok));
    let job = Job::EndReservation {
        reservation_id: Uuid::new_v4(),
        version: 1,
    };
    // A fraction of a second, so rounding to whole seconds matters.
    let at = Utc::now() + chrono::Duration::milliseconds(2300);

    queue.schedule(job.clone(), at).await.unwrap();
    assert_eq!(queue.pending().await.unwrap(), 1);

    let runs = recorder.wait_for(1, Duration::from_secs(8)).await;
    assert_eq!(runs[0].job, job);
    let late = runs[0].at - at;
    assert!(late >= chrono::Duration::zero(), "ran {late} early");
    // Up to a second lost to rounding up, up to a second waiting for the next poll.
    assert!(
        late < chrono::Duration::milliseconds(2500),
        "ran {late} late"
    );
    assert_eq!(queue.pending().await.unwrap(), 0);
}

#[tokio::test]
async fn scheduling_a_job_twice_for_one_time_runs_it_once_and_later_again() {
    let redis = TestRedis::new().await;
    let queue = redis.queue();
    let recorder = Recorder::new();
    let _worker = redis.worker(2, recorder.handler(ok));
    let job = Job::ExpireHold {
        reservation_id: Uuid::new_v4(),
        version: 2,
    };
    let at = Utc::now() + chrono::Duration::milliseconds(1500);

    queue.schedule(job.clone(), at).await.unwrap();
    queue.schedule(job.clone(), at).await.unwrap();
    assert_eq!(queue.pending().await.unwrap(), 1);
    recorder.wait_for(1, Duration::from_secs(6)).await;

    // Once it has run, the same job can be scheduled again (for a later time).
    queue
        .schedule(job.clone(), Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    let runs = recorder.wait_for(2, Duration::from_secs(6)).await;
    sleep(Duration::from_secs(2)).await;
    assert_eq!(recorder.runs().len(), 2, "{runs:?}");
    assert!(runs.iter().all(|run| run.job == job));
}

#[tokio::test]
async fn a_job_asking_to_retry_runs_again_after_a_growing_delay() {
    let redis = TestRedis::new().await;
    let recorder = Recorder::new();
    let _worker = redis.worker(
        2,
        recorder.handler(|_, nth| match nth {
            1 | 2 => Err(JobFailure::Retry(anyhow::anyhow!("SMTP is down"))),
            _ => Ok(()),
        }),
    );

    redis.queue().enqueue(email()).await.unwrap();

    let runs = recorder.wait_for(3, Duration::from_secs(10)).await;
    let first_wait = runs[1].instant - runs[0].instant;
    let second_wait = runs[2].instant - runs[1].instant;
    // 1 s, then 2 s, plus up to 2 s of whole-second rounding and polling.
    assert!(first_wait >= Duration::from_secs(1), "{first_wait:?}");
    assert!(first_wait < Duration::from_millis(3500), "{first_wait:?}");
    assert!(second_wait >= Duration::from_secs(2), "{second_wait:?}");
    assert!(second_wait < Duration::from_millis(4500), "{second_wait:?}");
    // It succeeded: no more runs.
    sleep(Duration::from_secs(3)).await;
    assert_eq!(recorder.runs().len(), 3);
    assert_eq!(redis.queue().pending().await.unwrap(), 0);
}

#[tokio::test]
async fn an_aborted_job_is_not_retried() {
    let redis = TestRedis::new().await;
    let recorder = Recorder::new();
    let _worker = redis.worker(
        2,
        recorder.handler(|_, _| Err(JobFailure::Abort(anyhow::anyhow!("the row is gone")))),
    );

    redis.queue().enqueue(email()).await.unwrap();

    recorder.wait_for(1, Duration::from_secs(5)).await;
    // apalis-redis would retry a plain error after 1 s, then 2 s.
    sleep(Duration::from_secs(4)).await;
    assert_eq!(recorder.runs().len(), 1);
    assert_eq!(redis.queue().pending().await.unwrap(), 0);
}

#[tokio::test]
async fn a_panicking_handler_fails_that_run_only() {
    let redis = TestRedis::new().await;
    let queue = redis.queue();
    let recorder = Recorder::new();
    let boom = email();
    let panicky = boom.clone();
    let _worker = redis.worker(
        1,
        recorder.handler(move |job, nth| {
            assert!(!(*job == panicky && nth == 1), "handler bug");
            Ok(())
        }),
    );

    queue.enqueue(boom.clone()).await.unwrap();
    let other = email();
    queue.enqueue(other.clone()).await.unwrap();

    // The worker goes on with the other job, and runs the first one again as a retry.
    let runs = recorder.wait_for(3, Duration::from_secs(8)).await;
    let count = |job: &Job| runs.iter().filter(|run| run.job == *job).count();
    assert_eq!(count(&boom), 2);
    assert_eq!(count(&other), 1);
}

#[tokio::test]
async fn two_workers_never_run_the_same_job_twice() {
    const JOBS: usize = 200;
    let redis = TestRedis::new().await;
    let queue = redis.queue();
    // Outbox id → the workers that ran it.
    let seen: Arc<Mutex<HashMap<Uuid, Vec<&'static str>>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let handler = |name: &'static str| -> Arc<dyn JobHandler> {
        let seen = seen.clone();
        let done = done.clone();
        Arc::new(move |job: Job| {
            let seen = seen.clone();
            let done = done.clone();
            async move {
                sleep(Duration::from_millis(20)).await;
                let Job::SendEmail { outbox_id } = job else {
                    panic!("only emails here");
                };
                seen.lock()
                    .unwrap()
                    .entry(outbox_id)
                    .or_default()
                    .push(name);
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
    };
    // Queued first, so both workers find them waiting: one alone needs a second for them.
    let ids: Vec<Uuid> = (0..JOBS).map(|_| Uuid::new_v4()).collect();
    for &outbox_id in &ids {
        queue.enqueue(Job::SendEmail { outbox_id }).await.unwrap();
    }
    let _one = redis.worker(4, handler("one"));
    let _two = redis.worker(4, handler("two"));

    let started = Instant::now();
    while done.load(Ordering::SeqCst) < JOBS && started.elapsed() < Duration::from_secs(30) {
        sleep(Duration::from_millis(50)).await;
    }
    // Room for a duplicate to show up.
    sleep(Duration::from_secs(2)).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), JOBS, "every job ran");
    let twice: Vec<_> = seen.iter().filter(|(_, runs)| runs.len() > 1).collect();
    assert!(twice.is_empty(), "ran more than once: {twice:?}");
    for name in ["one", "two"] {
        let by = seen.values().filter(|runs| runs[0] == name).count();
        assert!(by > 0, "worker {name} ran no job");
    }
    assert!(ids.iter().all(|id| seen.contains_key(id)));
}

#[tokio::test]
async fn queues_under_different_prefixes_do_not_share_jobs() {
    let ours = TestRedis::new().await;
    let theirs = TestRedis::new().await;
    let recorder = Recorder::new();
    let _worker = ours.worker(2, recorder.handler(ok));
    let their_job = email();
    let our_job = email();

    theirs.queue().enqueue(their_job).await.unwrap();
    ours.queue().enqueue(our_job.clone()).await.unwrap();

    recorder.wait_for(1, Duration::from_secs(5)).await;
    sleep(Duration::from_millis(1500)).await;
    let runs = recorder.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].job, our_job);
    assert_eq!(theirs.queue().pending().await.unwrap(), 1);
    assert_eq!(ours.queue().pending().await.unwrap(), 0);
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_running_job_and_takes_no_new_one() {
    let redis = TestRedis::new().await;
    let queue = redis.queue();
    let started = Recorder::new();
    let finished = Recorder::new();
    let handler: Arc<dyn JobHandler> = {
        let (started, finished) = (started.clone(), finished.clone());
        Arc::new(move |job: Job| {
            let (started, finished) = (started.clone(), finished.clone());
            async move {
                started.record(&job);
                sleep(Duration::from_secs(2)).await;
                finished.record(&job);
                Ok(())
            }
        })
    };
    let worker = redis.worker(1, handler.clone());
    let slow = email();
    queue.enqueue(slow.clone()).await.unwrap();
    started.wait_for(1, Duration::from_secs(5)).await;

    let stopping = tokio::spawn(worker.shut_down());
    // Its only slot is busy, so this one could only be taken after shutdown began.
    let late = email();
    queue.enqueue(late.clone()).await.unwrap();
    timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown within the job's time")
        .unwrap()
        .expect("a clean shutdown");

    assert_eq!(finished.runs().len(), 1, "the running job finished");
    assert_eq!(started.runs().len(), 1, "no job started after shutdown");
    assert_eq!(queue.pending().await.unwrap(), 1);

    // The next worker runs the waiting job; the finished one was acknowledged, so it does
    // not come back once the stopped worker counts as dead (6 s without heartbeats).
    let _next = redis.worker(1, handler);
    finished.wait_for(2, Duration::from_secs(8)).await;
    sleep(Duration::from_secs(8)).await;
    let runs = started.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1].job, late);
}

#[tokio::test]
async fn the_job_of_a_killed_worker_is_run_by_another() {
    let redis = TestRedis::new().await;
    let recorder = Recorder::new();
    // The first run hangs for ever, as if its process froze or died.
    let handler: Arc<dyn JobHandler> = {
        let recorder = recorder.clone();
        Arc::new(move |job: Job| {
            let recorder = recorder.clone();
            async move {
                if recorder.record(&job) == 1 {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        })
    };
    let doomed = redis.worker(2, handler.clone());
    let job = email();
    redis.queue().enqueue(job.clone()).await.unwrap();
    recorder.wait_for(1, Duration::from_secs(5)).await;
    let _survivor = redis.worker(2, handler);

    let killed = Instant::now();
    doomed.kill();

    let runs = recorder.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(runs[1].job, job);
    let takeover = runs[1].instant - killed;
    // 3 missed heartbeats of 2 s, counted in whole seconds, found by the next heartbeat.
    assert!(
        takeover <= Duration::from_secs(10),
        "taken over after {takeover:?}"
    );
    sleep(Duration::from_secs(1)).await;
    assert_eq!(recorder.runs().len(), 2);
}

#[tokio::test]
async fn a_job_longer_than_the_heartbeat_timeout_is_not_taken_over() {
    let redis = TestRedis::new().await;
    let recorder = Recorder::new();
    let handler: Arc<dyn JobHandler> = {
        let recorder = recorder.clone();
        Arc::new(move |job: Job| {
            let recorder = recorder.clone();
            async move {
                recorder.record(&job);
                sleep(Duration::from_secs(9)).await;
                Ok(())
            }
        })
    };
    // Each has one slot: the busy worker must go on heartbeating, or the idle one takes
    // its job after 6 s.
    let _busy = redis.worker(1, handler.clone());
    redis.queue().enqueue(email()).await.unwrap();
    recorder.wait_for(1, Duration::from_secs(5)).await;
    let _idle = redis.worker(1, handler);

    sleep(Duration::from_secs(11)).await;
    assert_eq!(recorder.runs().len(), 1);
}
