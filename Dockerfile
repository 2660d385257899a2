# syntax=docker/dockerfile:1
#
# One image for every role of Curbside; the command picks the role:
#   serve (default)   the API, with the job workers in the same process
#   serve --no-worker the API alone, beside `worker` containers
#   worker            the job workers and the reconciler
#   migrate           applies pending migrations and exits
#   import-meters     loads NYC's meters (`--if-empty`: the embedded snapshot, first start only)
#   create-operator   gives an account the operator role
#
# Build with `docker build -t curbside .` (the compose files do it for you). The local
# imitation of Stripe, for development only, is an image of its own that the production one
# does not contain: `docker build --target fake-stripe -t curbside-fake-stripe .`.

ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------------------------
# Build: the release binary. Dependencies are compiled in a layer of their own, from the
# manifests alone, so editing the source recompiles only this crate.
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# 1. Dependencies: the manifests of the workspace and placeholder crates with the same
#    targets (cargo reads every member's manifest, even to build the API alone).
COPY Cargo.toml Cargo.lock ./
COPY crates/fake-stripe/Cargo.toml crates/fake-stripe/
RUN mkdir -p src crates/fake-stripe/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > crates/fake-stripe/src/main.rs \
    && touch crates/fake-stripe/src/lib.rs \
    && cargo build --release --locked -p curbside \
    && rm -rf src crates/fake-stripe/src

# 2. The crate itself (.dockerignore keeps target/, .git and secrets out of the context).
#    Its checked queries are read from .sqlx/ (SQLX_OFFLINE, set in .cargo/config.toml and
#    here as well): no database is reachable, or needed, while building.
#    The build context keeps its files' times, older than the placeholders just compiled:
#    touch makes cargo rebuild the real crate instead of trusting the placeholder's output.
COPY . .
ENV SQLX_OFFLINE=true
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked -p curbside

# ---------------------------------------------------------------------------------------------
# Build of the imitation of Stripe, for the `fake-stripe` image only. Built together with the
# API, whose dependencies it shares, so that their features are the ones compiled above and
# only the imitation itself is compiled here (its placeholder was never compiled, so there is
# no stale output to touch away).
FROM build AS build-fake-stripe
RUN cargo build --release --locked --workspace

# ---------------------------------------------------------------------------------------------
# Run: Debian slim with the CA certificates, as an unprivileged user; each image below adds
# its one binary.
FROM debian:bookworm-slim AS base
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 curbside \
    && useradd --system --uid 10001 --gid curbside --home-dir /var/lib/curbside \
        --create-home --shell /usr/sbin/nologin curbside
# A numeric user, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

# ---------------------------------------------------------------------------------------------
# The imitation of Stripe (`--target fake-stripe`), for docker-compose.dev.yml. It refuses
# APP_ENV=production, and listens on every interface of its container.
FROM base AS fake-stripe
COPY --from=build-fake-stripe /src/target/release/fake-stripe /usr/local/bin/fake-stripe
ENV APP_ENV=development
EXPOSE 12111
ENTRYPOINT ["fake-stripe"]
CMD ["--bind", "0.0.0.0:12111"]

# ---------------------------------------------------------------------------------------------
# The API, the default target: last, so that `docker build .` gives it.
FROM base AS curbside
COPY --from=build /src/target/release/curbside /usr/local/bin/curbside

# The only writable place, for development's MAIL_DIR (emails as files when SMTP_URL is
# unset); production sends through SMTP_URL and writes nothing, so the root file system
# can be read-only.
WORKDIR /var/lib/curbside
# Production unless told otherwise: the server then refuses every development default.
ENV APP_ENV=production \
    BIND_ADDR=0.0.0.0:8080
EXPOSE 8080

# `curbside healthcheck` GETs /healthz on the port of BIND_ADDR over loopback (the image has
# no curl). Roles without an HTTP server (worker, migrate) override or disable it in the
# compose files.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["curbside", "healthcheck"]

# SIGTERM (Docker's default stop signal) drains: requests in flight and running jobs finish.
ENTRYPOINT ["curbside"]
CMD ["serve"]
