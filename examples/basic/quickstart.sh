#!/usr/bin/env bash
# Build databuild and run the podcast-reviews example end to end.
# Works from any directory; extra arguments are passed to `databuild build`.
#
#   examples/basic/quickstart.sh [build args...]
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

cargo build --release -p databuild

db=(target/release/databuild --graph examples/basic/databuild.toml)

# catalog/podcasts is external (no job makes it): declare it available.
# Registering an already-available partition again is fine.
"${db[@]}" partitions register catalog/podcasts

"${db[@]}" build reports/weekly/week=2025-01-06 reviews/daily_top/date=2025-01-13 "$@"

report=examples/basic/data/out/reports/weekly/week=2025-01-06.txt
if [[ -f $report ]]; then
    echo
    echo "== $report"
    cat "$report"
fi
