#!/usr/bin/env bash
# Checks the live map at /demo in a real browser, against a server built from this checkout:
# Debian's Chromium, headless, driven by playwright-core (tests/browser/demo.test.mjs), opens
# /demo around Times Square, sees a spot drawn free, a guest books that spot through the API,
# and the spot's dot must turn taken within a second of the booking's response (the measured
# delay is printed); the page must log no console error.
#
# Installs what a fresh Debian lacks (as root, or through sudo): chromium, and nodejs/npm
# when there is no node. playwright-core, at the exact version of tests/browser's lock file,
# comes from npm (`npm ci`; it downloads no browser). Uses PostgreSQL and Redis from
# scripts/services.sh, with a database of its own, curbside_browser, dropped and created
# afresh on each run and dropped at exit, and CARGO_TARGET_DIR if set. The servers, on free
# ports, stop when the script ends, however it ends. Bounded: once built, the whole check
# takes well under a minute, and each step has a time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=scripts/lib/throwaway.sh
. scripts/lib/throwaway.sh

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
database=curbside_browser
log() { echo "check-browser: $*" >&2; }
indent() { sed 's/^/    /'; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root to run: $*"; exit 1; fi
}

# --- tools -----------------------------------------------------------------------------------
packages=()
[ -x "$CHROMIUM" ] || packages+=(chromium)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
command -v curl >/dev/null || packages+=(curl)
command -v python3 >/dev/null || packages+=(python3)
command -v psql >/dev/null || packages+=(postgresql-client)
if [ ${#packages[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || { log "missing ${packages[*]}, and this is not Debian"; exit 1; }
    log "installing ${packages[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi
[ -x "$CHROMIUM" ] || { log "no Chromium at $CHROMIUM (set CHROMIUM to another path)"; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
    log "node $(node --version) is too old for playwright-core: 18 or later is needed"
    exit 1
fi

log "installing playwright-core (npm ci in tests/browser)"
if ! (cd tests/browser && timeout 180 npm ci --no-audit --no-fund --loglevel=error) >&2; then
    log "npm ci in tests/browser failed"
    exit 1
fi

# --- scratch space and clean-up --------------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir=$repo/$target_dir ;; esac
work=$(mktemp -d -t curbside-check-browser.XXXXXX)
api_pid=""
stripe_pid=""
test_pid=""
database_made=false
redis_prefix=""

cleanup() {
    local status=$?
    set +e
    stop "$test_pid"
    stop "$api_pid"
    stop "$stripe_pid"
    if $database_made; then drop_database "$database"; fi
    forget_redis_keys "$redis_prefix"
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the API and the Stripe imitation --------------------------------------------------------
log "building the API and the Stripe imitation (cargo build --locked --workspace --bin curbside --bin fake-stripe)"
if ! cargo build --locked --workspace --bin curbside --bin fake-stripe >"$work/cargo.log" 2>&1; then
    tail -n 30 "$work/cargo.log" | indent
    log "cargo build failed"
    exit 1
fi
curbside=$target_dir/debug/curbside
fake_stripe=$target_dir/debug/fake-stripe

eval "$(scripts/services.sh --env)"
PGOPTIONS='-c client_min_messages=warning' \
    psql "$DATABASE_ADMIN_URL" -qc "drop database if exists \"$database\" with (force)" >/dev/null
psql "$DATABASE_ADMIN_URL" -qc "create database \"$database\"" >/dev/null
database_made=true
database_url="${DATABASE_ADMIN_URL%/*}/$database"
redis_prefix=curbside-browser-$$-$(date +%s)
api_port=$(free_port)
stripe_port=$(free_port)
base=http://127.0.0.1:$api_port
set_server_env "$api_port" "$stripe_port" "$database_url" "$redis_prefix"

(in_env "$fake_stripe" --bind "127.0.0.1:$stripe_port" \
    --webhook-url "$base/v1/webhooks/stripe") >"$work/fake-stripe.log" 2>&1 &
stripe_pid=$!
(in_env "$curbside" serve) >"$work/api.log" 2>&1 &
api_pid=$!

# The first start applies the migrations to the empty database.
wait_for() { # seconds, url, pid of the server that should answer
    local seconds=$1 url=$2 pid=$3
    for _ in $(seq "$((seconds * 4))"); do
        curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.25
    done
    return 1
}
if ! wait_for 60 "$base/healthz" "$api_pid"; then
    tail -n 30 "$work/api.log" | indent
    log "the API did not answer $base/healthz within 60 s"
    exit 1
fi
if ! kill -0 "$stripe_pid" 2>/dev/null; then
    indent <"$work/fake-stripe.log"
    log "the Stripe imitation did not start"
    exit 1
fi
log "the API is on $base, the Stripe imitation on 127.0.0.1:$stripe_port"

# One spot near Times Square, in a database of no other: the map draws it alone.
spot=$(psql "$database_url" -qtAX -c "insert into spots (id, meter_number, lat, lng, borough,
        max_stay_minutes, rate_cents_per_hour)
    values (gen_random_uuid(), 'BROWSER-1', 40.7583, -73.9851, 'Manhattan', 120, 450)
    returning id")
log "spot $spot, meter BROWSER-1, 40.7583,-73.9851"

# --- the browser -----------------------------------------------------------------------------
status=0
# In the background, waited for: a signal to this script then stops it at once.
CURBSIDE_URL=$base SPOT_ID=$spot LAT=40.7580 LNG=-73.9855 RADIUS=0.5 CHROMIUM=$CHROMIUM \
    timeout --kill-after=10 120 node tests/browser/demo.test.mjs &
test_pid=$!
wait "$test_pid" || status=$?
test_pid=""
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    log "the browser test did not finish within 120 s"
fi
if [ "$status" != 0 ] && [ -s "$work/api.log" ]; then
    log "the API's log (RUST_LOG=warn):"
    tail -n 30 "$work/api.log" | indent
fi
if grep -q 'panicked at' "$work/api.log"; then
    log "the API panicked:"
    grep -A 3 'panicked at' "$work/api.log" | head -n 40 | indent
    status=1
fi
exit "$status"
