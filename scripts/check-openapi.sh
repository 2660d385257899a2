#!/usr/bin/env bash
# Checks the OpenAPI description as its users take it, against a server built from this
# checkout, with New York's meters and the Stripe imitation:
#  - openapi-spec-validator accepts /openapi.json;
#  - openapi-typescript generates types from it, and tsc --strict accepts them;
#  - schemathesis, generating requests from it, without credentials, with a freshly
#    signed-up driver's token, and with an operator's on the operators' routes, finds no
#    5xx, no response outside its schema, no status, content type or header the description
#    does not declare.
# Prints one PASS or FAIL line per check and exits non-zero if any failed. Installs what a
# fresh Debian 12 lacks (as root, or through sudo); the Python tools go into a virtual
# environment under the build directory, the Node ones into npm's cache.
#
# The fuzzing is bounded: FUZZ_MAX_EXAMPLES test cases per operation and phase (default 60),
# FUZZ_SECONDS per pass at most (default 150). FUZZ_SEED (default fixed, so that CI runs the
# same cases) picks the cases; `FUZZ_SEED=random` draws new ones. The failures schemathesis
# reports are printed with a curl line to reproduce each; FUZZ_REPORT_DIR keeps its reports
# (JUnit, and every request and response as HAR).
#
# Uses PostgreSQL and Redis from scripts/services.sh (a throwaway database, dropped at exit)
# and CARGO_TARGET_DIR if set. Leaves nothing behind in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=scripts/lib/throwaway.sh
. scripts/lib/throwaway.sh

FUZZ_MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-60}
FUZZ_SECONDS=${FUZZ_SECONDS:-150}
FUZZ_SEED=${FUZZ_SEED:-20260101}
# Versions of the tools, as the issue names them; a new major is a deliberate change.
SPEC_VALIDATOR='openapi-spec-validator==0.9.*'
SCHEMATHESIS='schemathesis>=4.3,<5'
OPENAPI_TYPESCRIPT=openapi-typescript@7
TYPESCRIPT=typescript@5

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
log() { echo "check-openapi: $*" >&2; }
# A check that cannot go on without its result: the remaining checks would only fail too.
fatal() { fail "$*"; summary; exit 1; }
summary() { echo "check-openapi: $passed passed, $failed failed"; }
indent() { sed 's/^/    /'; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root to run: $*"; exit 1; fi
}

# --- tools -----------------------------------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir=$repo/$target_dir ;; esac
venv=$target_dir/check-openapi/venv

