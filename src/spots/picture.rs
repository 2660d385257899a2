//! A replica's picture of the curb: every spot and, per spot, the windows its live
//! reservations take, in memory. `GET /v1/spots` answers from it and the event streams
//! find in it which spots a stream watches; `spots::feed` keeps it current.
//!
//! It answers exactly as the SQL search does (`spots::db`): the same distance, computed
//! as PostGIS computes `geography <->` (on the sphere, to the last bit), the same radius
//! test, availability rule, order and pages, so a client cannot tell which one answered
//! and a cursor from either works with the other. `tests/api/curb.rs` checks it against
//! the SQL for random searches.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rstar::RTree;
use rstar::primitives::GeomWithData;
use uuid::Uuid;

use super::model::{Circle, Facility, Search, SearchCursor, Spot, SpotMatch, Taken};
use super::paging::{nearest_cursor, page_of_nearest};
use crate::pagination;
use crate::time_window::TimeWindow;

/// The sphere PostGIS measures geography on when it does not use the spheroid: the mean
/// radius of WGS 84, `(2a + b) / 3`.
const SPHERE_RADIUS_M: f64 = {
    let a = 6_378_137.0;
    let b = a * (1.0 - 1.0 / 298.257_223_563);
    (2.0 * a + b) / 3.0
};

/// The great-circle distance in metres from a spot to a point, computed as PostGIS's
/// `sphere_distance` does (Vincenty's formula, the spot as its first point, the same
/// operations in the same order), so that it equals `spot.geog <-> point` exactly.
pub fn distance_m(spot_lat: f64, spot_lng: f64, lat: f64, lng: f64) -> f64 {
    let radians = |degrees: f64| std::f64::consts::PI * degrees / 180.0;
    let (s_lat, s_lng) = (radians(spot_lat), radians(spot_lng));
    let (e_lat, e_lng) = (radians(lat), radians(lng));
    let d_lng = e_lng - s_lng;
    let cos_d_lng = d_lng.cos();
    let (sin_e, cos_e) = (e_lat.sin(), e_lat.cos());
    let (sin_s, cos_s) = (s_lat.sin(), s_lat.cos());
    let a1 = (cos_e * d_lng.sin()).powi(2);
    let a2 = (cos_s * sin_e - sin_s * cos_e * cos_d_lng).powi(2);
    let a = (a1 + a2).sqrt();
    let b = sin_s * sin_e + cos_s * cos_e * cos_d_lng;
    SPHERE_RADIUS_M * a.atan2(b)
}

/// A point on the unit sphere. The straight-line distance between two of them grows with
/// their great-circle distance, so the R-tree's nearest-first walk in 3-D is nearest
/// first on the globe, with no trouble at the antimeridian or the poles. In `f32`, which
/// halves the tree at a million spots: a point moves by at most a metre on the ground, and
/// the walk allows for that (`SLACK_M`) before the exact distance decides.
fn unit_vector(lat: f64, lng: f64) -> [f32; 3] {
    let (lat, lng) = (lat.to_radians(), lng.to_radians());
    [
        (lat.cos() * lng.cos()) as f32,
        (lat.cos() * lng.sin()) as f32,
        lat.sin() as f32,
    ]
}

/// How far, on the ground, the tree's `f32` order may stray from the exact one (at most
/// about a metre; five to be sure).
const SLACK_M: f64 = 5.0;

/// The squared straight-line distance that a great-circle distance of `metres` (and the
/// slack) is: the walk stops past it.
fn chord_squared(metres: f64) -> f32 {
    let angle = ((metres + SLACK_M) / SPHERE_RADIUS_M).min(std::f64::consts::PI);
    let chord = 2.0 * (angle / 2.0).sin();
    (chord * chord) as f32
}

/// Interned text: a city's spots repeat a few thousand street names, five boroughs and a
/// few hundred rules, kept once each.
#[derive(Default)]
struct Strings {
    texts: Vec<Arc<str>>,
    index: HashMap<Arc<str>, Text>,
}

/// An interned text: its place in `Strings::texts`, plus one (so `Option<Text>` is four
/// bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Text(NonZeroU32);

