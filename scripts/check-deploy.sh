#!/usr/bin/env bash
# Checks the deployment files without a Docker engine, as CI can:
#  - the compose files, rendered by a real Compose implementation (docker-compose 1.29);
#  - the Kubernetes manifests, against the API schemas of one Kubernetes version, strictly;
#  - the shipped Nginx template, rendered with envsubst and run for real (self-signed TLS,
#    high ports) in front of a test API built from this checkout, with requests through it.
# Prints one PASS or FAIL line per check and exits non-zero if any failed. Installs what a
# fresh Debian 12 lacks (as root, or through sudo). Building the image, running containers,
# Let's Encrypt and a real cluster need a Docker host: README.md, "What only a Docker host
# can check".
#
# Uses PostgreSQL and Redis from scripts/services.sh (a throwaway database, dropped at exit)
# and CARGO_TARGET_DIR if set. Leaves nothing behind in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
# shellcheck source=scripts/lib/throwaway.sh
. scripts/lib/throwaway.sh

# The Kubernetes release whose schemas the manifests are validated against.
KUBERNETES_VERSION=1.33.0

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
log() { echo "check-deploy: $*" >&2; }
# A check that cannot go on without its result: the remaining checks would only fail too.
fatal() { fail "$*"; summary; exit 1; }
summary() { echo "check-deploy: $passed passed, $failed failed"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root to run: $*"; exit 1; fi
}

# --- tools -----------------------------------------------------------------------------------
venv=${XDG_CACHE_HOME:-$HOME/.cache}/curbside/check-deploy-venv
kubernetes_validate=$(command -v kubernetes-validate || true)
if [ -z "$kubernetes_validate" ] && [ -x "$venv/bin/kubernetes-validate" ]; then
    kubernetes_validate=$venv/bin/kubernetes-validate
fi

