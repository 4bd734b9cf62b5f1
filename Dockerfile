# syntax=docker/dockerfile:1
#
# Two images from one build:
#   docker build --target host  -t avap-host:0.1.0  .   (the default target)
#   docker build --target brain -t avap-brain:0.1.0 .
# The host carries the guest interpreter (its build script builds guest-vm
# for wasm32-wasip1 and embeds it): it needs no other file to serve. Both run
# as the numeric user 10001, so Kubernetes' runAsNonRoot can check it, and
# both work on a read-only root file system.
#
# Never built on the machines this project is developed and tested on: they
# have no Docker engine. deploy/validate.sh lints this file (hadolint) and
# checks the stages, the user and the health checks; README.md, "Operating",
# says what was and was not run.

FROM rust:1-bookworm AS build
RUN rustup target add wasm32-wasip1
WORKDIR /src
# .dockerignore keeps target/ and .git out of the context.
COPY . .
RUN cargo build --release --locked -p avap-host -p avap-brain \
 && install -m 0755 target/release/avap-host target/release/avap-brain /usr/local/bin/

# What both images share: a small glibc base (the binaries need nothing else:
# TLS is rustls with bundled roots, SQLite is bundled), the user, and the
# probe. debian-slim has bash, whose /dev/tcp makes the health check without
# installing curl (deploy/probe.sh).
FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 avap \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin avap
COPY --chmod=0755 deploy/probe.sh /usr/local/bin/avap-probe
USER 10001:10001
WORKDIR /

# The definition server. A catalog folder is a volume (AVAP_CATALOG_DIR);
# keys and TLS come from the environment. gRPC on 50051 (TLS in a
# deployment); the ops port, 9090, is plain HTTP: /livez, /readyz (503 from
# SIGTERM on) and /metrics. The health check asks /readyz there (with
# BRAIN_HTTP_LISTEN=off, replace it: `--no-healthcheck`). SIGTERM
# starts the brain's drain (30 s): give the container more time than that.
FROM runtime AS brain
COPY --from=build /usr/local/bin/avap-brain /usr/local/bin/avap-brain
ENV BRAIN_LISTEN=0.0.0.0:50051 \
    BRAIN_HTTP_LISTEN=0.0.0.0:9090
EXPOSE 50051 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/bin/sh", "-c", "exec avap-probe http \"${BRAIN_HTTP_LISTEN##*:}\" /readyz"]
ENTRYPOINT ["/usr/local/bin/avap-brain"]

# The execution host. The image's health check is liveness (/livez): a host
# that cannot reach its brain is alive but not ready; compose checks /readyz
# and Kubernetes probes both itself. SIGTERM closes the listener at once
# (new connections, health checks included, are refused) and starts the
# drain (AVAP_DRAIN_SECS, 30 s), then the span flush (up to 5 s): give the
# container more time than both to stop.
FROM runtime AS host
COPY --from=build /usr/local/bin/avap-host /usr/local/bin/avap-host
ENV PORT=8888
EXPOSE 8888
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/bin/sh", "-c", "exec avap-probe http \"${PORT:-8888}\" /livez"]
ENTRYPOINT ["/usr/local/bin/avap-host"]
