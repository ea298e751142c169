#!/usr/bin/env bash
# Runs locust/locustfile.py headless against a running tollgate.
#
#   locust/run-headless.sh [extra locust arguments]
#
# Environment (defaults in brackets):
#   TOLLGATE_URL        gateway base URL [http://127.0.0.1:8080]
#   TOLLGATE_KEYS_FILE  key file from locust/gen_config.py [the demo keys of conf/tollgate.yaml]
#   LOCUST_USERS [100]  LOCUST_SPAWN_RATE [100]  LOCUST_RUN_TIME [60s]
#   LOCUST_CSV          write locust's CSV stats with this prefix
#   LOCUST_REPORT       write the limit check's verdict as JSON to this file
#   plus the per-class rates the locustfile reads (LOCUST_FREE_RPS, ...; see its docstring).
#
# Creates the virtualenv /work/main/.venv (the repository's .venv) when missing and installs
# locust/requirements.txt into it when locust is not there. Exits with locust's status:
# non-zero on any failed request or proven over-admission.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
VENV=${VENV:-$ROOT/.venv}

if [ ! -x "$VENV/bin/python" ]; then
    echo "run-headless: creating $VENV" >&2
    python3 -m venv "$VENV"
fi
if [ ! -x "$VENV/bin/locust" ]; then
    echo "run-headless: installing locust/requirements.txt into $VENV" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
fi

args=(
    -f "$HERE/locustfile.py"
    --headless
    --host "${TOLLGATE_URL:-http://127.0.0.1:8080}"
    --users "${LOCUST_USERS:-100}"
    --spawn-rate "${LOCUST_SPAWN_RATE:-100}"
    --run-time "${LOCUST_RUN_TIME:-60s}"
    --stop-timeout 5
    --only-summary
    --loglevel WARNING
)
if [ -n "${LOCUST_CSV:-}" ]; then
    args+=(--csv "$LOCUST_CSV")
fi

exec "$VENV/bin/locust" "${args[@]}" "$@"
