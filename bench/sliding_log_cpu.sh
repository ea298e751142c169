#!/usr/bin/env bash
# Redis CPU per sliding_log decision: the ring (scripts/redis/sliding_log.lua) against the sorted
# set it replaced (tests/fixtures/sliding_log_zset.lua), each inside the shipped dispatcher.
#
#   bench/sliding_log_cpu.sh            # limits 60, 600, 10,000; 3 rounds each
#   ROUNDS=5 LIMITS="600" bench/sliding_log_cpu.sh
#
# Steady state, as a busy identity sees it: K identities (60,000 / limit, at least 6), each sent
# a request every W / (2 * limit) (W = 60 s, explicit `now`), so after the window fills about half
# are admitted. The first 2 * limit requests per identity warm up; the next `limit` per identity
# are measured. Calls go through `redis-cli --pipe`, so the network costs little per call.
# Printed per case: Redis CPU per call (used_cpu_user + used_cpu_sys from INFO cpu), the same
# minus the PING floor measured the same way, and usec_per_call of EVALSHA from INFO
# commandstats (wall time inside the command: inflated when the machine is busy). The minimum
# over ROUNDS rounds, variants interleaved so both see the same load.
# A second table isolates the algorithm from the call: one script runs 20,000 decisions of one
# identity in a loop (check, then commit when admitted) and reads INFO cpu around the loop, and
# the same for 20,000 first requests of new identities.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS=${ROUNDS:-3}
LIMITS=${LIMITS:-60 600 10000}
W=60000
B=1700000000000000

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-sl-cpu.XXXXXX")
P=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$P" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
RPID=$!
trap 'kill $RPID 2>/dev/null || true; wait $RPID 2>/dev/null || true; rm -rf "$TMP"' EXIT
r() { redis-cli -p "$P" "$@"; }
for _ in $(seq 100); do r PING >/dev/null 2>&1 && break; sleep 0.1; done

rest=$(for f in sliding_window fixed_window token_bucket ratelimit; do cat "scripts/redis/$f.lua"; echo; done)
RING=$(r -x SCRIPT LOAD <<<"$(cat scripts/redis/sliding_log.lua; echo; echo "$rest")")
ZSET=$(r -x SCRIPT LOAD <<<"$(cat tests/fixtures/sliding_log_zset.lua; echo; echo "$rest")")

cpu() { r INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.6f", s }'; }
usec() { r INFO commandstats | tr -d '\r' | sed -n "s/^cmdstat_$1:.*usec_per_call=\([0-9.]*\).*/\1/p"; }

# cmds SHA LIMIT IDS FROM TO: the requests of rounds FROM..TO-1 for IDS identities.
cmds() {
  awk -v sha="$1" -v l="$2" -v k="$3" -v from="$4" -v to="$5" -v w="$W" -v b="$B" 'BEGIN {
    step = int(w * 1000 / (2 * l))
    for (j = from; j < to; j++)
      for (i = 0; i < k; i++)
        printf "EVALSHA %s 1 tollgate:{k:%d}:pm:sl %.0f 1 1 %d %d\n", sha, i, b + j * step, l, w
  }'
}

# measure CMD-GENERATOR...: prints "cpu_us_per_call usec_per_call" for the measured calls.
measure() { # name count generator...
  local name=$1 n=$2 c0 c1
  shift 2
  r CONFIG RESETSTAT >/dev/null
  c0=$(cpu)
  "$@" | r --pipe >/dev/null
  c1=$(cpu)
  awk -v a="$c0" -v b="$c1" -v n="$n" -v u="$(usec "$name")" 'BEGIN { printf "%.2f %s\n", (b - a) * 1e6 / n, u }'
}