impl Strings {
    fn intern(&mut self, text: &str) -> Text {
        if let Some(&at) = self.index.get(text) {
            return at;
        }
        let at = u32::try_from(self.texts.len() + 1)
            .ok()
            .and_then(NonZeroU32::new)
            .map(Text)
            .expect("fewer than 4 billion distinct texts");
        let text: Arc<str> = Arc::from(text);
        self.texts.push(text.clone());
        self.index.insert(text, at);
        at
    }

    fn get(&self, text: Text) -> String {
        self.texts[text.0.get() as usize - 1].to_string()
    }
}

/// A spot as the picture keeps it (a fifth of a `Spot`'s size at a million spots).
struct Entry {
    id: Uuid,
    meter_number: Box<str>,
    lat: f64,
    lng: f64,
    borough: Text,
    street: Option<Text>,
    side: Option<Text>,
    from_street: Option<Text>,
    to_street: Option<Text>,
    facility: Facility,
    rule: Option<Text>,
    max_stay_minutes: i32,
    rate_cents_per_hour: i32,
    currency: Text,
    active: bool,
    /// Mostly empty, and then no allocation.
    taken: Box<[Taken]>,
}

impl Entry {
    fn free(&self, window: &TimeWindow, now: DateTime<Utc>) -> bool {
        !self.taken.iter().any(|taken| taken.blocks(window, now))
    }

    fn distance_to(&self, circle: &Circle) -> f64 {
        distance_m(self.lat, self.lng, circle.lat, circle.lng)
    }
}

type Located = GeomWithData<[f32; 3], u32>;

/// Where a spot is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub lat: f64,
    pub lng: f64,
}

/// Builds a [`Picture`] from spots read one by one.
pub struct PictureBuilder {
    picture: Picture,
    located: Vec<Located>,
}

impl PictureBuilder {
    /// Adds a spot (each once: they come from the table's primary key).
    pub fn add(&mut self, spot: Spot) {
        let picture = &mut self.picture;
        let slot = u32::try_from(picture.entries.len()).expect("fewer than 4 billion spots");
        if spot.active {
            self.located
                .push(Located::new(unit_vector(spot.lat, spot.lng), slot));
        }
        picture.slots.push((spot.id, slot));
        let entry = picture.entry(spot, Vec::new());
        picture.entries.push(Some(entry));
    }

    /// The picture, with these live reservations (`(spot id, taken)`).
    pub fn finish(mut self, taken: Vec<(Uuid, Taken)>) -> Picture {
        let picture = &mut self.picture;
        picture.slots.sort_unstable();
        let mut by_spot: HashMap<Uuid, Vec<Taken>> = HashMap::new();
        for (spot_id, taken) in taken {
            by_spot.entry(spot_id).or_default().push(taken);
        }
        for (spot_id, taken) in by_spot {
            if let Some(entry) = picture.entry_mut(spot_id) {
                entry.taken = taken.into_boxed_slice();
            }
        }
        picture.tree = RTree::bulk_load(self.located);
        self.picture
    }
}

/// The picture: spots by slot, slots by id (the by-id search's order) and an R-tree of
/// the active spots' slots.
#[derive(Default)]
pub struct Picture {
    entries: Vec<Option<Entry>>,
    /// Sorted by id: a map of a million would take twice the memory.
    slots: Vec<(Uuid, u32)>,
    tree: RTree<Located>,
    strings: Strings,
}

