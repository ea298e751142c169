# shellcheck shell=bash
# Container helpers for scripts/container-test.sh: installs podman and friends, configures podman
# for this run only (CONTAINERS_CONF), makes the base images that cannot be pulled, and remembers
# everything the run creates, by ID, so that ct_cleanup removes exactly that and nothing another
# user of this machine's podman has (no name patterns; the names given here carry the run's PID).
# Expects: ROOT, WORK, say(), and scripts/lib/install.sh sourced.
# shellcheck disable=SC2034  # CT_SMOKE_ERROR and the CT_* lists are read by container-test.sh

CT_RUNTIME=${CT_RUNTIME:-runc}
CT_PREFIX=tollgate-ct-$$
CT_CONTAINERS=()   # container IDs (podman create/run, and those compose and kube play made)
CT_PODS=()         # pod IDs (podman kube play, podman-compose's pod)
CT_COMPOSE=()      # compose projects (named $CT_PREFIX-...): their containers are collected by ID
CT_NETWORKS=()     # network IDs (podman network create, and compose's network)
CT_IMAGES=()       # image IDs made here (removed only with CT_PURGE=1)
CT_PIDS=()         # host processes started here
CT_SMOKE_ERROR=""

pm() { podman "$@"; }
# podman without its complaint that no systemd runs the health-check timers (this script probes).
pm_quiet_hc() {
    podman "$@" 2> >(grep -v 'unable to get systemd connection' >&2)
}

# ct_setup: podman, runc (crun refuses hybrid cgroups), iptables (netavark's bridge networks),
# catatonit (the pods' infra container), debootstrap, and podman-compose in .venv; then a
# containers.conf for this run only.
ct_setup() {
    ensure_apt podman:podman runc:runc iptables:iptables catatonit:catatonit debootstrap:debootstrap \
        systemd-analyze:systemd curl:curl || return 1
    ensure_venv "$ROOT" || return 1
    local want=1.2.0 have
    have=$("$ROOT/.venv/bin/pip" show podman-compose 2>/dev/null | sed -n 's/^Version: //p')
    if [ "$have" != "$want" ]; then
        echo "== installing podman-compose==$want into .venv"
        "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check "podman-compose==$want" || return 1
    fi
    # No raised RLIMIT_NOFILE by default: some sandboxes forbid it, and tollgate needs no more
    # than the runtime's default here.
    cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = []
[engine]
runtime = "$CT_RUNTIME"
EOF
    export CONTAINERS_CONF=$WORK/containers.conf
}

# ct_smoke IMAGE: a container starts at all, on the host network and on a bridge network.
ct_smoke() {
    local out
    if ! out=$(pm info --format '{{.Host.OCIRuntime.Name}}' 2>&1); then
        CT_SMOKE_ERROR="podman info: $(echo "$out" | tail -n 1)"
        return 1
    fi
    if ! out=$(pm run --rm --network host "$1" true 2>&1); then
        CT_SMOKE_ERROR="podman run: $(echo "$out" | tail -n 1)"
        return 1
    fi
    if ! out=$(pm run --rm "$1" true 2>&1); then
        CT_SMOKE_ERROR="podman run on a bridge network: $(echo "$out" | tail -n 1)"
        return 1
    fi
}

# The logs of the containers with these IDs, for a failed check.
ct_logs() {
    local id name
    for id in "$@"; do
        name=$(pm inspect --format '{{.Name}}' "$id" 2>/dev/null) || continue
        echo "---- podman logs $name (${id:0:12}; last 60 lines)"
        pm logs --tail 60 "$id" 2>&1 | sed 's/^/    /'
    done
}

# ct_compose_ids PROJECT: records the containers, pod and network that podman-compose made for
# PROJECT (found by its exact project label, which holds this run's PID).
ct_compose_ids() {
    local id
    for id in $(pm ps -a -q --no-trunc --filter "label=io.podman.compose.project=$1"); do
        ct_known "$id" "${CT_CONTAINERS[@]}" || CT_CONTAINERS+=("$id")
    done
    # Its pod carries no label: podman-compose names it pod_PROJECT.
    if id=$(pm pod inspect --format '{{.Id}}' "pod_$1" 2>/dev/null); then
        ct_known "$id" "${CT_PODS[@]}" || CT_PODS+=("$id")
    fi
    for id in $(pm network ls -q --no-trunc --filter "label=io.podman.compose.project=$1" 2>/dev/null); do
        ct_known "$id" "${CT_NETWORKS[@]}" || CT_NETWORKS+=("$id")
    done
}