pings() { awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) print "PING" }'; }
floor=$(for _ in $(seq "$ROUNDS"); do measure ping 100000 pings 100000; done | sort -n | head -1 | cut -d' ' -f1)
echo "Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $ROUNDS rounds, PING floor $floor µs of Redis CPU per call (pipelined)"
echo
echo "| limit | variant | Redis CPU per decision | minus the PING floor | usec_per_call (EVALSHA) |"
echo "|---|---|---|---|---|"
for l in $LIMITS; do
  k=$((60000 / l)); [ "$k" -ge 6 ] || k=6
  declare -A best_cpu=() best_usec=()
  for _ in $(seq "$ROUNDS"); do
    for v in ring zset; do
      sha=$RING; [ $v = zset ] && sha=$ZSET
      r FLUSHALL >/dev/null
      cmds "$sha" "$l" "$k" 0 $((2 * l)) | r --pipe >/dev/null
      read -r c u < <(measure evalsha $((k * l)) cmds "$sha" "$l" "$k" $((2 * l)) $((3 * l)))
      if [ -z "${best_cpu[$v]:-}" ] || awk -v a="$c" -v b="${best_cpu[$v]}" 'BEGIN { exit !(a < b) }'; then best_cpu[$v]=$c; fi
      if [ -z "${best_usec[$v]:-}" ] || awk -v a="$u" -v b="${best_usec[$v]}" 'BEGIN { exit !(a < b) }'; then best_usec[$v]=$u; fi
    done
  done
  for v in ring zset; do
    name="ring"; [ $v = zset ] && name="sorted set (before)"
    awk -v l="$l" -v n="$name" -v c="${best_cpu[$v]}" -v f="$floor" -v u="${best_usec[$v]}" \
      'BEGIN { printf "| %d | %s | %.1f µs | %.1f µs | %.1f µs |\n", l, n, c, c - f, u }'
  done
  unset best_cpu best_usec
done

# The algorithm alone: the check and commit functions called in a loop inside one script.
LOOP=$(cat <<'LUA'
local function cpu()
  local s = redis.call('INFO', 'cpu')
  return tonumber(string.match(s, 'used_cpu_user:([%d%.]+)')) + tonumber(string.match(s, 'used_cpu_sys:([%d%.]+)'))
end
local L, N, fresh = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == 'fresh'
local now, step = 1700000000000000, math.floor(60000 * 1000 / (2 * L))
local function decide(key)
  local ok, _, _, _, st = sliding_log_check(key, L, 60000, 1, now)
  if ok then sliding_log_commit(key, L, 60000, 1, now, st) end
end
if not fresh then
  for _ = 1, 3 * L do now = now + step; decide(KEYS[1]) end
end
local c0 = cpu()
for i = 1, N do
  if fresh then decide(KEYS[1] .. i) else now = now + step; decide(KEYS[1]) end
end
return tostring((cpu() - c0) * 1e6 / N)
LUA
)
echo
echo "| limit | variant | CPU per decision inside the script, steady state | first request of an identity |"
echo "|---|---|---|---|"
for l in $LIMITS; do
  for v in ring zset; do
    f=scripts/redis/sliding_log.lua; [ $v = zset ] && f=tests/fixtures/sliding_log_zset.lua
    best=""; bestf=""
    for _ in $(seq "$ROUNDS"); do
      r FLUSHALL >/dev/null
      x=$(r EVAL "$(cat "$f"; echo; echo "$LOOP")" 1 "loop:{k}" "$l" 20000 steady)
      y=$(r EVAL "$(cat "$f"; echo; echo "$LOOP")" 1 "fresh:{k}" "$l" 20000 fresh)
      if [ -z "$best" ] || awk -v a="$x" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$x; fi
      if [ -z "$bestf" ] || awk -v a="$y" -v b="$bestf" 'BEGIN { exit !(a < b) }'; then bestf=$y; fi
    done
    name="ring"; [ $v = zset ] && name="sorted set (before)"
    awk -v l="$l" -v n="$name" -v a="$best" -v b="$bestf" 'BEGIN { printf "| %d | %s | %.1f µs | %.1f µs |\n", l, n, a, b }'
  done
done