impl Picture {
    /// A picture of the spots `add`ed to the builder, one at a time (a million `Spot`s at
    /// once would take more memory than the picture itself).
    pub fn builder() -> PictureBuilder {
        PictureBuilder {
            picture: Self::default(),
            located: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot_of(&self, id: Uuid) -> Option<u32> {
        let at = self.slots.binary_search_by_key(&id, |(id, _)| *id).ok()?;
        Some(self.slots[at].1)
    }

    /// The slot of a spot, given one if it is new (a spot created since the picture was
    /// loaded: rare, so inserting into the sorted ids is fine).
    fn slot_for(&mut self, id: Uuid) -> u32 {
        match self.slots.binary_search_by_key(&id, |(id, _)| *id) {
            Ok(at) => self.slots[at].1,
            Err(at) => {
                let slot = u32::try_from(self.entries.len()).expect("fewer than 4 billion spots");
                self.entries.push(None);
                self.slots.insert(at, (id, slot));
                slot
            }
        }
    }

    fn entry(&mut self, spot: Spot, taken: Vec<Taken>) -> Entry {
        let mut text = |value: Option<String>| value.map(|value| self.strings.intern(&value));
        Entry {
            street: text(spot.street),
            side: text(spot.side),
            from_street: text(spot.from_street),
            to_street: text(spot.to_street),
            rule: text(spot.rule),
            borough: self.strings.intern(&spot.borough),
            currency: self.strings.intern(&spot.currency),
            id: spot.id,
            meter_number: spot.meter_number.into_boxed_str(),
            lat: spot.lat,
            lng: spot.lng,
            facility: spot.facility,
            max_stay_minutes: spot.max_stay_minutes,
            rate_cents_per_hour: spot.rate_cents_per_hour,
            active: spot.active,
            taken: taken.into_boxed_slice(),
        }
    }

    fn entry_mut(&mut self, id: Uuid) -> Option<&mut Entry> {
        let slot = self.slot_of(id)?;
        self.entries[slot as usize].as_mut()
    }

    fn get(&self, id: Uuid) -> Option<&Entry> {
        let slot = self.slot_of(id)?;
        self.entries[slot as usize].as_ref()
    }

    /// Replaces what the picture knows of a spot with what PostgreSQL has now (`None`: the
    /// spot is gone).
    pub fn set(&mut self, id: Uuid, spot: Option<Spot>, taken: Vec<Taken>) {
        let slot = self.slot_for(id);
        let before = self.entries[slot as usize].take();
        if let Some(old) = &before
            && old.active
        {
            self.tree
                .remove(&Located::new(unit_vector(old.lat, old.lng), slot));
        }
        match spot {
            Some(spot) => {
                if spot.active {
                    self.tree
                        .insert(Located::new(unit_vector(spot.lat, spot.lng), slot));
                }
                self.entries[slot as usize] = Some(self.entry(spot, taken));
            }
            None => {
                if let Ok(at) = self.slots.binary_search_by_key(&id, |(id, _)| *id) {
                    self.slots.remove(at);
                }
            }
        }
    }

    /// The spot's current position, if the picture has it.
    pub fn position(&self, id: Uuid) -> Option<Position> {
        self.get(id).map(|entry| Position {
            lat: entry.lat,
            lng: entry.lng,
        })
    }

    fn spot(&self, entry: &Entry) -> Spot {
        let text = |value: Option<Text>| value.map(|value| self.strings.get(value));
        Spot {
            id: entry.id,
            meter_number: entry.meter_number.to_string(),
            lat: entry.lat,
            lng: entry.lng,
            borough: self.strings.get(entry.borough),
            street: text(entry.street),
            side: text(entry.side),
            from_street: text(entry.from_street),
            to_street: text(entry.to_street),
            facility: entry.facility,
            rule: text(entry.rule),
            max_stay_minutes: entry.max_stay_minutes,
            rate_cents_per_hour: entry.rate_cents_per_hour,
            currency: self.strings.get(entry.currency),
            active: entry.active,
        }
    }

    /// One spot as a stream of `circle` shows it, with its availability for `window`
    /// (inactive spots included, so that a stream hears that one went away).
    pub fn spot_match(
        &self,
        id: Uuid,
        circle: &Circle,
        window: &TimeWindow,
        now: DateTime<Utc>,
    ) -> Option<SpotMatch> {
        let entry = self.get(id)?;
        Some(SpotMatch {
            spot: self.spot(entry),
            available: entry.active && entry.free(window, now),
            distance_m: Some(entry.distance_to(circle)),
        })
    }

    /// Every active spot within the circle, nearest first, with its availability.
    pub fn within(
        &self,
        circle: &Circle,
        window: &TimeWindow,
        now: DateTime<Utc>,
    ) -> Vec<SpotMatch> {
        let mut found: Vec<(f64, &Entry)> = self.nearest(circle).collect();
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
        found
            .into_iter()
            .map(|(distance, entry)| self.matched(entry, distance, window, now))
            .collect()
    }

    fn matched(
        &self,
        entry: &Entry,
        distance: f64,
        window: &TimeWindow,
        now: DateTime<Utc>,
    ) -> SpotMatch {
        SpotMatch {
            spot: self.spot(entry),
            available: entry.free(window, now),
            distance_m: Some(distance),
        }
    }

    /// The active spots within the circle with their exact distances, in the R-tree's
    /// nearest-first order (by straight-line distance through the globe).
    fn nearest<'a>(&'a self, circle: &'a Circle) -> impl Iterator<Item = (f64, &'a Entry)> + 'a {
        let bound = chord_squared(circle.radius_m);
        self.tree
            .nearest_neighbor_iter_with_distance_2(unit_vector(circle.lat, circle.lng))
            .take_while(move |(_, chord)| *chord <= bound)
            .filter_map(move |(located, _)| {
                let entry = self.entries[located.data as usize].as_ref()?;
                let distance = entry.distance_to(circle);
                (distance <= circle.radius_m).then_some((distance, entry))
            })
    }

