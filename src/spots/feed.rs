//! The change feed's reader, one per `serve` replica: loads the picture of the curb, then
//! follows `spot_changes` (migration 0012) on a connection of its own, refreshes the
//! picture with the changed spots and hands the changes, in id order and each once, to the
//! replica's event streams. It reads the log every [`POLL`]: the server's own writes do not
//! announce their changes (a `NOTIFY` would make every booking commit alone, migration
//! 0013); the connection also `LISTEN`s, so a change made by any other writer (psql, an
//! operator's script) is read as soon as it commits.
//!
//! Ids are taken in one order and committed in another, so a read may see change 11
//! before change 10 commits. Streams must get them in id order (a `Last-Event-ID` of 11
//! means "everything up to 11"), so the reader holds 11 back until 10 is either read or
//! known never to come: 10's transaction took its id after `txid` was given to it, before
//! 11 was visible; a read that first misses 10 notes its snapshot's `xmax`, and once a
//! later snapshot's `xmin` passes that, every transaction that could have written 10 has
//! ended. The picture does not wait: it takes each spot's state as soon as it is read.
//!
//! Reconnecting, the reader goes on from where it was; when the log no longer holds
//! that (it keeps an hour), it loads the picture afresh and tells every stream to resync.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use super::db::{self, FeedRead};
use super::picture::Picture;
use crate::state::AppState;

/// The channel the triggers of migration 0012 notify for writers other than the server.
const CHANNEL: &str = "spot_changes";
/// How long the change log keeps a change (the reconciler deletes older ones).
pub const RETENTION: Duration = Duration::from_secs(60 * 60);
/// How often the reader reads the log: what bounds how stale a change is here (BENCHMARKS.md
/// measures it, against a goal of 100 ms at p99). A read that finds nothing is one index
/// probe, and a read that succeeds is what keeps the picture counted as current.
const POLL: Duration = Duration::from_millis(20);
/// How long the reader waits before reconnecting after a failure.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// A read slower than this counts as PostgreSQL being out of reach.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Changes read at once.
const READ_LIMIT: i64 = 5_000;
/// At start-up, how far back the reader looks for changes still in flight.
const START_WINDOW: i64 = 10_000;
/// A jump in ids this large is not transactions in flight (a sequence reset by hand, or
/// ids a crash skipped): its ids are not waited for.
const LARGEST_GAP: i64 = 100_000;

/// Where the reader stands in the log.
struct Position {
    /// The highest id read.
    high: i64,
    /// Ids below `high` not read yet, each with the `xmax` of the snapshot that first
    /// missed it.
    missing: BTreeMap<i64, i64>,
    /// Changes read but not yet handed to the streams (an earlier id is missing).
    pending: BTreeMap<i64, Uuid>,
}

impl Position {
    fn new(start: db::FeedStart) -> Self {
        Self {
            high: start.high,
            missing: start
                .missing
                .into_iter()
                .map(|id| (id, start.xmax))
                .collect(),
            pending: start.after_missing.into_iter().collect(),
        }
    }

    /// Takes a read; returns the spots whose changes are new to it.
    fn take(&mut self, read: &FeedRead) -> Vec<Uuid> {
        let mut changed = Vec::new();
        for &(id, spot_id) in &read.changes {
            if id > self.high {
                if id - self.high <= LARGEST_GAP {
                    self.missing
                        .extend((self.high + 1..id).map(|missing| (missing, read.xmax)));
                }
                self.high = id;
            } else if self.missing.remove(&id).is_none() {
                continue;
            }
            self.pending.insert(id, spot_id);
            changed.push(spot_id);
        }
        // Every transaction that could still commit a missing id has ended.
        self.missing.retain(|_, missed_at| read.xmin < *missed_at);
        changed
    }

    /// Every change up to here is read or will never be.
    fn settled(&self) -> i64 {
        self.missing
            .first_key_value()
            .map_or(self.high, |(&id, _)| id - 1)
    }

    /// The changes up to `settled`, in id order, taken out of `pending`.
    fn settle(&mut self) -> Vec<(i64, Uuid)> {
        let later = self.pending.split_off(&(self.settled() + 1));
        std::mem::replace(&mut self.pending, later)
            .into_iter()
            .collect()
    }
}

/// Follows the feed for as long as the process runs, reconnecting after failures (the
/// picture is not current meanwhile, and search falls back to PostgreSQL).
pub async fn run(state: AppState) {
    let mut position = None;
    loop {
        if let Err(error) = follow(&state, &mut position).await {
            state.curb.mark_down();
            tracing::warn!(
                error = format!("{error:#}"),
                "the change feed stopped; reconnecting"
            );
            tokio::time::sleep(RECONNECT_AFTER).await;
        }
    }
}

