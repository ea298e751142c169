#!/usr/bin/env bash
# Keys at scale: tollgate with a keys_file of 10,000, 100,000 and 1,000,000 keys (two tiers,
# unlimited, so that no store call hides the key lookup). For each size:
#   check      `tollgate -t` wall time and peak RSS (/usr/bin/time)
#   start      spawn → the last key of the file answered 200
#   steady     VmRSS two seconds after start
#   reload     SIGHUP after one line was added to the keys file (the config is unchanged, so
#              only the key table is rebuilt) → the new key answered 200; peak RSS during it
#              (VmHWM, reset just before through /proc/PID/clear_refs) and the ratio to steady,
#              and the worst latency of the requests wrk sends meanwhile (4 connections)
#   req/cpu-s  wrk for BENCH_KEYSCALE_SECONDS over 1,000 keys spread across the file: requests
#              served per CPU-second of the proxy (utime+stime), and its ratio to the smallest size
#
#   bench/keyscale.sh                (KEYSCALE_SIZES="10000 100000 1000000", TOLLGATE_BIN,
#                                     BENCH_PROXY_CPU [0], BENCH_LOAD_CPU [1],
#                                     BENCH_KEYSCALE_SECONDS [5], KEYSCALE_OUT [bench/results])
# scripts/bench.sh runs it as scenario `keyscale`. Writes $KEYSCALE_OUT/keyscale.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SIZES=${KEYSCALE_SIZES:-10000 100000 1000000}
BIN=${TOLLGATE_BIN:-$ROOT/target/release/tollgate}
ECHO_BIN=$(dirname "$BIN")/tollgate-echo
PROXY_CPU=${BENCH_PROXY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SECONDS_RUN=${BENCH_KEYSCALE_SECONDS:-5}
OUT=${KEYSCALE_OUT:-bench/results}
for tool in wrk curl python3 taskset /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "keyscale: needs $tool" >&2; exit 1; }
done
[ -x "$BIN" ] && [ -x "$ECHO_BIN" ] || { echo "keyscale: needs $BIN and $ECHO_BIN" >&2; exit 1; }
TICKS=$(getconf CLK_TCK)

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
cpu_ticks() { local rest; rest=$(sed 's/.*) //' "/proc/$1/stat"); awk '{print $12 + $13}' <<<"$rest"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "x-api-key: $1" "http://127.0.0.1:$PORT/bench" || true; }
# wait_for KEY: until KEY answers 200, at most 120 s.
wait_for() {
    local _
    for _ in $(seq 12000); do
        [ "$(code "$1")" = 200 ] && return 0
        kill -0 "$TG" 2>/dev/null || { tail -5 "$TMP/tollgate.log" >&2; exit 1; }
        sleep 0.01
    done
    echo "keyscale: $1 never answered 200" >&2
    exit 1
}

