#!/usr/bin/env bash
# Runs the API on 127.0.0.1:8080 for development: starts (or installs) PostgreSQL and Redis,
# creates the `curbside` database if needed, applies migrations and serves. Unless
# STRIPE_SECRET_KEY is set, payments go to a local imitation of Stripe on 127.0.0.1:12111
# (`curbside fake-stripe`), which posts its signed webhooks back to the API.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh --env)"
database=${CURBSIDE_DATABASE:-curbside}
if ! psql "$DATABASE_ADMIN_URL" -qtAc "select 1 from pg_database where datname = '$database'" | grep -q 1; then
    echo "run: creating database $database" >&2
    psql "$DATABASE_ADMIN_URL" -qc "create database \"$database\""
fi
export DATABASE_URL=${DATABASE_URL:-${DATABASE_ADMIN_URL%/*}/$database}
cargo build --locked
if [ -z "${STRIPE_SECRET_KEY:-}" ]; then
    export STRIPE_SECRET_KEY=sk_test_curbside_development
    export STRIPE_WEBHOOK_SECRET=whsec_curbside_development
    export STRIPE_API_BASE=http://127.0.0.1:12111/
    target/debug/curbside fake-stripe --bind 127.0.0.1:12111 \
        --webhook-url "http://${BIND_ADDR:-127.0.0.1:8080}/v1/webhooks/stripe" \
        --webhook-secret "$STRIPE_WEBHOOK_SECRET" &
    trap 'kill $! 2>/dev/null' EXIT
fi
target/debug/curbside serve "$@"
