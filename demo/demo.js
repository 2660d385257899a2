// The live curb, for browsers: one EventSource on GET /v1/spots/events, and a dot per spot.
//
// The stream sends, in order:
//   snapshot  {window, items: [spot…]}   every spot in the circle, nearest first
//   spot      {…spot, available, distance_m}   one spot changed (its `id` is the change's)
//   resync    {reason}                   forget what you have; a new snapshot follows
// EventSource reconnects by itself and sends the last event id it saw (Last-Event-ID), so
// a dropped connection, to this server or another, resumes without losing a change.
"use strict";

const TIMES_SQUARE = { lat: 40.758, lng: -73.9855, radius: 0.5 };
const SVG = "http://www.w3.org/2000/svg";

const form = document.getElementById("watch");
const dots = document.getElementById("spots");
const statusLine = document.getElementById("status");
const spots = new Map(); // spot id -> the last state the stream told
let circle = null;
let source = null;

// The page's own query string says what to watch, so a view can be linked to.
function readWatch() {
  const params = new URLSearchParams(location.search);
  const watch = {
    lat: Number(params.get("lat") ?? TIMES_SQUARE.lat),
    lng: Number(params.get("lng") ?? TIMES_SQUARE.lng),
    radius: Number(params.get("radius") ?? TIMES_SQUARE.radius),
    starts_at: params.get("starts_at") ?? "",
    ends_at: params.get("ends_at") ?? "",
  };
  for (const [name, value] of Object.entries(watch)) {
    form.elements[name].value = name.endsWith("_at") ? toLocalInput(value) : value;
  }
  return watch;
}

function toLocalInput(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  return new Date(at.getTime() - at.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function fromLocalInput(value) {
  return value ? new Date(value).toISOString() : "";
}

function watch(w) {
  if (source) source.close();
  circle = w;
  spots.clear();
  dots.replaceChildren();
  const query = new URLSearchParams({ lat: w.lat, lng: w.lng, radius: w.radius });
  if (w.starts_at) query.set("starts_at", w.starts_at);
  if (w.ends_at) query.set("ends_at", w.ends_at);
  setStatus("connecting", "Connecting…");
  source = new EventSource(`/v1/spots/events?${query}`);
  source.addEventListener("snapshot", (event) => {
    const snapshot = JSON.parse(event.data);
    spots.clear();
    for (const spot of snapshot.items) spots.set(spot.id, spot);
    document.getElementById("window").textContent =
      `${new Date(snapshot.window.starts_at).toLocaleString()} – ${new Date(snapshot.window.ends_at).toLocaleTimeString()}`;
    seen(event);
    draw();
    setStatus("live", "Live");
  });
  source.addEventListener("spot", (event) => {
    const spot = JSON.parse(event.data);
    if (spot.active) spots.set(spot.id, spot);
    else spots.delete(spot.id);
    seen(event);
    draw();
  });
  source.addEventListener("resync", () => setStatus("connecting", "Catching up…"));
  source.onerror = () => {
    // 4xx (a bad query, too many streams) closes the source for good; anything else
    // reconnects by itself.
    if (source.readyState === EventSource.CLOSED) setStatus("closed", "Closed: check the query, then Watch again");
    else setStatus("connecting", "Reconnecting…");
  };
}

function seen(event) {
  document.getElementById("last-event").textContent = event.lastEventId || "–";
}

function setStatus(state, text) {
  statusLine.dataset.state = state;
  statusLine.textContent = text;
}

// Equirectangular around the centre, the circle's radius as 1: fine for a few kilometres.
function project(spot) {
  const metresPerDegree = 111320;
  const x = ((spot.lng - circle.lng) * metresPerDegree * Math.cos((circle.lat * Math.PI) / 180)) / (circle.radius * 1000);
  const y = (-(spot.lat - circle.lat) * metresPerDegree) / (circle.radius * 1000);
  return { x, y };
}

function draw() {
  let free = 0;
  const existing = new Map([...dots.children].map((dot) => [dot.dataset.spotId, dot]));
  for (const spot of spots.values()) {
    let dot = existing.get(spot.id);
    existing.delete(spot.id);
    if (!dot) {
      dot = document.createElementNS(SVG, "circle");
      dot.dataset.spotId = spot.id;
      dot.setAttribute("r", "0.014");
      dot.appendChild(document.createElementNS(SVG, "title"));
      dot.addEventListener("mouseenter", () => describe(spots.get(dot.dataset.spotId)));
      dots.appendChild(dot);
    }
    const { x, y } = project(spot);
    dot.setAttribute("cx", x.toFixed(4));
    dot.setAttribute("cy", y.toFixed(4));
    dot.dataset.available = String(spot.available);
    dot.setAttribute("class", spot.available ? "free" : "taken");
    dot.firstChild.textContent = label(spot);
    if (spot.available) free += 1;
  }
  for (const gone of existing.values()) gone.remove();
  document.getElementById("free").textContent = free;
  document.getElementById("taken").textContent = spots.size - free;
}

function label(spot) {
  const street = [spot.street, spot.side].filter(Boolean).join(" ");
  const rate = `$${(spot.rate_cents_per_hour / 100).toFixed(2)}/h`;
  return `Meter ${spot.meter_number}${street ? `, ${street}` : ""}: ${spot.available ? "free" : "taken"}, ${rate}, ${Math.round(spot.distance_m)} m`;
}

function describe(spot) {
  if (spot) document.getElementById("detail").textContent = label(spot);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const w = {
    lat: Number(form.elements.lat.value),
    lng: Number(form.elements.lng.value),
    radius: Number(form.elements.radius.value),
    starts_at: fromLocalInput(form.elements.starts_at.value),
    ends_at: fromLocalInput(form.elements.ends_at.value),
  };
  const params = new URLSearchParams({ lat: w.lat, lng: w.lng, radius: w.radius });
  if (w.starts_at) params.set("starts_at", w.starts_at);
  if (w.ends_at) params.set("ends_at", w.ends_at);
  history.replaceState(null, "", `?${params}`);
  watch(w);
});

watch(readWatch());
