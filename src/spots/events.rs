//! Live availability: `GET /v1/spots/events` streams Server-Sent Events for the spots in a
//! circle, first a `snapshot`, then a `spot` event per change in the circle, whichever
//! replica made it. Event ids are the change log's, handed out in order by `feed`, so
//! `Last-Event-ID` resumes on any replica: from the changes this one remembers, else from
//! the log in PostgreSQL; past the log's hour (or when a client reads too slowly to keep
//! up) the stream sends `resync` and a fresh snapshot instead. `streams` has the
//! registry of open streams that hands each one its changes.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::Utc;
use futures_util::Stream;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::db;
use super::model::{SpotMatch, StreamQuery, Watch};
use super::streams::{Change, Registration, Start};
use crate::error::{AppError, AppResult};
use crate::extract::Query;
use crate::rate_limit::client_ip;
use crate::state::AppState;
use crate::time_window::TimeWindow;

/// Comment lines at least this often, so proxies keep idle streams open.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// `snapshot`: every spot in the circle, nearest first.
#[derive(Serialize, ToSchema)]
pub struct Snapshot {
    /// The window `available` is for.
    pub window: TimeWindow,
    pub items: Vec<SpotMatch>,
}

/// `resync`: what the client knows may be out of date; a `snapshot` follows.
#[derive(Serialize, ToSchema)]
pub struct Resync {
    /// `behind` (the client did not read fast enough, or this server lost the feed for
    /// longer than the log keeps) or `expired` (its `Last-Event-ID` is older than that).
    pub reason: &'static str,
}

/// Live availability around a point, as Server-Sent Events.
///
/// Events: `snapshot` ([`Snapshot`]) first; `spot` (a spot as in `GET /v1/spots`, with
/// `available` for the window and `distance_m`; `active: false` when it was withdrawn) for
/// each change of a spot in the circle, its `id` the change's; `resync` ([`Resync`]),
/// followed by a new `snapshot`. A comment line every 15 s keeps proxies from closing an
/// idle stream. Send `Last-Event-ID` (browsers do when they reconnect) to get only what
/// changed since.
#[utoipa::path(
    get, path = "/v1/spots/events", tag = "spots",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "The id of the last event received: resume after it"),
    ),
    responses(
        (status = 200, description = "An event stream (`text/event-stream`): `snapshot`, then `spot` events; `resync` and a new `snapshot` when the client fell behind", content_type = "text/event-stream", body = String),
        (status = 400, description = "`bad_request`: `Last-Event-ID` is not an event id"),
        (status = 422, description = "`validation_failed`: `lat`, `lng` or `radius` missing or out of range (radius at most 2 km), or a window that is empty or longer than 31 days"),
        (status = 429, description = "`rate_limited`: this client has 16 streams open (`MAX_STREAMS_PER_CLIENT`); close one, or retry after `Retry-After` seconds"),
        (status = 503, description = "`service_unavailable`: this server has `MAX_STREAMS` (10,000) streams open, or its picture of the curb is not current (PostgreSQL out of reach); retry after `Retry-After` seconds"),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> AppResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let default_length = state.config.min_reservation_length();
    let watch = query.validate(Utc::now(), default_length)?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|value| value.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    AppError::bad_request("bad_request", "Last-Event-ID is not an event id")
                })
        })
        .transpose()?;
    if !state.curb.is_current() {
        return Err(AppError::ServiceUnavailable(
            "live availability is not available right now; retry shortly".into(),
        ));
    }
    let client = client_ip(&headers, Some(peer), state.config.trust_forwarded_for);
    let registration = state.curb.streams.register(watch, client, last_event_id)?;
    let mut events = Events {
        state,
        watch,
        registration,
        after: last_event_id.unwrap_or(i64::MIN),
        backlog: VecDeque::new(),
    };
    events.start().await?;
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        let event = events.next().await?;
        Some((Ok(event), events))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT)))
}

