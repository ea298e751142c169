# shellcheck shell=bash
# Shared install helpers for scripts/run.sh and scripts/test.sh: install only what is missing,
# and run `apt-get update` at most once, only when something is.

APT_UPDATED=${APT_UPDATED:-0}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_apt CMD:PACKAGE ...  installs PACKAGE when CMD is not on PATH.
ensure_apt() {
    local missing=() entry cmd pkg
    for entry in "$@"; do
        cmd=${entry%%:*}
        pkg=${entry#*:}
        if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "== installing Debian packages: ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ensure_rust_tools: rustfmt and clippy for the toolchain in use.
ensure_rust_tools() {
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        rustup component add rustfmt clippy
    fi
}

# ensure_venv: .venv with locust (locust/requirements.txt) for load tests and grpcio
# (tests/grpc/requirements.txt) for the gRPC tests.
ensure_venv() {
    local root=$1
    if [ ! -x "$root/.venv/bin/python" ]; then
        echo "== creating $root/.venv"
        python3 -m venv "$root/.venv"
    fi
    if [ -f "$root/locust/requirements.txt" ] && ! "$root/.venv/bin/python" -c 'import locust' 2>/dev/null; then
        echo "== installing locust into .venv"
        "$root/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/locust/requirements.txt"
    fi
    # The real gRPC server of tests/grpc.rs.
    if [ -f "$root/tests/grpc/requirements.txt" ] && ! "$root/.venv/bin/python" -c 'import grpc' 2>/dev/null; then
        echo "== installing grpcio into .venv"
        "$root/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/grpc/requirements.txt"
    fi
}

# port_open PORT: true when something accepts on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
