# shellcheck shell=bash
# The TLS scenario of scripts/bench.sh (sourced by it; uses its functions and globals):
# tollgate and nginx terminating TLS with the same certificate (a self-signed ECDSA P-256 pair
# from scripts/gen-demo-cert.sh), in front of the same upstream, unlimited key (no store call),
# so that the difference is the TLS and HTTP/2 path.
#
#   tls1  keep-alive HTTPS, HTTP/1.1, wrk
#   tls2  HTTP/2 over TLS, h2load (nghttp2-client; skipped when it cannot be installed),
#         BENCH_H2_STREAMS [10] concurrent streams per connection. h2load reports no latency
#         percentiles: those columns read 0 for tls2.
#   tlsh  new TLS handshakes: wrk with `Connection: close`, so every request is a new connection
#         and a full handshake (wrk resumes no session); requests per CPU-second = handshakes per
#         CPU-second.

H2_STREAMS=${BENCH_H2_STREAMS:-10}
TLS_DIR=''

# tollgate_conf variant "tls": one TLS listener (ALPN h2 and http/1.1) and the unlimited key.
tollgate_tls_conf() {
    cat <<EOF
listen:
  - addr: "127.0.0.1:$PROXY_PORT"
    tls: { certs: [{ cert: "$TLS_DIR/tls.crt", key: "$TLS_DIR/tls.key" }] }
admin_listen: "127.0.0.1:$ADMIN_PORT"
upstreams:
  echo: { peers: ["127.0.0.1:$ECHO_PORT"] }
routes:
  - { prefix: "/", upstream: echo }
access_log: { enabled: false }
identity: { header: x-api-key, unknown_key: reject, anonymous: reject }
tiers:
  internal: { limits: [] }
keys:
  - { id: bench-internal, key: "bench-internal", tier: internal }
EOF
}

start_tollgate_tls() {
    PROXY_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    tollgate_tls_conf >"$TMP/tollgate-tls.yaml"
    cat >"$TMP/pingora-tls.yaml" <<EOF
---
version: 1
threads: 1
pid_file: $TMP/tollgate-tls.pid
upgrade_sock: $TMP/tollgate-tls_upgrade.sock
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 0
EOF
    bg tollgate-tls "$PROXY_CPU" INT "$ROOT/target/release/tollgate" \
        --config "$TMP/tollgate-tls.yaml" -c "$TMP/pingora-tls.yaml"
    PROXY_PID=$BG_PID
    PROXY_PIDS=("$PROXY_PID")
    wait_ready "http://127.0.0.1:$ADMIN_PORT/readyz" "$PROXY_PID"
}

