#!/usr/bin/env bash
# Makes sure PostgreSQL (15 or later) and Redis run on this machine, starting them if they
# are installed and stopped, and installing them from Debian/Ubuntu packages (as root) if
# they are missing. Prints the URLs it used; `eval "$(scripts/services.sh --env)"` exports them.
#
# Override with DATABASE_ADMIN_URL (a URL of the `postgres` database) and REDIS_URL.
set -euo pipefail

export_mode=false
[ "${1:-}" = "--env" ] && export_mode=true
log() { echo "services: $*" >&2; }

PG_ADMIN_URL=${DATABASE_ADMIN_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root to run: $*"; exit 1; fi
}

apt_install() {
    if ! command -v apt-get >/dev/null; then
        log "cannot install $*: this is not a Debian/Ubuntu machine; install them by hand"
        exit 1
    fi
    log "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # seconds, description, command...
    local seconds=$1 what=$2; shift 2
    for _ in $(seq "$((seconds * 4))"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
    log "$what did not come up within ${seconds}s"; exit 1
}

ensure_postgres() {
    command -v pg_ctlcluster >/dev/null || apt_install postgresql postgresql-contrib
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        local version
        version=$(ls /etc/postgresql | sort -V | tail -n 1)
        [ -n "$version" ] || { log "no PostgreSQL cluster found in /etc/postgresql"; exit 1; }
        log "starting PostgreSQL $version"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
        wait_for 30 PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
    fi
    if ! psql "$PG_ADMIN_URL" -qtAc 'select 1' >/dev/null 2>&1; then
        # A fresh Debian cluster authenticates TCP clients by password, and the postgres
        # role has none yet: give it the one in the URL, through the local socket.
        log "setting the password of the postgres role for TCP connections"
        as_root runuser -u postgres -- psql -qc "alter role postgres password 'postgres'" >/dev/null
        psql "$PG_ADMIN_URL" -qtAc 'select 1' >/dev/null
    fi
}

# Spot search needs PostGIS (GiST nearest-neighbour on geography); chosen by measurement,
# see BENCHMARKS.md.
ensure_postgis() {
    local available
    available=$(psql "$PG_ADMIN_URL" -qtAc "select count(*) from pg_available_extensions where name = 'postgis'")
    if [ "$available" != "1" ]; then
        local major
        major=$(psql "$PG_ADMIN_URL" -qtAc "select current_setting('server_version_num')::int / 10000")
        apt_install "postgresql-$major-postgis-3"
    fi
}

ensure_redis() {
    command -v redis-server >/dev/null || apt_install redis-server
    if ! redis-cli -u "$REDIS_URL" ping 2>/dev/null | grep -q PONG; then
        log "starting Redis"
        as_root mkdir -p /var/lib/redis /var/log/redis
        as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/curbside.log
        wait_for 10 Redis sh -c "redis-cli -u '$REDIS_URL' ping | grep -q PONG"
    fi
}

ensure_postgres
ensure_postgis
ensure_redis
if $export_mode; then
    echo "export DATABASE_ADMIN_URL='$PG_ADMIN_URL' REDIS_URL='$REDIS_URL'"
fi
log "PostgreSQL at ${PG_ADMIN_URL%/*}, Redis at $REDIS_URL"
