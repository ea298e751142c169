#!/usr/bin/env bash
# One command from a fresh Debian machine to a running gateway with the demo configuration:
# installs what is missing (cmake, redis-server, the locust venv), builds in release mode,
# starts Redis and the tollgate-echo upstream unless something already listens on their
# ports, makes the self-signed demo certificate conf/tls/tls.{crt,key} when it is missing, and
# runs tollgate with conf/. Ctrl-C stops tollgate and whatever this script started.
#
#   scripts/run.sh
#   TOLLGATE_CONFIG=conf/tollgate-tls.yaml scripts/run.sh     # adds HTTPS + HTTP/2 on :8443
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib/install.sh
. scripts/lib/install.sh

ensure_apt cmake:cmake cc:build-essential redis-server:redis-server redis-cli:redis-tools curl:curl \
    openssl:openssl
ensure_venv "$ROOT"
CONFIG=${TOLLGATE_CONFIG:-conf/tollgate.yaml}
bash scripts/gen-demo-cert.sh conf/tls

echo "== building (release)"
cargo build --release --locked --bins

STARTED=()
TOLLGATE_PID=""
cleanup() {
    # SIGINT stops tollgate at once (SIGTERM would wait out its grace period). The helpers get
    # SIGTERM: a background job of a script starts with SIGINT ignored.
    [ -n "$TOLLGATE_PID" ] && kill -INT "$TOLLGATE_PID" 2>/dev/null
    for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

RUN_DIR=$(mktemp -d /tmp/tollgate-run.XXXXXX)
if port_open 6379; then
    echo "== Redis already listening on 6379: using it"
else
    redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no --dir "$RUN_DIR" \
        >"$RUN_DIR/redis.log" 2>&1 &
    STARTED+=($!)
    echo "== started redis-server (pid $!) on 6379"
fi
if port_open 9000; then
    echo "== something already listens on 9000: using it as the upstream"
else
    target/release/tollgate-echo --listen 127.0.0.1:9000 --threads 1 >"$RUN_DIR/echo.log" 2>&1 &
    STARTED+=($!)
    echo "== started tollgate-echo (pid $!) on 9000"
fi
for _ in $(seq 1 50); do port_open 6379 && port_open 9000 && break; sleep 0.1; done

cat <<'TXT'

== tollgate is starting on :8080 (admin on 127.0.0.1:9091). Try:

  curl -i localhost:8080/proxy/hello -H 'x-api-key: free-demo-key'      # free: 60/min
  curl -i localhost:8080/proxy/hello -H 'x-api-key: paid-demo-key'      # paid: 20/s burst + 600/min
  curl -i localhost:8080/proxy/hello -H 'x-api-key: internal-demo-key'  # unlimited
  curl -i localhost:8080/proxy/hello                                    # anonymous: 10/min per IP
  curl -i localhost:8080/proxy/hello -H 'x-api-key: wrong'              # 401
  for i in $(seq 12); do curl -s -o /dev/null -w '%{http_code} ' localhost:8080/proxy/x; done; echo
  curl -s 127.0.0.1:9091/metrics | grep ^tollgate_
  curl -s 127.0.0.1:9091/readyz
  kill -HUP $(pgrep -f 'target/release/tollgate --config')              # reload the config and certificates
  # with TOLLGATE_CONFIG=conf/tollgate-tls.yaml (self-signed demo certificate, hence -k):
  curl -ik --http2 https://localhost:8443/proxy/hello -H 'x-api-key: free-demo-key'

Ctrl-C stops everything this script started.
TXT
target/release/tollgate --config "$CONFIG" -c conf/pingora.yaml &
TOLLGATE_PID=$!
wait "$TOLLGATE_PID"
