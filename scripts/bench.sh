#!/usr/bin/env bash
# Side-by-side benchmark: tollgate against nginx and a bare Pingora proxy, every contender in the
# same run, behind the same upstream (tollgate-echo /bench, a 2-byte answer), driven by wrk.
#
#   scripts/bench.sh
#
# The proxy under test is pinned to CPU $BENCH_PROXY_CPU (0) with taskset; wrk, the upstream and
# Redis share CPU $BENCH_LOAD_CPU (1). The headline metric is requests served per CPU-second of
# the proxy process (utime+stime from /proc/<pid>/stat around the measured run, summed over the
# proxy's processes), which stays meaningful when the load generator, not the proxy, is the
# bottleneck. Also recorded: req/s, p50/p99/p99.9 (wrk), proxy RSS, Redis CPU per 1,000 requests,
# and how busy the proxy's CPU was with other work (noise from the rest of the machine).
# Results: $BENCH_OUT/latest.{md,json,png} (bench/NOTES.md says how to read them).
#
# Scenarios (BENCH_SCENARIOS, default "s1 s2 s3 s4 s5 tls rss locust"); each is a function
# scenario_<id> below, so a new one is a function plus its id in the list:
#   s1   plain proxying, no limit: tollgate (key of an unlimited tier) / nginx proxy_pass with
#        upstream keepalive / bare Pingora
#   s2   every request limited through Redis, sliding_log, 1,000 keys round-robin, all allowed:
#        tollgate / nginx proxy_pass + limit_req on $http_x_api_key / bare Pingora (no limit)
#   s3   every request rejected (one key far over its limit): tollgate (over-limit cache on, the
#        default) / nginx limit_req 429; plus s3r: tollgate with over_limit_cache: false, so that
#        every rejection asks Redis
#   s4   as s2 with sliding_window (s4sw) and token_bucket (s4tb), compared with s2's nginx and
#        bare Pingora
#   s5   as s2 against a Redis Cluster (scenario_s5 runs scenario_cluster from
#        bench/cluster_scenario.sh when that file is there)
#   tls  TLS termination with the same certificate, tollgate / nginx ssl (bench/tls_scenario.sh):
#        tls1 keep-alive HTTPS HTTP/1.1 (wrk), tls2 HTTP/2 (h2load), tlsh new handshakes
#   s6   a request that matches its tier plus two policies (one by identity, one global) against
#        the same tier alone: tollgate:policies / tollgate, sliding_log keys as in s2 (target:
#        at most 1.3x the proxy CPU per request)
#   rss  tollgate RSS idle, and after 100,000 distinct identities (anonymous callers with distinct
#        X-Forwarded-For addresses from a trusted proxy), with the Redis and the in-process store
#   locust  scripts/locust-smoke.sh (not pinned): throughput, p95 and the over-admission verdict
#   keyscale (not in the default list: BENCH_SCENARIOS=keyscale) bench/keyscale.sh: a keys_file
#        of 10k, 100k and 1M keys: -t time and peak RSS, start, steady RSS, keys-file reload time
#        and peak RSS, requests per proxy CPU-second; its own table in $BENCH_OUT/keyscale.md
#
# Environment (defaults in brackets):
#   BENCH_DURATION [10] seconds measured per run     BENCH_WARMUP [2] seconds of warm-up before
#   BENCH_CONNS [32] wrk connections                 BENCH_WRK_THREADS [1]
#   BENCH_REPEAT [3] runs per contender (the report takes the median; contenders alternate)
#   BENCH_KEYS [1000]  BENCH_RSS_IDENTITIES [100000]  BENCH_PROXY_CPU [0]  BENCH_LOAD_CPU [1]
#   BENCH_OUT [bench/results]  BENCH_SKIP_BUILD=1 (use target/release as it is)
#   BENCH_PERF=1  also profile tollgate with perf in an extra, unmeasured run of each scenario in
#                 BENCH_PERF_SCENARIOS [s1 s2 s3r] ($BENCH_OUT/perf-<scenario>-tollgate*.txt)
#   BENCH_KEEP=1  keep the temp dir (configs, logs, raw results)
# Installs what is missing: nginx, wrk, redis-server, curl (Debian; apt-get update runs once, only
# when something is missing), linux-perf when BENCH_PERF=1, matplotlib into .venv.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=$ROOT/.venv
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNS:-32}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
REPEAT=${BENCH_REPEAT:-3}
NKEYS=${BENCH_KEYS:-1000}
RSS_IDENTITIES=${BENCH_RSS_IDENTITIES:-100000}
PROXY_CPU=${BENCH_PROXY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
OUT=${BENCH_OUT:-bench/results}
SCENARIOS=${BENCH_SCENARIOS:-s1 s2 s3 s4 s5 tls rss locust}
PERF=${BENCH_PERF:-0}
PERF_SCENARIOS=${BENCH_PERF_SCENARIOS:-s1 s2 s3r}
MATPLOTLIB=matplotlib==3.11.2
TICKS=$(getconf CLK_TCK)

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------------- what it needs
install_deps() {
    local need=() sudo=()
    command -v nginx >/dev/null 2>&1 || need+=(nginx)
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
    command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v taskset >/dev/null 2>&1 || need+=(util-linux)
    if [ "$PERF" = 1 ] && ! command -v perf >/dev/null 2>&1; then need+=(linux-perf); fi
    if [ ${#need[@]} -gt 0 ]; then
        say "installing ${need[*]} (Debian packages)"
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        python3 -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
        say "installing $MATPLOTLIB into .venv"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MATPLOTLIB" ||
            echo "bench: matplotlib did not install; the report will have no chart" >&2
    fi
}

build() {
    if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
        return
    fi
    say "cargo build --release --bins --example bare-pingora"
    cargo build --release --bins --example bare-pingora --quiet
}

# ------------------------------------------------------------------------- processes
TMP=''
declare -A SIG_OF=() LOG_OF=()

# bg NAME CPU SIGNAL CMD...: starts CMD pinned to CPU, output to $TMP/NAME.log; BG_PID is its PID.
# SIGNAL is how stop_pid asks it to stop.
bg() {
    local name=$1 cpu=$2 sig=$3
    shift 3
    taskset -c "$cpu" "$@" >"$TMP/$name.log" 2>&1 &
    BG_PID=$!
    SIG_OF[$BG_PID]=$sig
    LOG_OF[$BG_PID]=$TMP/$name.log
}

stop_pid() {
    local pid=$1 i
    [ -n "${SIG_OF[$pid]:-}" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "-${SIG_OF[$pid]}" "$pid" 2>/dev/null || true
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
    unset "SIG_OF[$pid]"
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${!SIG_OF[@]}"; do
        stop_pid "$pid"
    done
    if [ -n "$TMP" ]; then
        if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
            echo "bench: files kept in $TMP" >&2
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready PORT|URL PID: a TCP connect (or a 2xx from URL) within 10 s, while PID lives.
wait_ready() {
    local what=$1 pid=$2 i
    for i in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 5 "${LOG_OF[$pid]:-/dev/null}" >&2
            die "process $pid died before $what was ready (logs in $TMP)"
        fi
        if [[ $what =~ ^[0-9]+$ ]]; then
            (exec 3<>"/dev/tcp/127.0.0.1/$what") 2>/dev/null && return 0
        elif curl -fsS -o /dev/null --max-time 1 "$what" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "$what not ready after 10 s (logs in $TMP)"
}

# CPU ticks (utime+stime) summed over the PIDs; a PID that is gone counts 0.
cpu_ticks() {
    local pid line rest total=0
    local -a f
    for pid in "$@"; do
        line=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        rest=${line##*) }
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# Resident set size in kB summed over the PIDs (VmRSS), or VmHWM with `hwm` first.
rss_kb() {
    local field=VmRSS pid total=0 v
    if [ "$1" = hwm ]; then
        field=VmHWM
        shift
    fi
    for pid in "$@"; do
        v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# Busy ticks of one CPU (everything but idle and iowait), from /proc/stat.
cpu_busy_ticks() {
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# ------------------------------------------------------------------------- shared upstream and store
REDIS_PORT='' ECHO_PORT='' REDIS_PID='' ECHO_PID=''
# The Redis processes whose CPU a run is charged with (a cluster scenario points it at its nodes).
REDIS_PIDS=()

start_infra() {
    REDIS_PORT=$(free_port)
    ECHO_PORT=$(free_port)
    bg redis "$LOAD_CPU" TERM redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$TMP" --logfile "$TMP/redis-server.log"
    REDIS_PID=$BG_PID
    REDIS_PIDS=("$REDIS_PID")
    wait_ready "$REDIS_PORT" "$REDIS_PID"
    bg echo "$LOAD_CPU" TERM "$ROOT/target/release/tollgate-echo" --listen "127.0.0.1:$ECHO_PORT" --threads 1
    ECHO_PID=$BG_PID
    wait_ready "$ECHO_PORT" "$ECHO_PID"
    say "redis-server :$REDIS_PORT and tollgate-echo :$ECHO_PORT on CPU $LOAD_CPU"
}

flush_redis() {
    redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
}

# ------------------------------------------------------------------------- contenders
# Each start_* sets PROXY_PID, PROXY_PIDS (all its processes, for CPU and RSS), PROXY_PORT.
PROXY_PID='' PROXY_PORT='' ADMIN_PORT=''
PROXY_PIDS=()

# tollgate_conf VARIANT: std | nocache | policies | anon-redis | anon-mem
tollgate_conf() {
    local variant=$1 i
    echo "listen: [\"127.0.0.1:$PROXY_PORT\"]"
    echo "admin_listen: \"127.0.0.1:$ADMIN_PORT\""
    if [ "$variant" != anon-mem ]; then
        echo "redis:"
        echo "  url: \"redis://127.0.0.1:$REDIS_PORT/0\""
        echo "  timeout_ms: 200"
        echo "  on_error: fail_open"
        echo "  key_prefix: \"tgbench\""
        [ "$variant" = nocache ] && echo "  over_limit_cache: false"
    fi
    echo "upstreams:"
    echo "  echo: { peers: [\"127.0.0.1:$ECHO_PORT\"] }"
    echo "routes:"
    echo "  - { prefix: \"/\", upstream: echo }"
    echo "access_log: { enabled: false }"
    case $variant in
    anon-*)
        echo "identity: { header: x-api-key, anonymous: { tier: anonymous }, trusted_proxies: [\"127.0.0.1/32\"] }"
        echo "tiers:"
        echo "  anonymous: { limits: [{ requests: 1000, window: 60s }] }"
        ;;
    *)
        echo "identity: { header: x-api-key, unknown_key: reject, anonymous: reject }"
        echo "tiers:"
        echo "  internal: { limits: [] }"
        echo "  sl_high: { limits: [{ requests: 100000, window: 60s, algorithm: sliding_log }] }"
        echo "  sw_high: { limits: [{ requests: 100000, window: 60s, algorithm: sliding_window }] }"
        echo "  tb_high: { limits: [{ requests: 100000, window: 60s, algorithm: token_bucket }] }"
        echo "  tiny: { limits: [{ requests: 1, window: 1h }] }"
        if [ "$variant" = policies ]; then
            # Two more budgets per request, decided in the same store call as the tier's.
            echo "policies:"
            echo "  - { name: per-key-burst, limits: [{ requests: 1000000000, window: 60s, algorithm: token_bucket }] }"
            echo "  - { name: backend, by: global, limits: [{ requests: 1000000000, window: 60s, algorithm: fixed_window }] }"
        fi
        echo "keys:"
        echo "  - { id: bench-internal, key: \"bench-internal\", tier: internal }"
        echo "  - { id: bench-reject, key: \"bench-reject\", tier: tiny }"
        for ((i = 0; i < NKEYS; i++)); do
            printf '  - { id: sl-%04d, key: "bench-sl-%04d", tier: sl_high }\n' "$i" "$i"
            printf '  - { id: sw-%04d, key: "bench-sw-%04d", tier: sw_high }\n' "$i" "$i"
            printf '  - { id: tb-%04d, key: "bench-tb-%04d", tier: tb_high }\n' "$i" "$i"
        done
        ;;
    esac
}

start_tollgate() {
    local variant=$1
    PROXY_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    tollgate_conf "$variant" >"$TMP/tollgate-$variant.yaml"
    cat >"$TMP/pingora.yaml" <<EOF
---
version: 1
threads: 1
pid_file: $TMP/tollgate.pid
upgrade_sock: $TMP/tollgate_upgrade.sock
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 0
EOF
    bg "tollgate-$variant" "$PROXY_CPU" INT "$ROOT/target/release/tollgate" \
        --config "$TMP/tollgate-$variant.yaml" -c "$TMP/pingora.yaml"
    PROXY_PID=$BG_PID
    PROXY_PIDS=("$PROXY_PID")
    wait_ready "http://127.0.0.1:$ADMIN_PORT/readyz" "$PROXY_PID"
}

# The start of every nginx config: one worker, files under $TMP/nginx, the upstream with
# keepalive; the caller closes the http block.
nginx_conf_head() {
    local d=$TMP/nginx
    cat <<EOF
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    upstream echo {
        server 127.0.0.1:$ECHO_PORT;
        keepalive 64;
    }
EOF
}

# nginx_conf MODE: plain | allow (limit_req that lets everything through) | reject
nginx_conf() {
    local mode=$1
    nginx_conf_head
    cat <<EOF
    # A rate far above what one key gets (~10 req/s each over 1,000 keys): everything passes.
    limit_req_zone \$http_x_api_key zone=allow:16m rate=100000r/s;
    # One request per minute per key: a key that is hammered is rejected.
    limit_req_zone \$http_x_api_key zone=reject:1m rate=1r/m;
    limit_req_status 429;
    # Rejections at info level, below error_log's level: no log write per rejection.
    limit_req_log_level info;
    server {
        listen 127.0.0.1:$PROXY_PORT;
        location / {
EOF
    case $mode in
    allow) echo "            limit_req zone=allow burst=1000 nodelay;" ;;
    reject) echo "            limit_req zone=reject;" ;;
    esac
    cat <<'EOF'
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

start_nginx() {
    local mode=$1
    PROXY_PORT=$(free_port)
    mkdir -p "$TMP/nginx"
    nginx_conf "$mode" >"$TMP/nginx/nginx-$mode.conf"
    bg "nginx-$mode" "$PROXY_CPU" TERM nginx -p "$TMP/nginx/" -e "$TMP/nginx/error.log" \
        -c "$TMP/nginx/nginx-$mode.conf" -g 'daemon off;'
    PROXY_PID=$BG_PID
    nginx_pids
}

# After an nginx master started (PROXY_PID): waits for its port and sets PROXY_PIDS to the
# master and its workers.
nginx_pids() {
    local i
    wait_ready "$PROXY_PORT" "$PROXY_PID"
    PROXY_PIDS=("$PROXY_PID")
    for i in $(seq 50); do
        mapfile -t -O 1 PROXY_PIDS < <(pgrep -P "$PROXY_PID")
        [ ${#PROXY_PIDS[@]} -gt 1 ] && break
        sleep 0.1
    done
    [ ${#PROXY_PIDS[@]} -gt 1 ] || die "nginx started no worker"
}

start_bare() {
    PROXY_PORT=$(free_port)
    bg bare-pingora "$PROXY_CPU" INT "$ROOT/target/release/examples/bare-pingora" \
        "127.0.0.1:$PROXY_PORT" "127.0.0.1:$ECHO_PORT"
    PROXY_PID=$BG_PID
    PROXY_PIDS=("$PROXY_PID")
    wait_ready "$PROXY_PORT" "$PROXY_PID"
}

stop_proxy() {
    stop_pid "$PROXY_PID"
    PROXY_PID=
    PROXY_PIDS=()
}

# start_contender NAME: tollgate[:variant] | nginx:MODE | bare-pingora
start_contender() {
    case $1 in
    tollgate) start_tollgate std ;;
    tollgate:*) start_tollgate "${1#*:}" ;;
    nginx:*) start_nginx "${1#*:}" ;;
    bare-pingora) start_bare ;;
    *) die "unknown contender $1" ;;
    esac
}

# ------------------------------------------------------------------------- measuring
RESULTS='' SCEN_META=''

wrk_run() {
    taskset -c "$LOAD_CPU" wrk -t "$WRK_THREADS" -c "$CONNS" "$@" -s "$ROOT/bench/wrk.lua" \
        "${WRK_SCHEME:-http}://127.0.0.1:$PROXY_PORT/bench"
}

# The status one request gets, with the header the scenario's wrk script would send.
probe() {
    local args=(-s -k -o /dev/null -w '%{http_code}' --max-time 2)
    if [ -n "${WRK_KEY:-}" ]; then
        args+=(-H "x-api-key: $WRK_KEY")
    elif [ -n "${WRK_KEY_PREFIX:-}" ]; then
        args+=(-H "x-api-key: ${WRK_KEY_PREFIX}0000")
    fi
    curl "${args[@]}" "${WRK_SCHEME:-http}://127.0.0.1:$PROXY_PORT/bench" || echo 0
}

# measure SCENARIO CONTENDER LABEL EXPECT(2xx|429) BASELINE REP: warm up, then one measured wrk
# run against the running proxy; appends one JSON line to $RESULTS. WRK_* select the requests.
measure() {
    local scenario=$1 contender=$2 label=$3 expect=$4 baseline=$5 rep=$6
    local status c0 r0 b0 t0 c1 r1 b1 t1 out json
    wrk_run -d "${WARMUP}s" >/dev/null
    status=$(probe)
    c0=$(cpu_ticks "${PROXY_PIDS[@]}")
    r0=$(cpu_ticks "${REDIS_PIDS[@]}")
    b0=$(cpu_busy_ticks "$PROXY_CPU")
    t0=$(date +%s.%N)
    out=$(wrk_run -d "${DURATION}s" --latency)
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "${PROXY_PIDS[@]}")
    r1=$(cpu_ticks "${REDIS_PIDS[@]}")
    b1=$(cpu_busy_ticks "$PROXY_CPU")
    json=$(sed -n 's/^WRKJSON //p' <<<"$out")
    [ -n "$json" ] || die "wrk printed no result for $scenario/$label: $out"
    printf '{"scenario":"%s","contender":"%s","label":"%s","expect":"%s","baseline":"%s","rep":%s,"probe":%s,"proxy_cpu_s":%s,"redis_cpu_s":%s,"cpu_busy_s":%s,"wall_s":%s,"rss_kb":%s,"wrk":%s}\n' \
        "$scenario" "$contender" "$label" "$expect" "$baseline" "$rep" "${status:-0}" \
        "$(awk -v a="$c0" -v b="$c1" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }')" \
        "$(awk -v a="$r0" -v b="$r1" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }')" \
        "$(awk -v a="$b0" -v b="$b1" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }')" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
        "$(rss_kb "${PROXY_PIDS[@]}")" "$json" >>"$RESULTS"
    say "$scenario $label: $(sed -n 's/^Requests\/sec: *//p' <<<"$out") req/s, probe $status"
}

# With BENCH_PERF=1: one more run of the same load, not measured, with perf sampling the proxy's
# CPU, so the profiler's own cost never reaches the figures. CPU-wide with the software clock
# (attaching to a PID and hardware events do not work in every VM); the reports keep the proxy's
# samples only (--pid), as percentages of them.
profile() {
    local scenario=$1 perf_pid
    say "$scenario: perf profile of the proxy (an extra, unmeasured run)"
    perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -C "$PROXY_CPU" \
        -o "$TMP/perf-$scenario.data" -- sleep "$DURATION" >"$TMP/perf-$scenario.log" 2>&1 &
    perf_pid=$!
    wrk_run -d "${DURATION}s" >/dev/null
    wait "$perf_pid" || true
    perf report -i "$TMP/perf-$scenario.data" --pid "$PROXY_PID" --no-children --stdio \
        --sort dso,symbol -g none --percentage relative --no-inline --percent-limit 0.5 2>/dev/null |
        grep -v '^$' | head -n 150 >"$OUT/perf-$scenario-tollgate.txt" || true
    perf report -i "$TMP/perf-$scenario.data" --pid "$PROXY_PID" --children --stdio \
        --sort symbol -g none --percentage relative --no-inline --percent-limit 3 2>/dev/null |
        grep -v '^$' | head -n 150 >"$OUT/perf-$scenario-tollgate-inclusive.txt" || true
    rm -f "$TMP/perf-$scenario.data"
}

# scenario_meta ID TITLE
scenario_meta() {
    printf '{"id":"%s","title":"%s"}\n' "$1" "$2" >>"$SCEN_META"
}

# run_case SCENARIO EXPECT BASELINE CONTENDER=LABEL...: for each repetition, each contender in turn
# is started fresh, measured, and stopped (alternating contenders spreads machine noise evenly).
run_case() {
    local scenario=$1 expect=$2 baseline=$3 rep spec
    shift 3
    for ((rep = 1; rep <= REPEAT; rep++)); do
        for spec in "$@"; do
            flush_redis
            start_contender "${spec%%=*}"
            measure "$scenario" "${spec%%=*}" "${spec#*=}" "$expect" "$baseline" "$rep"
            if [ "$PERF" = 1 ] && [ "$rep" = 1 ] && [[ $spec == tollgate* ]] &&
                [[ " $PERF_SCENARIOS " == *" $scenario "* ]]; then
                profile "$scenario"
            fi
            stop_proxy
        done
    done
}

# ------------------------------------------------------------------------- scenarios
scenario_s1() {
    scenario_meta s1 "plain proxying, no limit"
    WRK_KEY=bench-internal run_case s1 2xx s1 \
        "tollgate=tollgate (unlimited tier)" "nginx:plain=nginx proxy_pass" "bare-pingora=bare Pingora"
}

scenario_s2() {
    scenario_meta s2 "sliding_log through Redis, $NKEYS keys, all allowed"
    WRK_KEY_PREFIX=bench-sl- WRK_KEYS=$NKEYS run_case s2 2xx s2 \
        "tollgate=tollgate sliding_log" "nginx:allow=nginx limit_req" "bare-pingora=bare Pingora"
}

scenario_s3() {
    scenario_meta s3 "one key far over its limit, all rejected"
    WRK_KEY=bench-reject run_case s3 429 s3 \
        "tollgate=tollgate (over-limit cache)" "nginx:reject=nginx limit_req 429"
    scenario_meta s3r "all rejected, every rejection asks Redis (over_limit_cache: false)"
    WRK_KEY=bench-reject run_case s3r 429 s3 "tollgate:nocache=tollgate (Redis decides)"
}

scenario_s4() {
    scenario_meta s4sw "sliding_window through Redis, $NKEYS keys, all allowed"
    WRK_KEY_PREFIX=bench-sw- WRK_KEYS=$NKEYS run_case s4sw 2xx s2 "tollgate=tollgate sliding_window"
    scenario_meta s4tb "token_bucket through Redis, $NKEYS keys, all allowed"
    WRK_KEY_PREFIX=bench-tb- WRK_KEYS=$NKEYS run_case s4tb 2xx s2 "tollgate=tollgate token_bucket"
}

scenario_s6() {
    scenario_meta s6 "tier plus two policies vs the tier alone, sliding_log through Redis, $NKEYS keys"
    WRK_KEY_PREFIX=bench-sl- WRK_KEYS=$NKEYS run_case s6 2xx s6 \
        "tollgate=tollgate, tier alone" "tollgate:policies=tollgate, tier + 2 policies"
}

# Scenario 5, Redis Cluster: bench/cluster_scenario.sh (sourced below when present) defines
# scenario_cluster: a Redis Cluster pinned to $LOAD_CPU, a tollgate_conf variant "cluster", and
#   WRK_KEY_PREFIX=bench-sl- WRK_KEYS=$NKEYS run_case s5 2xx s2 "tollgate:cluster=..."
# (baseline s2: compared with the same nginx and bare Pingora runs as scenario 2), with
# REDIS_PIDS pointed at the cluster's nodes for the Redis CPU column.
scenario_s5() {
    if declare -F scenario_cluster >/dev/null; then
        scenario_cluster
    else
        say "s5 (Redis Cluster): bench/cluster_scenario.sh is missing, skipped"
    fi
}

# RSS: idle, then after RSS_IDENTITIES distinct anonymous identities (one X-Forwarded-For address
# each, from 127.0.0.1, a trusted proxy), with the Redis store and with the in-process store.
scenario_rss() {
    local variant idle after hwm wrk_pid i sent
    for variant in anon-redis anon-mem; do
        flush_redis
        start_tollgate "$variant"
        sleep 1
        idle=$(rss_kb "$PROXY_PID")
        rm -f "$TMP/xff.done"
        WRK_XFF=$RSS_IDENTITIES WRK_XFF_DONE=$TMP/xff.done \
            taskset -c "$LOAD_CPU" wrk -t 1 -c "$CONNS" -d 300s -s "$ROOT/bench/wrk.lua" \
            "http://127.0.0.1:$PROXY_PORT/bench" >"$TMP/wrk-rss-$variant.log" 2>&1 &
        wrk_pid=$!
        for i in $(seq 3000); do
            [ -f "$TMP/xff.done" ] && break
            kill -0 "$wrk_pid" 2>/dev/null || break
            sleep 0.1
        done
        sleep 0.5
        kill -INT "$wrk_pid" 2>/dev/null || true
        wait "$wrk_pid" || true
        sent=$(sed -n 's/^WRKJSON .*"requests":\([0-9]*\).*/\1/p' "$TMP/wrk-rss-$variant.log")
        [ -f "$TMP/xff.done" ] || say "rss: only ${sent:-?} requests were sent"
        sleep 1
        after=$(rss_kb "$PROXY_PID")
        hwm=$(rss_kb hwm "$PROXY_PID")
        printf '{"scenario":"rss","contender":"tollgate:%s","label":"tollgate, %s store","identities":%s,"requests":%s,"idle_rss_kb":%s,"rss_kb":%s,"hwm_kb":%s}\n' \
            "$variant" "${variant#anon-}" "$([ -f "$TMP/xff.done" ] && echo "$RSS_IDENTITIES" || echo "${sent:-0}")" \
            "${sent:-0}" "$idle" "$after" "$hwm" >>"$RESULTS"
        say "rss ${variant#anon-} store: idle $((idle / 1024)) MB, after $RSS_IDENTITIES identities $((after / 1024)) MB (peak $((hwm / 1024)) MB)"
        stop_proxy
    done
}

# The locust smoke (own processes, not pinned): its throughput, p95 and verdict.
scenario_locust() {
    local rc=0
    say "locust smoke (scripts/locust-smoke.sh)"
    SMOKE_SKIP_BUILD=1 SMOKE_REPORT="$TMP/locust.json" scripts/locust-smoke.sh >"$TMP/locust.log" 2>&1 || rc=$?
    if [ -f "$TMP/locust.json" ]; then
        printf '{"scenario":"locust","contender":"tollgate","label":"locust smoke","exit":%s,"verdict":%s}\n' \
            "$rc" "$(tr -d '\n' <"$TMP/locust.json")" >>"$RESULTS"
    else
        printf '{"scenario":"locust","contender":"tollgate","label":"locust smoke","exit":%s}\n' "$rc" >>"$RESULTS"
    fi
    [ "$rc" -eq 0 ] || { echo "bench: the locust smoke failed (log: $TMP/locust.log)" >&2; tail -n 30 "$TMP/locust.log" >&2; }
}

# Keys at scale: bench/keyscale.sh, on the same CPUs, writing $OUT/keyscale.md.
scenario_keyscale() {
    say "keyscale (bench/keyscale.sh)"
    TOLLGATE_BIN="$ROOT/target/release/tollgate" KEYSCALE_OUT="$OUT" BENCH_PROXY_CPU="$PROXY_CPU" \
        BENCH_LOAD_CPU="$LOAD_CPU" bench/keyscale.sh
}

# Scenarios kept in their own files; they may use every function and global above.
if [ -f "$ROOT/bench/cluster_scenario.sh" ]; then
    # shellcheck source=bench/cluster_scenario.sh
    . "$ROOT/bench/cluster_scenario.sh"
fi
if [ -f "$ROOT/bench/tls_scenario.sh" ]; then
    # shellcheck source=bench/tls_scenario.sh
    . "$ROOT/bench/tls_scenario.sh"
fi

# ------------------------------------------------------------------------- main
install_deps
build
for bin in target/release/tollgate target/release/tollgate-echo target/release/examples/bare-pingora; do
    [ -x "$bin" ] || die "missing $bin (cargo build --release --bins --example bare-pingora)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$OUT"
RESULTS=$TMP/results.jsonl
SCEN_META=$TMP/scenarios.jsonl
: >"$RESULTS"
: >"$SCEN_META"

"$VENV/bin/python" - "$TMP/meta.json" <<PY
import json, os, platform, subprocess, sys, time
def sh(*cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip()
    except Exception as e:
        return f"? ({e})"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
dirty = sh("git", "status", "--porcelain", "--untracked-files=no")
json.dump({
    "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    "git": sh("git", "rev-parse", "--short", "HEAD") + (" (with local changes)" if dirty else ""),
    "cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
    "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    "nginx": sh("nginx", "-v").replace("nginx version: ", ""),
    "redis": sh("redis-server", "--version").split(" sha=")[0],
    "wrk": (sh("wrk", "-v").splitlines() or ["?"])[0].split(" Copyright")[0],
    "duration_s": $DURATION, "warmup_s": $WARMUP, "connections": $CONNS, "wrk_threads": $WRK_THREADS,
    "repeat": $REPEAT, "keys": $NKEYS, "proxy_cpu": $PROXY_CPU, "load_cpu": $LOAD_CPU,
    "scenarios": "$SCENARIOS",
}, open(sys.argv[1], "w"), indent=1)
PY

start_infra
for s in $SCENARIOS; do
    declare -F "scenario_$s" >/dev/null || die "no scenario '$s' (a function scenario_$s)"
    "scenario_$s"
done

"$VENV/bin/python" bench/report.py --results "$RESULTS" --scenarios "$SCEN_META" --meta "$TMP/meta.json" --out "$OUT"
say "results: $OUT/latest.md, $OUT/latest.json, $OUT/latest.png"
