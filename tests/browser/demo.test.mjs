// A real-browser test of the live map at /demo: Debian's Chromium, headless, driven by
// playwright-core, against a running API (scripts/check-browser.sh starts one and runs this).
//
//  1. /demo?lat=&lng=&radius= loads, its stream's snapshot arrives (#status[data-state=live])
//     and draws the spot SPOT_ID as a free dot (data-available="true");
//  2. a guest books that spot through the API (POST /v1/reservations, from Node: 201);
//  3. within 1 s of the booking's response the dot turns data-available="false" (the
//     `spot` event of the stream), and the delay is printed;
//  4. the page logged no console error and threw nothing.
//
// Environment: CURBSIDE_URL (the API, e.g. http://127.0.0.1:18180) and SPOT_ID (a free spot
// inside the circle) are required; LAT, LNG, RADIUS (km) default to Times Square and 0.5;
// CHROMIUM (default /usr/bin/chromium); BOOKING_EMAIL; UPDATE_TIMEOUT_MS (default 1000);
// SCREENSHOT_DIR, if set, receives a PNG of the page before and after the booking.
// Prints one PASS or FAIL line per check and a closing count; exits non-zero on any failure.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = (process.env.CURBSIDE_URL ?? "").replace(/\/+$/, "");
const spotId = process.env.SPOT_ID ?? "";
const lat = process.env.LAT ?? "40.7580";
const lng = process.env.LNG ?? "-73.9855";
const radius = process.env.RADIUS ?? "0.5";
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const email = process.env.BOOKING_EMAIL ?? "browser@example.com";
const updateTimeout = Number(process.env.UPDATE_TIMEOUT_MS ?? 1000);
const screenshotDir = process.env.SCREENSHOT_DIR ?? "";
// The whole test, browser start included; a hung step fails it rather than the CI run.
const overallTimeout = Number(process.env.TEST_TIMEOUT_MS ?? 60_000);

let passed = 0;
let failed = 0;
const pass = (what) => {
  passed += 1;
  console.log(`PASS: ${what}`);
};
const fail = (what) => {
  failed += 1;
  console.log(`FAIL: ${what}`);
};
const summary = () => console.log(`browser: ${passed} passed, ${failed} failed`);

/** A check that the next ones depend on: its failure ends the test. */
class Fatal extends Error {}

if (!base || !spotId) {
  fail("CURBSIDE_URL and SPOT_ID must be set (the API's base URL and a free spot's id)");
  summary();
  process.exit(2);
}

const overall = setTimeout(() => {
  fail(`the test finished within ${overallTimeout} ms`);
  summary();
  process.exit(1);
}, overallTimeout);

