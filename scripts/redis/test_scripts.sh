#!/usr/bin/env bash
# Runs the rate-limit Lua scripts against a throwaway redis-server with explicit clocks.
#
# Each scenario uses its own keys and windows of at least 10 s: Redis TTLs run on the server's
# real clock while the scenarios jump a synthetic `now` around, so a short TTL could expire state
# that the synthetic clock still needs. Usage: scripts/redis/test_scripts.sh (needs redis-server
# and redis-cli on PATH).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script=$(cat "$here/sliding_log.lua"; echo; cat "$here/sliding_window.lua"; echo
         cat "$here/fixed_window.lua"; echo; cat "$here/token_bucket.lua"; echo
         cat "$here/ratelimit.lua")

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=""
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 20000))
  if port_free "$p"; then port=$p; break; fi
done
[ -n "$port" ] || { echo "no free port found" >&2; exit 2; }

workdir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$workdir" \
  --daemonize no --loglevel warning >"$workdir/redis.log" 2>&1 &
redis_pid=$!
cleanup() { kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; rm -rf "$workdir"; }
trap cleanup EXIT

r() { redis-cli -p "$port" "$@"; }
for _ in $(seq 1 100); do
  [ "$(r PING 2>/dev/null)" = "PONG" ] && break
  kill -0 "$redis_pid" 2>/dev/null || { cat "$workdir/redis.log" >&2; exit 2; }
  sleep 0.05
done
sha=$(r SCRIPT LOAD "$script")
peek_sha=$(r SCRIPT LOAD "$(cat "$here/sliding_log.lua"; echo; cat "$here/sliding_window.lua"; echo
         cat "$here/fixed_window.lua"; echo; cat "$here/token_bucket.lua"; echo
         cat "$here/peek.lua")")
reset_sha=$(r SCRIPT LOAD "$(cat "$here/reset.lua")")

