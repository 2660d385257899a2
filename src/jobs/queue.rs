//! Putting jobs on the queue: apalis-redis storage under the deployment's key prefix.
//!
//! Jobs go to one of two queues, [`Lane`]s, each with workers of its own: ends and hold
//! expiries, whose lateness keeps a spot taken, never wait behind a backlog of charges and
//! emails.
//!
//! Every key of a lane starts with `{prefix}:jobs:{lane}:` (`…:scheduled`, `…:active`,
//! `…:data`, `…:meta:<task id>`, `…:workers`, `…:inflight:<worker>`, `…:done`, `…:dead`,
//! `…:idempotency:<key>`), so deployments and test runs sharing one Redis never see each
//! other's jobs. (apalis also adds each queue's name to the global `core:apalis:queues:list`
//! for its dashboard; it holds no jobs.)
//!
//! Run times are whole seconds: apalis-redis stores them as Unix seconds and a worker promotes
//! a job once the current second (rounded down) reaches it. We round run times *up*, so a job
//! never runs before its time, and runs within about two seconds after it (the rounding plus
//! the worker's one-second poll).
//!
//! There is no cancel or reschedule in apalis (apalis-dev/apalis#139): a job that became
//! pointless stays queued, which is why jobs carry the reservation's `version` and handlers
//! re-read PostgreSQL before acting.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::TaskBuilder;
use apalis_redis::{Config, RedisStorage};
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;

use super::job::Job;

/// How long an idempotency key outlives its job's run time. Past the run time the same
/// (job, time) pair cannot be scheduled again anyway (a past time means "now"), so this only
/// has to cover clock differences between processes.
const IDEMPOTENCY_GRACE: Duration = Duration::from_secs(60);

/// A queue of its own, with workers of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Jobs due at a time users see: reservation ends and hold expiries.
    Timed,
    /// What follows a change: charges and emails.
    FollowUp,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Timed, Lane::FollowUp];

    pub fn name(self) -> &'static str {
        match self {
            Lane::Timed => "timed",
            Lane::FollowUp => "follow-up",
        }
    }

    fn of(job: &Job) -> Self {
        match job {
            Job::EndReservation { .. } | Job::ExpireHold { .. } | Job::RemindReservation { .. } => {
                Lane::Timed
            }
            Job::Charge { .. } | Job::SendEmail { .. } => Lane::FollowUp,
        }
    }
}

/// A lane's settings shared by producers ([`JobQueue`]) and consumers (the worker): the
/// queue name, and so every Redis key, comes from the prefix and the lane.
pub(super) fn storage_config(prefix: &str, lane: Lane) -> Config {
    Config::default().queue(format!("{prefix}:jobs:{}", lane.name()))
}

/// A handle to push jobs; cheap to clone (it shares the Redis connection).
#[derive(Clone)]
pub struct JobQueue {
    /// Each holds the connection and the lane's prefixed queue settings; pushes go through
    /// apalis-redis' own push script so the stored tasks are exactly what its workers expect.
    timed: RedisStorage<Job>,
    follow_up: RedisStorage<Job>,
}

impl fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobQueue")
            .field("timed", &self.timed.get_config().queue.as_ref())
            .field("follow_up", &self.follow_up.get_config().queue.as_ref())
            .finish_non_exhaustive()
    }
}

