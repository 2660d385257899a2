#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and Redis (started or installed first):
# the product's and those of the workspace's other members (the imitation of Stripe).
# Each API test gets a fresh database of its own, created and dropped by `#[sqlx::test]`.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/services.sh --env)"
# sqlx::test creates its databases through this URL's server.
export DATABASE_URL=${DATABASE_ADMIN_URL}
exec cargo test --workspace --locked "$@"