    /// One page of a search and the cursor of the next, exactly as `spots::db::search`.
    pub fn search(
        &self,
        search: &Search,
        now: DateTime<Utc>,
    ) -> (Vec<SpotMatch>, Option<SearchCursor>) {
        let wanted = |entry: &Entry| {
            search
                .available
                .is_none_or(|available| entry.free(&search.window, now) == available)
        };
        let rows = pagination::rows_for(search.limit) as usize;
        match search.circle {
            Some(circle) => self.search_nearest(&circle, search, rows, wanted, now),
            None => {
                let after = match search.after {
                    Some(SearchCursor::ById { id }) => id,
                    _ => Uuid::nil(),
                };
                let first = self.slots.partition_point(|(id, _)| *id <= after);
                let found: Vec<SpotMatch> = self.slots[first..]
                    .iter()
                    .filter_map(|&(_, slot)| self.entries[slot as usize].as_ref())
                    .filter(|entry| entry.active && wanted(entry))
                    .take(rows)
                    .map(|entry| SpotMatch {
                        distance_m: None,
                        ..self.matched(entry, 0.0, &search.window, now)
                    })
                    .collect();
                pagination::cut(found, search.limit, |row| SearchCursor::ById {
                    id: row.spot.id,
                })
            }
        }
    }

    fn search_nearest(
        &self,
        circle: &Circle,
        search: &Search,
        rows: usize,
        wanted: impl Fn(&Entry) -> bool,
        now: DateTime<Utc>,
    ) -> (Vec<SpotMatch>, Option<SearchCursor>) {
        let after = |distance: f64, id: Uuid| match search.after {
            Some(SearchCursor::Nearest {
                distance_m,
                id: after_id,
            }) => distance > distance_m || (distance == distance_m && id > after_id),
            _ => true,
        };
        // The tree's order is nearest first to within `SLACK_M`: once there are enough
        // rows, read on while a spot could still be nearer than the farthest of them.
        let mut found: Vec<(f64, &Entry)> = Vec::new();
        let mut enough_at = f64::INFINITY;
        for (distance, entry) in self.nearest(circle) {
            if distance > enough_at {
                break;
            }
            if after(distance, entry.id) && wanted(entry) {
                found.push((distance, entry));
                if found.len() == rows && enough_at.is_infinite() {
                    enough_at = distance + 2.0 * SLACK_M;
                }
            }
        }
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
        found.truncate(rows);
        let found = found
            .into_iter()
            .map(|(distance, entry)| self.matched(entry, distance, &search.window, now))
            .collect();
        // The SQL search's own paging: when the page is one tie, its exact query reads
        // what these rows already are, (distance, id) order.
        page_of_nearest(found, search.limit as usize)
            .unwrap_or_else(|rows| pagination::cut(rows, search.limit, nearest_cursor))
    }
}
