#!/usr/bin/env bash
# Builds the image from the repository's Dockerfile and runs the deployments for real, the way a
# user would, with podman: the compose stack (podman-compose), the Kubernetes manifests
# (podman kube play), the systemd unit (systemd-analyze verify) and the upgrade script against a
# running tollgate outside any container. Checks the documented behaviour of each and removes
# every container, pod and network it created, by the IDs it recorded (never by a name pattern).
#
#   scripts/container-test.sh [STAGE...]      STAGE: image compose kube systemd (default: all)
#
# No image registry needs to be reachable. A base image that the Dockerfile, the compose file or
# the manifests name and that cannot be pulled is made locally and tagged with that name:
#   debian:bookworm-slim  debootstrap --variant=minbase bookworm + podman import
#   rust:1.95-bookworm    that root filesystem + gcc/make (Debian) + the host's rustup toolchain 1.95
#   redis:7               that root filesystem + Debian's redis-server, entrypoint like the official
# The images stay in podman's storage as a cache (CT_PURGE=1 removes the ones this script made).
# The build mounts the host's cargo registry as an overlay (read-only for the host), so crates are
# not downloaded again.
#
# Installs what is missing: podman, runc, iptables, debootstrap (Debian), podman-compose (.venv).
# Exit status: 0 all passed; 1 a check failed (the containers' logs are printed); 77 this machine
# cannot run containers (scripts/test.sh reports it as skipped).
#
# Environment:
#   CT_PURGE=1       also remove the images made or built here at the end (default: keep as a cache)
#   CT_KEEP=1        leave the containers and pods running at the end (for a look around)
#   CT_REUSE_IMAGE=1 do not rebuild localhost/tollgate:latest when it exists (while developing this)
#   CT_RUNTIME       OCI runtime (default runc: crun refuses the hybrid cgroup setup of some hosts)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
# shellcheck source=scripts/lib/install.sh
. scripts/lib/install.sh
# shellcheck source=scripts/lib/containers.sh
. scripts/lib/containers.sh

STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=(image compose kube systemd)
want() { local s; for s in "${STAGES[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

STARTED_AT=$(date +%s)
say() { printf '\n== [%ss] container-test: %s\n' "$(($(date +%s) - STARTED_AT))" "$*"; }
PASSED=0
FAILED=0
FAILURES=()
check() { # name expected actual
    if [ "$2" = "$3" ]; then
        echo "ok   $1"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL $1: expected [$2] got [$3]"
        FAILED=$((FAILED + 1))
        FAILURES+=("$1")
    fi
}

WORK=$(mktemp -d /tmp/tollgate-ct.XXXXXX)
trap 'ct_cleanup; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ can this machine run containers?
say "installing what is missing"
if ! ct_setup; then
    echo "container-test: SKIPPED: cannot install podman here (see above)"
    exit 77
fi
if ! ensure_image debian:bookworm-slim; then
    echo "container-test: SKIPPED: no base image (debian:bookworm-slim cannot be pulled nor made)"
    exit 77
fi
if ! ct_smoke "$(qualified debian:bookworm-slim)"; then
    echo "container-test: SKIPPED: this machine cannot run containers ($CT_SMOKE_ERROR)"
    exit 77
fi

# ------------------------------------------------------------------ stages
# shellcheck source=scripts/lib/container-checks.sh
. scripts/lib/container-checks.sh

if want image || want compose || want kube; then
    stage_image || { echo "container-test: the image did not build; nothing else can run"; exit 1; }
fi
want compose && stage_compose
want kube && stage_kube
want systemd && stage_systemd

say "done: $PASSED passed, $FAILED failed"
if [ "$FAILED" -gt 0 ]; then
    printf 'container-test: failed: %s\n' "${FAILURES[@]}"
    exit 1
fi