packages=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || packages+=(nginx)
command -v docker-compose >/dev/null || packages+=(docker-compose)
command -v openssl >/dev/null || packages+=(openssl)
command -v curl >/dev/null || packages+=(curl)
command -v envsubst >/dev/null || packages+=(gettext-base)
command -v python3 >/dev/null || packages+=(python3)
if [ -z "$kubernetes_validate" ] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    packages+=(python3-venv)
fi
if [ ${#packages[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || { log "missing ${packages[*]}, and this is not Debian"; exit 1; }
    log "installing ${packages[*]}"
    # The nginx package would start the system's own Nginx on port 80; it is not wanted here.
    no_service_start=false
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
        no_service_start=true
    fi
    installed=true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${packages[@]}" >/dev/null \
        || installed=false
    if $no_service_start; then as_root rm -f /usr/sbin/policy-rc.d; fi
    $installed || { log "could not install ${packages[*]}"; exit 1; }
fi
export PATH=$PATH:/usr/sbin
if [ -z "$kubernetes_validate" ]; then
    # In a virtual environment of its own: Debian's Python refuses system-wide pip installs.
    log "installing kubernetes-validate from PyPI into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate>=1.33"
    kubernetes_validate=$venv/bin/kubernetes-validate
fi

# --- scratch space and clean-up --------------------------------------------------------------
work=$(mktemp -d -t curbside-check-deploy.XXXXXX)
# Nginx's workers run as nobody when Nginx starts as root: they must reach the webroot.
chmod 755 "$work"
api_pid=""
nginx_pid=""
database=""
redis_prefix=""

cleanup() {
    local status=$?
    set +e
    if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -QUIT "$nginx_pid"
        wait "$nginx_pid" 2>/dev/null
    fi
    stop "$api_pid"
    drop_database "$database"
    forget_redis_keys "$redis_prefix"
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The ${NAME} placeholders of a template, one name a line.
template_variables() {
    # shellcheck disable=SC2016 # a literal ${ to search for
    grep -o '\${[A-Z_]*}' "$1" | sed 's/^\${\(.*\)}$/\1/' | sort -u || true
}

# --- Compose ---------------------------------------------------------------------------------
compose_config() { # description, docker-compose arguments...
    local what=$1 output
    shift
    if output=$(docker-compose "$@" config -q 2>&1); then
        pass "compose: $what renders"
    else
        fail "compose: $what renders"
        printf '%s\n' "$output" | sed 's/^/    /'
    fi
}

compose_config "docker-compose.dev.yml" -f docker-compose.dev.yml
compose_config "docker-compose.dev.yml --profile worker" -f docker-compose.dev.yml --profile worker

# The deploy file reads .env (env_file and ${…}): render a copy beside a dummy one, made of
# .env.example plus the deployment's own variables, with the repository's files linked in.
deploy_dir=$work/compose
mkdir -p "$deploy_dir"
cp docker-compose.deploy.yml "$deploy_dir/"
for entry in nginx Dockerfile; do ln -s "$repo/$entry" "$deploy_dir/$entry"; done
{
    cat .env.example
    echo "SERVER_NAME=curbside.test"
    echo "CERTBOT_EMAIL=ops@curbside.test"
    echo "POSTGRES_PASSWORD=deploycheck"
} >"$deploy_dir/.env"
deploy_file=$deploy_dir/docker-compose.deploy.yml
compose_config "docker-compose.deploy.yml" -f "$deploy_file"
compose_config "docker-compose.deploy.yml --profile local-db" -f "$deploy_file" --profile local-db

if docker-compose -f "$deploy_file" config >"$work/deploy.yml" 2>"$work/deploy.err"; then
    # Every file the deploy file mounts exists in the repository.
    missing=$(sed -n "s|^ *- \($deploy_dir/[^:]*\):.*|\1|p" "$work/deploy.yml" \
        | while read -r path; do [ -e "$path" ] || echo "${path#"$deploy_dir"/}"; done)
    if [ -z "$missing" ] && grep -q "$deploy_dir/nginx/templates:" "$work/deploy.yml"; then
        pass "compose: every file docker-compose.deploy.yml mounts exists"
    else
        fail "compose: every file docker-compose.deploy.yml mounts exists (missing: ${missing:-nginx/templates})"
    fi
    # The nginx service sets every variable of the template, and lets envsubst see exactly those.
    nginx_env=$(awk '/^  nginx:$/ { on = 1; next } /^  [^ ]/ { on = 0 } on' "$work/deploy.yml")
    unset_vars=""
    while read -r var; do
        grep -q "^      $var: " <<<"$nginx_env" || unset_vars+=" $var"
        grep -q "NGINX_ENVSUBST_FILTER: .*[(|]${var}[|)]" <<<"$nginx_env" || unset_vars+=" $var(filter)"
    done < <(template_variables nginx/templates/curbside.conf.template)
    if [ -z "$unset_vars" ]; then
        pass "compose: the nginx service sets every variable of the template"
    else
        fail "compose: the nginx service sets every variable of the template (not:$unset_vars)"
    fi
else
    fail "compose: docker-compose.deploy.yml renders in full"
    sed 's/^/    /' "$work/deploy.err"
fi

# Without SERVER_NAME the deploy file refuses to render, naming the variable.
grep -v '^SERVER_NAME=' "$deploy_dir/.env" >"$work/env.without-server-name"
cp "$work/env.without-server-name" "$deploy_dir/.env"
if output=$(docker-compose -f "$deploy_file" config -q 2>&1); then
    fail "compose: docker-compose.deploy.yml refuses to render without SERVER_NAME"
elif grep -q SERVER_NAME <<<"$output"; then
    pass "compose: docker-compose.deploy.yml refuses to render without SERVER_NAME"
else
    fail "compose: docker-compose.deploy.yml refuses to render without SERVER_NAME (said: $output)"
fi

# --- Kubernetes ------------------------------------------------------------------------------
for manifest in k8s/*.yaml; do
    # kustomization.yaml is kubectl's list of the others, not an object of the API.
    [ "$manifest" = k8s/kustomization.yaml ] && continue
    if output=$("$kubernetes_validate" --strict --kubernetes-version "$KUBERNETES_VERSION" \
        --quiet "$manifest" 2>&1); then
        pass "kubernetes: $manifest is valid for Kubernetes $KUBERNETES_VERSION (strict)"
    else
        fail "kubernetes: $manifest is valid for Kubernetes $KUBERNETES_VERSION (strict)"
        printf '%s\n' "$output" | sed 's/^/    /'
    fi
done

# `kubectl apply -k k8s` applies every manifest but the Secret, whose real values it must
# never overwrite.
unlisted=""
for manifest in k8s/*.yaml; do
    name=${manifest#k8s/}
    case "$name" in kustomization.yaml | secret.yaml) continue ;; esac
    grep -qx "  - $name" k8s/kustomization.yaml || unlisted+=" $name"
done
if grep -qx "  - secret.yaml" k8s/kustomization.yaml; then unlisted+=" (secret.yaml is listed)"; fi
if [ -z "$unlisted" ]; then
    pass "kubernetes: kustomization.yaml lists every manifest but the Secret"
else
    fail "kubernetes: kustomization.yaml lists every manifest but the Secret:$unlisted"
fi

# The Secret names every variable of .env.example (commented-out optional ones too), as a
# .env would, so a setting added to the application is not forgotten in the cluster.
keys=$(sed -n 's/^  \([A-Z][A-Z0-9_]*\):.*/\1/p' k8s/secret.yaml | sort -u)
absent=""
while read -r var; do
    grep -qx "$var" <<<"$keys" || absent+=" $var"
done < <(sed -n 's/^#\{0,1\} \{0,1\}\([A-Z][A-Z0-9_]*\)=.*/\1/p' .env.example | sort -u)
if [ -z "$absent" ]; then
    pass "kubernetes: the Secret names every variable of .env.example"
else
    fail "kubernetes: the Secret names every variable of .env.example (missing:$absent)"
fi

# --- Nginx for real, in front of a test API --------------------------------------------------
log "building the API (cargo build --locked)"
if ! cargo build --locked >"$work/cargo.log" 2>&1; then
    tail -n 30 "$work/cargo.log" | sed 's/^/    /'
    fatal "cargo build --locked"
fi
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir=$repo/$target_dir ;; esac
curbside=$target_dir/debug/curbside

eval "$(scripts/services.sh --env)"
database=curbside_deploycheck_$$
psql "$DATABASE_ADMIN_URL" -qc "create database \"$database\"" >/dev/null
redis_prefix=curbside-deploycheck-$$-$(date +%s)
api_port=$(free_port)
api_log=$work/api.log
mkdir -p "$work/api"
# In a directory of its own, so that no .env of the checkout is read. The API as deployed:
# no workers in the process, client addresses from X-Forwarded-For, and a low limit so that
# the rate limit is quick to reach.
(
    cd "$work/api"
    exec env APP_ENV=development \
        BIND_ADDR="127.0.0.1:$api_port" \
        DATABASE_URL="${DATABASE_ADMIN_URL%/*}/$database" \
        REDIS_URL="$REDIS_URL" \
        REDIS_KEY_PREFIX="$redis_prefix" \
        SMTP_URL=smtp://127.0.0.1:1 \
        STRIPE_API_BASE=http://127.0.0.1:1/ \
        STRIPE_SECRET_KEY=sk_test_curbside_development \
        STRIPE_WEBHOOK_SECRET=whsec_curbside_development \
        STRIPE_PUBLISHABLE_KEY=pk_test_curbside_development \
        RATE_LIMIT_PER_MINUTE=5 \
        TRUST_FORWARDED_FOR=true \
        RUST_LOG=warn \
        "$curbside" serve --no-worker
) >"$api_log" 2>&1 &
api_pid=$!

ready=false
for _ in $(seq 240); do
    if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$api_port/readyz" 2>/dev/null; then
        ready=true
        break
    fi
    kill -0 "$api_pid" 2>/dev/null || break
    sleep 0.25
done
if ! $ready; then
    tail -n 30 "$api_log" | sed 's/^/    /'
    fatal "the test API answers /readyz within 60 s"
fi
pass "the test API answers /readyz on 127.0.0.1:$api_port"

# Render the shipped template for this machine: high free ports, a self-signed certificate.
server_name=curbside.test
http_port=$(free_port)
https_port=$(free_port)
metrics_port=$(free_port)
prefix=$work/nginx
webroot=$work/acme
mkdir -p "$prefix/logs" "$prefix/temp" "$prefix/tls" "$webroot/.well-known/acme-challenge"
chmod -R a+rX "$webroot"
openssl req -x509 -nodes -newkey rsa:2048 -days 1 -subj "/CN=$server_name" \
    -addext "subjectAltName=DNS:$server_name" \
    -keyout "$prefix/tls/privkey.pem" -out "$prefix/tls/fullchain.pem" 2>/dev/null

template_vars=(SERVER_NAME HTTP_LISTEN HTTPS_LISTEN METRICS_LISTEN API_UPSTREAM
    API_UPSTREAM_PARAMETERS RESOLVER TLS_CERTIFICATE TLS_CERTIFICATE_KEY ACME_WEBROOT ACCESS_LOG)
# shellcheck disable=SC2016 # envsubst takes the literal ${NAME} list
SERVER_NAME=$server_name \
    HTTP_LISTEN=127.0.0.1:$http_port \
    HTTPS_LISTEN=127.0.0.1:$https_port \
    METRICS_LISTEN=127.0.0.1:$metrics_port \
    API_UPSTREAM=127.0.0.1:$api_port \
    API_UPSTREAM_PARAMETERS="" \
    RESOLVER=127.0.0.11 \
    TLS_CERTIFICATE=$prefix/tls/fullchain.pem \
    TLS_CERTIFICATE_KEY=$prefix/tls/privkey.pem \
    ACME_WEBROOT=$webroot \
    ACCESS_LOG=$prefix/logs/access.log \
    envsubst "$(printf '${%s} ' "${template_vars[@]}")" \
    <nginx/templates/curbside.conf.template >"$prefix/curbside.conf"
leftover=$(template_variables "$prefix/curbside.conf" | tr '\n' ' ')
if [ -z "$leftover" ]; then
    pass "nginx: the template renders with envsubst and its variable list"
else
    fail "nginx: the template renders with envsubst and its variable list (left: $leftover)"
fi

# What the nginx image's own nginx.conf provides around conf.d/, with every path in $prefix.
{
    [ "$(id -u)" -eq 0 ] && echo "user nobody nogroup;"
    echo "worker_processes 1;"
    echo "pid $prefix/nginx.pid;"
    echo "error_log $prefix/logs/error.log warn;"
    echo "daemon off;"
    echo "events { worker_connections 256; }"
    echo "http {"
    echo "    include /etc/nginx/mime.types;"
    echo "    default_type application/octet-stream;"
    for temp in client_body proxy fastcgi uwsgi scgi; do
        echo "    ${temp}_temp_path $prefix/temp/$temp;"
    done
    echo "    include $prefix/curbside.conf;"
    echo "}"
} >"$prefix/nginx.conf"

if output=$(nginx -t -p "$prefix" -e "$prefix/logs/error.log" -c "$prefix/nginx.conf" 2>&1); then
    pass "nginx: nginx -t accepts the rendered configuration"
else
    printf '%s\n' "$output" | sed 's/^/    /'
    fatal "nginx: nginx -t accepts the rendered configuration"
fi
nginx -p "$prefix" -e "$prefix/logs/error.log" -c "$prefix/nginx.conf" &
nginx_pid=$!
up=false
for _ in $(seq 80); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$http_port/" 2>/dev/null; then
        up=true
        break
    fi
    kill -0 "$nginx_pid" 2>/dev/null || break
    sleep 0.25
done
if ! $up; then
    sed 's/^/    /' "$prefix/logs/error.log"
    fatal "nginx: starts in the foreground and listens"
fi
pass "nginx: starts in the foreground and listens on 127.0.0.1:$http_port and :$https_port"

http_url=http://127.0.0.1:$http_port
https_url=https://$server_name:$https_port
metrics_url=http://127.0.0.1:$metrics_port
tls=(--cacert "$prefix/tls/fullchain.pem" --resolve "$server_name:$https_port:127.0.0.1")

# request URL [curl arguments...]: the response headers (lower-cased) to $work/headers, the
# body to $work/body; prints the status code.
request() {
    local url=$1
    shift
    curl -sS --max-time 10 "${tls[@]}" -D "$work/headers.raw" -o "$work/body" \
        -w '%{http_code}' "$@" "$url" 2>"$work/curl.err" || true
    tr -d '\r' <"$work/headers.raw" 2>/dev/null | tr '[:upper:]' '[:lower:]' >"$work/headers" || true
}
header() { sed -n "s/^$1: //p" "$work/headers" | tail -n 1; }
body_has() { grep -q -- "$1" "$work/body"; }

# Plain HTTP: redirects to the canonical HTTPS URL, whatever Host was asked for...
status=$(request "$http_url/v1/spots?limit=1" -H "Host: $server_name")
location=$(sed -n 's/^location: //Ip' "$work/headers.raw" | tr -d '\r')
if [ "$status" = 301 ] && [ "$location" = "https://$server_name/v1/spots?limit=1" ]; then
    pass "nginx: port \"80\" answers 301 to https://$server_name/…"
else
    fail "nginx: port \"80\" answers 301 to https://$server_name/… (got $status, Location: $location)"
fi
status=$(request "$http_url/" -H "Host: attacker.example")
location=$(sed -n 's/^location: //Ip' "$work/headers.raw" | tr -d '\r')
if [ "$status" = 301 ] && [ "$location" = "https://$server_name/" ]; then
    pass "nginx: the redirect names the server's own host, not the request's Host"
else
    fail "nginx: the redirect names the server's own host, not the request's Host (got $status, $location)"
fi

# ...except the ACME challenges, served from the webroot.
token=deploycheck-$RANDOM$RANDOM
echo "$token.key-authorization" >"$webroot/.well-known/acme-challenge/$token"
chmod a+r "$webroot/.well-known/acme-challenge/$token"
status=$(request "$http_url/.well-known/acme-challenge/$token" -H "Host: $server_name")
if [ "$status" = 200 ] && [ "$(cat "$work/body")" = "$token.key-authorization" ]; then
    pass "nginx: /.well-known/acme-challenge/ is served from the webroot over plain HTTP"
else
    fail "nginx: /.well-known/acme-challenge/ is served from the webroot over plain HTTP (got $status)"
fi

# TLS to the API, with HSTS and the request id that Nginx made and the API kept.
status=$(request "$https_url/healthz")
request_id=$(header x-request-id)
hsts=$(header strict-transport-security)
if [ "$status" = 200 ] && body_has '"status":"ok"'; then
    pass "nginx: GET /healthz over TLS reaches the API (200)"
else
    fail "nginx: GET /healthz over TLS reaches the API (got $status: $(cat "$work/curl.err" "$work/body"))"
fi
if [ "$hsts" = "max-age=63072000; includesubdomains" ]; then
    pass "nginx: HTTPS responses carry Strict-Transport-Security (max-age=63072000; includeSubDomains)"
else
    fail "nginx: HTTPS responses carry Strict-Transport-Security (got: ${hsts:-none})"
fi
if [[ $request_id =~ ^[0-9a-f]{32}$ ]] && grep -q "\"request_id\":\"$request_id\"" "$prefix/logs/access.log"; then
    pass "nginx: the API returns x-request-id $request_id, Nginx's own id, also in its access log"
else
    fail "nginx: the API returns Nginx's request id, also in its access log (got: ${request_id:-none})"
fi
request "$https_url/healthz" -H "X-Request-Id: deploycheck-$$" >/dev/null
if [ "$(header x-request-id)" = "deploycheck-$$" ]; then
    pass "nginx: a caller's X-Request-Id is kept end to end"
else
    fail "nginx: a caller's X-Request-Id is kept end to end (got: $(header x-request-id))"
fi
for version in 1.2 1.3; do
    status=$(request "$https_url/healthz" "--tlsv$version" --tls-max "$version")
    if [ "$status" = 200 ]; then
        pass "nginx: TLS $version is accepted"
    else
        fail "nginx: TLS $version is accepted (got $status: $(cat "$work/curl.err"))"
    fi
done

# The live curb's stream goes through the streaming location: the snapshot arrives while
# the stream is still open (buffered, it would wait for the end that never comes).
curl -sS -N --max-time 3 "${tls[@]}" -o "$work/stream" \
    "$https_url/v1/spots/events?lat=40.758&lng=-73.9855&radius=0.5" 2>"$work/curl.err" || true
if grep -q '^event: snapshot' "$work/stream" && grep -qi 'operation timed out' "$work/curl.err"; then
    pass "nginx: GET /v1/spots/events streams its snapshot at once and stays open"
else
    fail "nginx: GET /v1/spots/events streams its snapshot at once and stays open (got: $(head -c 300 "$work/stream") $(cat "$work/curl.err"))"
fi

# /metrics: not on the public side, only on the internal listener.
status=$(request "$https_url/metrics")
if [ "$status" = 404 ] && body_has '"code":"not_found"' && [ -n "$(header strict-transport-security)" ]; then
    pass "nginx: /metrics is 404 on the public side"
else
    fail "nginx: /metrics is 404 on the public side (got $status)"
fi
status=$(request "$metrics_url/metrics")
if [ "$status" = 200 ] && body_has '^# '; then
    pass "nginx: /metrics is 200 on the internal listener"
else
    fail "nginx: /metrics is 200 on the internal listener (got $status)"
fi
status=$(request "$metrics_url/nginx_status")
if [ "$status" = 200 ] && body_has 'Active connections'; then
    pass "nginx: /nginx_status is 200 on the internal listener"
else
    fail "nginx: /nginx_status is 200 on the internal listener (got $status)"
fi
status=$(request "$metrics_url/healthz")
if [ "$status" = 404 ]; then
    pass "nginx: the internal listener serves nothing else of the API (404)"
else
    fail "nginx: the internal listener serves nothing else of the API (got $status)"
fi

# The API's per-client limit (5 a minute here) counts each client address through Nginx on
# its own. Its window is the wall-clock minute: a round that straddles a new minute is run
# again, within the new one, from two fresh addresses.
spots=$https_url/v1/spots
for attempt in 1 2; do
    limited=127.0.0.$((attempt * 10 - 8))  # 127.0.0.2, then 127.0.0.12
    other=127.0.0.$((attempt * 10 - 7))    # 127.0.0.3, then 127.0.0.13
    minute=$(($(date +%s) / 60))
    codes=""
    for _ in 1 2 3 4 5 6; do
        codes+="$(request "$spots" --interface "$limited") "
    done
    limited_body=$(cat "$work/body")
    other_status=$(request "$spots" --interface "$other")
    forged_status=$(request "$spots" --interface "$limited" -H "X-Forwarded-For: 198.51.100.7")
    [ "$minute" = $(($(date +%s) / 60)) ] && break
    log "the rate-limit window turned during round $attempt; again"
done
if [ "$codes" = "200 200 200 200 200 429 " ] && [[ $limited_body == *'too many requests; retry after'* ]]; then
    pass "rate limit: $limited gets 200 five times, then the API's 429"
else
    fail "rate limit: $limited gets 200 five times, then the API's 429 (got: $codes)"
fi
if [ "$other_status" = 200 ]; then
    pass "rate limit: $other still gets 200: Nginx passes each client's own address"
else
    fail "rate limit: $other still gets 200: Nginx passes each client's own address (got $other_status)"
fi
if [ "$forged_status" = 429 ]; then
    pass "rate limit: a limited client cannot escape by sending its own X-Forwarded-For"
else
    fail "rate limit: a limited client cannot escape by sending its own X-Forwarded-For (got $forged_status)"
fi

# Bodies: over 64 KiB refused by Nginx, up to it passed to the API.
head -c 65537 /dev/zero | tr '\0' 'a' >"$work/too-large.json"
status=$(request "$https_url/v1/quotes" --interface 127.0.0.4 -X POST \
    -H 'Content-Type: application/json' --data-binary "@$work/too-large.json")
if [ "$status" = 413 ] && body_has '"code":"payload_too_large"'; then
    pass "nginx: a body over 64 KiB is refused with 413"
else
    fail "nginx: a body over 64 KiB is refused with 413 (got $status)"
fi
head -c 60000 /dev/zero | tr '\0' 'a' >"$work/large.json"
status=$(request "$https_url/v1/quotes" --interface 127.0.0.4 -X POST \
    -H 'Content-Type: application/json' --data-binary "@$work/large.json")
if [ "$status" = 400 ] && body_has '"code":"malformed_json"'; then
    pass "nginx: a body of 60,000 bytes reaches the API (its 400 malformed_json)"
else
    fail "nginx: a body of 60,000 bytes reaches the API (got $status)"
fi

# Compression of JSON for clients that ask, and only for them.
status=$(request "$https_url/openapi.json" -H 'Accept-Encoding: gzip')
if [ "$status" = 200 ] && [ "$(header content-encoding)" = gzip ] \
    && gzip -dc <"$work/body" >"$work/body.json" 2>/dev/null \
    && [ "$(head -c 1 "$work/body.json")" = '{' ]; then
    pass "nginx: JSON is gzip-compressed when the client accepts it"
else
    fail "nginx: JSON is gzip-compressed when the client accepts it (got $status, encoding: $(header content-encoding))"
fi
status=$(request "$https_url/openapi.json")
if [ "$status" = 200 ] && [ -z "$(header content-encoding)" ] && head -c 1 "$work/body" | grep -q '{'; then
    pass "nginx: JSON is sent uncompressed to a client that does not ask"
else
    fail "nginx: JSON is sent uncompressed to a client that does not ask (got $status, encoding: $(header content-encoding))"
fi

# Nginx's own wall: a flood from one address (here 300 requests on one connection, far
# faster than 30 a second) passes the burst, then gets Nginx's 429 in the API's shape, with
# Retry-After. /healthz costs the API next to nothing, so 300 take well under the 6 s that
# would let 30 a second through them all. Bodies and status codes go to one file, the
# headers of all to another.
flood=()
for _ in $(seq 300); do flood+=("$https_url/healthz"); done
curl -s --max-time 30 "${tls[@]}" --interface 127.0.0.5 -D "$work/flood.headers" \
    -w '\n%{http_code}\n' "${flood[@]}" >"$work/flood.out" 2>/dev/null || true
served=$(grep -cx 200 "$work/flood.out" || true)
refused=$(grep -cx 429 "$work/flood.out" || true)
shaped=$(grep -c '"detail":"too many requests from this address; retry shortly","code":"rate_limited"' "$work/flood.out" || true)
retry_after=$(tr -d '\r' <"$work/flood.headers" | grep -cix 'retry-after: 1' || true)
if [ "$served" -ge 121 ] && [ "$refused" -gt 0 ] && [ "$shaped" = "$refused" ] \
    && [ "$retry_after" = "$refused" ] && [ $((served + refused)) = 300 ]; then
    pass "nginx: a flood from one address passes the burst, then gets Nginx's 429 ($served served, $refused refused)"
else
    fail "nginx: a flood from one address passes the burst, then gets Nginx's 429 (served $served, refused $refused, shaped $shaped, Retry-After $retry_after)"
fi

if kill -0 "$api_pid" 2>/dev/null; then
    pass "the test API kept running throughout"
else
    fail "the test API kept running throughout"
    tail -n 30 "$api_log" | sed 's/^/    /'
fi

# With no replica answering, clients get a 503 in the API's shape, with Retry-After.
kill -TERM "$api_pid"
wait "$api_pid" 2>/dev/null || true
api_pid=""
status=$(request "$https_url/healthz" --interface 127.0.0.6)
if [ "$status" = 503 ] && body_has '"code":"service_unavailable"' && [ "$(header retry-after)" = 5 ]; then
    pass "nginx: without an API, clients get 503 problem+json with Retry-After"
else
    fail "nginx: without an API, clients get 503 problem+json with Retry-After (got $status)"
fi
summary
[ "$failed" -eq 0 ]
