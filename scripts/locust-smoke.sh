#!/usr/bin/env bash
# A short headless locust smoke test of the whole path: client -> tollgate -> Redis + upstream.
#
#   scripts/locust-smoke.sh
#
# Builds the release binaries, starts its own redis-server, tollgate-echo and tollgate on free
# ports with a generated configuration (SMOKE_KEYS keys per tier, default 50; the key file goes to
# locust through TOLLGATE_KEYS_FILE), runs locust/locustfile.py headless for SMOKE_RUN_TIME and
# exits non-zero on any request error, any malformed limit header or 429, any proven
# over-admission, or a gateway that died. Everything it started is stopped by PID on exit.
#
# Environment (defaults in brackets):
#   SMOKE_RUN_TIME [30s]  SMOKE_USERS [100]  SMOKE_KEYS [50]  SMOKE_THREADS [1] (tollgate threads)
#   SMOKE_SKIP_BUILD=1    use the binaries already in target/release
#   SMOKE_KEEP=1          keep the temp dir (configs, logs, locust CSV and verdict)
#   SMOKE_REPORT=FILE     copy the limit check's verdict (JSON: rps, p95, problems) there
#   LOCUST_MIN_RPS, LOCUST_MAX_P95_MS  optional throughput/latency floors (see locustfile.py)
# Installs what is missing: redis-server (Debian; apt-get update once) and locust (into .venv).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=$ROOT/.venv
RUN_TIME=${SMOKE_RUN_TIME:-30s}
USERS=${SMOKE_USERS:-100}
KEYS=${SMOKE_KEYS:-50}
THREADS=${SMOKE_THREADS:-1}

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'locust-smoke: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------------- what it needs
if ! command -v redis-server >/dev/null 2>&1; then
    say "installing redis-server (Debian package)"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
fi
if [ ! -x "$VENV/bin/locust" ]; then
    say "installing locust/requirements.txt into .venv"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r locust/requirements.txt
fi
if [ "${SMOKE_SKIP_BUILD:-0}" != 1 ]; then
    say "cargo build --release --bins"
    cargo build --release --bins --quiet
fi
TOLLGATE=$ROOT/target/release/tollgate
ECHO=$ROOT/target/release/tollgate-echo
if [ ! -x "$TOLLGATE" ] || [ ! -x "$ECHO" ]; then die "missing $TOLLGATE or $ECHO"; fi

# ------------------------------------------------------------------------- processes
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-smoke.XXXXXX")
PIDS=()

# Stops one process we started: the polite signal, then KILL after 5 s.
stop_pid() {
    local pid=$1 sig=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? entry
    trap - EXIT INT TERM
    # Newest first: tollgate before its upstream and store.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        entry=${PIDS[i]}
        stop_pid "${entry%%:*}" "${entry#*:}"
    done
    if [ "$rc" -ne 0 ] && [ -f "$TMP/tollgate.log" ]; then
        echo "--- last lines of the tollgate log ($TMP/tollgate.log)" >&2
        tail -n 20 "$TMP/tollgate.log" >&2
    fi
    if [ "${SMOKE_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
        echo "locust-smoke: files kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until `curl` gets a 2xx from $1 (or a TCP connect to port $1 succeeds when numeric).
wait_ready() {
    local what=$1 pid=$2 i
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || die "process $pid ($what) died"
        if [[ $what =~ ^[0-9]+$ ]]; then
            (exec 3<>"/dev/tcp/127.0.0.1/$what") 2>/dev/null && return 0
        elif curl -fsS -o /dev/null --max-time 1 "$what" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "$what not ready after 10 s"
}

REDIS_PORT=$(free_port)
ECHO_PORT=$(free_port)
PROXY_PORT=$(free_port)
ADMIN_PORT=$(free_port)

say "redis-server on 127.0.0.1:$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$TMP" --logfile "$TMP/redis.log" &
PIDS+=("$!:TERM")
wait_ready "$REDIS_PORT" "$!"

say "tollgate-echo on 127.0.0.1:$ECHO_PORT"
"$ECHO" --listen "127.0.0.1:$ECHO_PORT" --threads 1 2>"$TMP/echo.log" &
PIDS+=("$!:TERM")
wait_ready "$ECHO_PORT" "$!"

"$VENV/bin/python" locust/gen_config.py \
    --out-config "$TMP/tollgate.yaml" --out-keys "$TMP/keys.json" \
    --redis-url "redis://127.0.0.1:$REDIS_PORT/0" --upstream "127.0.0.1:$ECHO_PORT" \
    --listen "127.0.0.1:$PROXY_PORT" --admin "127.0.0.1:$ADMIN_PORT" --keys-per-tier "$KEYS"
cat >"$TMP/pingora.yaml" <<EOF
---
version: 1
threads: $THREADS
pid_file: $TMP/tollgate.pid
upgrade_sock: $TMP/tollgate_upgrade.sock
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 1
EOF
"$TOLLGATE" --config "$TMP/tollgate.yaml" -c "$TMP/pingora.yaml" -t >/dev/null

say "tollgate on 127.0.0.1:$PROXY_PORT (admin $ADMIN_PORT, $THREADS thread(s))"
"$TOLLGATE" --config "$TMP/tollgate.yaml" -c "$TMP/pingora.yaml" >"$TMP/tollgate.log" 2>&1 &
TG_PID=$!
PIDS+=("$TG_PID:INT")
wait_ready "http://127.0.0.1:$ADMIN_PORT/readyz" "$TG_PID"

say "locust: $USERS users for $RUN_TIME"
rc=0
TOLLGATE_URL="http://127.0.0.1:$PROXY_PORT" \
    TOLLGATE_KEYS_FILE="$TMP/keys.json" \
    LOCUST_USERS=$USERS LOCUST_SPAWN_RATE=$USERS LOCUST_RUN_TIME=$RUN_TIME \
    LOCUST_CSV="$TMP/locust" LOCUST_REPORT="$TMP/verdict.json" \
    locust/run-headless.sh || rc=$?

if [ -n "${SMOKE_REPORT:-}" ] && [ -f "$TMP/verdict.json" ]; then
    cp "$TMP/verdict.json" "$SMOKE_REPORT"
fi
kill -0 "$TG_PID" 2>/dev/null || die "tollgate died during the run"
# The gateway must have counted limited decisions too: a cross-check of the client's view.
limited=$(curl -fsS --max-time 2 "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk '/^tollgate_ratelimit_decisions_total/ && /decision="limited"/ { s += $NF } END { print s + 0 }')
say "tollgate counted $limited limited decisions"
[ "${limited%.*}" -gt 0 ] || { echo "locust-smoke: tollgate reports no limited decision" >&2; rc=1; }

if [ "$rc" -ne 0 ]; then
    echo "locust-smoke: FAILED (locust exit $rc)" >&2
    exit 1
fi
echo "locust-smoke: ok"
