# Build: the release binary, with dependencies cached in their own layer.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked && rm -rf src
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# Run: a small image with the binary only, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 curbside
COPY --from=build /src/target/release/curbside /usr/local/bin/curbside
USER curbside
ENV APP_ENV=production BIND_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["curbside"]
CMD ["serve"]
