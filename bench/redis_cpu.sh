#!/usr/bin/env bash
# Redis CPU per tollgate script call: what one master costs per 10,000 decisions per second.
#
#   bench/redis_cpu.sh                 # a plain redis-server
#   MODE=cluster bench/redis_cpu.sh    # cluster-enabled, one master owning all 16384 slots
#   SLIDING_LOG=tests/fixtures/sliding_log_zset.lua bench/redis_cpu.sh   # the sorted set before the ring
#   PIPE=16 bench/redis_cpu.sh         # 16 calls pipelined per connection (as a busy multiplexed
#                                      # connection batches them)
#
# The shipped script (scripts/redis/*.lua, concatenated as in src/limiter/redis_store.rs) is
# loaded once and called with EVALSHA by redis-benchmark (50 connections, N calls per case,
# random identities via __rand_int__, `now` = 0 so the script reads Redis TIME). Redis CPU is
# used_cpu_user + used_cpu_sys from INFO cpu around each case; "in the command" is
# usec_per_call of the command from INFO commandstats (the script alone, without network and
# dispatch). redis-server is pinned to CPU $REDIS_CPU [1], redis-benchmark to CPU $CLIENT_CPU [0].
# Prints a Markdown table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE=${MODE:-single}
PIPE=${PIPE:-1}
N=${N:-200000}
REDIS_CPU=${REDIS_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
for tool in redis-server redis-cli redis-benchmark taskset python3; do
    command -v "$tool" >/dev/null || { echo "redis_cpu: $tool is needed" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-redis-cpu.XXXXXX")
P=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
extra=()
[ "$MODE" = cluster ] && extra=(--cluster-enabled yes --cluster-config-file "$TMP/nodes.conf")
taskset -c "$REDIS_CPU" redis-server --port "$P" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$TMP" "${extra[@]}" >"$TMP/redis.log" 2>&1 &
RPID=$!
cleanup() {
    kill "$RPID" 2>/dev/null || true
    wait "$RPID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
for _ in $(seq 100); do
    redis-cli -p "$P" PING >/dev/null 2>&1 && break
    sleep 0.1
done
if [ "$MODE" = cluster ]; then
    redis-cli -p "$P" CLUSTER ADDSLOTSRANGE 0 16383 >/dev/null
    for _ in $(seq 100); do
        redis-cli -p "$P" CLUSTER INFO | grep -q '^cluster_state:ok' && break
        sleep 0.1
    done
fi

# The shipped script: the five files joined with newlines (the SHA may differ from tollgate's by
# a trailing newline; the code is the same).
# SLIDING_LOG=tests/fixtures/sliding_log_zset.lua measures the sorted set the ring replaced.
SLIDING_LOG=${SLIDING_LOG:-scripts/redis/sliding_log.lua}
BODY=$(cat "$SLIDING_LOG"; echo; for f in sliding_window fixed_window token_bucket ratelimit; do
    cat "scripts/redis/$f.lua"
    echo
done)
SHA=$(redis-cli -p "$P" -x SCRIPT LOAD <<<"$BODY")

cpu() {
    redis-cli -p "$P" INFO cpu | tr -d '\r' |
        awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.6f", s }'
}

# usec_per_call of the command (lower case) from INFO commandstats.
usec_per_call() {
    redis-cli -p "$P" INFO commandstats | tr -d '\r' |
        sed -n "s/^cmdstat_$1:.*usec_per_call=\([0-9.]*\).*/\1/p"
}

# case NAME KEYSPACE ARGS...: N calls of ARGS; prints one table row.
case_() {
    local name=$1 keyspace=$2 c0 c1 rate inside
    shift 2
    redis-cli -p "$P" FLUSHALL >/dev/null
    redis-cli -p "$P" CONFIG RESETSTAT >/dev/null
    c0=$(cpu)
    rate=$(taskset -c "$CLIENT_CPU" redis-benchmark -p "$P" -c 50 -P "$PIPE" -n "$N" -r "$keyspace" -q "$@" 2>/dev/null |
        tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -n 1)
    c1=$(cpu)
    inside=$(usec_per_call "$(echo "$1" | tr '[:upper:]' '[:lower:]')")
    awk -v a="$c0" -v b="$c1" -v n="$N" -v name="$name" -v r="${rate:-0}" -v inner="${inside:-0}" 'BEGIN {
        us = (b - a) * 1e6 / n
        printf "| %s | %.1f µs | %.1f µs | %.0f %% | %.0f |\n", name, us, inner, us, r
    }'
}

echo "$SLIDING_LOG, mode $MODE, $PIPE call(s) per write, $N calls per row, Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
echo
echo "| call | Redis CPU per call (= ms per 1,000) | in the command | one core at 10,000 calls/s | calls/s seen |"
echo "|---|---|---|---|---|"
case_ "PING (network and dispatch floor)" 1 PING
case_ "sliding_log 100/min, 100k identities" 100000 EVALSHA "$SHA" 1 'tollgate:{k:__rand_int__}:pm:slr' 0 1 1 100 60000
case_ "sliding_log 600/min, 1k identities" 1000 EVALSHA "$SHA" 1 'tollgate:{k:__rand_int__}:pm:slr' 0 1 1 600 60000
case_ "sliding_log, one key over its limit" 1 EVALSHA "$SHA" 1 'tollgate:{k:hot}:pm:slr' 0 1 1 100 60000
case_ "sliding_window 100/min, 100k identities" 100000 EVALSHA "$SHA" 1 'tollgate:{k:__rand_int__}:pm:sw' 0 1 2 100 60000
case_ "fixed_window 100/min, 100k identities" 100000 EVALSHA "$SHA" 1 'tollgate:{k:__rand_int__}:pm:fw' 0 1 3 100 60000
case_ "token_bucket 100/min, 100k identities" 100000 EVALSHA "$SHA" 1 'tollgate:{k:__rand_int__}:pm:tb' 0 1 4 100 60000
# One identity, two keys in its slot (redis-benchmark draws __rand_int__ per occurrence, so the
# identity is fixed per slot tag here and the key names vary).
case_ "two limits: token_bucket 20/s + sliding_log 600/min" 1000 EVALSHA "$SHA" 2 'tollgate:{k:t}:b:tb__rand_int__' 'tollgate:{k:t}:pm:slr__rand_int__' 0 1 4 20 1000 1 600 60000
