# shellcheck shell=bash
# The stages of scripts/container-test.sh: the image, the compose stack, the Kubernetes pods and
# the systemd unit. Each stage records its checks with check() and its resources in the CT_*
# lists of scripts/lib/containers.sh, so that the EXIT trap removes them.
# Expects: ROOT, WORK, say(), check(), and scripts/lib/containers.sh sourced.

IMAGE=localhost/tollgate:latest
IMAGE_SIZE_LIMIT_MB=60

code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$@"; }
# wait_for SECONDS COMMAND...: polls every 0.5 s until COMMAND succeeds.
wait_for() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}
bytes_mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1000000 }'; }

# ------------------------------------------------------------------ image
# podman build of the repository's Dockerfile, timed (BUILD_SECONDS).
build_image() {
    say "image: podman build -t tollgate:latest . (the repository's Dockerfile, unchanged)"
    # --format docker: the OCI format has no SHELL instruction, which the Dockerfile uses.
    # The host's cargo registry is mounted as an overlay: the build reads it, its writes vanish.
    local t0 registry_mount=()
    [ -d "$HOME/.cargo/registry" ] && registry_mount=(-v "$HOME/.cargo/registry:/usr/local/cargo/registry:O")
    # The commit for `tollgate --version`, as the Dockerfile asks (the context has no .git).
    GIT_COMMIT=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    t0=$(date +%s)
    if ! pm build --format docker --pull=never --network host "${registry_mount[@]}" \
        --build-arg "TOLLGATE_GIT_COMMIT=$GIT_COMMIT" \
        -t tollgate:latest "$ROOT" >"$WORK/build.log" 2>&1; then
        tail -n 60 "$WORK/build.log"
        check "podman build" 0 1
        return 1
    fi
    BUILD_SECONDS=$(($(date +%s) - t0))
    ct_record_image "$IMAGE"
    echo "built in ${BUILD_SECONDS}s ($(grep -c '^STEP' "$WORK/build.log") steps; layers are cached for the next run)"
}

stage_image() {
    say "image: base images"
    local base
    for base in $(dockerfile_bases); do ensure_image "$base" || return 1; done

    if [ "${CT_REUSE_IMAGE:-0}" = 1 ] && pm image exists "$IMAGE"; then
        echo "CT_REUSE_IMAGE=1: $IMAGE exists, not rebuilt (sources changed since are not in it)"
    else
        build_image || return 1
    fi

    check "image runs as a non-root user" "10001:10001" "$(pm image inspect --format '{{.Config.User}}' "$IMAGE")"
    check "uid inside the container" 10001 "$(pm run --rm --network none --entrypoint id "$IMAGE" -u)"
    local t_out
    t_out=$(pm run --rm --network none "$IMAGE" --config /etc/tollgate/tollgate.yaml -c /etc/tollgate/pingora.yaml -t 2>&1)
    check "tollgate -t on the baked-in config" 0 "$?"
    echo "$t_out" | tail -n 2 | sed 's/^/    /'
    # shellcheck disable=SC2016  # expanded by the container's shell
    check "the runtime stage holds no build tools" "" \
        "$(pm run --rm --network none --entrypoint sh "$IMAGE" -c 'for c in cargo rustc cc gcc cmake make strip; do command -v $c; done || true')"
    check "binaries in /usr/local/bin" "tollgate tollgate-echo" \
        "$(pm run --rm --network none --entrypoint sh "$IMAGE" -c 'ls /usr/local/bin | tr "\n" " " | sed "s/ $//"')"
    if [ -n "${GIT_COMMIT:-}" ]; then
        check "tollgate --version names the commit built ($GIT_COMMIT)" 1 \
            "$(pm run --rm --network none "$IMAGE" --version 2>&1 | grep -c "(commit $GIT_COMMIT)")"
    fi
    check "tollgate-echo runs" 1 \
        "$(pm run --rm --network none --entrypoint tollgate-echo "$IMAGE" --help 2>&1 | grep -c '^Usage: tollgate-echo')"

    bad_config_container || return 1

    local size base_size
    size=$(pm image inspect --format '{{.Size}}' "$IMAGE")
    base_size=$(pm image inspect --format '{{.Size}}' "$(qualified debian:bookworm-slim)")
    IMAGE_MB=$(bytes_mb "$size")
    IMAGE_DELTA_MB=$(bytes_mb $((size - base_size)))
    echo "image size: ${IMAGE_MB} MB; on top of debian:bookworm-slim: ${IMAGE_DELTA_MB} MB (target <= ${IMAGE_SIZE_LIMIT_MB} MB)"
    pm history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | head -n 8 | cut -c 1-140 | sed 's/^/    /'
    check "runtime image <= ${IMAGE_SIZE_LIMIT_MB} MB on top of the base" 1 \
        "$(awk -v d="$IMAGE_DELTA_MB" -v l="$IMAGE_SIZE_LIMIT_MB" 'BEGIN { print (d <= l) ? 1 : 0 }')"
}

