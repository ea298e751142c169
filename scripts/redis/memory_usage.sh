#!/usr/bin/env bash
# Measures the Redis memory one identity's limit costs under each algorithm, with MEMORY USAGE,
# for a full window at limits of 60, 600 and 10,000, and the sliding_log ring at its largest
# (1,000,000, the bound `tollgate -t` enforces). The old sorted-set sliding_log
# (tests/fixtures/sliding_log_zset.lua) is measured beside the ring. Then 10,000 identities at a
# limit of 600, filled, for both (used_memory before and after). Starts its own redis-server on a
# free port. The README's "Algorithms" tables come from this script.
#
#   scripts/redis/memory_usage.sh            # everything (about a minute)
#   IDENTITIES=0 scripts/redis/memory_usage.sh   # skip the 10,000-identity fill
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
rest=$(cat "$here/sliding_window.lua"; echo; cat "$here/fixed_window.lua"; echo
       cat "$here/token_bucket.lua"; echo; cat "$here/ratelimit.lua")
script=$(cat "$here/sliding_log.lua"; echo; echo "$rest")
zset_script=$(cat "$here/../../tests/fixtures/sliding_log_zset.lua"; echo; echo "$rest")
identities=${IDENTITIES:-10000}
port=""
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 20000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "no free port" >&2; exit 2; }
workdir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$workdir" \
  --loglevel warning >"$workdir/redis.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$workdir"' EXIT
r() { redis-cli -p "$port" "$@"; }
for _ in $(seq 1 100); do [ "$(r PING 2>/dev/null)" = PONG ] && break; sleep 0.05; done
sha=$(r SCRIPT LOAD "$script")
zsha=$(r SCRIPT LOAD "$zset_script")
now=1700000000000000

# fill SHA KEY CODE LIMIT: a full window of distinct timestamps, one request each (as real
# traffic writes it), 600 s window.
fill() {
  local s=$1 key=$2 code=$3 limit=$4 i j n
  for ((i = 0; i < limit; i += 500)); do
    n=$((limit - i < 500 ? limit - i : 500))
    for ((j = 0; j < n; j++)); do
      echo "EVALSHA $s 1 $key $((now + (i + j) * 1000)) 1 $code $limit 600000"
    done | r >/dev/null
  done
}

echo "| algorithm | limit 60 | limit 600 | limit 10,000 |"
echo "|---|---|---|---|"
for algo in "1 sliding_log" "1 sliding_log_sorted_set" "2 sliding_window" "3 fixed_window" "4 token_bucket"; do
  code=${algo%% *}; name=${algo#* }
  s=$sha; [ "$name" = sliding_log_sorted_set ] && s=$zsha
  row="| $name |"
  for limit in 60 600 10000; do
    key="tollgate:{k:0123456789abcdef0123456789abcdef}:per_minute:$limit:$name"
    if [ "$code" = 1 ]; then
      fill "$s" "$key" "$code" "$limit"
    else
      r EVALSHA "$s" 1 "$key" "$now" "$limit" "$code" "$limit" 600000 >/dev/null
    fi
    bytes=$(r MEMORY USAGE "$key" SAMPLES 0)
    row="$row $bytes B |"
  done
  echo "$row"
done

# The largest ring: one call fills it (the ring's size does not depend on how it was filled).
key="tollgate:{k:0123456789abcdef0123456789abcdef}:per_minute:1000000:sliding_log"
r EVALSHA "$sha" 1 "$key" "$now" 1000000 1 1000000 600000 >/dev/null
echo
echo "sliding_log ring at limit 1,000,000: $(r MEMORY USAGE "$key" SAMPLES 0) B"

[ "$identities" -gt 0 ] || exit 0
# N identities at a limit of 600, filled by one call of cost 600 each: the ring's string is the
# same as after 600 requests; the sorted set gets members "<now>-<j>", 2 bytes longer than 600
# distinct timestamps would write, in the same encoding (a skiplist above 128 members).
per_identity() { # SHA: used_memory of all identities
  local s=$1 before after i
  r FLUSHALL >/dev/null
  before=$(r INFO memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)/\1/p')
  for ((i = 0; i < identities; i++)); do
    echo "EVALSHA $s 1 tollgate:{k:$i}:pm:sl $now 600 1 600 600000"
  done | r --pipe >/dev/null
  after=$(r INFO memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)/\1/p')
  echo $((after - before))
}
ring_total=$(per_identity "$sha")
zset_total=$(per_identity "$zsha")
echo "$identities identities x limit 600, filled: ring $((ring_total / 1000000)) MB, sorted set $((zset_total / 1000000)) MB (used_memory)"