async fn follow(state: &AppState, position: &mut Option<Position>) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(&state.db)
        .await
        .context("cannot connect to PostgreSQL for the change feed")?;
    // Listening before reading: whatever commits after this read is announced.
    listener.listen(CHANNEL).await?;
    // The log must still hold the change after the last one settled; an empty log may
    // have held some that its retention deleted.
    let covered = match position {
        Some(at) => db::oldest_change(&mut *state.db.acquire().await?)
            .await?
            .is_some_and(|oldest| oldest <= at.settled() + 1),
        None => false,
    };
    let at = match position {
        Some(at) if covered => at,
        _ => position.insert(load(state).await?),
    };
    loop {
        let more = tokio::time::timeout(READ_TIMEOUT, read(state, &mut listener, at))
            .await
            .context("reading the change log timed out")??;
        if more {
            continue;
        }
        tokio::select! {
            notification = listener.try_recv() => {
                // `None`: the connection was lost and is re-established by the next call;
                // the read below finds what was announced meanwhile.
                if notification?.is_some() {
                    while listener.next_buffered().is_some() {}
                }
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Loads the whole picture and where the feed stands, from one snapshot.
async fn load(state: &AppState) -> anyhow::Result<Position> {
    let started = std::time::Instant::now();
    let mut tx = state.db.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let start = db::feed_start(&mut tx, START_WINDOW).await?;
    let mut picture = Picture::builder();
    let mut spots = db::all_spots(&mut tx);
    while let Some(spot) = spots.try_next().await? {
        picture.add(spot);
    }
    drop(spots);
    let taken = db::taken(&mut *tx).await?;
    tx.commit().await?;
    let picture = picture.finish(taken);
    tracing::info!(
        spots = picture.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "picture of the curb loaded"
    );
    let loaded = start.high;
    let position = Position::new(start);
    state.curb.replace(picture);
    state.curb.streams.restart_at(position.settled(), loaded);
    state.curb.mark_read();
    Ok(position)
}

/// One read of the log on the listener's own connection; `true` when there is more.
async fn read(
    state: &AppState,
    listener: &mut PgListener,
    at: &mut Position,
) -> anyhow::Result<bool> {
    let missing: Vec<i64> = at.missing.keys().copied().collect();
    let read = db::read_changes(&mut *listener, at.high, &missing, READ_LIMIT).await?;
    let mut changed = at.take(&read);
    if !changed.is_empty() {
        changed.sort_unstable();
        changed.dedup();
        let spots = db::spots_by_id(&mut *listener, &changed).await?;
        let mut taken = db::taken_of(&mut *listener, &changed).await?;
        let refreshed = changed
            .iter()
            .map(|&id| {
                let spot = spots.iter().find(|spot| spot.id == id).cloned();
                let mine = taken.extract_if(.., |(spot_id, _)| *spot_id == id);
                (id, spot, mine.map(|(_, taken)| taken).collect())
            })
            .collect();
        state.curb.refresh(refreshed);
    }
    let settled = at.settled();
    state.curb.deliver(settled, at.settle());
    state.curb.mark_read();
    Ok(read.changes.len() as i64 >= READ_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(changes: &[i64], xmin: i64, xmax: i64) -> FeedRead {
        FeedRead {
            changes: changes
                .iter()
                .map(|&id| (id, Uuid::from_u128(id as u128)))
                .collect(),
            xmin,
            xmax,
        }
    }

    fn at(high: i64) -> Position {
        Position::new(db::FeedStart {
            high,
            missing: Vec::new(),
            after_missing: Vec::new(),
            xmax: 0,
        })
    }

    fn ids(changes: Vec<(i64, Uuid)>) -> Vec<i64> {
        changes.into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn a_change_waits_for_an_earlier_one_still_in_flight() {
        let mut at = at(9);
        at.take(&read(&[11], 100, 105));
        assert_eq!(at.settled(), 9);
        assert!(ids(at.settle()).is_empty());
        at.take(&read(&[10], 101, 106));
        assert_eq!(ids(at.settle()), [10, 11]);
    }

    #[test]
    fn a_missing_change_is_given_up_once_every_older_transaction_ended() {
        let mut at = at(9);
        at.take(&read(&[11], 100, 105));
        at.take(&read(&[], 104, 107));
        assert_eq!(
            at.settled(),
            9,
            "a transaction that may write 10 is running"
        );
        at.take(&read(&[12], 105, 108));
        assert_eq!(ids(at.settle()), [11, 12]);
    }

    #[test]
    fn a_change_is_handed_on_once() {
        let mut at = at(0);
        at.take(&read(&[1, 2], 1, 2));
        assert_eq!(ids(at.settle()), [1, 2]);
        assert!(at.take(&read(&[2], 1, 2)).is_empty());
        assert!(at.settle().is_empty());
    }

    #[test]
    fn changes_missing_at_start_up_are_waited_for() {
        // 9 and 10 are in the loaded picture, but streams get them after 8.
        let mut at = Position::new(db::FeedStart {
            high: 10,
            missing: vec![8],
            after_missing: vec![(9, Uuid::nil()), (10, Uuid::nil())],
            xmax: 50,
        });
        assert_eq!(at.settled(), 7);
        at.take(&read(&[11], 49, 52));
        assert!(at.settle().is_empty());
        at.take(&read(&[8], 49, 52));
        assert_eq!(ids(at.settle()), [8, 9, 10, 11]);
    }
}
