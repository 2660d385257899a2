#!/usr/bin/env bash
# Runs the API on 127.0.0.1:8080 for development: starts (or installs) PostgreSQL and Redis,
# creates the `curbside` database if needed, applies migrations, imports New York's meters
# (the snapshot built into the binary) into an empty database, and serves with the job
# workers in the same process. Unless STRIPE_SECRET_KEY is set, payments go to a local
# imitation of Stripe (the `fake-stripe` binary of crates/fake-stripe) on 127.0.0.1:12111, or
# on FAKE_STRIPE_ADDR, which posts its signed webhooks back to the API.
# Unless SMTP_URL is set, emails are written as files to MAIL_DIR (default: mail/).
# Ctrl-C or SIGTERM stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh --env)"
database=${CURBSIDE_DATABASE:-curbside}
if ! psql "$DATABASE_ADMIN_URL" -qtAc "select 1 from pg_database where datname = '$database'" | grep -q 1; then
    echo "run: creating database $database" >&2
    psql "$DATABASE_ADMIN_URL" -qc "create database \"$database\""
fi
export DATABASE_URL=${DATABASE_URL:-${DATABASE_ADMIN_URL%/*}/$database}
export BIND_ADDR=${BIND_ADDR:-127.0.0.1:8080}
# The whole workspace: the API and the imitation of Stripe, a binary of its own.
cargo build --locked --workspace
curbside=${CARGO_TARGET_DIR:-target}/debug/curbside
fake_stripe=${CARGO_TARGET_DIR:-target}/debug/fake-stripe
fake_stripe_addr=${FAKE_STRIPE_ADDR:-127.0.0.1:12111}

# Whatever this script started stops with it, however it ends.
children=()
stop_children() {
    trap - EXIT INT TERM
    for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_children EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${STRIPE_SECRET_KEY:-}" ]; then
    export STRIPE_SECRET_KEY=sk_test_curbside_development
    export STRIPE_WEBHOOK_SECRET=whsec_curbside_development
    export STRIPE_API_BASE=http://$fake_stripe_addr/
    "$fake_stripe" --bind "$fake_stripe_addr" \
        --webhook-url "http://$BIND_ADDR/v1/webhooks/stripe" \
        --webhook-secret "$STRIPE_WEBHOOK_SECRET" >/dev/null &
    children+=("$!")
fi

"$curbside" migrate
"$curbside" import-meters --if-empty
"$curbside" serve "$@" &
server=$!
children+=("$server")

# Say where everything is once the server answers (a first build or import can be slow).
for _ in $(seq 120); do
    "$curbside" healthcheck 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { wait "$server"; exit $?; }
    sleep 0.5
done
base="http://$BIND_ADDR"
echo "run: the API is on $base (interactive docs: $base/docs)" >&2
if [ -n "${SMTP_URL:-}" ]; then
    echo "run: emails go to $SMTP_URL" >&2
else
    echo "run: emails are written to ${MAIL_DIR:-mail}/ (one .eml file each)" >&2
fi
if [ "${STRIPE_API_BASE:-}" = "http://$fake_stripe_addr/" ]; then
    echo "run: the Stripe imitation is on http://$fake_stripe_addr/; save a booking's card with" >&2
    if [ "$fake_stripe_addr" = 127.0.0.1:12111 ]; then
        echo "     $fake_stripe save-card <payment.client_secret>" >&2
    else
        echo "     $fake_stripe save-card <payment.client_secret> --api http://$fake_stripe_addr/" >&2
    fi
fi
echo "run: Ctrl-C stops the API and everything this script started" >&2
wait "$server"