# ct_known ID LIST...: ID is in LIST.
ct_known() {
    local id=$1 x
    shift
    for x in "$@"; do [ "$x" = "$id" ] && return 0; done
    return 1
}

ct_cleanup() {
    [ "${CT_KEEP:-0}" = 1 ] && { echo "CT_KEEP=1: leaving containers and pods running"; return 0; }
    local id project
    # SIGTERM: a background job of a script starts with SIGINT ignored.
    for id in "${CT_PIDS[@]}"; do kill -TERM "$id" 2>/dev/null || true; done
    for project in "${CT_COMPOSE[@]}"; do ct_compose_ids "$project"; done
    for id in "${CT_PODS[@]}"; do pm pod rm -f -t 1 "$id" >/dev/null 2>&1 || true; done
    for id in "${CT_CONTAINERS[@]}"; do pm rm -f -t 1 "$id" >/dev/null 2>&1 || true; done
    for id in "${CT_NETWORKS[@]}"; do pm network rm "$id" >/dev/null 2>&1 || true; done
    if [ "${CT_PURGE:-0}" = 1 ]; then
        for id in "${CT_IMAGES[@]}"; do pm rmi -f "$id" >/dev/null 2>&1 || true; done
    fi
}

# ct_image_id NAME: the ID of image NAME, recorded for CT_PURGE.
ct_record_image() {
    local id
    id=$(pm image inspect --format '{{.Id}}' "$1" 2>/dev/null) && CT_IMAGES+=("$id")
}

# ------------------------------------------------------------------ base images

# docker.io/library/NAME for a short name, as docker would resolve it.
qualified() {
    case "$1" in
        */*/*) echo "$1" ;;
        */*) echo "docker.io/$1" ;;
        *) echo "docker.io/library/$1" ;;
    esac
}

# ensure_image NAME: present, pulled, or made here.
ensure_image() {
    local name=$1 full
    full=$(qualified "$name")
    if pm image exists "$full"; then
        echo "image $full: present"
        return 0
    fi
    if timeout 120 podman pull -q "$full" >/dev/null 2>&1; then
        echo "image $full: pulled"
        return 0
    fi
    echo "image $full: cannot be pulled; making it locally"
    case "$name" in
        debian:*) make_debian "$full" "${name#debian:}" ;;
        rust:*) make_rust "$full" "${name#rust:}" ;;
        redis:*) make_redis "$full" ;;
        *) echo "no recipe for $name"; return 1 ;;
    esac || return 1
    ct_record_image "$full"
}

# make_debian NAME TAG: debootstrap --variant=minbase SUITE, trimmed like the official -slim
# images (no docs, man pages or locales; apt caches cleaned), imported as NAME.
make_debian() {
    local name=$1 suite=${2%%-*} rootfs=$WORK/rootfs
    say "debootstrap --variant=minbase $suite (about a minute)"
    as_root debootstrap --variant=minbase "$suite" "$rootfs" http://deb.debian.org/debian \
        >"$WORK/debootstrap.log" 2>&1 || { tail -n 20 "$WORK/debootstrap.log"; return 1; }
    printf 'deb http://deb.debian.org/debian %s main\ndeb http://deb.debian.org/debian %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
        "$suite" "$suite" "$suite" >"$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    # The official image's apt settings: no package caches (pkgcache.bin and srcpkgcache.bin are
    # 80 MB that every `apt-get update` of a derived image would otherwise leave in its layer), no
    # translations, no downloaded .debs kept.
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Keep-Downloaded-Packages "false";
EOF
    echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
    as_root tar -C "$rootfs" -c . | pm import --change 'CMD ["bash"]' - "$name" >/dev/null
}

