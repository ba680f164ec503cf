#!/bin/sh
# clean_reviews: reviews/raw/date=D -> reviews/clean/date=D
#
# Keeps only well-formed rows (exactly 3 columns, numeric podcast_id,
# rating 1-5, non-empty text) and lowercases the text.
#
#   clean_reviews.sh config <ref> [<ref> ...]   -> JobConfigureResponse JSON
#   clean_reviews.sh exec <date>                -> writes the partition
set -eu

JOB=clean_reviews
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

parse_ref() { ref_date "$1" reviews/clean/date=; }

config_for() {
    add_output "$1"
    add_input MATERIALIZE "reviews/raw/date=$2"
}

execute() {
    d=$1
    valid_date "$d" || die "exec: bad date '$d'"
    in="$OUT_DIR/reviews/raw/date=$d.csv"
    out="$OUT_DIR/reviews/clean/date=$d.csv"
    need_input "reviews/raw/date=$d" "$in"
    mkdir -p "$(dirname "$out")"
    echo "clean_reviews: cleaning reviews for $d (outputs: ${DATABUILD_OUTPUTS:-unset})"

    new_tmp "$out"
    remove_on_exit "$tmp.rows"
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
    publish "$tmp" "$out"
    echo "clean_reviews: kept $kept rows, dropped $dropped -> ${out#"$EX_DIR"/}"
}

main "$@"
