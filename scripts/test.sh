#!/usr/bin/env bash
# Runs every test on this machine, setting up what they need first (Debian's graphviz,
# make, ninja-build, nghttp2-client (h2load, for the benchmarks' smoke run),
# bazel-bootstrap, chromium and nodejs when missing) (idempotent, quick when already done): private PostgreSQL clusters (scripts/postgres.sh: one plain, one with
# ssl=on and a test CA for the TLS tests) and a one-machine Slurm
# cluster (scripts/slurm.sh), installed from Debian's packages if missing; a one-machine Ray
# cluster (scripts/ray.sh: Ray from PyPI in .venv-ray/, dashboard on port 8265); the Python
# virtualenvs of examples/flights + sdk/python (scripts/flights-venv.sh) and of the
# grpcio client generated from proto/databuild/v1/databuild.proto
# (scripts/python-grpc-client.sh); Debian's chromium and the dashboard tests'
# playwright-core (`npm ci` in e2e/). Then the wheel (scripts/wheel-test.sh: one release
# build with maturin, installed into a fresh virtualenv without Rust on the PATH, where
# `databuild init` + `build` and the Python package's pytest suite run) and
# `cargo test -j2 --workspace --no-fail-fast` with DATABUILD_TEST_POSTGRES{,_TLS,_TLS_CA}, SLURM_CONF and
# RAY_ADDRESS set: every test binary runs even when one fails, and the script exits non-zero at the
# end if pytest or any cargo test failed. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v bazel >/dev/null 2>&1 || missing+=(bazel-bootstrap)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
    echo "== installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
postgres_env=$(scripts/postgres.sh env)
eval "$postgres_env"
eval "$(scripts/slurm.sh env)"
eval "$(scripts/ray.sh env)"
echo "== Python virtualenvs"
bash scripts/flights-venv.sh
bash scripts/python-grpc-client.sh --setup
if [[ ! -d e2e/node_modules/playwright-core ]]; then
    echo "== npm ci (e2e: playwright-core)"
    npm ci --prefix e2e --no-audit --no-fund >/dev/null
fi
failed=()
echo "== the wheel: build, fresh virtualenv, init + build, Python tests (scripts/wheel-test.sh)"
bash scripts/wheel-test.sh || failed+=("wheel + pytest")
echo "== cargo test"
cargo test -j2 --workspace --no-fail-fast "$@" || failed+=("cargo test")
if ((${#failed[@]})); then
    echo "== FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "== all tests passed"
