# Sourced by the check scripts that start throwaway servers (check-deploy.sh,
# check-openapi.sh, check-browser.sh): stopping them, free ports, the environment they run
# in, and removing the database and Redis keys they leave. Not run on its own. The script
# that sources it defines `log` and `$work` (its scratch folder).

stop() { # pid: SIGTERM, then SIGKILL if it has not ended within 10 s
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
    kill -TERM "$1" 2>/dev/null
    for _ in $(seq 40); do kill -0 "$1" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

drop_database() { # name
    [ -n "$1" ] || return 0
    psql "$DATABASE_ADMIN_URL" -qc "drop database if exists \"$1\" with (force)" >/dev/null 2>&1 \
        || log "could not drop database $1"
}

forget_redis_keys() { # prefix: every job the server queued under it
    [ -n "$1" ] && command -v redis-cli >/dev/null || return 0
    # One key a line, taken whole: job keys hold quotes and spaces.
    redis-cli -u "$REDIS_URL" --scan --pattern "$1:*" 2>/dev/null \
        | xargs -r -d '\n' redis-cli -u "$REDIS_URL" del >/dev/null 2>&1
}

# The environment of `curbside` and `fake-stripe` (array `server_env`): the API on
# api_port, the imitation on stripe_port, mail written to $work/mail. Add to it with
# `server_env+=(…)`.
set_server_env() { # api_port stripe_port database_url redis_prefix
    server_env=(
        APP_ENV=development
        BIND_ADDR="127.0.0.1:$1"
        DATABASE_URL="$3"
        REDIS_URL="$REDIS_URL"
        REDIS_KEY_PREFIX="$4"
        MAIL_DIR="$work/mail"
        STRIPE_API_BASE="http://127.0.0.1:$2/"
        STRIPE_SECRET_KEY=sk_test_curbside_development
        STRIPE_WEBHOOK_SECRET=whsec_curbside_development
        STRIPE_PUBLISHABLE_KEY=pk_test_curbside_development
        RUST_LOG=warn
    )
    mkdir -p "$work/run" "$work/mail"
}

# Runs a command in `server_env`, in a folder of its own so that no .env of the checkout is
# read. Run it in a subshell, `(in_env …)`: it becomes the command, so that a background
# one's $! is the process to stop.
in_env() { cd "$work/run" && exec env -u SMTP_URL "${server_env[@]}" "$@"; }