UP=$(free_port)
taskset -c "$LOAD_CPU" "$ECHO_BIN" --listen "127.0.0.1:$UP" --threads 1 >"$TMP/echo.log" 2>&1 &
PIDS+=($!)
cat >"$TMP/wrk.lua" <<'EOF'
local reqs, i = {}, 0
function init(args)
  for line in io.lines(os.getenv("WRK_KEYFILE")) do
    reqs[#reqs + 1] = wrk.format("GET", "/bench", { ["x-api-key"] = line })
  end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
EOF

ROWS=()
BASE_RATE=''
for N in $SIZES; do
    PORT=$(free_port)
    ADMIN=$(free_port)
    python3 - "$N" "$TMP/keys.tsv" "$TMP/sample.txt" <<'PY'
import hashlib, sys
n, path, sample = int(sys.argv[1]), sys.argv[2], sys.argv[3]
step = max(1, n // 1000)
with open(path, "w") as f, open(sample, "w") as s:
    for i in range(n):
        key = f"bench-key-{i}"
        tier = "free" if i % 2 == 0 else "paid"
        f.write(f"cust-{i:07d}\t{tier}\t{hashlib.sha256(key.encode()).hexdigest()}\n")
        if i % step == 0:
            s.write(key + "\n")
PY
    cat >"$TMP/tollgate.yaml" <<EOF
listen: ["127.0.0.1:$PORT"]
admin_listen: "127.0.0.1:$ADMIN"
access_log: { enabled: false }
upstreams: { echo: { peers: ["127.0.0.1:$UP"] } }
routes: [{ prefix: "/", upstream: echo }]
identity: { header: x-api-key, anonymous: reject }
tiers:
  free: { limits: [] }
  paid: { limits: [] }
keys_file: keys.tsv
EOF
    cat >"$TMP/pingora.yaml" <<EOF
---
version: 1
threads: 1
pid_file: $TMP/tollgate.pid
upgrade_sock: $TMP/upgrade.sock
EOF
    /usr/bin/time -f '%e %M' -o "$TMP/check.time" "$BIN" -t --config "$TMP/tollgate.yaml" >/dev/null
    read -r CHECK_S CHECK_KB <"$TMP/check.time"

    T0=$(now)
    taskset -c "$PROXY_CPU" "$BIN" --config "$TMP/tollgate.yaml" -c "$TMP/pingora.yaml" >"$TMP/tollgate.log" 2>&1 &
    TG=$!
    PIDS+=("$TG")
    wait_for "bench-key-$((N - 1))"
    START_S=$(since "$T0")
    sleep 2
    STEADY_KB=$(status_kb "$TG" VmRSS)

    # One more key, then SIGHUP: only the key table is rebuilt.
    printf 'cust-new\tpaid\t%s\n' "$(printf '%s' "bench-key-new" | sha256sum | cut -d' ' -f1)" >>"$TMP/keys.tsv"
    echo 5 >"/proc/$TG/clear_refs"
    # Requests keep flowing during the reload: their worst latency is recorded.
    WRK_KEYFILE="$TMP/sample.txt" taskset -c "$LOAD_CPU" wrk -t 1 -c 4 -d 4s -s "$TMP/wrk.lua" \
        "http://127.0.0.1:$PORT/bench" >"$TMP/wrk-reload.txt" 2>&1 &
    WRK_RELOAD=$!
    sleep 0.5
    T0=$(now)
    kill -HUP "$TG"
    wait_for bench-key-new
    RELOAD_S=$(since "$T0")
    PEAK_KB=$(status_kb "$TG" VmHWM)
    wait "$WRK_RELOAD" || true
    WORST=$(awk '$1 == "Latency" {print $4}' "$TMP/wrk-reload.txt")
    sleep 2
    AFTER_KB=$(status_kb "$TG" VmRSS)

    WRK_KEYFILE="$TMP/sample.txt" taskset -c "$LOAD_CPU" wrk -t 1 -c 16 -d 1s -s "$TMP/wrk.lua" "http://127.0.0.1:$PORT/bench" >/dev/null
    C0=$(cpu_ticks "$TG")
    OUTW=$(WRK_KEYFILE="$TMP/sample.txt" taskset -c "$LOAD_CPU" wrk -t 1 -c 16 -d "${SECONDS_RUN}s" -s "$TMP/wrk.lua" "http://127.0.0.1:$PORT/bench")
    C1=$(cpu_ticks "$TG")
    REQS=$(awk '/requests in/ {print $1}' <<<"$OUTW")
    NON2XX=$(awk '/Non-2xx/ {print $NF}' <<<"$OUTW")
    RATE=$(awk -v r="$REQS" -v a="$C0" -v b="$C1" -v t="$TICKS" 'BEGIN {printf "%.0f", r / ((b - a) / t)}')
    [ -n "$BASE_RATE" ] || BASE_RATE=$RATE
    kill -INT "$TG"
    wait "$TG" 2>/dev/null || true

    ROW=$(awk -v n="$N" -v cs="$CHECK_S" -v ck="$CHECK_KB" -v s="$START_S" -v st="$STEADY_KB" \
        -v rl="$RELOAD_S" -v pk="$PEAK_KB" -v af="$AFTER_KB" -v rate="$RATE" -v base="$BASE_RATE" \
        -v bad="${NON2XX:-0}" -v worst="${WORST:-?}" 'BEGIN {
        printf "| %d | %.2f s | %.0f MB | %.2f s | %.0f MB | %.2f s | %.0f MB (%.2f×) | %s | %.0f MB | %d (%.2f×)%s |",
            n, cs, ck / 1024, s, st / 1024, rl, pk / 1024, pk / st, worst, af / 1024, rate, rate / base,
            (bad > 0 ? ", " bad " non-2xx" : "") }')
    echo "$ROW" >&2
    ROWS+=("$ROW")
done

mkdir -p "$OUT"
{
    echo "# Keys at scale (bench/keyscale.sh)"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), git $(git rev-parse --short HEAD 2>/dev/null || echo '?'), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg), proxy pinned to CPU $PROXY_CPU (1 thread), wrk and the upstream on CPU $LOAD_CPU, ${SECONDS_RUN} s of wrk (16 connections) over 1,000 keys spread across the file."
    echo
    echo "| keys | \`-t\` | peak RSS of \`-t\` | start | steady RSS | reload (keys file) | peak RSS during reload (÷ steady) | worst latency during reload | RSS after reload | requests per proxy CPU-s (÷ smallest) |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} >"$OUT/keyscale.md"
cat "$OUT/keyscale.md"
