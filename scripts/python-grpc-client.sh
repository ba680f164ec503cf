#!/usr/bin/env bash
# A client generated from the project's proto (proto/databuild/v1/databuild.proto) by
# another toolchain (Python grpcio-tools): it
# builds a partition through a running `databuild serve` and streams its events.
#
#   scripts/python-grpc-client.sh --setup         create the venv and install grpcio,
#                                                 grpcio-tools (.ci/run does this)
#   scripts/python-grpc-client.sh HOST:PORT REF   build REF, print its events
#
# The venv lives in target/python-grpc (DATABUILD_PY_VENV overrides).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${DATABUILD_PY_VENV:-$root/target/python-grpc}
proto=$root/proto/databuild/v1/databuild.proto

packages=(grpcio==1.85.1 grpcio-tools==1.85.1)
stamp="$venv/.databuild-stamp"
if [[ ! -x $venv/bin/python || ! -f $stamp || "$(cat "$stamp")" != "${packages[*]}" ]]; then
    echo "python-grpc-client.sh: installing ${packages[*]} into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2
    echo "${packages[*]}" > "$stamp"
fi
if [ "${1:-}" = --setup ]; then
    exit 0
fi
if [ $# -ne 2 ]; then
    echo "usage: $0 HOST:PORT REF | --setup" >&2
    exit 2
fi
if [ ! -f "$proto" ]; then
    echo "error: the proto is missing at $proto; is this a complete checkout?" >&2
    exit 2
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$venv/bin/python" -m grpc_tools.protoc -I "$(dirname "$proto")" \
    --python_out="$out" --grpc_python_out="$out" "$(basename "$proto")"
PYTHONPATH="$out" exec "$venv/bin/python" "$root/scripts/python_grpc_client.py" "$1" "$2"