const consoleErrors = [];
let browser;
let page;
let status = 0;
try {
  // Chromium refuses to run as root with its sandbox on.
  const args = process.getuid?.() === 0 ? ["--no-sandbox"] : [];
  try {
    browser = await chromium.launch({ executablePath, headless: true, args, timeout: 30_000 });
  } catch (error) {
    throw new Fatal(`Chromium (${executablePath}) launches headless: ${error.message}`);
  }
  pass(`Chromium ${browser.version()} launches headless (${executablePath})`);

  page = await browser.newPage();
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const where = message.location();
    consoleErrors.push(`console.error: ${message.text()}${where.url ? ` (${where.url}:${where.lineNumber})` : ""}`);
  });
  page.on("pageerror", (error) => consoleErrors.push(`uncaught: ${error.stack ?? error.message}`));
  page.on("crash", () => consoleErrors.push("the page crashed"));

  // 1. The page, its snapshot, and the spot's free dot.
  const query = new URLSearchParams({ lat, lng, radius });
  const url = `${base}/demo?${query}`;
  const response = await page.goto(url, { waitUntil: "load", timeout: 15_000 }).catch((error) => {
    throw new Fatal(`GET ${url} loads: ${error.message}`);
  });
  if (!response || response.status() !== 200) {
    throw new Fatal(`GET ${url} answers 200 (got ${response?.status()})`);
  }
  pass(`GET /demo?${query} answers 200 (${response.headers()["content-type"]})`);

  try {
    await page.waitForSelector("#status[data-state=live]", { state: "attached", timeout: 10_000 });
  } catch {
    const state = await page.$eval("#status", (e) => `${e.dataset.state}: ${e.textContent}`).catch(() => "no #status");
    throw new Fatal(`#status turns data-state="live" within 10 s (the snapshot of /v1/spots/events; it says ${state})`);
  }
  const drawn = await page.$$eval("circle[data-spot-id]", (dots) => ({
    total: dots.length,
    free: dots.filter((dot) => dot.dataset.available === "true").length,
  }));
  pass(`the snapshot arrived: #status is live, ${drawn.total} spot(s) drawn, ${drawn.free} free`);

  const dot = `circle[data-spot-id="${spotId}"]`;
  try {
    await page.waitForSelector(`${dot}[data-available="true"]`, { state: "attached", timeout: 5_000 });
  } catch {
    const seen = await page.$eval(dot, (e) => `data-available="${e.dataset.available}"`).catch(() => "no such dot");
    throw new Fatal(`the dot of spot ${spotId} is drawn free, data-available="true" (${seen})`);
  }
  pass(`the dot of spot ${spotId} is drawn free`);
  if (screenshotDir) {
    mkdirSync(screenshotDir, { recursive: true });
    await page.screenshot({ path: join(screenshotDir, "before.png") });
  }

  // The page's own clock notes when the dot turns, whether or not Playwright is looking yet.
  await page.$eval(dot, (element) => {
    new MutationObserver((_, observer) => {
      if (element.dataset.available === "false") {
        window.__takenAt = Date.now();
        observer.disconnect();
      }
    }).observe(element, { attributes: true, attributeFilter: ["data-available"] });
  });

  // 2. A guest books the spot.
  const sent = Date.now();
  let booking;
  try {
    booking = await fetch(`${base}/v1/reservations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ spot_id: spotId, duration_minutes: 30, email }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (error) {
    throw new Fatal(`POST /v1/reservations answers: ${error.message}`);
  }
  const answered = Date.now();
  const body = await booking.text();
  if (booking.status !== 201) {
    throw new Fatal(`POST /v1/reservations answers 201 (got ${booking.status}: ${body.slice(0, 500)})`);
  }
  const reservation = JSON.parse(body).reservation ?? {};
  pass(`a guest books the spot: 201 in ${answered - sent} ms, reservation ${reservation.id} ${reservation.status}`);

  // 3. The dot turns taken, within a second of that answer (counted from the answer's
  // headers, so reading the body above takes from the second, not adds to it).
  try {
    const left = Math.max(1, updateTimeout - (Date.now() - answered));
    await page.waitForSelector(`${dot}[data-available="false"]`, { state: "attached", timeout: left });
  } catch {
    const seen = await page.$eval(dot, (e) => `data-available="${e.dataset.available}"`).catch(() => "the dot is gone");
    throw new Fatal(`the dot turns data-available="false" within ${updateTimeout} ms of the booking's response (${seen})`);
  }
  const waited = Date.now() - answered;
  const takenAt = await page.evaluate(() => window.__takenAt);
  const classes = await page.$eval(dot, (e) => e.getAttribute("class"));
  // Negative: the stream's event came before the HTTP response had been read.
  const delay = takenAt ? `${takenAt - answered} ms` : "unknown";
  pass(
    `the dot turns data-available="false" (class "${classes}") ${delay} after the booking's response ` +
      `(${takenAt ? takenAt - sent : "?"} ms after the request; waitForSelector returned after ${waited} ms, limit ${updateTimeout} ms)`,
  );
  if (!/\btaken\b/.test(classes ?? "")) fail(`the taken dot has class "taken" (it has "${classes}")`);
  if (screenshotDir) await page.screenshot({ path: join(screenshotDir, "after.png") });
} catch (error) {
  if (error instanceof Fatal) fail(error.message);
  else fail(`unexpected error: ${error.stack ?? error}`);
} finally {
  // 4. Whatever happened, what the page said went wrong.
  if (!page) {
    // No page was opened: nothing to tell.
  } else if (consoleErrors.length === 0) {
    pass("the page logged no console error and threw nothing");
  } else {
    fail(`the page logged no console error and threw nothing; it logged:\n    ${consoleErrors.join("\n    ")}`);
  }
  await browser?.close().catch(() => {});
  clearTimeout(overall);
  summary();
  status = failed === 0 ? 0 : 1;
}
process.exit(status);
