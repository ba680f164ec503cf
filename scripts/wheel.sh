#!/usr/bin/env bash
# Builds the `databuild` wheel into dist/ with maturin (`bindings = "bin"`, see
# pyproject.toml): the release `databuild` binary, which pip puts on the PATH, and the
# Python packages `databuild` (job SDK + client) and `databuild_sdk` from sdk/python/src.
#
#   scripts/wheel.sh            # prints the wheel's path last
#   pip install dist/databuild-*.whl
#
# maturin 1.16 comes from PyPI into the virtualenv .venv-wheel-build/ (made once; quick
# after). Cargo builds in $CARGO_TARGET_DIR (default target/, shared with `cargo build
# --release`) with -j ${CARGO_BUILD_JOBS:-2}. Needs a Rust toolchain and python3 >= 3.9;
# installing the wheel needs neither Rust nor maturin.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${WHEEL_BUILD_VENV:-$root/.venv-wheel-build}"
maturin_version=1.16.0
say() { echo "wheel.sh: $*" >&2; }

if [[ "$("$venv/bin/maturin" --version 2>/dev/null)" != "maturin $maturin_version" ]]; then
    say "creating $venv (maturin $maturin_version)"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin==$maturin_version"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
rm -f "$root"/dist/databuild-*.whl
cd "$root"
start=$SECONDS
"$venv/bin/maturin" build --release --locked --jobs "${CARGO_BUILD_JOBS:-2}" --out "$root/dist" >&2
wheel=$(ls "$root"/dist/databuild-*.whl)
say "built $wheel in $((SECONDS - start)) s"
echo "$wheel"
