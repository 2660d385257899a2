# syntax=docker/dockerfile:1
#
# One image for every role of Curbside; the command picks the role:
#   serve (default)   the API, with the job workers in the same process
#   serve --no-worker the API alone, beside `worker` containers
#   worker            the job workers and the reconciler
#   migrate           applies pending migrations and exits
#   import-meters     loads NYC's meters (`--if-empty`: the embedded snapshot, first start only)
#   create-operator   gives an account the operator role
#   fake-stripe       the local imitation of Stripe, for development only (needs APP_ENV=development)
#
# Build with `docker build -t curbside .` (the compose files do it for you).

ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------------------------
# Build: the release binary. Dependencies are compiled in a layer of their own, from the
# manifests alone, so editing the source recompiles only this crate.
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# 1. Dependencies: the manifests and a placeholder crate with the same targets.
COPY Cargo.toml Cargo.lock ./
# Workspace members go here. When `crates/fake-stripe` (or any other member) joins the
# workspace, copy its manifest in this layer and give it placeholder targets in the RUN below:
#   COPY crates/fake-stripe/Cargo.toml crates/fake-stripe/
#   ... && mkdir -p crates/fake-stripe/src \
#       && echo 'fn main() {}' > crates/fake-stripe/src/main.rs \
#       && touch crates/fake-stripe/src/lib.rs \
# and add its src/main.rs and src/lib.rs to the `touch` of step 2 (and its binary to the
# COPY --from=build of the runtime stage if the compose files call it by name).
RUN mkdir -p src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# 2. The crate itself (.dockerignore keeps target/, .git and secrets out of the context).
#    The build context keeps its files' times, older than the placeholders just compiled:
#    touch makes cargo rebuild the real crate instead of trusting the placeholder's output.
COPY . .
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked

# ---------------------------------------------------------------------------------------------
# Run: Debian slim with the CA certificates and the binary, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 curbside \
    && useradd --system --uid 10001 --gid curbside --home-dir /var/lib/curbside \
        --create-home --shell /usr/sbin/nologin curbside
COPY --from=build /src/target/release/curbside /usr/local/bin/curbside

# A numeric user, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# The only writable place, for development's MAIL_DIR (emails as files when SMTP_URL is
# unset); production sends through SMTP_URL and writes nothing, so the root file system
# can be read-only.
WORKDIR /var/lib/curbside
# Production unless told otherwise: the server then refuses every development default.
ENV APP_ENV=production \
    BIND_ADDR=0.0.0.0:8080
EXPOSE 8080

# `curbside healthcheck` GETs /healthz on the port of BIND_ADDR over loopback (the image has
# no curl). Roles without an HTTP server (worker, migrate, fake-stripe) override or disable
# it in the compose files.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["curbside", "healthcheck"]

# SIGTERM (Docker's default stop signal) drains: requests in flight and running jobs finish.
ENTRYPOINT ["curbside"]
CMD ["serve"]