# nginx 1.22 syntax (`listen ... ssl http2`); no session tickets or cache, as tollgate.
start_nginx_tls() {
    local d=$TMP/nginx
    PROXY_PORT=$(free_port)
    mkdir -p "$d"
    {
        nginx_conf_head
        cat <<EOF
    server {
        listen 127.0.0.1:$PROXY_PORT ssl http2;
        ssl_certificate $TLS_DIR/tls.crt;
        ssl_certificate_key $TLS_DIR/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets off;
        location / {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    } >"$d/nginx-tls.conf"
    bg nginx-tls "$PROXY_CPU" TERM nginx -p "$d/" -e "$d/error.log" -c "$d/nginx-tls.conf" \
        -g 'daemon off;'
    PROXY_PID=$BG_PID
    nginx_pids
}

# measure_h2load SCENARIO CONTENDER LABEL REP: as `measure`, with h2load; its totals go into the
# same row shape (no percentiles).
measure_h2load() {
    local scenario=$1 contender=$2 label=$3 rep=$4 url out c0 c1 b0 b1 t0 t1 req ok2 secs
    url="https://127.0.0.1:$PROXY_PORT/bench"
    local args=(-c "$CONNS" -m "$H2_STREAMS" -H "x-api-key: bench-internal")
    taskset -c "$LOAD_CPU" h2load "${args[@]}" -D "$WARMUP" "$url" >/dev/null 2>&1 || true
    c0=$(cpu_ticks "${PROXY_PIDS[@]}")
    b0=$(cpu_busy_ticks "$PROXY_CPU")
    t0=$(date +%s.%N)
    out=$(taskset -c "$LOAD_CPU" h2load "${args[@]}" -D "$DURATION" "$url" 2>&1) || true
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "${PROXY_PIDS[@]}")
    b1=$(cpu_busy_ticks "$PROXY_CPU")
    req=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
    ok2=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
    secs=$(sed -n 's/^finished in \([0-9.]*\)s.*/\1/p' <<<"$out")
    [ -n "$req" ] && [ -n "$secs" ] || die "h2load printed no result for $scenario/$label: $out"
    printf '{"scenario":"%s","contender":"%s","label":"%s","expect":"2xx","baseline":"%s","rep":%s,"probe":200,"proxy_cpu_s":%s,"redis_cpu_s":0,"cpu_busy_s":%s,"wall_s":%s,"rss_kb":%s,"wrk":{"requests":%s,"duration_us":%s,"bytes":0,"connect_errors":0,"read_errors":0,"write_errors":0,"status_errors":%s,"timeouts":0,"p50_us":0,"p90_us":0,"p99_us":0,"p999_us":0,"mean_us":0,"max_us":0}}\n' \
        "$scenario" "$contender" "$label" "$scenario" "$rep" \
        "$(awk -v a="$c0" -v b="$c1" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }')" \
        "$(awk -v a="$b0" -v b="$b1" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }')" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
        "$(rss_kb "${PROXY_PIDS[@]}")" "$req" \
        "$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1e6 }')" "$((req - ${ok2:-0}))" >>"$RESULTS"
    say "$scenario $label: $(sed -n 's/^finished in [0-9.]*s, \([0-9.]*\) req\/s.*/\1/p' <<<"$out") req/s (h2load, $H2_STREAMS streams per connection)"
}

ensure_h2load() {
    command -v h2load >/dev/null 2>&1 && return 0
    say "installing nghttp2-client (h2load)"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        nghttp2-client >/dev/null 2>&1 || true
    command -v h2load >/dev/null 2>&1
}

# The HTTP/1.1 measurements (tls1, tlsh) of one started contender.
tls_h1_runs() {
    local contender=$1 label=$2 rep=$3
    WRK_KEY=bench-internal WRK_SCHEME=https measure tls1 "$contender" "$label HTTP/1.1" 2xx tls1 "$rep"
    WRK_KEY=bench-internal WRK_SCHEME=https WRK_CLOSE=1 \
        measure tlsh "$contender" "$label handshakes" 2xx tlsh "$rep"
}

tls_h2_runs() {
    measure_h2load tls2 "$1" "$2 HTTP/2" "$3"
}

# tls_case RUNS: each repetition starts each contender fresh, runs RUNS, stops it.
tls_case() {
    local runs=$1 rep spec start
    for ((rep = 1; rep <= REPEAT; rep++)); do
        for spec in "tollgate=tollgate TLS" "nginx=nginx ssl"; do
            start=start_nginx_tls
            [ "${spec%%=*}" = tollgate ] && start=start_tollgate_tls
            "$start"
            "$runs" "${spec%%=*}" "${spec#*=}" "$rep"
            stop_proxy
        done
    done
}

scenario_tls() {
    TLS_DIR=$TMP/tls
    bash "$ROOT/scripts/gen-demo-cert.sh" "$TLS_DIR" >/dev/null
    scenario_meta tls1 "HTTPS keep-alive, HTTP/1.1, no limit (same certificate)"
    scenario_meta tlsh "new TLS handshakes (Connection: close), no limit"
    tls_case tls_h1_runs
    if ! ensure_h2load; then
        say "tls2 (HTTP/2): h2load is not available, skipped"
        return 0
    fi
    scenario_meta tls2 "HTTP/2 over TLS, $H2_STREAMS streams per connection, no limit (h2load)"
    tls_case tls_h2_runs
}