passed=0
failed=0
expect() { # name expected actual
  if [ "$2" = "$3" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL $1: expected [$2] got [$3]" >&2
  fi
}

# ev NOW COST KEY,CODE,LIMIT,WINDOW ...  -> "all n (allowed remaining retry reset)*n"
ev() {
  local now=$1 cost=$2; shift 2
  local keys=() args=() spec k c l w
  for spec in "$@"; do
    IFS=, read -r k c l w <<<"$spec"
    keys+=("$k"); args+=("$c" "$l" "$w")
  done
  r EVALSHA "$sha" "${#keys[@]}" "${keys[@]}" 1 "$now" "$cost" "${#keys[@]}" "${args[@]}" | tr '\n' ' ' | sed 's/ $//'
}
# batch "NOW COST KEY,CODE,LIMIT,WINDOW ..." ...  -> one call deciding every request in order;
# the answers of all requests, concatenated.
batch() {
  local keys=() args=() req now cost spec k c l w n
  for req in "$@"; do
    read -r now cost rest <<<"$req"
    n=0; local largs=()
    for spec in $rest; do
      IFS=, read -r k c l w <<<"$spec"
      keys+=("$k"); largs+=("$c" "$l" "$w"); n=$((n + 1))
    done
    args+=("$now" "$cost" "$n" "${largs[@]}")
  done
  r EVALSHA "$sha" "${#keys[@]}" "${keys[@]}" "$#" "${args[@]}" | tr '\n' ' ' | sed 's/ $//'
}
field() { echo "$1" | cut -d' ' -f"$2"; }
# ring KEY -> "slots width t1 t2 ..." for a sliding_log ring: its admission times in µs, oldest
# first, 0 for an empty slot (the layout is in sliding_log.lua and README.md).
RING_LUA="local s = redis.call('GET', KEYS[1]) if not s then return {} end
local base, floor, newest, head, hint, n, width = struct.unpack('<I8I8I8I3I3I3I1', s)
local fmt = width == 4 and '<I4' or '<I8'
local out = { n, width }
for i = 0, n - 1 do
  local off = struct.unpack(fmt, s, 35 + ((head + i) % n) * width)
  out[#out + 1] = off == 0 and 0 or base + off
end
return out"
ring() { r EVAL "$RING_LUA" 1 "$1" | tr '\n' ' ' | sed 's/ $//'; }   # field "$out" 5 -> retry of limit 1
num() { if [[ $1 =~ ^-?[0-9]+$ ]]; then echo "$1"; else echo -999999999; fi; }  # errors stay numeric

SL=1; SW=2; FW=3; TB=4
# A window-aligned base (a multiple of one hour), in µs.
B=1699999200000000
S=1000000   # 1 s in µs
MS=1000     # 1 ms in µs

# --- sliding_log: exact at the boundary -------------------------------------------------------
k="sl:{a}:b"; W=60000; L=3; Wus=$((W * MS))
expect "sl 1st" "1 1 1 2 0 60000" "$(ev $B 1 $k,$SL,$L,$W)"
expect "sl 2nd" "1 1 1 1 0 59999" "$(ev $((B + MS)) 1 $k,$SL,$L,$W)"
expect "sl 3rd" "1 1 1 0 0 59998" "$(ev $((B + 2 * MS)) 1 $k,$SL,$L,$W)"
expect "sl 4th denied, retry when the oldest leaves" "0 1 0 0 59997 59997" "$(ev $((B + 3 * MS)) 1 $k,$SL,$L,$W)"
expect "sl denied 1us before the boundary" "0 1 0 0 1 1" "$(ev $((B + Wus - 1)) 1 $k,$SL,$L,$W)"
expect "sl admitted exactly at the boundary" "1 1 1 0 0 1" "$(ev $((B + Wus)) 1 $k,$SL,$L,$W)"
expect "sl full again at the boundary" "0 1 0 0 1 1" "$(ev $((B + Wus)) 1 $k,$SL,$L,$W)"
expect "sl ring: L slots of 4 bytes, the last L admissions, oldest first" \
  "3 4 $((B + MS)) $((B + 2 * MS)) $((B + Wus))" "$(ring $k)"
expect "sl ring is 34 + 4L bytes" "46" "$(r STRLEN $k)"
pttl=$(num "$(r PTTL $k)")
expect "sl TTL is the window" "1" "$(( pttl > 55000 && pttl <= W ))"
# Two requests in the same microsecond are two distinct members.
k="sl:{same-us}:b"
ev $B 1 $k,$SL,5,$W >/dev/null; ev $B 1 $k,$SL,5,$W >/dev/null
expect "sl same-microsecond admissions are two slots" "5 4 0 0 0 $B $B" "$(ring $k)"

# --- sliding_log: randomised, never more than L in any window ---------------------------------
# Commands are independent of earlier answers, so one redis-cli runs them all.
k="sl:{random}:b"; L=5; W=20000; Wus=$((W * MS))
RANDOM=42
now=$B; times=(); costs=(); cmds=""
for i in $(seq 1 300); do
  case $((RANDOM % 4)) in
    0) d=0 ;; 1) d=$((RANDOM % 1000)) ;; *) d=$(( (RANDOM * 32768 + RANDOM) % (2 * Wus / L) )) ;;
  esac
  now=$((now + d)); c=$((RANDOM % 3 == 0 ? 2 : 1))
  times+=("$now"); costs+=("$c")
  cmds+="EVALSHA $sha 1 $k 1 $now $c 1 $SL $L $W"$'\n'
done
mapfile -t lines < <(printf '%s' "$cmds" | r)
admitted=(); n_adm=0
for i in "${!times[@]}"; do
  if [ "${lines[$((i * 6))]}" = "1" ]; then
    for _ in $(seq 1 "${costs[$i]}"); do admitted+=("${times[$i]}"); done
    n_adm=$((n_adm + 1))
  fi