packages=()
command -v curl >/dev/null || packages+=(curl)
command -v python3 >/dev/null || packages+=(python3)
command -v psql >/dev/null || packages+=(postgresql-client)
command -v npx >/dev/null || packages+=(nodejs npm)
if [ ! -x "$venv/bin/st" ] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    packages+=(python3-venv)
fi
if [ ${#packages[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || { log "missing ${packages[*]}, and this is not Debian"; exit 1; }
    log "installing ${packages[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${packages[@]}" >/dev/null
fi
if [ ! -x "$venv/bin/st" ] || [ ! -x "$venv/bin/openapi-spec-validator" ]; then
    # In a virtual environment of its own: Debian's Python refuses system-wide pip installs.
    log "installing $SPEC_VALIDATOR and $SCHEMATHESIS from PyPI into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$SPEC_VALIDATOR" "$SCHEMATHESIS"
fi

# --- scratch space and clean-up --------------------------------------------------------------
work=$(mktemp -d -t curbside-check-openapi.XXXXXX)
api_pid=""
stripe_pid=""
database=""
redis_prefix=""


cleanup() {
    local status=$?
    set +e
    stop "$api_pid"
    stop "$stripe_pid"
    drop_database "$database"
    forget_redis_keys "$redis_prefix"
    if [ -n "${FUZZ_REPORT_DIR:-}" ] && [ -d "$work/reports" ]; then
        mkdir -p "$FUZZ_REPORT_DIR" && cp -r "$work/reports/." "$FUZZ_REPORT_DIR/"
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- a server with the city's meters ---------------------------------------------------------
log "building the API and the Stripe imitation (cargo build --locked --workspace)"
if ! cargo build --locked --workspace >"$work/cargo.log" 2>&1; then
    tail -n 30 "$work/cargo.log" | indent
    fatal "cargo build --locked --workspace"
fi
curbside=$target_dir/debug/curbside
fake_stripe=$target_dir/debug/fake-stripe

eval "$(scripts/services.sh --env)"
database=curbside_openapicheck_$$
psql "$DATABASE_ADMIN_URL" -qc "create database \"$database\"" >/dev/null
redis_prefix=curbside-openapicheck-$$-$(date +%s)
api_port=$(free_port)
stripe_port=$(free_port)
base=http://127.0.0.1:$api_port
set_server_env "$api_port" "$stripe_port" "${DATABASE_ADMIN_URL%/*}/$database" "$redis_prefix"
# Limits far above what the fuzzing sends: a 429 would hide whatever the request would have
# found (429 itself stays in the description).
server_env+=(RATE_LIMIT_PER_MINUTE=1000000 AUTH_RATE_LIMIT_PER_MINUTE=1000000)

(in_env "$fake_stripe" --bind "127.0.0.1:$stripe_port" \
    --webhook-url "$base/v1/webhooks/stripe") >"$work/fake-stripe.log" 2>&1 &
stripe_pid=$!
if ! (in_env "$curbside" migrate) >"$work/migrate.log" 2>&1; then
    indent <"$work/migrate.log"
    fatal "curbside migrate"
fi
if (in_env "$curbside" import-meters --if-empty) >"$work/import.log" 2>&1; then
    pass "curbside import-meters --if-empty: $(tail -n 1 "$work/import.log")"
else
    tail -n 20 "$work/import.log" | indent
    fatal "curbside import-meters --if-empty"
fi
(in_env "$curbside" serve) >"$work/api.log" 2>&1 &
api_pid=$!

ready=false
for _ in $(seq 240); do
    if curl -fsS -o /dev/null --max-time 2 "$base/readyz" 2>/dev/null; then
        ready=true
        break
    fi
    kill -0 "$api_pid" 2>/dev/null || break
    sleep 0.25
done
if ! $ready; then
    tail -n 30 "$work/api.log" | indent
    fatal "the API answers /readyz within 60 s"
fi
pass "the API answers /readyz on $base, with the Stripe imitation on 127.0.0.1:$stripe_port"

# --- the description itself ------------------------------------------------------------------
spec=$work/openapi.json
if curl -fsS --max-time 10 -o "$spec" "$base/openapi.json" 2>"$work/curl.err"; then
    pass "GET /openapi.json ($(wc -c <"$spec") bytes)"
else
    indent <"$work/curl.err"
    fatal "GET /openapi.json"
fi

if output=$("$venv/bin/openapi-spec-validator" "$spec" 2>&1); then
    pass "openapi-spec-validator accepts it"
else
    fail "openapi-spec-validator accepts it"
    printf '%s\n' "$output" | head -n 40 | indent
fi

types=$work/typescript
mkdir -p "$types"
if output=$(cd "$types" && npx --yes "$OPENAPI_TYPESCRIPT" "$spec" -o "$types/api.d.ts" 2>&1); then
    pass "$OPENAPI_TYPESCRIPT generates TypeScript types ($(wc -l <"$types/api.d.ts") lines)"
    if output=$(cd "$types" && npx --yes -p "$TYPESCRIPT" tsc --noEmit --strict api.d.ts 2>&1); then
        pass "tsc --noEmit --strict ($TYPESCRIPT) accepts the generated types"
    else
        fail "tsc --noEmit --strict ($TYPESCRIPT) accepts the generated types"
        printf '%s\n' "$output" | head -n 40 | indent
    fi
else
    fail "$OPENAPI_TYPESCRIPT generates TypeScript types"
    printf '%s\n' "$output" | head -n 40 | indent
fi

# --- fuzzing from the description ------------------------------------------------------------
# What a client would do first: a driver signs up and books (one booking running with a
# saved card, one held for later), and an operator signs up. The fuzzing then names these
# reservations and the city's spots as well as random ids (scripts/fuzz_hooks.py).
api() { # output file, curl arguments...: the status code
    local out=$1
    shift
    curl -sS --max-time 30 -o "$out" -w '%{http_code}' -H 'content-type: application/json' \
        "$@" 2>"$work/curl.err" || true
}
field() { # file, path of keys: prints that value of the JSON document
    python3 -c 'import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2:]:
    value = value[key]
print(value)' "$@"
}
sign_up() { # email: prints the access token
    local status
    status=$(api "$work/sign-up.json" -d "{\"email\": \"$1\", \"password\": \"fuzzing the api\"}" \
        "$base/v1/auth/sign-up")
    [ "$status" = 201 ] || { cat "$work/sign-up.json" "$work/curl.err" >&2; return 1; }
    field "$work/sign-up.json" access_token
}
book() { # starts_at (or "now"): prints the booking document's path
    local out=$work/booking-$RANDOM.json starts="" status
    [ "$1" = now ] || starts="\"starts_at\": \"$1\", "
    status=$(api "$out" -H "Authorization: Bearer $driver_token" \
        -d "{\"spot_id\": \"$spot\", ${starts}\"duration_minutes\": 60}" "$base/v1/reservations")
    [ "$status" = 201 ] || { cat "$out" "$work/curl.err" >&2; return 1; }
    echo "$out"
}

set_up_fuzzing() {
    driver_token=$(sign_up fuzz-driver@example.com) || return 1
    operator_token=$(sign_up fuzz-operator@example.com) || return 1
    (in_env "$curbside" create-operator fuzz-operator@example.com) >/dev/null || return 1
    # The spots that allow the longest stays, so that generated windows fit more often, and
    # one out of service.
    spots=$(psql "${DATABASE_ADMIN_URL%/*}/$database" -qtAc \
        "select string_agg(id::text, ',') from (select id from spots where active
           order by max_stay_minutes desc, id limit 5) s") || return 1
    psql "${DATABASE_ADMIN_URL%/*}/$database" -qc \
        "update spots set active = false where id = '${spots##*,}'" >/dev/null || return 1
    spot=${spots%%,*}
    local running held status
    running=$(book now) || return 1
    (in_env "$fake_stripe" save-card "$(field "$running" payment client_secret)" \
        --api "http://127.0.0.1:$stripe_port/") >/dev/null || return 1
    status=$(api "$work/confirmed.json" -X POST -H "Authorization: Bearer $driver_token" \
        "$base/v1/reservations/$(field "$running" reservation id)/confirm")
    [ "$status" = 200 ] || { cat "$work/confirmed.json" >&2; return 1; }
    spot=$(cut -d, -f2 <<<"$spots")
    held=$(book "$(date -u -d '+2 hours' +%FT%TZ)") || return 1
    reservations=$(field "$running" reservation id),$(field "$held" reservation id)
}
if set_up_fuzzing 2>"$work/setup.err"; then
    pass "a driver books a running and a held reservation; an operator signs up"
else
    indent <"$work/setup.err"
    fatal "a driver books a running and a held reservation; an operator signs up"
fi

seed=$FUZZ_SEED
[ "$seed" = random ] && seed=$RANDOM$RANDOM
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance
# Each pass says who it is with its own header: schemathesis must not sign up on its own.
printf '[auth]\nauto-signup = false\n' >"$work/schemathesis.toml"
mkdir -p "$work/reports"

# Left out: Stripe's webhook (only a signed body gets past its first check) and the live
# availability stream, whose 200 never ends (its refusals are tested in tests/api/curb.rs).
fuzz() { # name, description, schemathesis arguments...
    local name=$1 what=$2 status=0
    shift 2
    log "fuzzing $what: up to $FUZZ_MAX_EXAMPLES cases per operation, ${FUZZ_SECONDS}s at most, seed $seed"
    # From the scratch directory: schemathesis and Hypothesis keep their state beside them.
    (
        cd "$work"
        exec env PYTHONPATH="$repo/scripts" SCHEMATHESIS_HOOKS=fuzz_hooks \
            CURBSIDE_FUZZ_SPOTS="$spots" CURBSIDE_FUZZ_RESERVATIONS="$reservations" \
            timeout --kill-after=20 "$FUZZ_SECONDS" \
            "$venv/bin/st" --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
            --checks "$checks" \
            --exclude-path /v1/webhooks/stripe \
            --exclude-path /v1/spots/events \
            --max-examples "$FUZZ_MAX_EXAMPLES" \
            --seed "$seed" \
            --workers 2 \
            --request-timeout 35 \
            --generation-database none \
            --report junit,har --report-dir "$work/reports/$name" \
            --no-color \
            "$@"
    ) >"$work/fuzz-$name.log" 2>&1 || status=$?
    # Each failure with its curl line, the warnings, and the count of test cases.
    sed -n '/^=* FAILURES\|^=* ERRORS\|^=* SUMMARY/,$p' "$work/fuzz-$name.log" \
        | { grep -v '^ *$' || true; } | indent
    if [ "$status" = 0 ]; then
        pass "schemathesis, $what: no failure"
    elif [ "$status" = 124 ] || [ "$status" = 137 ]; then
        tail -n 30 "$work/fuzz-$name.log" | indent
        fail "schemathesis, $what: finished within ${FUZZ_SECONDS}s"
    else
        fail "schemathesis, $what: no failure (exit $status; failures above)"
    fi
}

fuzz anonymous "without credentials"
# Signing out would end the driver's session for every case after it; the pass without
# credentials covers sign-out.
fuzz driver "as a driver" -H "Authorization: Bearer $driver_token" --exclude-path /v1/auth/sign-out
# What only operators reach: creating and changing spots.
fuzz operator "as an operator, the operators' routes" -H "Authorization: Bearer $operator_token" \
    --include-path-regex '^/v1/spots' --exclude-method GET

if kill -0 "$api_pid" 2>/dev/null; then
    pass "the API kept running throughout"
else
    fail "the API kept running throughout"
    tail -n 30 "$work/api.log" | indent
fi
# Panics are caught and answered with a 500, which the fuzzing reports; their messages
# are in the log.
if grep -q 'panicked at' "$work/api.log"; then
    fail "the API did not panic"
    grep -A 3 'panicked at' "$work/api.log" | head -n 40 | indent
else
    pass "the API did not panic"
fi
summary
[ "$failed" -eq 0 ]
