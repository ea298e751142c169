#!/usr/bin/env bash
# Measures the Redis memory one identity's limit costs under each algorithm, with MEMORY USAGE,
# for a full window at limits of 60, 600 and 10,000. Starts its own redis-server on a free port.
# The README's "Algorithms" table comes from this script.
#
#   scripts/redis/memory_usage.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script=$(cat "$here/sliding_log.lua"; echo; cat "$here/sliding_window.lua"; echo
         cat "$here/fixed_window.lua"; echo; cat "$here/token_bucket.lua"; echo
         cat "$here/ratelimit.lua")
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
now=1700000000000000
echo "| algorithm | limit 60 | limit 600 | limit 10,000 |"
echo "|---|---|---|---|"
for algo in "1 sliding_log" "2 sliding_window" "3 fixed_window" "4 token_bucket"; do
  code=${algo%% *}; name=${algo#* }
  row="| $name |"
  for limit in 60 600 10000; do
    key="tollgate:{k:0123456789abcdef0123456789abcdef}:per_minute:$limit:$code"
    if [ "$code" = 1 ]; then
      # A full window of distinct timestamps, one request each (as real traffic writes it).
      for ((i = 0; i < limit; i += 500)); do
        n=$((limit - i < 500 ? limit - i : 500))
        for ((j = 0; j < n; j++)); do
          echo "EVALSHA $sha 1 $key 1 $((now + (i + j) * 1000)) 1 1 $code $limit 600000"
        done | r >/dev/null
      done
    else
      r EVALSHA "$sha" 1 "$key" 1 "$now" "$limit" 1 "$code" "$limit" 600000 >/dev/null
    fi
    bytes=$(r MEMORY USAGE "$key" SAMPLES 0)
    row="$row $bytes B |"
  done
  echo "$row"
done