done
violations=0
for ((i = 0; i + L < ${#admitted[@]}; i++)); do
  (( admitted[i + L] - admitted[i] >= Wus )) || violations=$((violations + 1))
done
expect "sl random: no window holds more than L" "0" "$violations"
expect "sl random: some requests admitted, some denied" "1" "$(( n_adm > 20 && n_adm < 300 ))"

# --- sliding_log: the ring (limit changes, clock steps, widths, large rings, rebasing) ---------
digest() { r EVAL "return redis.sha1hex(redis.call('GET', KEYS[1]) or '')" 1 "$1"; }
k="ring:{grow}:b"; W=60000; Wus=$((W * MS))
for t in 0 1 2; do ev $((B + t * MS)) 1 $k,$SL,3,$W >/dev/null; done
before=$(digest $k)
expect "ring refused request" "0 1 0 0 59997 59997" "$(ev $((B + 3 * MS)) 1 $k,$SL,3,$W)"
expect "ring refused request writes nothing" "$before" "$(digest $k)"
expect "ring grows when the limit goes up, keeping its slots" "1 1 1 1 0 59997" "$(ev $((B + 3 * MS)) 1 $k,$SL,5,$W)"
expect "ring grown: empty slots first" "5 4 0 $B $((B + MS)) $((B + 2 * MS)) $((B + 3 * MS))" "$(ring $k)"
expect "ring over a lowered limit: k-th oldest decides" "0 1 0 0 59998 59996" "$(ev $((B + 4 * MS)) 1 $k,$SL,2,$W)"
expect "ring not shrunk by a refusal" "5" "$(ring $k | cut -d' ' -f1)"
expect "ring admits once enough left the window" "1 1 1 0 0 1" "$(ev $((B + Wus + 2 * MS)) 1 $k,$SL,2,$W)"
expect "ring shrunk to the new limit, newest kept" "2 4 $((B + 3 * MS)) $((B + Wus + 2 * MS))" "$(ring $k)"

k="ring:{back}:b"
expect "clock: first" "1 1 1 2 0 60000" "$(ev $((B + 10 * S)) 1 $k,$SL,3,$W)"
expect "clock 5 s back: admitted, counted from the newest slot" "1 1 1 1 0 65000" "$(ev $((B + 5 * S)) 1 $k,$SL,3,$W)"
expect "clock back: written at the newest slot, in order" "3 4 0 $((B + 10 * S)) $((B + 10 * S))" "$(ring $k)"
pttl=$(num "$(r PTTL $k)")
expect "clock back: TTL covers the newest slot" "1" "$(( pttl > 60000 && pttl <= 65000 ))"
ev $((B + 5 * S)) 1 $k,$SL,3,$W >/dev/null
retry_is_exact_sl() {
  local out retry
  out=$(ev "$2" 1 "$3"); retry=$(num "$(field "$out" 5)")
  expect "$1: denied" "0" "$(field "$out" 1)"
  expect "$1: denied at retry - 1 ms" "0" "$(field "$(ev $(($2 + (retry - 1) * MS)) 1 "$3")" 1)"
  expect "$1: admitted at retry" "1" "$(field "$(ev $(($2 + retry * MS)) 1 "$3")" 1)"
}
retry_is_exact_sl "clock back: retry" $((B + 6 * S)) $k,$SL,3,$W

k="ring:{hour}:b"
ev $B 1 $k,$SL,2,3600000 >/dev/null
expect "a window over 35.8 min takes 8-byte slots" "2 8 0 $B" "$(ring $k)"

k="ring:{large}:b"   # 3,000 slots = 12,034 bytes: read near its hint, not whole
expect "large ring: one call takes 2999" "1 1 1 1 0 60000" "$(ev $B 2999 $k,$SL,3000,$W)"
expect "large ring: last unit" "1 1 1 0 0 59999" "$(ev $((B + MS)) 1 $k,$SL,3000,$W)"
expect "large ring: full" "0 1 0 0 59998 59998" "$(ev $((B + 2 * MS)) 1 $k,$SL,3000,$W)"
expect "large ring: 2999 leave at once, remaining by binary search" "1 1 1 2994 0 1" "$(ev $((B + Wus)) 5 $k,$SL,3000,$W)"
expect "large ring: wrapped head, k-th oldest" "0 1 0 2994 60000 1" "$(ev $((B + Wus)) 2996 $k,$SL,3000,$W)"
expect "large ring is 34 + 4L bytes" "12034" "$(r STRLEN $k)"

k="ring:{rebase}:b"; W=1800000   # 30 min: 4-byte offsets overflow after 71.6 min from base
M=$((60 * S))
for t in 0 20 40; do ev $((B + t * M)) 1 $k,$SL,3,$W >/dev/null; done
expect "rebase: offsets outgrow 32 bits, ring rebuilt on a new base" "1 1 1 1 0 1200000" "$(ev $((B + 50 * M)) 1 $k,$SL,3,$W)"
expect "rebase: live slots kept, dead ones dropped" "3 4 0 $((B + 40 * M)) $((B + 50 * M))" "$(ring $k)"
expect "rebase: answers continue" "0 1 0 1 600000 600000" "$(ev $((B + 60 * M)) 2 $k,$SL,3,$W)"
W=60000

# --- fixed_window: up to 2L across a boundary --------------------------------------------------
k="fw:{a}:b"; W=60000; L=5
E=$((B + 40 * S))   # 20 s before the boundary at B + 60 s
for i in 1 2 3 4 5; do
  expect "fw before boundary #$i" "1 1 1 $((L - i)) 0 20000" "$(ev $E 1 $k,$FW,$L,$W)"
done
expect "fw 6th denied until the boundary" "0 1 0 0 20000 20000" "$(ev $E 1 $k,$FW,$L,$W)"
expect "fw denied 1 ms before the boundary" "0 1 0 0 1 1" "$(ev $((B + 60 * S - MS)) 1 $k,$FW,$L,$W)"
for i in 1 2 3 4 5; do
  expect "fw after boundary #$i" "1 1 1 $((L - i)) 0 60000" "$(ev $((B + 60 * S)) 1 $k,$FW,$L,$W)"
done
expect "fw 2L admitted within 20 s of a 60 s window, then denied" "0 1 0 0 60000 60000" \
  "$(ev $((B + 60 * S)) 1 $k,$FW,$L,$W)"
pttl=$(num "$(r PTTL $k)")
expect "fw TTL is the time to the window end" "1" "$(( pttl > 55000 && pttl <= 60000 ))"

# --- sliding_window ------------------------------------------------------------------------------
k="sw:{a}:b"; W=60000; L=10
P=$((B + 30 * S))   # middle of window 0
for i in $(seq 1 10); do ev $P 1 $k,$SW,$L,$W >/dev/null; done
# cur=10 prev=0: wait for the next window, then until 10*(W-e3) + 60000 <= 600000 -> e3 = 6000.
expect "sw 11th denied, retry into next window" "0 1 0 0 36000 30000" "$(ev $P 1 $k,$SW,$L,$W)"
N=$((B + 60 * S))   # start of window 1: prev=10 weighs fully
expect "sw denied at next window start" "0 1 0 0 6000 60000" "$(ev $N 1 $k,$SW,$L,$W)"
expect "sw denied 1 ms before retry" "0 1 0 0 1 54001" "$(ev $((N + 5999 * MS)) 1 $k,$SW,$L,$W)"
expect "sw admitted at retry" "1 1 1 0 0 54000" "$(ev $((N + 6000 * MS)) 1 $k,$SW,$L,$W)"
expect "sw full again" "0 1 0 0 6000 54000" "$(ev $((N + 6000 * MS)) 1 $k,$SW,$L,$W)"
# e=30000: 10*30000 + (1+1)*60000 = 420000 <= 600000, remaining floor(180000/60000) = 3
expect "sw half the previous window has slid out" "1 1 1 3 0 30000" "$(ev $((N + 30 * S)) 1 $k,$SW,$L,$W)"
pttl=$(num "$(r PTTL $k)")
expect "sw TTL is two windows" "1" "$(( pttl > 115000 && pttl <= 120000 ))"
# Error bound: L requests at the very end of window 0, then at e = W/2 floor(L/2) more pass, so
# the sliding window (now - W, now] holds L + floor(L*e/W) = 15 requests.
k="sw:{bound}:b"
for i in $(seq 1 10); do ev $((N - MS)) 1 $k,$SW,$L,$W >/dev/null; done
adm=0
for i in $(seq 1 10); do
  out=$(ev $((N + 30 * S)) 1 $k,$SW,$L,$W); adm=$((adm + $(num "$(field "$out" 1)")))
done
expect "sw worst case admits L + floor(L*e/W) in one sliding window" "5" "$adm"

# --- token_bucket ------------------------------------------------------------------------------
k="tb:{a}:b"; W=60000; L=5   # T = 12 s per token, tau = 60 s
for i in 1 2 3 4 5; do
  expect "tb burst #$i" "1 1 1 $((L - i)) 0 $((i * 12000))" "$(ev $B 1 $k,$TB,$L,$W)"
done
expect "tb burst exhausted" "0 1 0 0 12000 60000" "$(ev $B 1 $k,$TB,$L,$W)"
expect "tb denied 1 ms before refill" "0 1 0 0 1 48001" "$(ev $((B + 11999 * MS)) 1 $k,$TB,$L,$W)"
expect "tb one token refilled" "1 1 1 0 0 60000" "$(ev $((B + 12 * S)) 1 $k,$TB,$L,$W)"
# tat = B+72s; at B+48s: new = B+84s, new-now = 36 s <= 60 s, remaining floor(24/12) = 2
expect "tb steady refill" "1 1 1 2 0 36000" "$(ev $((B + 48 * S)) 1 $k,$TB,$L,$W)"
expect "tb full burst after idling" "1 1 1 0 0 60000" "$(ev $((B + 1000 * S)) 5 $k,$TB,$L,$W)"
pttl=$(num "$(r PTTL $k)")
expect "tb TTL covers the arrival time" "1" "$(( pttl > 55000 && pttl <= 60001 ))"

# --- multi-limit: all or nothing ---------------------------------------------------------------
W=60000
a="m:{x}:a:sl"; b="m:{x}:b:fw"; c="m:{x}:c:tb"; d="m:{x}:d:sw"
lim=("$a,$SL,2,$W" "$b,$FW,5,$W" "$c,$TB,10,$W" "$d,$SW,10,$W")
expect "multi 1" "1 4 1 1 0 60000 1 4 0 60000 1 9 0 6000 1 9 0 60000" "$(ev $B 1 "${lim[@]}")"
expect "multi 2" "1" "$(field "$(ev $((B + MS)) 1 "${lim[@]}")" 1)"
out=$(ev $((B + 2 * MS)) 1 "${lim[@]}")
expect "multi 3 denied by the first limit only" "0 4 0 0 59998 59998 1 2 0 59998 1 7 0 17998 1 7 0 59998" "$out"
expect "multi: denied request not counted in fixed_window" "2" "$(r HGET $b k)"
expect "multi: denied request not counted in sliding_log" "2 4 $B $((B + MS))" "$(ring $a)"
expect "multi: denied request not counted in token_bucket" "$((B + 2 * 6000000))" "$(r GET $c)"
expect "multi: denied request not counted in sliding_window" "2" "$(r HGET $d k)"
# Denial by the last limit: the earlier ones are not charged either.
e="m:{y}:a:sl"; f="m:{y}:b:fw"
expect "multi last limit denies" "0" "$(field "$(ev $B 3 "$e,$SL,10,$W" "$f,$FW,2,$W")" 1)"
expect "multi nothing recorded when the last denies" "0" "$(r EXISTS $e $f)"

# --- cost > 1 and cost > limit -----------------------------------------------------------------
k="c:{a}:sl"
expect "cost 3 of 5" "1 1 1 2 0 60000" "$(ev $B 3 $k,$SL,5,$W)"
expect "cost 3 with 2 left: denied, remaining 2" "0 1 0 2 59999 59999" "$(ev $((B + MS)) 3 $k,$SL,5,$W)"
expect "cost 2 with 2 left" "1 1 1 0 0 59998" "$(ev $((B + 2 * MS)) 2 $k,$SL,5,$W)"
expect "cost takes one slot per unit" "5 4 $B $B $B $((B + 2 * MS)) $((B + 2 * MS))" "$(ring $k)"
expect "cost 3 needs the 1st oldest gone" "0 1 0 0 59997 59997" "$(ev $((B + 3 * MS)) 3 $k,$SL,5,$W)"
k="c:{a}:fw"
expect "fw cost 4 of 5" "1 1 1 1 0 60000" "$(ev $B 4 $k,$FW,5,$W)"
expect "fw cost 2 with 1 left" "0 1 0 1 60000 60000" "$(ev $B 2 $k,$FW,5,$W)"
k="c:{a}:tb"
expect "tb cost 4 of 5" "1 1 1 1 0 48000" "$(ev $B 4 $k,$TB,5,$W)"
expect "tb cost 2 with 1 left" "0 1 0 1 12000 48000" "$(ev $B 2 $k,$TB,5,$W)"
k="c:{a}:sw"
expect "sw cost 4 of 5" "1 1 1 1 0 60000" "$(ev $B 4 $k,$SW,5,$W)"
for algo in $SL $SW $FW $TB; do
  k="big:{a}:$algo"
  out=$(ev "$B" 6 "$k,$algo,5,$W")
  expect "cost > limit denied with retry = window (algo $algo)" "0 1 0 5 60000" "$(echo "$out" | cut -d' ' -f1-5)"
  expect "cost > limit records nothing (algo $algo)" "0" "$(r EXISTS "$k")"
done
k="zero:{a}:tb"
expect "limit 0 denies everything" "0 1 0 0 60000 0" "$(ev $B 1 $k,$TB,0,$W)"
k="costzero:{a}:fw"
expect "cost 0 is charged as 1" "1 1 1 4 0 60000" "$(ev $B 0 $k,$FW,5,$W)"

# --- waiting retry_ms admits, and 1 ms less does not ---------------------------------------------
retry_is_exact() { # name now cost spec  (the limit must currently deny)
  local out retry
  out=$(ev "$2" "$3" "$4"); retry=$(num "$(field "$out" 5)")
  expect "$1: denied" "0" "$(field "$out" 1)"
  expect "$1: denied at retry - 1 ms" "0" "$(field "$(ev $(($2 + (retry - 1) * MS)) "$3" "$4")" 1)"
  expect "$1: admitted at retry" "1" "$(field "$(ev $(($2 + retry * MS)) "$3" "$4")" 1)"
}
k="rt:{a}:sl"; for t in 0 7 19; do ev $((B + t * S + 123)) 1 $k,$SL,3,$W >/dev/null; done
retry_is_exact "retry sl" $((B + 25 * S + 456)) 1 $k,$SL,3,$W
retry_is_exact "retry sl cost 2" $((B + 70 * S + 456)) 2 $k,$SL,3,$W
k="rt:{a}:fw"; ev $((B + 30 * S)) 3 $k,$FW,3,$W >/dev/null
retry_is_exact "retry fw" $((B + 30 * S + 789)) 1 $k,$FW,3,$W
k="rt:{a}:tb"; ev $((B + 321)) 3 $k,$TB,3,$W >/dev/null
retry_is_exact "retry tb" $((B + 5 * S + 7)) 2 $k,$TB,3,$W
k="rt:{a}:sw"; for i in 1 2 3 4; do ev $((B + 20 * S)) 1 $k,$SW,7,$W >/dev/null; done
ev $((B + 70 * S)) 2 $k,$SW,7,$W >/dev/null
retry_is_exact "retry sw (this window)" $((B + 70 * S + 5)) 2 $k,$SW,7,$W
k="rt:{b}:sw"; for i in 1 2 3 4 5; do ev $((B + 50 * S)) 1 $k,$SW,7,$W >/dev/null; done
retry_is_exact "retry sw (next window)" $((B + 50 * S + 5)) 3 $k,$SW,7,$W

# --- clock and argument handling --------------------------------------------------------------
k="time:{a}:sl"
before=$(date +%s%6N)
ev 0 1 $k,$SL,5,$W >/dev/null
after=$(date +%s%6N)
score=$(num "$(ring $k | cut -d' ' -f7)")
expect "now=0 uses Redis TIME" "1" "$(( score >= before - 1000000 && score <= after + 1000000 ))"
err=$(r EVALSHA "$sha" 1 k 1 0 1 1 1 5 2>&1 || true)
expect "wrong argument count is an error" "1" "$(case "$err" in *tollgate*) echo 1 ;; *) echo 0 ;; esac)"
expect "no limits: allowed" "1 0" "$(r EVALSHA "$sha" 0 1 $B 1 0 | tr '\n' ' ' | sed 's/ $//')"

# --- batches: several requests in one call, decided in order -------------------------------------
expect "a batch decides in order: the second request sees the first" \
  "1 1 1 0 0 60000 0 1 0 0 60000 60000" \
  "$(batch "$B 1 bt:{a}:sl,$SL,1,$W" "$B 1 bt:{a}:sl,$SL,1,$W")"
# The same random-ish sequence, once as single calls and once as one batch, on fresh keys of
# every algorithm, with several identities and costs: identical answers, identical state.
for code in $SL $SW $FW $TB; do
  single="" reqs=()
  for i in 1 2 3 4 5 6 7 8; do
    who=$(( i % 3 )); cost=$(( (i * 7) % 3 + 1 )); t=$((B + 40 * S + i * 1000))
    single+="$(ev $t $cost "one:{$who}:$code,$code,5,$W" "one:{$who}:x$code,$code,9,$W") "
    reqs+=("$t $cost two:{$who}:$code,$code,5,$W two:{$who}:x$code,$code,9,$W")
  done
  expect "batch of 8 = 8 single calls ($code)" "${single% }" "$(batch "${reqs[@]}")"
done
err=$(batch "$B 1 bad:{a}:sl,$SL,5,$W" "$B 1 bad:{a}:sl,9,5,$W" 2>&1 || true)
expect "a malformed request fails the batch" "1" "$(case "$err" in *tollgate*) echo 1 ;; *) echo 0 ;; esac)"
expect "... before anything of it is recorded" "0" "$(r EXISTS 'bad:{a}:sl')"

# --- peek (read-only usage) and reset -----------------------------------------------------------
# pk NOW KEY,CODE,LIMIT,WINDOW ...  -> "n (remaining reset)*n"
pk() {
  local now=$1; shift
  local keys=() args=() spec k c l w
  for spec in "$@"; do
    IFS=, read -r k c l w <<<"$spec"
    keys+=("$k"); args+=("$c" "$l" "$w")
  done
  r EVALSHA "$peek_sha" "${#keys[@]}" "${keys[@]}" "$now" "${args[@]}" | tr '\n' ' ' | sed 's/ $//'
}
for code in $SL $SW $FW $TB; do
  k="peek:{a}:$code"
  ev $((B + S)) 2 "$k,$code,10,$W" >/dev/null
  ev $((B + S)) 1 "$k,$code,10,$W" >/dev/null
  expect "peek $code: 3 used, 7 remaining" "7" "$(field "$(pk $((B + S)) "$k,$code,10,$W")" 2)"
  expect "peek $code: reading again charges nothing" "7" "$(field "$(pk $((B + S)) "$k,$code,10,$W")" 2)"
  expect "peek $code: the next request sees 3 used" "1 1 1 6" "$(ev $((B + S)) 1 "$k,$code,10,$W" | cut -d' ' -f1-4)"
done
expect "peek of an unknown key: everything remains" "1 10" "$(pk $B "never:{a}:sl,$SL,10,$W" | cut -d' ' -f1-2)"
expect "peek sl reset: until the oldest entry leaves" "60000" "$(field "$(pk $((B + S)) "peek:{a}:$SL,$SL,10,$W")" 3)"
expect "reset deletes every key it names" "2" "$(r EVALSHA "$reset_sha" 3 "peek:{a}:$SL" "peek:{a}:$FW" "absent:{a}")"
expect "after a reset the budget is whole" "1 1 1 9" "$(ev $((B + S)) 1 "peek:{a}:$SL,$SL,10,$W" | cut -d' ' -f1-4)"

# --- refund.lua: gives back exactly what one admitted call recorded (Redis Cluster, budgets over
# several hash slots). Two admissions at one time, one refund: one admission is left.
refund_sha=$(r SCRIPT LOAD "$(cat "$here/refund.lua")")
rf() { # AT COST KEY CODE LIMIT WINDOW
  r EVALSHA "$refund_sha" 1 "$3" "$1" "$2" "$4" "$5" "$6"
}
F=$(( $(date +%s) * S + 3600 * S ))   # an hour ahead: refund.lua compares with Redis TIME
for code in $SL $SW $FW $TB; do
  k="refund:{a}:$code"
  ev $F 1 "$k,$code,5,$W" >/dev/null
  ev $F 2 "$k,$code,5,$W" >/dev/null
  expect "refund $code: one limit refunded" "1" "$(rf $F 2 "$k" "$code" 5 $W)"
  expect "refund $code: the refunded cost is free again" "1 1 1 1" "$(ev $F 3 "$k,$code,5,$W" | cut -d' ' -f1-4)"
done
# sliding_log: an admission after the refunded one stays; the ring keeps its time order.
k="refund:{c}:sl"
ev $F 1 $k,$SL,5,$W >/dev/null
ev $((F + MS)) 2 $k,$SL,5,$W >/dev/null
ev $((F + 2 * MS)) 1 $k,$SL,5,$W >/dev/null
expect "refund sl under a newer admission" "1" "$(rf $((F + MS)) 2 $k $SL 5 $W)"
expect "refund sl: the ring is the older and the newer admission, oldest first" \
  "5 4 0 0 0 $F $((F + 2 * MS))" "$(ring $k)"
expect "refund sl: exactly the refunded cost fits again" "1 1 1 0" "$(ev $((F + 3 * MS)) 3 $k,$SL,5,$W | cut -d' ' -f1-4)"
expect "refund sl: then the oldest admission decides the retry" "0 1 0 0 $((W - 4))" \
  "$(ev $((F + 4 * MS)) 1 $k,$SL,5,$W | cut -d' ' -f1-5)"
expect "refund of a window that has turned gives nothing back" "0" "$(rf $((F - 120 * S)) 1 "refund:{a}:$FW" $FW 5 $W)"
expect "refund of a key that is gone gives nothing back" "0" "$(rf $F 1 "refund:{a}:absent" $SL 5 $W)"
expect "now -1 reports the Redis time it recorded at" "7" "$(r EVALSHA "$sha" 1 "refund:{b}" 1 -1 1 1 $FW 5 $W | wc -l | tr -d ' ')"
# In a batch, only the request that asked gets the time appended, after its own answer.
out=$(batch "-1 1 refund:{d}:fw,$FW,5,$W" "0 1 refund:{e}:fw,$FW,5,$W")
expect "a batch appends the time to the request that asked only" "1 1 1 4" "$(echo "$out" | cut -d' ' -f1-4)"
expect "... then the next request's answer follows" "1 1 1 4" "$(echo "$out" | cut -d' ' -f8-11)"

# --- concurrency.lua: leases on in-flight requests -----------------------------------------
cc_sha=$(r SCRIPT LOAD "$(cat "$here/concurrency.lua")")
cc() { # NOW OP TOKEN [MAX LEASE_MS] -> the answer on one line
  r EVALSHA "$cc_sha" 1 "cc:{a}" "$@" | tr '\n' ' ' | sed 's/ $//'
}
C=$((B + 7200 * S))
expect "concurrency: first slot" "1 1" "$(cc $C 1 101 2 60000)"
expect "concurrency: second slot" "1 2" "$(cc $((C + MS)) 1 102 2 60000)"
expect "concurrency: full, retry when the earliest lease runs out" "0 2 59997" "$(cc $((C + 3 * MS)) 1 103 2 60000)"
expect "concurrency: a release gives the slot back" "1" "$(cc $((C + 4 * MS)) 2 101)"
expect "concurrency: released twice gives nothing more" "0" "$(cc $((C + 4 * MS)) 2 101)"
expect "concurrency: the freed slot is taken" "1 2" "$(cc $((C + 5 * MS)) 1 104 2 60000)"
expect "concurrency: leases of a dead holder run out" "1 1" "$(cc $((C + 61 * S)) 1 105 2 60000)"
expect "concurrency: the key expires with its newest lease" "1" "$(r PTTL "cc:{a}" | awk '{ print ($1 > 0 && $1 <= 60000) }')"
expect "concurrency: bad arguments are an error" "1" "$(cc $C 1 106 0 60000 2>&1 | grep -c 'at least 1')"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
