#!/usr/bin/env bash
# Build databuild, set up the Python virtualenv and run the NYC flights example.
# Works from any directory.
#
#   examples/flights/run.sh                      # reports/month=2013-01 (the default)
#   examples/flights/run.sh --year               # the twelve monthly reports of 2013
#   examples/flights/run.sh <ref>... [build flags]   # anything else, e.g. metrics/delays/date=2013-07-04
#
# FLIGHTS_DAYS=1-7 limits each month to those days (a quick trial).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

cargo build --release -p databuild
bash scripts/flights-venv.sh >/dev/null

args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
    args=(reports/month=2013-01)
elif [[ ${args[0]} == --year ]]; then
    args=(reports/month=2013-{01,02,03,04,05,06,07,08,09,10,11,12} "${args[@]:1}")
fi

db=(target/release/databuild --graph examples/flights/databuild.toml)
"${db[@]}" build "${args[@]}"

for a in "${args[@]}"; do
    if [[ $a == reports/month=* ]]; then
        echo "report: examples/flights/data/$a/index.html"
    fi
done
