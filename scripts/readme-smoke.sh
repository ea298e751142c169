#!/usr/bin/env bash
# Runs the README's first command (scripts/run.sh) and the curl lines it suggests, checks the
# answers, and stops everything. Part of scripts/test.sh, so the README's quick start stays true.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/install.sh
. scripts/lib/install.sh

for p in 8080 9091 6379 9000; do
    if port_open "$p"; then
        echo "readme-smoke: port $p is busy; skipping (run it on a machine where the demo ports are free)"
        exit 0
    fi
done

# Build first, so the wait below times tollgate's start-up, not the compiler.
ensure_apt cmake:cmake cc:build-essential
cargo build --release --locked --bins

log=$(mktemp /tmp/tollgate-readme-smoke.XXXXXX)
bash scripts/run.sh >"$log" 2>&1 &
run_pid=$!
stop() {
    # SIGTERM: a background job of this script has SIGINT ignored, so run.sh could not trap it.
    kill -TERM "$run_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
}
trap stop EXIT

for _ in $(seq 1 600); do
    if curl -sf -o /dev/null 127.0.0.1:9091/healthz && port_open 8080; then break; fi
    kill -0 "$run_pid" 2>/dev/null || { cat "$log"; echo "scripts/run.sh died"; exit 1; }
    sleep 0.2
done
curl -sf -o /dev/null 127.0.0.1:9091/healthz || { cat "$log"; echo "tollgate never came up"; exit 1; }

fail=0
check() { # name expected actual
    if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: expected [$2] got [$3]"; fail=1; fi
}
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

check "free key" 200 "$(code localhost:8080/proxy/hello -H 'x-api-key: free-demo-key')"
check "paid key" 200 "$(code localhost:8080/proxy/hello -H 'x-api-key: paid-demo-key')"
check "internal key" 200 "$(code localhost:8080/proxy/hello -H 'x-api-key: internal-demo-key')"
check "wrong key" 401 "$(code localhost:8080/proxy/hello -H 'x-api-key: wrong')"
check "RateLimit header" 1 "$(curl -si localhost:8080/proxy/hello -H 'x-api-key: free-demo-key' | grep -ci '^ratelimit: "per_minute";r=58;t=60')"
seq_out=$(for _ in $(seq 12); do curl -s -o /dev/null -w '%{http_code} ' localhost:8080/proxy/x; done)
check "anonymous 10/min" "200 200 200 200 200 200 200 200 200 200 429 429 " "$seq_out"
check "metrics" 1 "$(curl -s 127.0.0.1:9091/metrics | grep -c '^tollgate_requests_total{code="429",route="/proxy/",tier="anonymous"} 2')"
check "readyz" 200 "$(code 127.0.0.1:9091/readyz)"
pid=$(pgrep -P "$run_pid" -x tollgate | head -1)
kill -HUP "$pid"
sleep 1
check "reload" 1 "$(curl -s 127.0.0.1:9091/metrics | grep -c '^tollgate_config_reloads_total{result="success"} 2')"
[ "$fail" -eq 0 ] || { cat "$log"; exit 1; }
echo "readme smoke: 9 passed, 0 failed"
