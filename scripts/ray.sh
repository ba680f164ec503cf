#!/usr/bin/env bash
# A one-machine Ray cluster (head node with the dashboard and its Jobs REST API) for
# databuild's tests and for trying `executor = "ray"`.
#
#   scripts/ray.sh start   # install Ray if missing, start the head node, print `export RAY_ADDRESS=...`
#   scripts/ray.sh env     # the same (use: eval "$(scripts/ray.sh env)")
#   scripts/ray.sh stop    # stop the Ray processes on this machine (`ray stop --force`)
#
# Ray lives in the virtualenv .venv-ray/ at the repository root (`pip install "ray[default]"`,
# ~380 MB, created on first use). The head node listens on port 6379 and the dashboard, which
# serves the Jobs REST API databuild talks to, on http://127.0.0.1:8265 with 2 CPUs. `start`
# is idempotent: when the dashboard already answers it does nothing; when a previous cluster
# is half dead (processes left but no dashboard), or was started from a checkout since
# deleted, it stops it first.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=$PWD/.venv-ray
RAY=$VENV/bin/ray
ADDRESS=http://127.0.0.1:8265

say() { echo "ray.sh: $*" >&2; }

install() {
    [[ -x $RAY ]] && return 0
    say "installing Ray into $VENV (pip install \"ray[default]\")"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "ray[default]" >&2
}

answering() {
    curl -sS --max-time 2 -o /dev/null -f "$ADDRESS/api/version" 2>/dev/null
}

# A cluster started from a checkout that is gone runs from deleted files in a deleted
# working directory, which the shells of the jobs it starts inherit (`getcwd() failed`).
stale() {
    local pid
    for pid in $(pgrep -f 'ray/core/src/ray/(gcs/gcs_server|raylet/raylet)' || true); do
        [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == *" (deleted)" ]] && return 0
        [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == *" (deleted)" ]] && return 0
    done
    return 1
}

start() {
    install
    if answering && ! stale; then
        return 0
    fi
    if stale; then
        say "the Ray cluster on $ADDRESS runs from a deleted checkout; stopping it"
        "$RAY" stop --force >&2 || true
        pkill -9 -f 'ray/core/src/ray/(gcs/gcs_server|raylet/raylet)' || true
    elif "$RAY" status >/dev/null 2>&1 || pgrep -f 'ray/core/src/ray/gcs/gcs_server' >/dev/null 2>&1; then
        say "a previous Ray cluster is not answering on $ADDRESS; stopping it"
        "$RAY" stop --force >&2 || true
    fi
    say "starting a Ray head node (dashboard on $ADDRESS)"
    "$RAY" start --head --port=6379 --dashboard-host=127.0.0.1 --dashboard-port=8265 \
        --include-dashboard=true --num-cpus=2 --disable-usage-stats >&2
    local deadline=$((SECONDS + 60))
    until answering; do
        if ((SECONDS >= deadline)); then
            say "the Ray dashboard did not answer on $ADDRESS/api/version within 60 s; see /tmp/ray/session_latest/logs/dashboard.log"
            exit 1
        fi
        sleep 0.2
    done
}

stop() {
    if [[ -x $RAY ]]; then
        "$RAY" stop --force >&2
    fi
}

case "${1:-}" in
start | env) start; echo "export RAY_ADDRESS=$ADDRESS" ;;
stop) stop ;;
*) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
esac