# A container that fails shows its log: tollgate started (detached, as compose and kube do) on a
# mounted config with an unknown tier must exit non-zero, and ct_logs must print the error that
# names file, line and field.
bad_config_container() {
    local dir=$WORK/bad-conf c rc logs
    mkdir -p "$dir"
    cp "$ROOT"/conf/tollgate.yaml "$ROOT"/conf/pingora.yaml "$dir/"
    sed -i '0,/tier: free }/s//tier: golden }/' "$dir/tollgate.yaml"
    chmod -R a+rX "$dir"
    c=$(pm run -d --network none -v "$dir:/etc/tollgate:ro" "$IMAGE") || return 1
    CT_CONTAINERS+=("$c")
    rc=$(timeout 30 podman wait "$c")
    check "a bad mounted config: the container exits non-zero" 1 "$([ -n "$rc" ] && [ "$rc" != 0 ] && echo 1 || echo 0)"
    logs=$(ct_logs "$c")
    echo "$logs"
    check "a failed container's log is shown, naming file, line and field" 1 \
        "$(echo "$logs" | grep -c "/etc/tollgate/tollgate.yaml:[0-9]*:[0-9]*: field \`keys\[[0-9]\]\.tier\`: unknown tier 'golden'")"
    pm rm -f "$c" >/dev/null
}

# A free loopback port in 18000-19999 (below the ephemeral range, apart from the tests' 20000+).
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((18000 + RANDOM % 2000))
        port_open "$p" || { echo "$p"; return 0; }
    done
    return 1
}

# The ID of the container of compose service $2 in project $1.
compose_container() {
    pm ps -a -q --no-trunc --filter "label=io.podman.compose.project=$1" \
        --filter "label=com.docker.compose.service=$2" | head -n 1
}

# The README's curl lines against 127.0.0.1:$1 (proxy) and :$2 (admin); the same answers as
# scripts/readme-smoke.sh checks for scripts/run.sh.
readme_curls() {
    local http=$1 admin=$2 what=$3 head seq_out
    head=$(curl -si -m 5 "127.0.0.1:$http/proxy/hello" -H 'x-api-key: free-demo-key')
    check "$what: free key 200" 200 "$(echo "$head" | awk 'NR == 1 { print $2 }')"
    check "$what: RateLimit-Policy and RateLimit headers" 2 "$(echo "$head" | grep -ciE '^ratelimit(-policy)?: "per_minute";')"
    check "$what: wrong key 401" 401 "$(code "127.0.0.1:$http/proxy/hello" -H 'x-api-key: wrong')"
    seq_out=$(for _ in $(seq 12); do curl -s -o /dev/null -m 5 -w '%{http_code} ' "127.0.0.1:$http/proxy/x"; done)
    check "$what: anonymous 10/min then 429" "200 200 200 200 200 200 200 200 200 200 429 429 " "$seq_out"
    check "$what: /readyz reports Redis" 1 "$(curl -s -m 5 "127.0.0.1:$admin/readyz" | grep -c '^ready: .*store redis reachable')"
}

# A request that takes $2 ms at the echo upstream, through 127.0.0.1:$1; prints the status code.
slow_request() { code -m 60 "127.0.0.1:$1/proxy/slow?delay_ms=$2" -H 'x-api-key: paid-demo-key'; }

# ------------------------------------------------------------------ compose
stage_compose() {
    say "compose: podman-compose up redis echo tollgate (deploy/compose.yaml)"
    local project=$CT_PREFIX-compose dir=$WORK/compose http https admin tg started
    # A copy of deploy/, so that the reload test edits the copy's mounted config, not the repository.
    cp -a "$ROOT/deploy" "$dir"
    # The TLS pair the compose secrets read (git-ignored: a fresh clone has none).
    bash "$ROOT/scripts/gen-demo-cert.sh" "$dir/compose/tls" >/dev/null || return 1
    local img
    while read -r img; do
        ensure_image "$img" || return 1
    done < <(sed -n -E 's/^[[:space:]]*image:[[:space:]]*(redis:[^[:space:]]+).*/\1/p' "$dir/compose.yaml" | sort -u)
    http=$(free_port) && admin=$(free_port) && https=$(free_port) || return 1
    export TOLLGATE_HTTP_PORT=$http TOLLGATE_ADMIN_PORT=$admin TOLLGATE_HTTPS_PORT=$https
    CT_COMPOSE+=("$project")
    local up_rc=0
    "$ROOT/.venv/bin/podman-compose" -p "$project" -f "$dir/compose.yaml" up -d redis echo tollgate \
        >"$WORK/compose-up.log" 2>&1 || up_rc=$?
    ct_compose_ids "$project"
    COMPOSE_IDS=()
    local svc id
    for svc in redis echo tollgate; do
        id=$(compose_container "$project" "$svc")
        [ -n "$id" ] && COMPOSE_IDS+=("$id")
    done
    if [ "$up_rc" -ne 0 ]; then
        cat "$WORK/compose-up.log"
        check "podman-compose up" 0 "$up_rc"
        ct_logs "${COMPOSE_IDS[@]}"
        return 1
    fi
    tg=$(compose_container "$project" tollgate)
    if ! wait_for 60 curl -sf -m 2 "127.0.0.1:$admin/readyz"; then
        check "compose: tollgate ready within 60 s" 0 1
        ct_logs "${COMPOSE_IDS[@]}"
        return 1
    fi
    readme_curls "$http" "$admin" compose

    # Reload: edit the mounted tollgate.yaml (a new key), then SIGHUP through podman.
    check "compose: a key not yet configured is refused" 401 "$(code "127.0.0.1:$http/proxy/hello" -H 'x-api-key: ct-new-key')"
    sed -i 's/^keys:$/keys:\n  - { id: ct, key: "ct-new-key", tier: free }/' "$dir/compose/tollgate.yaml"
    pm kill --signal HUP "$tg" >/dev/null
    wait_for 10 sh -c "podman logs '$tg' 2>&1 | grep -q 'configuration reloaded (SIGHUP)'"
    check "compose: SIGHUP (podman kill --signal HUP) reloads the edited config" 1 \
        "$(pm logs "$tg" 2>&1 | grep -c 'configuration reloaded (SIGHUP)')"
    check "compose: the new key is accepted" 200 "$(code "127.0.0.1:$http/proxy/hello" -H 'x-api-key: ct-new-key')"

    # Drain: a 3 s request in flight survives `podman stop`, which ends well inside the grace period.
    local grace slow_out stop_s rc
    # podman-compose does not turn stop_grace_period into the container's stop timeout (it passes
    # it to `podman-compose stop/down` only), so `podman stop` is given it as `-t`.
    grace=$(sed -n -E 's/^[[:space:]]*stop_grace_period:[[:space:]]*([0-9]+)s.*/\1/p' "$dir/compose.yaml" | head -n 1)
    slow_request "$http" 3000 >"$WORK/compose-slow.out" &
    local slow_pid=$!
    sleep 1
    started=$(date +%s)
    pm stop -t "$grace" "$tg" >/dev/null
    stop_s=$(($(date +%s) - started))
    wait "$slow_pid"
    slow_out=$(cat "$WORK/compose-slow.out")
    rc=$(pm inspect --format '{{.State.ExitCode}}' "$tg")
    check "compose: the in-flight request completes during the drain" 200 "$slow_out"
    check "compose: tollgate exits 0 (drained, not killed)" 0 "$rc"
    check "compose: podman stop returns within the grace period (${stop_s}s < ${grace}s)" 1 "$([ "$stop_s" -lt "$grace" ] && echo 1 || echo 0)"
    [ "$FAILED" -eq 0 ] || ct_logs "${COMPOSE_IDS[@]}"
}

# ------------------------------------------------------------------ kubernetes

# kubelet_configmap DIR SRC: lays out (or updates) DIR as the kubelet does a ConfigMap volume:
# the files in a timestamped directory, `..data` a symlink to it swapped atomically (rename), and
# each key a symlink through `..data`.
kubelet_configmap() {
    local dir=$1 src=$2 ts old f
    mkdir -p "$dir"
    ts="..$(date +%Y_%m_%d_%H_%M_%S.%N)"
    cp -r "$src" "$dir/$ts"
    chmod -R a+rX "$dir"
    old=$(readlink "$dir/..data" 2>/dev/null || true)
    ln -s "$ts" "$dir/..data_tmp" && mv -T "$dir/..data_tmp" "$dir/..data"
    for f in "$src"/*; do
        f=${f##*/}
        [ -L "$dir/$f" ] || ln -s "..data/$f" "$dir/$f"
    done
    if [ -n "$old" ]; then rm -rf "${dir:?}/$old"; fi
}

# A field of the tollgate container in deploy/k8s/deployment.yaml, as JSON (python expression $1
# over `c`, the container, and `pod`, the pod spec).
manifest_field() {
    "$PY" -c 'import json, sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Deployment":
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        print(json.dumps(eval(sys.argv[2])))' "$ROOT/deploy/k8s/deployment.yaml" "$1"
}

stage_kube() {
    say "kube: podman kube play deploy/k8s (ConfigMap, Redis, echo, tollgate)"
    local dir=$WORK/kube net=$CT_PREFIX-kube http admin octet subnet ips tg
    PY=$ROOT/.venv/bin/python
    "$PY" -c 'import yaml' 2>/dev/null || "$ROOT/.venv/bin/pip" install --quiet pyyaml==6.0.2 || return 1
    mkdir -p "$dir/cm"
    # The kubelet's part for the Secret tollgate-tls (deployment.yaml): its files in a directory.
    bash "$ROOT/scripts/gen-demo-cert.sh" "$dir/secrets/tollgate-tls" >/dev/null || return 1
    ensure_image redis:7 || return 1
    http=$(free_port) && admin=$(free_port) || return 1
    # A network of our own (with DNS off: the Services become hostAliases) on a free subnet.
    for octet in $(seq 200 250); do
        subnet=10.89.$octet
        pm network ls --format '{{range .Subnets}}{{.Subnet}} {{end}}' | grep -q "$subnet\." && continue
        pm network create --disable-dns --subnet "$subnet.0/24" "$net" >/dev/null && break
    done
    CT_NETWORKS+=("$(pm network inspect --format '{{.ID}}' "$net")") || return 1
    ips=$subnet.10,$subnet.11,$subnet.12
    if ! "$PY" "$ROOT/scripts/lib/kube-for-podman.py" "$dir/play.yaml" --ips "$ips" \
        --configmap-dir "$dir/cm" --secret-dir "$dir/secrets" --publish "tollgate=8080:$http,tollgate=9091:$admin" \
        --name-prefix "$CT_PREFIX-" "$ROOT"/deploy/k8s/{configmap,redis,echo,deployment}.yaml; then
        check "kube: manifests translated for podman" 0 1
        return 1
    fi
    kubelet_configmap "$dir/cm/tollgate-config" "$dir/cm/tollgate-config.src"
    local ip_args=() ip play_rc=0
    for ip in ${ips//,/ }; do ip_args+=(--ip "$ip"); done
    pm kube play --network "$net" "${ip_args[@]}" "$dir/play.yaml" >"$WORK/kube-play.log" 2>&1 || play_rc=$?
    kube_record_ids "$WORK/kube-play.log"
    if [ "$play_rc" -ne 0 ]; then
        cat "$WORK/kube-play.log"
        check "kube: podman kube play" 0 "$play_rc"
        ct_logs "${KUBE_CONTAINERS[@]}"
        return 1
    fi
    tg=$(kube_container tollgate tollgate)
    KUBE_REDIS_POD=$(kube_pod redis)
    if [ -z "$tg" ] || [ -z "$KUBE_REDIS_POD" ]; then
        cat "$WORK/kube-play.log"
        check "kube: the tollgate container and the redis pod are found" 1 0
        return 1
    fi
    kube_probes "$admin" || { ct_logs "${KUBE_CONTAINERS[@]}"; return 1; }
    readme_curls "$http" "$admin" kube
    kube_redis_readiness "$admin"
    kube_configmap_reload "$http" "$dir/cm/tollgate-config" "$tg"
    kube_prestop_drain "$http" "$tg"
    [ "$FAILED" -eq 0 ] || ct_logs "${KUBE_CONTAINERS[@]}"
}

# kube_record_ids LOG: the pods that `podman kube play` reported creating (their IDs, after a
# "Pod:" line), and their containers, recorded for the cleanup; KUBE_PODS and KUBE_CONTAINERS.
kube_record_ids() {
    local line id next=""
    KUBE_PODS=()
    KUBE_CONTAINERS=()
    while read -r line; do
        case "$line" in
            Pod:) next=pod ;;
            Container* | Init*) next=container ;;
            *)
                [[ "$line" =~ ^[0-9a-f]{64}$ ]] || continue
                [ "$next" = pod ] && { KUBE_PODS+=("$line"); CT_PODS+=("$line"); }
                ;;
        esac
    done <"$1"
    for id in "${KUBE_PODS[@]}"; do
        while read -r line; do
            [ -n "$line" ] && { KUBE_CONTAINERS+=("$line"); CT_CONTAINERS+=("$line"); }
        done < <(pm ps -a -q --no-trunc --filter "pod=$id")
    done
}

# kube_pod DEPLOYMENT: the ID of the pod that podman made for it (named $CT_PREFIX-DEPLOYMENT-pod...).
kube_pod() {
    local id
    for id in "${KUBE_PODS[@]}"; do
        case "$(pm pod inspect --format '{{.Name}}' "$id")" in
            "$CT_PREFIX-$1-pod"*) echo "$id"; return 0 ;;
        esac
    done
    return 1
}

# kube_container DEPLOYMENT CONTAINER: the ID of that container (podman names it <pod>-CONTAINER).
kube_container() {
    local pod
    pod=$(kube_pod "$1") || return 1
    pm ps -a --no-trunc --filter "pod=$pod" --format '{{.ID}} {{.Names}}' | awk -v c="-$2" \
        'substr($2, length($2) - length(c) + 1) == c { print $1; exit }'
}

# The kubelet's part: the readiness probe as the manifest declares it (path on the admin port).
kube_probes() {
    local admin=$1 path
    path=$(manifest_field 'c["readinessProbe"]["httpGet"]["path"]' | tr -d '"')
    READY_PATH=$path
    check "kube: readiness probe is GET /readyz on the admin port" /readyz "$path"
    if ! wait_for 90 curl -sf -m 2 "127.0.0.1:$admin$path"; then
        check "kube: readiness probe passes once Redis is up (90 s)" 0 1
        return 1
    fi
    check "kube: readiness probe passes once Redis is up" 200 "$(code "127.0.0.1:$admin$path")"
    check "kube: liveness probe (/healthz) passes" 200 \
        "$(code "127.0.0.1:$admin$(manifest_field 'c["livenessProbe"]["httpGet"]["path"]' | tr -d '"')")"
}

kube_redis_readiness() {
    local admin=$1
    pm_quiet_hc pod stop -t 2 "$KUBE_REDIS_POD" >/dev/null
    wait_for 30 sh -c "[ \"\$(curl -s -o /dev/null -m 2 -w '%{http_code}' 127.0.0.1:$admin$READY_PATH)\" = 503 ]"
    check "kube: readiness probe fails (503) while Redis is stopped" 503 "$(code "127.0.0.1:$admin$READY_PATH")"
    pm_quiet_hc pod start "$KUBE_REDIS_POD" >/dev/null
    wait_for 60 curl -sf -m 2 "127.0.0.1:$admin$READY_PATH"
    check "kube: readiness probe passes again once Redis is back" 200 "$(code "127.0.0.1:$admin$READY_PATH")"
}

kube_configmap_reload() {
    local http=$1 cm=$2 tg=$3 src=$WORK/kube/cm-new
    check "kube: a key not yet in the ConfigMap is refused" 401 "$(code "127.0.0.1:$http/proxy/hello" -H 'x-api-key: ct-new-key')"
    cp -r "$WORK/kube/cm/tollgate-config.src" "$src"
    sed -i 's/^keys:$/keys:\n  - { id: ct, key: "ct-new-key", tier: free }/' "$src/tollgate.yaml"
    kubelet_configmap "$cm" "$src"
    wait_for 15 sh -c "[ \"\$(curl -s -o /dev/null -m 2 -w '%{http_code}' -H 'x-api-key: ct-new-key' 127.0.0.1:$http/proxy/hello)\" = 200 ]"
    check "kube: the ConfigMap update (..data swap) is reloaded without a restart" 200 \
        "$(code "127.0.0.1:$http/proxy/hello" -H 'x-api-key: ct-new-key')"
    check "kube: reloaded by the file watch" 1 "$(pm logs "$tg" 2>&1 | grep -c 'configuration reloaded (file change)')"
}

# The kubelet's stop: the preStop hook (exec in the container), then SIGTERM with the rest of
# terminationGracePeriodSeconds. A request in flight from before completes.
kube_prestop_drain() {
    local http=$1 tg=$2 grace prestop started elapsed slow_pid rc
    grace=$(manifest_field 'pod["terminationGracePeriodSeconds"]')
    prestop=$(manifest_field 'c["lifecycle"]["preStop"]["exec"]["command"]')
    slow_request "$http" 8000 >"$WORK/kube-slow.out" &
    slow_pid=$!
    sleep 1
    started=$(date +%s)
    # shellcheck disable=SC2046  # the hook's argv, one word per JSON string
    eval "set -- $(echo "$prestop" | "$PY" -c 'import json, shlex, sys; print(" ".join(shlex.quote(a) for a in json.load(sys.stdin)))')"
    pm exec "$tg" "$@" &
    local hook_pid=$!
    sleep 1
    check "kube: still serving during the preStop hook" 200 "$(code "127.0.0.1:$http/proxy/hello" -H 'x-api-key: paid-demo-key')"
    wait "$hook_pid"
    check "kube: the preStop hook ($prestop) succeeds" 0 "$?"
    pm_quiet_hc stop -t $((grace - ($(date +%s) - started))) "$tg" >/dev/null
    elapsed=$(($(date +%s) - started))
    wait "$slow_pid"
    rc=$(pm inspect --format '{{.State.ExitCode}}' "$tg")
    check "kube: the in-flight request completes through preStop + drain" 200 "$(cat "$WORK/kube-slow.out")"
    check "kube: tollgate exits 0 (drained, not killed)" 0 "$rc"
    check "kube: preStop + drain end within terminationGracePeriodSeconds (${elapsed}s < ${grace}s)" 1 \
        "$([ "$elapsed" -lt "$grace" ] && echo 1 || echo 0)"
}

# ------------------------------------------------------------------ systemd

# The image's own binaries, copied out, for the checks that run outside a container.
host_binaries() {
    local c
    mkdir -p "$WORK/bin"
    c=$(pm create "$IMAGE") || return 1
    CT_CONTAINERS+=("$c")
    pm cp "$c:/usr/local/bin/tollgate" "$WORK/bin/tollgate" && pm cp "$c:/usr/local/bin/tollgate-echo" "$WORK/bin/tollgate-echo"
    local rc=$?
    pm rm -f "$c" >/dev/null
    return $rc
}

# systemd-analyze verify in a root of its own (nothing is installed on this host): the unit at
# /etc/systemd/system, the binaries it names at their paths, systemd's own units beside them.
systemd_verify_root() {
    local r=$1 with_binary=$2
    rm -rf "$r"
    mkdir -p "$r/usr/local/bin" "$r/usr/local/sbin" "$r/usr/bin" "$r/usr/lib/systemd" "$r/etc/systemd/system"
    ln -s usr/bin "$r/bin"
    cp -a /usr/lib/systemd/system "$r/usr/lib/systemd/"
    cp "$(type -P kill)" "$r/usr/bin/kill"
    cp "$ROOT/deploy/systemd/tollgate.service" "$r/etc/systemd/system/"
    install -m 0755 "$ROOT/deploy/systemd/tollgate-upgrade.sh" "$r/usr/local/sbin/tollgate-upgrade"
    [ "$with_binary" = 1 ] && install -m 0755 "$WORK/bin/tollgate" "$r/usr/local/bin/tollgate"
    systemd-analyze verify --root="$r" /etc/systemd/system/tollgate.service
}

stage_systemd() {
    say "systemd: systemd-analyze verify deploy/systemd/tollgate.service; tollgate-upgrade --standalone"
    if [ ! -x "$WORK/bin/tollgate" ]; then
        pm image exists "$IMAGE" || stage_image || return 1
        host_binaries || { check "binaries copied out of the image" 0 1; return 1; }
    fi
    systemd_verify_root "$WORK/sysroot" 1 >"$WORK/verify.log" 2>&1
    check "systemd-analyze verify tollgate.service" 0 "$?"
    [ -s "$WORK/verify.log" ] && sed 's/^/    /' "$WORK/verify.log"
    systemd_verify_root "$WORK/sysroot" 0 >/dev/null 2>&1
    check "systemd-analyze verify notices a missing ExecStart binary (the check bites)" 1 "$?"
    upgrade_standalone
}

# PID $1 has exited (a zombie counts).
gone() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null)
    [ -z "$state" ] || [ "${state#Z}" != "$state" ]
}

# deploy/systemd/tollgate-upgrade.sh --standalone against a tollgate running on this host, under
# a steady trickle of requests: the new process takes over the sockets, the old one drains and
# exits, and no request fails.
upgrade_standalone() {
    local d=$WORK/upgrade http admin echo_port old new fails=0 total=0 code_
    mkdir -p "$d"
    http=$(free_port) && admin=$(free_port) && echo_port=$(free_port) || return 1
    sed -e "s/^listen: .*/listen: [\"127.0.0.1:$http\"]/" -e "s/^admin_listen: .*/admin_listen: \"127.0.0.1:$admin\"/" \
        -e "s/127.0.0.1:9000/127.0.0.1:$echo_port/" -e '/^redis:/,/^$/d' "$ROOT/conf/tollgate.yaml" >"$d/tollgate.yaml"
    printf 'version: 1\nthreads: 1\npid_file: %s/tollgate.pid\nupgrade_sock: %s/upgrade.sock\nerror_log: %s/tollgate.log\ngrace_period_seconds: 2\ngraceful_shutdown_timeout_seconds: 1\n' \
        "$d" "$d" "$d" >"$d/pingora.yaml"
    "$WORK/bin/tollgate-echo" --listen "127.0.0.1:$echo_port" >"$d/echo.log" 2>&1 &
    CT_PIDS+=($!)
    # As the unit runs it: a daemon (-d) that writes pid_file.
    "$WORK/bin/tollgate" --config "$d/tollgate.yaml" -c "$d/pingora.yaml" -d >"$d/start.log" 2>&1
    wait_for 30 test -s "$d/tollgate.pid"
    old=$(cat "$d/tollgate.pid" 2>/dev/null)
    [ -n "$old" ] && CT_PIDS+=("$old")
    if ! wait_for 30 curl -sf -m 2 "127.0.0.1:$admin/healthz"; then
        cat "$d/start.log" "$d/tollgate.log" 2>/dev/null | tail -n 20
        check "upgrade: tollgate starts on the host" 0 1
        return 1
    fi
    # Requests every 50 ms through the whole hand-off.
    (
        end=$(($(date +%s) + 12))
        while [ "$(date +%s)" -lt "$end" ]; do
            code_=$(code "127.0.0.1:$http/proxy/up" -H 'x-api-key: internal-demo-key')
            echo "$code_"
            sleep 0.05
        done
    ) >"$d/codes" &
    local load_pid=$!
    sleep 2
    TOLLGATE_BIN=$WORK/bin/tollgate TOLLGATE_CONFIG=$d/tollgate.yaml PINGORA_CONF=$d/pingora.yaml \
        bash "$ROOT/deploy/systemd/tollgate-upgrade.sh" --standalone >"$d/upgrade.log" 2>&1
    check "upgrade: tollgate-upgrade --standalone exits 0" 0 "$?"
    sed 's/^/    /' "$d/upgrade.log"
    new=$(cat "$d/tollgate.pid" 2>/dev/null)
    [ -n "$new" ] && CT_PIDS+=("$new")
    check "upgrade: a new process serves (pid $old -> ${new:-none})" 1 "$([ -n "$new" ] && [ "$new" != "$old" ] && kill -0 "$new" 2>/dev/null && echo 1 || echo 0)"
    wait_for 20 gone "$old"
    check "upgrade: the old process drained and exited" 1 "$(gone "$old" && echo 1 || echo 0)"
    wait "$load_pid"
    total=$(wc -l <"$d/codes")
    fails=$(grep -vc '^200$' "$d/codes")
    check "upgrade: no request failed during the hand-off ($total sent)" 0 "$fails"
    check "upgrade: the new process answers" 200 "$(code "127.0.0.1:$http/proxy/after" -H 'x-api-key: internal-demo-key')"
    [ "$FAILED" -eq 0 ] || { tail -n 20 "$d/tollgate.log"; sort "$d/codes" | uniq -c; }
}