/// One stream's state: what it watches and the events ready to send.
struct Events {
    state: AppState,
    watch: Watch,
    registration: Registration,
    /// Changes up to this id were sent (or are covered by what was).
    after: i64,
    backlog: VecDeque<Event>,
}

impl Events {
    /// The first events: a snapshot, or what the client missed since its last event.
    async fn start(&mut self) -> AppResult<()> {
        match std::mem::replace(&mut self.registration.start, Start::Snapshot) {
            Start::Snapshot => self.snapshot(None),
            Start::Remembered(missed) => self.missed(missed),
            Start::FromLog => {
                let mut conn = self.state.db.acquire().await?;
                // Changes after `after` were made (this replica has delivered some): the
                // log must still hold the first of them.
                let covered = db::oldest_change(&mut conn)
                    .await?
                    .is_some_and(|oldest| oldest <= self.after + 1);
                if covered {
                    let missed =
                        db::changed_between(&mut conn, self.after, self.registration.delivered)
                            .await?;
                    self.missed(missed);
                } else {
                    self.snapshot(Some("expired"));
                }
            }
        }
        Ok(())
    }

    fn snapshot(&mut self, resync: Option<&'static str>) {
        let now = Utc::now();
        let window = self.window(now);
        let items = self
            .state
            .curb
            .picture()
            .within(&self.watch.circle, &window, now);
        if let Some(reason) = resync {
            self.backlog.push_back(
                Event::default()
                    .event("resync")
                    .json_data(Resync { reason })
                    .expect("a resync serializes"),
            );
        }
        self.after = self.registration.delivered;
        self.backlog.push_back(
            Event::default()
                .event("snapshot")
                .id(self.after.to_string())
                .json_data(Snapshot { window, items })
                .expect("a snapshot serializes"),
        );
    }

    /// One event per spot in the circle that changed, at its last change, in that order:
    /// a client that goes away midway resumes from one of these with nothing lost.
    fn missed(&mut self, missed: Vec<Change>) {
        let mut last: HashMap<Uuid, i64> = HashMap::new();
        for (id, spot_id) in missed {
            if id > self.after {
                last.insert(spot_id, id);
            }
        }
        let mut last: Vec<(i64, Uuid)> = last.into_iter().map(|(spot, id)| (id, spot)).collect();
        last.sort_unstable();
        for change in last {
            self.push_change(change);
        }
        self.after = self.after.max(self.registration.delivered);
    }

    fn window(&self, now: chrono::DateTime<Utc>) -> TimeWindow {
        self.watch
            .window_at(now, self.state.config.min_reservation_length())
    }

    fn push_change(&mut self, (id, spot_id): Change) {
        let now = Utc::now();
        let window = self.window(now);
        let matched =
            self.state
                .curb
                .picture()
                .spot_match(spot_id, &self.watch.circle, &window, now);
        if let Some(matched) = matched
            && matched
                .distance_m
                .is_some_and(|d| d <= self.watch.circle.radius_m)
        {
            self.backlog.push_back(
                Event::default()
                    .event("spot")
                    .id(id.to_string())
                    .json_data(matched)
                    .expect("a spot serializes"),
            );
        }
    }

    /// The next event, waiting for one; `None` ends the stream (the server shuts down).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                return Some(event);
            }
            if self.registration.resync.swap(false, Ordering::AcqRel) {
                self.resync();
                continue;
            }
            let change = tokio::select! {
                () = self.state.curb.closing() => return None,
                change = self.registration.queue.recv() => change?,
            };
            if change.0 > self.after {
                self.after = change.0;
                self.push_change(change);
            }
        }
    }

    /// Drops what is queued and starts over from a snapshot, keeping the changes made after
    /// it.
    fn resync(&mut self) {
        self.registration.delivered = self.state.curb.streams.delivered();
        let mut later = Vec::new();
        while let Ok(change) = self.registration.queue.try_recv() {
            if change.0 > self.registration.delivered {
                later.push(change);
            }
        }
        self.snapshot(Some("behind"));
        for change in later {
            self.after = change.0;
            self.push_change(change);
        }
    }
}
