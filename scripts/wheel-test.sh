#!/usr/bin/env bash
# Builds the wheel (scripts/wheel.sh), installs it into a fresh virtualenv and, with no
# Rust toolchain on the PATH (`env -i PATH=<venv>/bin:/usr/bin:/bin`), checks what a new
# user does: `databuild --version`; `databuild init demo && cd demo && databuild build
# hello/date=2025-01-01` (the sh sample, then the Python one); and the Python package's
# pytest suite (sdk/python/tests: the job SDK, and the client against the wheel's
# `databuild serve`). The virtualenv is target/wheel-venv/, made anew each time.
#
#   scripts/wheel-test.sh [pytest args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "wheel-test.sh: $*" >&2; }

start=$SECONDS
wheel=$(bash "$root/scripts/wheel.sh")
built=$((SECONDS - start))
venv="$root/target/wheel-venv"
rm -rf "$venv"
python3 -m venv "$venv"
venv_python=$(cd "$venv/bin" && pwd)/python
work=$(mktemp -d /tmp/databuild-wheel-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
# Only the virtualenv and the system's directories: no cargo, rustc or maturin.
clean=(env -i "PATH=$venv/bin:/usr/bin:/bin" "HOME=$work" "LANG=C.UTF-8" "TMPDIR=/tmp")
"${clean[@]}" "$venv_python" -m pip install --quiet --disable-pip-version-check "$wheel" pytest==9.2.0
if "${clean[@]}" sh -c 'command -v cargo || command -v rustc || command -v maturin'; then
    say "error: a Rust toolchain or maturin is on the clean PATH"
    exit 1
fi
say "databuild from the wheel: $("${clean[@]}" sh -c 'command -v databuild')"
"${clean[@]}" databuild --version
for flavour in sh python; do
    flag=$([[ $flavour == python ]] && echo --python || true)
    "${clean[@]}" sh -ec "cd '$work' && databuild init demo-$flavour $flag && cd demo-$flavour && databuild build hello/date=2025-01-01 && cat data/hello/date=2025-01-01/greeting.txt"
done
"${clean[@]}" "$venv_python" -c 'import databuild, databuild_sdk; assert databuild.Job is databuild_sdk.Job; print("import databuild:", databuild.__file__)'
cd "$root"
"${clean[@]}" "$venv_python" -m pytest -q -p no:cacheprovider sdk/python/tests "$@"
say "ok (wheel built in ${built} s, checks in $((SECONDS - start - built)) s)"
