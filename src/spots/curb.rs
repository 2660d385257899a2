//! What a `serve` replica knows of the curb: its picture (`picture`), whether the change
//! feed keeps it current (`feed`), and the event streams it serves (`streams`, `events`).
//! It is part of the application state, so it uses nothing above it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::model::{Search, SearchCursor, Spot, SpotMatch, Taken};
use super::picture::Picture;
use super::streams::{Change, Streams};

/// How long after the feed's last successful read the picture still counts as current.
/// The feed reads at least every second, so this passes only when PostgreSQL is out of
/// reach or the replica is stuck; search then falls back to PostgreSQL.
const CURRENT_FOR: Duration = Duration::from_secs(3);

pub struct Curb {
    picture: RwLock<Picture>,
    /// When the feed last read the change log, in nanoseconds after `started` (0: never,
    /// or the feed is down).
    last_read: AtomicU64,
    started: Instant,
    pub streams: Arc<Streams>,
    /// Ends every stream when the server shuts down (a stream would otherwise keep its
    /// connection, and the graceful shutdown, waiting for ever).
    closing: CancellationToken,
}

impl Curb {
    pub fn new(max_streams: u32, max_streams_per_client: u32) -> Self {
        Self {
            picture: RwLock::new(Picture::default()),
            last_read: AtomicU64::new(0),
            started: Instant::now(),
            streams: Arc::new(Streams::new(
                max_streams as usize,
                max_streams_per_client as usize,
            )),
            closing: CancellationToken::new(),
        }
    }

    /// Whether the picture is loaded and the feed read the log a moment ago.
    pub fn is_current(&self) -> bool {
        match self.last_read.load(Ordering::Acquire) {
            0 => false,
            at => {
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(at))
                    < CURRENT_FOR
            }
        }
    }

    /// A page of the search from the picture, or `None` when it is not current.
    pub fn search(
        &self,
        search: &Search,
        now: DateTime<Utc>,
    ) -> Option<(Vec<SpotMatch>, Option<SearchCursor>)> {
        self.is_current()
            .then(|| self.picture().search(search, now))
    }

    pub fn picture(&self) -> RwLockReadGuard<'_, Picture> {
        self.picture.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn replace(&self, picture: Picture) {
        *self.picture.write().unwrap_or_else(PoisonError::into_inner) = picture;
    }

    /// Replaces what the picture knows of these spots with their state in PostgreSQL.
    pub(super) fn refresh(&self, spots: Vec<(Uuid, Option<Spot>, Vec<Taken>)>) {
        let mut picture = self.picture.write().unwrap_or_else(PoisonError::into_inner);
        for (id, spot, taken) in spots {
            picture.set(id, spot, taken);
        }
    }

    /// Hands these changes (in id order, all at most `settled`) to the streams whose
    /// circle holds their spot.
    pub(super) fn deliver(&self, settled: i64, changes: Vec<Change>) {
        let located = {
            let picture = self.picture();
            changes
                .into_iter()
                .map(|change| (change, picture.position(change.1)))
                .collect()
        };
        self.streams.deliver(settled, located);
    }

    pub(super) fn mark_read(&self) {
        let at = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_read.store(at.max(1), Ordering::Release);
    }

    pub(super) fn mark_down(&self) {
        self.last_read.store(0, Ordering::Release);
    }

    /// Resolves when the server begins to shut down.
    pub fn closing(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.closing.cancelled()
    }

    /// Ends every stream, now and from now on.
    pub fn close_streams(&self) {
        self.closing.cancel();
    }
}
