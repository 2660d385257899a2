#!/usr/bin/env bash
# Runs the API on 127.0.0.1:8080 for development: starts (or installs) PostgreSQL and Redis,
# creates the `curbside` database if needed, applies migrations and serves.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh --env)"
database=${CURBSIDE_DATABASE:-curbside}
if ! psql "$DATABASE_ADMIN_URL" -qtAc "select 1 from pg_database where datname = '$database'" | grep -q 1; then
    echo "run: creating database $database" >&2
    psql "$DATABASE_ADMIN_URL" -qc "create database \"$database\""
fi
export DATABASE_URL=${DATABASE_URL:-${DATABASE_ADMIN_URL%/*}/$database}
exec cargo run --locked -- serve "$@"
