#!/bin/sh
# hello: builds the partition hello/date=<YYYY-MM-DD> by writing
# data/hello/date=<date>/greeting.txt beside databuild.toml.
#
# A databuild job is one program with two entry points (databuild's README, "The job
# protocol"):
#   hello.sh config <ref>...   prints a JobConfigureResponse (JSON): for each ref, the
#                              partitions one run writes, its inputs and its args
#   hello.sh exec <date>       builds the partition (the args of its config)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)

# One config per ref: no inputs, the date as the only arg.
config_for() {
    date=${1#hello/date=}
    case $1 in
    hello/date=[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]) ;;
    *)
        echo "hello: cannot build '$1' (expected hello/date=YYYY-MM-DD)" >&2
        exit 1
        ;;
    esac
    printf '%s{"outputs":[{"str":"%s"}],"inputs":[],"args":["%s"]}' "$sep" "$1" "$date"
    sep=,
}

case ${1:-} in
config)
    shift
    sep=
    printf '{"configs":['
    if [ $# -gt 0 ]; then
        for ref in "$@"; do config_for "$ref"; done
    else
        # Many refs come only in the file DATABUILD_REFS_FILE names.
        while IFS= read -r ref; do config_for "$ref"; done <"$DATABUILD_REFS_FILE"
    fi
    printf ']}\n'
    ;;
exec)
    out="$root/data/hello/date=$2"
    mkdir -p "$out"
    echo "hello from databuild, for $2" >"$out/greeting.txt"
    echo "hello: wrote data/hello/date=$2/greeting.txt"
    ;;
*)
    echo "usage: $0 config <ref>... | exec <date>" >&2
    exit 2
    ;;
esac
