# syntax=docker/dockerfile:1.7
# Images of the three binaries, one target each, built in release mode from one builder stage:
#
#   docker build --target producer --build-arg GIT_REVISION=$(git rev-parse --short=12 HEAD) .
#
# Targets: producer (port 9100), consumer (port 9101), batch (port 9102). Each serves /metrics
# and /healthz on that port (METRICS_ADDR); docs/deploy.md says who probes it.
# scripts/docker-build and cloudbuild.yaml build all three and tag them for Artifact Registry.
#
# Runtime base: distroless cc (glibc, libgcc, CA certificates, tzdata; no shell, no package
# manager), Debian 12 like the builder, so the glibc the binaries link against is there. The
# :nonroot variant runs as uid/gid 65532.
#
# HEALTHCHECK NONE on purpose: neither runtime uses Docker's health state. Cloud Run ignores it,
# and on the VMs Docker would only mark the container unhealthy (nothing restarts it). Health is
# checked from outside: the consumer group's autohealer probes /healthz:9101, systemd restarts a
# crashed producer or consumer, Cloud Monitoring alerts on a silent producer. A HEALTHCHECK
# would also need a shell or curl in the image, which distroless does not have.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---------------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
# The revision build-info compiles in (the build context has no .git: see .dockerignore).
ARG GIT_REVISION
ENV GIT_REVISION=${GIT_REVISION} \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
WORKDIR /src
COPY . .
# The caches survive between local builds (BuildKit); the binaries are copied out of the cache
# mount because it is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    test -n "${GIT_REVISION}" || { echo "pass --build-arg GIT_REVISION=<git rev-parse --short=12 HEAD>" >&2; exit 1; } \
    && cargo build --release --locked -p producer -p consumer -p batch \
    && mkdir -p /out \
    && cp target/release/producer target/release/consumer target/release/batch /out/

# ---------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
ARG GIT_REVISION
ARG VERSION=0.1.0
LABEL org.opencontainers.image.source="https://github.com/binance-gcp-pipeline/binance-gcp-pipeline" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="binance-gcp-pipeline" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_REVISION}"
USER 65532:65532
HEALTHCHECK NONE

# ---------------------------------------------------------------------------------------------
FROM runtime AS producer
LABEL org.opencontainers.image.title="producer" \
      org.opencontainers.image.description="Binance trade streams to Pub/Sub, with no trade lost."
COPY --from=builder /out/producer /usr/local/bin/producer
# /metrics and /healthz (METRICS_ADDR, default 0.0.0.0:9100).
EXPOSE 9100
# SIGTERM (docker stop) makes it stop reading and flush within PRODUCER_SHUTDOWN_DEADLINE.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/producer"]

# ---------------------------------------------------------------------------------------------
FROM runtime AS consumer
LABEL org.opencontainers.image.title="consumer" \
      org.opencontainers.image.description="Pub/Sub to BigQuery, acked only when durable, one row per trade."
COPY --from=builder /out/consumer /usr/local/bin/consumer
# /metrics and /healthz (METRICS_ADDR, default 0.0.0.0:9101); the group's health check uses it.
EXPOSE 9101
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/consumer"]

# ---------------------------------------------------------------------------------------------
FROM runtime AS batch
LABEL org.opencontainers.image.title="batch" \
      org.opencontainers.image.description="The daily batch: klines, SCD history of symbol metadata, checks, reconciliation."
COPY --from=builder /out/batch /usr/local/bin/batch
# /metrics (METRICS_ADDR, default 0.0.0.0:9102) while a run lasts; Cloud Run jobs expose no port.
EXPOSE 9102
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/batch"]
# The Cloud Run job passes the subcommand as args (`symbols`, `klines --date D --symbols S`, ...).
CMD ["--help"]
