# daftra-bridge container image.
#
#   docker build -t daftra-bridge .
#   docker run --rm -p 8080:8080 -v daftra-data:/data \
#     -e DAFTRA_SUBDOMAIN=acme -e DAFTRA_API_KEY=... \
#     -e AMQP_URL=amqp://user:pass@rabbitmq:5672/%2f daftra-bridge
#   docker run --rm -p 8080:8080 daftra-bridge demo     # simulated tenant
#
# rusqlite is built with its bundled SQLite and reqwest uses rustls, so the
# runtime image needs neither libsqlite3 nor OpenSSL: only CA certificates.

########################################################################
# Builder
########################################################################
FROM rust:1-slim-bookworm AS builder

# bash with pipefail for the RUN steps of this stage, so a failing command in a pipe fails the step.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

WORKDIR /build

# Stripped binaries without debug info in the image. Cargo.toml keeps `debug = 1` in the
# release profile for profiling on developer machines; these override it for both cargo
# builds below (the dependency layer and the real build), so the cached dependency artefacts
# match the final build's profile.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols

# 1. Dependency layer: build the dependencies against placeholder sources so
#    that this layer is only rebuilt when Cargo.toml or Cargo.lock changes.
#    Any other target path named in Cargo.toml (e.g. a [[bench]]) gets a
#    placeholder too, so the manifest always resolves (those placeholders are
#    kept; only src/ is replaced by the real sources below).
COPY Cargo.toml Cargo.lock ./
RUN set -eux; \
    mkdir -p src/bin benches; \
    echo '' > src/lib.rs; \
    echo 'fn main() {}' > src/main.rs; \
    echo 'fn main() {}' > src/bin/daftra-sim.rs; \
    sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' Cargo.toml \
    | while IFS= read -r p; do \
        if [ ! -e "$p" ]; then mkdir -p "$(dirname "$p")"; echo 'fn main() {}' > "$p"; fi; \
    done; \
    cargo build --release --locked; \
    rm -rf src

# 2. The real sources. Touch them so cargo sees them as newer than the
#    placeholder build and recompiles the crate itself.
COPY src ./src
RUN set -eux; \
    find src -type f -name '*.rs' -exec touch {} +; \
    cargo build --release --locked --bins; \
    install -d /out; \
    install -m 0755 target/release/daftra-bridge target/release/daftra-sim /out/

########################################################################
# Runtime
########################################################################
FROM debian:bookworm-slim AS runtime

ARG VERSION=0.1.0
ARG SOURCE_URL=https://github.com/daftra-bridge/daftra-bridge

LABEL org.opencontainers.image.title="daftra-bridge" \
      org.opencontainers.image.description="Bridge from Daftra work orders to spreadsheets by URL, RabbitMQ change events and Prometheus metrics" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"

# ca-certificates is not pinned on purpose: it is the trust store, which must follow Debian's
# security updates, and bookworm drops the superseded version from its archive, so a pin would
# break the build at the next update.
# hadolint ignore=DL3008
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --gid 10001 bridge; \
    useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home \
            --shell /usr/sbin/nologin bridge; \
    mkdir -p /data; \
    chown 10001:10001 /data; \
    chmod 0750 /data

# Binaries owned by root (COPY's default owner) with mode 0755 (set by
# `install` in the builder): executable but not writable by the runtime user.
COPY --from=builder /out/daftra-bridge /out/daftra-sim /usr/local/bin/

ENV DATABASE_URL=sqlite:///data/daftra-bridge.sqlite3 \
    BIND_ADDR=0.0.0.0:8080

# The XLSX writer spills to temporary files under $TMPDIR (/tmp). With a
# read-only root filesystem (as in the Helm chart) /tmp must be a writable
# volume; the chart mounts an emptyDir there.
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

# There is no curl (or wget) in this image, so no HEALTHCHECK here:
# Kubernetes probes hit GET /healthz (liveness) and GET /readyz (readiness)
# over HTTP directly (see charts/daftra-bridge).

USER 10001:10001

ENTRYPOINT ["daftra-bridge"]
CMD ["serve"]