# A host toolchain whose rustc is VERSION (1.95 matches 1.95.x), printed as its sysroot.
host_toolchain() {
    local want=$1 tc sysroot version
    for tc in $(rustup toolchain list 2>/dev/null | awk '{print $1}'); do
        sysroot=$(rustup run "$tc" rustc --print sysroot 2>/dev/null) || continue
        version=$(rustup run "$tc" rustc --version 2>/dev/null | awk '{print $2}')
        case "$version" in "$want" | "$want".*) echo "$sysroot"; return 0 ;; esac
    done
    return 1
}

# make_rust NAME TAG (e.g. 1.95-bookworm): the Debian base of that suite, a C toolchain, and the
# host's rustup toolchain of that version at the official image's paths (RUSTUP_HOME, CARGO_HOME).
# Debian's own rustc (1.63 in bookworm) is too old for this crate, so the host's is required.
make_rust() {
    local name=$1 version=${2%%-*} suite=${2#*-} sysroot c
    sysroot=$(host_toolchain "$version") || { echo "no rustup toolchain $version on this host (rustup toolchain install $version)"; return 1; }
    ensure_image "debian:$suite-slim" || return 1
    say "making $name from debian:$suite-slim + $sysroot"
    # shellcheck disable=SC2016  # expanded by the container's shell
    c=$(pm create --name "$CT_PREFIX-mkrust" --network host -v "$sysroot:/mnt/toolchain:ro" "$(qualified "debian:$suite-slim")" \
        sh -ec '
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                ca-certificates gcc g++ libc6-dev make pkg-config binutils git curl >/dev/null
            rm -rf /var/lib/apt/lists/*
            tc=/usr/local/rustup/toolchains/'"$version"'-x86_64-unknown-linux-gnu
            mkdir -p "$tc" /usr/local/cargo/bin
            cp -a /mnt/toolchain/bin /mnt/toolchain/lib /mnt/toolchain/libexec "$tc/"
            for b in "$tc"/bin/*; do ln -s "$b" /usr/local/cargo/bin/; done
            /usr/local/cargo/bin/cargo --version') || return 1
    CT_CONTAINERS+=("$c")
    pm start -a "$c" || return 1
    pm commit -q \
        --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "ENV RUST_VERSION=$version" --change 'CMD ["bash"]' "$c" "$name" >/dev/null || return 1
    pm rm -f "$c" >/dev/null
}

# make_redis NAME: Debian's redis-server with the official image's interface: uid/gid 999,
# WORKDIR /data, and an entrypoint that runs redis-server when the arguments are options (so a
# Kubernetes `args:` list works), with protected mode off as the official image builds it.
make_redis() {
    local name=$1 c
    ensure_image debian:bookworm-slim || return 1
    say "making $name from debian:bookworm-slim + Debian's redis-server"
    # shellcheck disable=SC2016  # expanded by the container's shell
    c=$(pm create --name "$CT_PREFIX-mkredis" --network host "$(qualified debian:bookworm-slim)" sh -ec '
        groupadd --system --gid 999 redis
        useradd --system --uid 999 --gid redis --home-dir /data --shell /usr/sbin/nologin redis
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
        rm -rf /var/lib/apt/lists/*
        mkdir -p /data && chown redis:redis /data
        cat >/usr/local/bin/docker-entrypoint.sh <<"EOF"
#!/bin/sh
set -e
if [ "${1#-}" != "$1" ] || [ -z "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then shift; set -- redis-server --protected-mode no "$@"; fi
exec "$@"
EOF
        chmod 0755 /usr/local/bin/docker-entrypoint.sh') || return 1
    CT_CONTAINERS+=("$c")
    pm start -a "$c" || return 1
    pm commit -q --change 'WORKDIR /data' --change 'EXPOSE 6379' \
        --change 'ENTRYPOINT ["docker-entrypoint.sh"]' --change 'CMD ["redis-server"]' \
        "$c" "$name" >/dev/null || return 1
    pm rm -f "$c" >/dev/null
}

# The images the Dockerfile builds FROM, and the ones the compose file and manifests run.
dockerfile_bases() { sed -n -E 's/^FROM[[:space:]]+([^[:space:]]+).*/\1/p' "$ROOT/Dockerfile" | sort -u; }
