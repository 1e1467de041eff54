# uts-aggregator: multi-stage build. Dependencies are compiled in their own layer, so a source
# change rebuilds only the crate itself. CI builds this file for real (.ci/docker).

# The build and runtime images; `.ci/stand-ins/build` prints local stand-ins for them offline.
ARG RUST_IMAGE=rust:1.89-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# 1. Dependencies only: the manifest and lock with stub sources.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches/e2e \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > benches/e2e/main.rs && echo 'fn main() {}' > benches/micro.rs \
 && cargo build --release --locked --bin uts-aggregator \
 && rm -rf src benches
# 2. The crate. Touch the sources so cargo sees them as newer than the stub build.
COPY build.rs ./
COPY src ./src
COPY assets ./assets
COPY benches ./benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin uts-aggregator

FROM ${DEBIAN_IMAGE} AS runtime
# curl is only for the HEALTHCHECK.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin aggregator \
 && mkdir -p /data && chown aggregator:aggregator /data
COPY --from=build /src/target/release/uts-aggregator /usr/local/bin/uts-aggregator
USER aggregator
ENV AGG_LISTEN=0.0.0.0:8080 \
    AGG_DATA_DIR=/data \
    AGG_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
# SIGTERM drains every partition queue and commits before exit (see README).
STOPSIGNAL SIGTERM
ENTRYPOINT ["uts-aggregator"]
CMD ["serve"]