impl JobQueue {
    /// The queues under `prefix` (the app's `REDIS_KEY_PREFIX`), over an existing connection.
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        let storage =
            |lane| RedisStorage::new(redis.clone()).with_config(storage_config(prefix, lane));
        Self {
            timed: storage(Lane::Timed),
            follow_up: storage(Lane::FollowUp),
        }
    }

    fn storage(&self, lane: Lane) -> RedisStorage<Job> {
        match lane {
            Lane::Timed => self.timed.clone(),
            Lane::FollowUp => self.follow_up.clone(),
        }
    }

    /// Runs `job` as soon as a worker is free. Enqueueing the same job twice runs it twice
    /// (harmless: every job is idempotent).
    #[tracing::instrument(skip_all, fields(job = ?job))]
    pub async fn enqueue(&self, job: Job) -> anyhow::Result<()> {
        self.push(&job, Utc::now().timestamp(), None).await?;
        Ok(())
    }

    /// Runs `job` at `at`, rounded up to the whole second (never early); a time in the past
    /// means now, as [`JobQueue::enqueue`].
    ///
    /// Scheduling the same job for the same second again, before that second has passed, is
    /// a no-op: the push carries an idempotency key made of the job's JSON and its run time.
    /// apalis-redis keeps such a key until its TTL ends, even after the job has run, so the
    /// TTL is set to the time left until the run plus a minute; after that the same job can be
    /// scheduled again. The same job at another time is another run.
    #[tracing::instrument(skip_all, fields(job = ?job, %at))]
    pub async fn schedule(&self, job: Job, at: DateTime<Utc>) -> anyhow::Result<()> {
        let now = Utc::now();
        if at <= now {
            return self.enqueue(job).await;
        }
        let run_at = whole_second_at_or_after(at);
        let wait = u64::try_from(run_at - now.timestamp()).unwrap_or(0);
        let key = format!(
            "{}@{run_at}",
            serde_json::to_string(&job).context("cannot serialize the job")?
        );
        let ttl = Duration::from_secs(wait) + IDEMPOTENCY_GRACE;
        if !self.push(&job, run_at, Some((key, ttl))).await? {
            tracing::debug!("the same job is already scheduled for that time");
        }
        Ok(())
    }

    /// How many jobs wait in all lanes: scheduled for later, plus due and not yet taken by
    /// a worker. Jobs being run are not counted.
    pub async fn pending(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for lane in Lane::ALL {
            let mut storage = self.storage(lane);
            let config = storage.get_config().clone();
            let (queued, scheduled): (u64, u64) = redis::pipe()
                .llen(config.active_jobs_list())
                .zcard(config.scheduled_jobs_set())
                .query_async(storage.get_connection())
                .await
                .context("cannot count the pending jobs in Redis")?;
            total += queued + scheduled;
        }
        Ok(total)
    }

    /// Pushes one task to run at `run_at` (Unix seconds); `false` when an idempotency key
    /// showed it was already pushed.
    async fn push(
        &self,
        job: &Job,
        run_at: i64,
        idempotency: Option<(String, Duration)>,
    ) -> anyhow::Result<bool> {
        let payload = serde_json::to_vec(job).context("cannot serialize the job")?;
        let mut task = TaskBuilder::new(payload).run_at_timestamp(u64::try_from(run_at)?);
        let mut storage = self.storage(Lane::of(job));
        let mut config = storage.get_config().clone();
        if let Some((key, ttl)) = idempotency {
            task = task.idempotency_key(key);
            // The TTL is a setting of the storage, not of the task: set it per push. (Without
            // one, apalis-redis 1.0 sends `EXPIRE key 0`, which deletes the key at once, so
            // keys would never deduplicate anything.)
            config = config.idempotency_ttl(Some(ttl));
        }
        let (enqueued, scheduled) =
            apalis_redis::queries::push_tasks(storage.get_connection(), &config, &[task.build()])
                .await
                .context("cannot push the job to Redis")?;
        Ok(enqueued + scheduled > 0)
    }
}

/// `at` as Unix seconds, rounded up: apalis runs a job once the second it names has begun.
fn whole_second_at_or_after(at: DateTime<Utc>) -> i64 {
    if at.timestamp_subsec_nanos() == 0 {
        at.timestamp()
    } else {
        at.timestamp() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn run_times_are_rounded_up_to_the_second() {
        let whole = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        assert_eq!(whole_second_at_or_after(whole), whole.timestamp());
        let just_after = whole + chrono::Duration::milliseconds(1);
        assert_eq!(whole_second_at_or_after(just_after), whole.timestamp() + 1);
        let almost_next = whole + chrono::Duration::milliseconds(999);
        assert_eq!(whole_second_at_or_after(almost_next), whole.timestamp() + 1);
    }

    #[test]
    fn jobs_are_stored_as_tagged_json() {
        let id = uuid::Uuid::nil();
        let job = Job::EndReservation {
            reservation_id: id,
            version: 3,
        };
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "end_reservation", "reservation_id": id, "version": 3})
        );
        assert_eq!(serde_json::from_value::<Job>(json).unwrap(), job);
    }
}
