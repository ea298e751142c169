#!/usr/bin/env bash
# RSS of tollgate while 1,000,000 distinct client IPs are each limited once: the heavy-hitter
# sketch behind /v1/top and tollgate_top_limited must stay fixed in size whatever the traffic.
#
# Every request comes from a new X-Forwarded-For address (bench/wrk.lua, WRK_XFF) and costs 2
# against an anonymous limit of 1, so every one is refused and the in-process store records
# nothing (a cost above the limit is refused without a trace): what grows, if anything, is the
# sketch. Prints RSS against limited requests, then the top list the sketch ended with.
#
#   bench/top_limited_rss.sh [identities [requests]]   (default 1000000 of each; TOLLGATE_BIN)
#
# The control, `bench/top_limited_rss.sh 1 200000`, sends the same number of limited requests
# from one address: what the process grows by without any new identity (buffers, allocator).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
N=${1:-1000000}
TOTAL=${2:-$N}
BIN=${TOLLGATE_BIN:-$ROOT/target/release/tollgate}
[ -x "$BIN" ] || BIN=$ROOT/target/debug/tollgate
ECHO_BIN=$(dirname "$BIN")/tollgate-echo
for tool in wrk curl; do command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }; done
[ -x "$ECHO_BIN" ] || { echo "needs $ECHO_BIN (cargo build)" >&2; exit 1; }

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
limited() {
    curl -s "http://127.0.0.1:$ADMIN/metrics" |
        awk '/^tollgate_ratelimit_decisions_total/ && /decision="limited"/ {s += $2} END {printf "%d\n", s}'
}

UP=$(free_port); PORT=$(free_port); ADMIN=$(free_port)
"$ECHO_BIN" --listen "127.0.0.1:$UP" >"$TMP/echo.log" 2>&1 &
PIDS+=($!)
cat >"$TMP/tollgate.yaml" <<EOF
listen: ["127.0.0.1:$PORT"]
admin_listen: "127.0.0.1:$ADMIN"
access_log: { enabled: false }
upstreams: { echo: { peers: ["127.0.0.1:$UP"] } }
routes: [{ prefix: "/", upstream: echo, cost: 2 }]
identity:
  anonymous: { tier: anonymous }
  trusted_proxies: ["127.0.0.1/32"]
tiers:
  anonymous: { limits: [{ requests: 1, window: 60s }] }
EOF
"$BIN" --config "$TMP/tollgate.yaml" >"$TMP/tollgate.log" 2>&1 &
TG=$!
PIDS+=("$TG")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null || { cat "$TMP/tollgate.log"; exit 1; }

echo "binary: $BIN"
printf '%12s %10s %10s\n' limited rss_kb hwm_kb
printf '%12s %10s %10s\n' 0 "$(rss_kb $TG)" "$(hwm_kb $TG)"
WRK_XFF=$N WRK_XFF_DONE=$TMP/xff.done WRK_PATH=/ \
    wrk -t 1 -c 32 -d 1800s -s "$ROOT/bench/wrk.lua" "http://127.0.0.1:$PORT/" >"$TMP/wrk.log" 2>&1 &
WRK=$!
PIDS+=("$WRK")
next=$((TOTAL / 10))
for _ in $(seq 18000); do
    kill -0 "$WRK" 2>/dev/null || break
    n=$(limited)
    if [ "$n" -ge "$next" ]; then
        printf '%12s %10s %10s\n' "$n" "$(rss_kb $TG)" "$(hwm_kb $TG)"
        next=$((next + TOTAL / 10))
    fi
    [ "$n" -ge "$TOTAL" ] && break
    sleep 0.1
done
kill -INT "$WRK" 2>/dev/null || true
wait "$WRK" 2>/dev/null || true
sleep 1
printf '%12s %10s %10s  (end)\n' "$(limited)" "$(rss_kb $TG)" "$(hwm_kb $TG)"
echo "top 5 the sketch ended with:"
curl -s "http://127.0.0.1:$ADMIN/v1/top?n=5"
echo
