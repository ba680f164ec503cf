#!/bin/sh
# clean_reviews: reviews/raw/date=D -> reviews/clean/date=D
#
# Keeps only well-formed rows (exactly 3 columns, numeric podcast_id,
# rating 1-5, non-empty text) and lowercases the text.
#
#   clean_reviews.sh config <ref> [<ref> ...]   -> JobConfigureResponse JSON
#   clean_reviews.sh exec <date>                -> writes the partition
set -eu

EX_DIR=$(cd "$(dirname "$0")/.." && pwd)
OUT_DIR="$EX_DIR/data/out"

die() { echo "clean_reviews: $*" >&2; exit 1; }

usage() {
    echo "usage: $0 config <ref> [<ref> ...]" >&2
    echo "       $0 exec <YYYY-MM-DD>" >&2
    exit 2
}

valid_date() {
    case $1 in
        [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]) ;;
        *) return 1 ;;
    esac
    [ "$(date -u -d "$1" +%F 2>/dev/null)" = "$1" ]
}

configure() {
    [ $# -ge 1 ] || die "config: no partition refs given"
    configs=""
    seen=" "
    for ref in "$@"; do
        case $ref in
            reviews/clean/date=*) d=${ref#reviews/clean/date=} ;;
            *) die "config: cannot parse ref '$ref' (expected reviews/clean/date=YYYY-MM-DD)" ;;
        esac
        valid_date "$d" || die "config: bad date '$d' in ref '$ref' (expected a real YYYY-MM-DD)"
        case $seen in *" $d "*) continue ;; esac
        seen="$seen$d "
        cfg="{\"outputs\":[{\"str\":\"$ref\"}]"
        cfg="$cfg,\"inputs\":[{\"depType\":\"MATERIALIZE\",\"partitionRef\":{\"str\":\"reviews/raw/date=$d\"}}]"
        cfg="$cfg,\"args\":[\"$d\"]}"
        configs="${configs:+$configs,}$cfg"
    done
    printf '{"configs":[%s]}\n' "$configs"
}

execute() {
    [ $# -eq 1 ] || usage
    d=$1
    valid_date "$d" || die "exec: bad date '$d'"
    in="$OUT_DIR/reviews/raw/date=$d.csv"
    out="$OUT_DIR/reviews/clean/date=$d.csv"
    [ -f "$in" ] || die "exec: input partition reviews/raw/date=$d missing ($in)"
    mkdir -p "$(dirname "$out")"
    echo "clean_reviews: cleaning reviews for $d (outputs: ${DATABUILD_OUTPUTS:-unset})"

    tmp=$(mktemp "$out.tmp.XXXXXX")
    trap 'rm -f "$tmp" "$tmp.rows"' EXIT
    trap 'exit 1' HUP INT TERM   # e.g. killed on timeout: still clean up
    kept=0; dropped=0
    set -f   # no globbing while splitting rows on commas
    {
        echo "podcast_id,rating,text"
        while IFS= read -r line || [ -n "$line" ]; do
            [ "$line" = "podcast_id,rating,text" ] && continue
            [ -n "$line" ] || continue
            oldifs=$IFS; IFS=,
            # shellcheck disable=SC2086  # split the row on commas on purpose
            set -- $line
            IFS=$oldifs
            ok=1
            [ $# -eq 3 ] || ok=0
            case ${1:-} in ''|*[!0-9]*) ok=0 ;; esac
            case ${2:-} in [1-5]) ;; *) ok=0 ;; esac
            [ -n "${3:-}" ] || ok=0
            if [ "$ok" -eq 1 ]; then
                echo "$1,$2,$3"
                kept=$((kept + 1))
            else
                echo "clean_reviews: dropping malformed row: $line" >&2
                dropped=$((dropped + 1))
            fi
        done <"$in"
    } >"$tmp.rows"
    set +f
    # Rows only contain digits, commas and text, so lowercase the lot.
    tr '[:upper:]' '[:lower:]' <"$tmp.rows" >"$tmp"
    chmod 644 "$tmp"   # mktemp makes it 0600
    mv -f "$tmp" "$out"
    echo "clean_reviews: kept $kept rows, dropped $dropped -> ${out#"$EX_DIR"/}"
}

[ $# -ge 1 ] || usage
cmd=$1; shift
case $cmd in
    config) configure "$@" ;;
    exec) execute "$@" ;;
    *) usage ;;
esac
