//! The open event streams of this process and the dispatcher that hands them changes
//! (`Streams::deliver`, run by the feed): it finds the streams a change concerns and
//! queues its id on each (at most `QUEUE` waiting; past that the stream is marked to
//! resync); each stream (`events`) turns ids into events when its client can take them.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::model::Watch;
use super::picture::{Position, distance_m};
use crate::error::{AppError, AppResult};

/// Changes waiting for one stream's client before it is told to resync instead.
const QUEUE: usize = 256;
/// Changes each replica remembers for streams that resume, before asking the log.
const REMEMBERED: usize = 100_000;

/// A change of one spot, as the dispatcher queues it.
pub(super) type Change = (i64, Uuid);

/// The open streams and what the dispatcher has handed on.
pub struct Streams {
    registry: Mutex<Registry>,
    max_streams: usize,
    max_per_client: usize,
}

struct Registry {
    next: u64,
    open: HashMap<u64, Watcher>,
    per_client: HashMap<IpAddr, usize>,
    /// Every change up to this id has been dispatched.
    delivered: i64,
    /// The changes in `(remembered_from, delivered]`, oldest first.
    remembered: VecDeque<Change>,
    remembered_from: i64,
}

struct Watcher {
    watch: Watch,
    queue: mpsc::Sender<Change>,
    resync: Arc<AtomicBool>,
}

impl Watcher {
    fn concerns(&self, lat: f64, lng: f64) -> bool {
        let circle = &self.watch.circle;
        // A degree of latitude is at least 110 km: a cheap test rules out most streams.
        let degrees = circle.radius_m / 110_000.0;
        (lat - circle.lat).abs() <= degrees
            && distance_m(lat, lng, circle.lat, circle.lng) <= circle.radius_m
    }
}

/// Where a new stream starts.
pub(super) enum Start {
    /// A snapshot, then the changes after `delivered`.
    Snapshot,
    /// The changes after `last` (the client's `Last-Event-ID`) that it missed, known here.
    Remembered(Vec<Change>),
    /// Those changes are older than this replica remembers: read them from the log.
    FromLog,
}

/// A stream's place among the open ones; leaving it (the client went) closes it there.
pub(super) struct Registration {
    streams: Arc<Streams>,
    id: u64,
    client: IpAddr,
    pub(super) queue: mpsc::Receiver<Change>,
    pub(super) resync: Arc<AtomicBool>,
    /// The dispatcher's position when the stream was opened (or last resynced).
    pub(super) delivered: i64,
    pub(super) start: Start,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = self.streams.lock();
        registry.open.remove(&self.id);
        if let Some(count) = registry.per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                registry.per_client.remove(&self.client);
            }
        }
    }
}

impl Streams {
    pub fn new(max_streams: usize, max_per_client: usize) -> Self {
        Self {
            registry: Mutex::new(Registry {
                next: 0,
                open: HashMap::new(),
                per_client: HashMap::new(),
                delivered: 0,
                remembered: VecDeque::new(),
                remembered_from: 0,
            }),
            max_streams,
            max_per_client,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.lock().open.len()
    }

    /// Every change up to this id has reached the streams it concerns.
    pub fn delivered(&self) -> i64 {
        self.lock().delivered
    }

    /// The feed starts (again) from a snapshot that saw the changes up to `loaded` (those
    /// up to `delivered` settled): streams resuming from before `loaded` read the log, and
    /// open ones may have missed changes, so each resyncs.
    pub(super) fn restart_at(&self, delivered: i64, loaded: i64) {
        let mut registry = self.lock();
        registry.delivered = delivered;
        registry.remembered.clear();
        registry.remembered_from = loaded;
        for watcher in registry.open.values() {
            watcher.resync.store(true, Ordering::Release);
        }
    }

    /// Hands these changes (in id order, all at most `settled`, each with where its spot
    /// is) to the streams whose circle holds the spot, and remembers them for streams that
    /// resume.
    pub(super) fn deliver(&self, settled: i64, changes: Vec<(Change, Option<Position>)>) {
        let mut registry = self.lock();
        for (change, position) in changes {
            if let Some(position) = position {
                for watcher in registry.open.values() {
                    if watcher.concerns(position.lat, position.lng)
                        && watcher.queue.try_send(change).is_err()
                    {
                        watcher.resync.store(true, Ordering::Release);
                    }
                }
            }
            registry.remembered.push_back(change);
        }
        while registry.remembered.len() > REMEMBERED {
            if let Some((id, _)) = registry.remembered.pop_front() {
                registry.remembered_from = id;
            }
        }
        registry.delivered = registry.delivered.max(settled);
    }

    pub(super) fn register(
        self: &Arc<Self>,
        watch: Watch,
        client: IpAddr,
        last_event_id: Option<i64>,
    ) -> AppResult<Registration> {
        let mut registry = self.lock();
        if registry.open.len() >= self.max_streams {
            return Err(AppError::ServiceUnavailable(format!(
                "this server has {} streams open, its limit; retry shortly or on another server",
                self.max_streams
            )));
        }
        let count = registry.per_client.entry(client).or_default();
        if *count >= self.max_per_client {
            return Err(AppError::TooManyRequests {
                retry_after: Duration::from_secs(10),
            });
        }
        *count += 1;
        let (sender, queue) = mpsc::channel(QUEUE);
        let resync = Arc::new(AtomicBool::new(false));
        let id = registry.next;
        registry.next += 1;
        registry.open.insert(
            id,
            Watcher {
                watch,
                queue: sender,
                resync: resync.clone(),
            },
        );
        let delivered = registry.delivered;
        let start = match last_event_id {
            None => Start::Snapshot,
            // Ahead of this replica: the changes up to it come, and are skipped.
            Some(last) if last >= delivered => Start::Remembered(Vec::new()),
            Some(last) if last >= registry.remembered_from => Start::Remembered(
                registry
                    .remembered
                    .iter()
                    .filter(|(id, _)| *id > last)
                    .copied()
                    .collect(),
            ),
            Some(_) => Start::FromLog,
        };
        drop(registry);
        Ok(Registration {
            streams: self.clone(),
            id,
            client,
            queue,
            resync,
            delivered,
            start,
        })
    }
}
