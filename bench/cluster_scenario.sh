# shellcheck shell=bash
# Redis Cluster scenario for scripts/bench.sh, which sources this file after its own functions:
#
#   scenario_cluster   a 3-master Redis Cluster (BENCH_CLUSTER_MASTERS, BENCH_CLUSTER_REPLICAS
#                      [0] replicas each) pinned to $LOAD_CPU like the single Redis, and
#                      scenario 2 against it: sliding_log, $NKEYS keys round-robin, all allowed,
#                      tollgate with `redis: { cluster: [...] }`. Recorded as scenario "s5",
#                      baseline s2 (same nginx / bare Pingora runs as scenario 2).
#
# Uses bench.sh's helpers and globals: bg, stop_pid, free_port, wait_ready, say, die,
# scenario_meta, run_case, tollgate_conf, $TMP, $LOAD_CPU, $NKEYS. Redis CPU: measure() sums
# cpu_ticks over "${REDIS_PIDS[@]}" (bench.sh sets it to its single Redis); this scenario points
# it at the cluster's nodes for its runs and prints each node's share, so a hot master shows.

CLUSTER_PORTS=()
CLUSTER_PIDS=()
CLUSTER_URLS=''

# A free port whose cluster bus port (+10000) is free and below 65536.
cluster_free_port() {
    local p i
    for i in $(seq 200); do
        p=$(free_port)
        if [ "$p" -le 55535 ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "no free port pair for a cluster node"
}

start_cluster() {
    local masters=${BENCH_CLUSTER_MASTERS:-3} replicas=${BENCH_CLUSTER_REPLICAS:-0}
    local total=$((masters * (1 + replicas))) i p ok addrs=()
    mkdir -p "$TMP/cluster"
    for ((i = 0; i < total; i++)); do
        p=$(cluster_free_port)
        bg "redis-cluster-$p" "$LOAD_CPU" TERM redis-server --port "$p" --bind 127.0.0.1 \
            --save '' --appendonly no --dir "$TMP/cluster" \
            --cluster-enabled yes --cluster-config-file "$TMP/cluster/nodes-$p.conf" \
            --cluster-node-timeout 2000 --repl-diskless-sync-delay 0
        CLUSTER_PIDS+=("$BG_PID")
        CLUSTER_PORTS+=("$p")
        wait_ready "$p" "$BG_PID"
        addrs+=("127.0.0.1:$p")
    done
    timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$replicas" \
        --cluster-yes >"$TMP/cluster/create.log" 2>&1 ||
        die "redis-cli --cluster create failed (log: $TMP/cluster/create.log)"
    for i in $(seq 300); do
        ok=1
        for p in "${CLUSTER_PORTS[@]}"; do
            redis-cli -p "$p" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok' || {
                ok=0
                break
            }
        done
        [ "$ok" = 1 ] && break
        sleep 0.1
    done
    [ "$ok" = 1 ] || die "the cluster did not reach cluster_state:ok within 30 s"
    CLUSTER_URLS=$(printf '"redis://127.0.0.1:%s", ' "${CLUSTER_PORTS[@]}")
    CLUSTER_URLS=${CLUSTER_URLS%, }
    say "redis cluster: $masters masters, $replicas replicas each, ports ${CLUSTER_PORTS[*]}, on CPU $LOAD_CPU"
}

stop_cluster() {
    local pid
    for pid in "${CLUSTER_PIDS[@]}"; do
        stop_pid "$pid"
    done
    CLUSTER_PIDS=()
    CLUSTER_PORTS=()
}

flush_cluster() {
    local p
    for p in "${CLUSTER_PORTS[@]}"; do
        redis-cli -p "$p" FLUSHALL >/dev/null 2>&1 || true # replicas refuse: fine
    done
}

# tollgate_conf variant "cluster": bench.sh's "std" config with `cluster: [...]` instead of `url:`.
eval "$(declare -f tollgate_conf | sed '1s/^tollgate_conf/_tollgate_conf_single/')"
tollgate_conf() {
    if [ "$1" = cluster ]; then
        _tollgate_conf_single std | sed "s|^  url: .*|  cluster: [$CLUSTER_URLS]|"
    else
        _tollgate_conf_single "$@"
    fi
}

scenario_cluster() {
    local saved=("${REDIS_PIDS[@]:-$REDIS_PID}") before=() after=() i
    start_cluster
    flush_cluster
    REDIS_PIDS=("${CLUSTER_PIDS[@]}")
    for i in "${!CLUSTER_PIDS[@]}"; do before+=("$(cpu_ticks "${CLUSTER_PIDS[$i]}")"); done
    scenario_meta s5 "sliding_log through Redis Cluster (${BENCH_CLUSTER_MASTERS:-3} masters), $NKEYS keys, all allowed"
    WRK_KEY_PREFIX=bench-sl- WRK_KEYS=$NKEYS run_case s5 2xx s2 "tollgate:cluster=tollgate, Redis Cluster"
    for i in "${!CLUSTER_PIDS[@]}"; do after+=("$(cpu_ticks "${CLUSTER_PIDS[$i]}")"); done
    for i in "${!CLUSTER_PIDS[@]}"; do
        say "cluster node :${CLUSTER_PORTS[$i]}: $(awk -v a="${before[$i]}" -v b="${after[$i]}" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }') CPU-s over the s5 runs, $(redis-cli -p "${CLUSTER_PORTS[$i]}" DBSIZE) keys"
    done
    REDIS_PIDS=("${saved[@]}")
    stop_cluster
}
