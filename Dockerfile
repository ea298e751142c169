# syntax=docker/dockerfile:1
#
# tollgate container image.
#
#   docker build -t tollgate:latest .
#   podman build --format docker -t tollgate:latest .   (the OCI format drops the SHELL instruction)
#   docker run --rm -p 8080:8080 -p 9091:9091 tollgate:latest
#
# The image holds two binaries: `tollgate` (the proxy, the entrypoint) and `tollgate-echo` (a demo
# upstream: `docker run tollgate:latest ...` with `--entrypoint tollgate-echo`, see deploy/compose.yaml).
# The configuration lives in /etc/tollgate (tollgate.yaml + pingora.yaml); mount your own directory
# there (in Kubernetes: the ConfigMap as a directory, never with subPath, so edits reach the pod).
#
# Health: the image has no curl, so there is no HEALTHCHECK instruction. Orchestrators probe over HTTP
# instead: GET :9091/healthz (liveness) and GET :9091/readyz (readiness); see deploy/k8s, deploy/fly.

############################ builder ############################
FROM rust:1.95-bookworm AS builder

# pingora builds zlib-ng from source (libz-ng-sys) and needs cmake for that.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake=3.25.* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# The binaries are stripped of debug info below, so do not build it (Cargo.toml's release profile has
# debug = 1 for profiling on the host): a faster build and a dependency layer a fraction the size.
ENV CARGO_PROFILE_RELEASE_DEBUG=0

# 1) Dependency layer: build all dependencies against stub sources, so that a change to tollgate's
#    own code does not rebuild the ~350 crates of the dependency tree.
#    Every target path that Cargo.toml names explicitly (a [[test]] or [[bench]] too) gets a stub,
#    because cargo refuses a manifest whose targets are missing.
#    The workspace has two members: the gateway (.) and the echo upstream (echo/).
COPY Cargo.toml Cargo.lock build.rs ./
COPY echo/Cargo.toml ./echo/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN mkdir -p src echo/src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > echo/src/main.rs \
    && echo '' > src/lib.rs \
    && { grep -E '^[[:space:]]*path[[:space:]]*=[[:space:]]*"[^"]+\.rs"' Cargo.toml || true; } \
       | sed -E 's/.*"([^"]+)".*/\1/' \
       | while read -r f; do mkdir -p "$(dirname "$f")"; [ -e "$f" ] || echo 'fn main() {}' > "$f"; done \
    && cargo build --release --locked --bins \
    && rm -rf src echo/src

# 2) The real sources. The Lua scripts are include_str!'d by the limiter, so they are part of the build.
COPY src ./src
COPY echo/src ./echo/src
COPY scripts/redis ./scripts/redis
# `tollgate --version` names the commit; the build context has no .git, so pass it in:
#   docker build --build-arg TOLLGATE_GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
# Declared here, after the dependency layer, so that a new commit does not rebuild the dependencies.
ARG TOLLGATE_GIT_COMMIT=unknown
ENV TOLLGATE_GIT_COMMIT=${TOLLGATE_GIT_COMMIT}
# COPY keeps the files' original mtimes, which can be older than the stubs built above: touch them so
# cargo sees the real sources as changed, and drop the stub crate's fingerprints to be certain.
RUN find src echo/src -name '*.rs' -exec touch {} + \
    && rm -rf target/release/.fingerprint/tollgate-* \
    && cargo build --release --locked --bins \
    && mkdir -p /out \
    && cp target/release/tollgate target/release/tollgate-echo /out/ \
    && strip --strip-debug /out/tollgate /out/tollgate-echo

# The shipped conf/tollgate.yaml binds the admin listener to 127.0.0.1, which nothing outside the
# container can reach (and probes must): the image's copy listens on all interfaces instead.
COPY conf /out/conf
RUN sed -i -E 's/^admin_listen:[[:space:]]*"?127\.0\.0\.1:([0-9]+)"?/admin_listen: "0.0.0.0:\1"/' /out/conf/tollgate.yaml

############################ runtime ############################
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to upstreams and to a managed Redis (rediss://). Deliberately unpinned: the
# trust store should be the current one of bookworm at build time, not a frozen version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tollgate \
    && useradd --system --uid 10001 --gid tollgate --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin tollgate

COPY --from=builder /out/tollgate /out/tollgate-echo /usr/local/bin/
COPY --from=builder /out/conf/ /etc/tollgate/

# Numeric user, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 10001:10001
WORKDIR /tmp

# Pingora writes its pid file and upgrade socket under /tmp by default (see pingora.yaml); with a
# read-only root filesystem, mount an emptyDir/tmpfs there.

# 8080: the proxy; 9091: admin (/metrics, /healthz, /readyz).
EXPOSE 8080 9091

# SIGTERM: stop accepting, drain for pingora's grace_period_seconds, exit.
STOPSIGNAL SIGTERM

ENTRYPOINT ["tollgate"]
CMD ["--config", "/etc/tollgate/tollgate.yaml", "-c", "/etc/tollgate/pingora.yaml"]
