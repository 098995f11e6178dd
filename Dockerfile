# syntax=docker/dockerfile:1
# The `ordo` binary (every role: dev, serve api|relay, migrate, ...) on Debian slim.
# Build: docker build -t ordo .      Run: docker compose up (see docker-compose.yml)

FROM rust:1-bookworm AS build
WORKDIR /src
# rdkafka's default build compiles librdkafka from source with the gcc, make and
# zlib headers the rust image already has (no cmake needed).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ordo \
 && install -m 0755 target/release/ordo /usr/local/bin/ordo

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home ordo
COPY --from=build /usr/local/bin/ordo /usr/local/bin/ordo
USER ordo
ENV ORDO_HTTP_ADDR=0.0.0.0:8080 \
    ORDO_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --retries=30 CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["ordo"]
CMD ["dev"]
