#!/bin/sh
# ingest_reviews: produces reviews/raw/date=YYYY-MM-DD
#
# Stands in for pulling a day of reviews from an external API. It makes up
# REVIEWS_PER_DAY (default 20) review lines "podcast_id,rating,text", seeded
# from the date, so a rerun for the same date always gives the same data.
# A few rows are deliberately malformed so clean_reviews has work to do.
#
#   ingest_reviews.sh config <ref> [<ref> ...]   -> JobConfigureResponse JSON
#   ingest_reviews.sh exec <date>                -> writes the partition
set -eu

JOB=ingest_reviews
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

parse_ref() { ref_date "$1" reviews/raw/date=; }

# No inputs: this is a source job.
config_for() { add_output "$1"; }

# Tiny linear congruential generator; state lives in $rng.
next_rand() {
    rng=$(( (rng * 1103515245 + 12345) % 2147483648 ))
    r=$(( rng / 65536 ))
}

execute() {
    d=$1
    valid_date "$d" || die "exec: bad date '$d'"
    n=${REVIEWS_PER_DAY:-20}
    case $n in ''|*[!0-9]*) die "exec: REVIEWS_PER_DAY must be a number, got '$n'" ;; esac

    out="$OUT_DIR/reviews/raw/date=$d.csv"
    mkdir -p "$(dirname "$out")"
    echo "ingest_reviews: generating $n reviews for $d (outputs: ${DATABUILD_OUTPUTS:-unset})"

    # Seed from the date digits: 2025-01-07 -> 20250107.
    y=${d%%-*}; md=${d#*-}; m=${md%-*}; dd=${md#*-}
    rng=$(( y * 10000 + ${m#0} * 100 + ${dd#0} ))
    next_rand; next_rand; next_rand   # stir the seed a little

    new_tmp "$out"
    {
        echo "podcast_id,rating,text"
        i=0
        while [ "$i" -lt "$n" ]; do
            i=$((i + 1))
            next_rand; podcast=$(( r % 6 + 1 ))
            next_rand
            # Each podcast has a "house" rating (1-4) that drifts with the
            # day of month; single reviews land on it or one star above.
            rating=$(( (podcast * 7 + ${dd#0}) % 4 + 1 + r % 2 ))
            next_rand
            case $(( r % 12 )) in
                0) text="Great episode!" ;;
                1) text="LOVED the interview" ;;
                2) text="Too many ads" ;;
                3) text="Audio quality was POOR" ;;
                4) text="Host is Hilarious" ;;
                5) text="Meh. Skipped half of it" ;;
                6) text="Best Show Ever" ;;
                7) text="Learned a lot Today" ;;
                8) text="Guest rambled ON and ON" ;;
                9) text="Solid as always" ;;
                10) text="Would Recommend" ;;
                *) text="Not my thing" ;;
            esac
            next_rand
            case $(( r % 10 )) in
                0) echo "$podcast,$((rating + 5)),$text" ;;  # rating out of range
                1) echo "$podcast,$rating" ;;                 # missing text column
                *) echo "$podcast,$rating,$text" ;;
            esac
        done
    } >"$tmp"
    publish "$tmp" "$out"
    echo "ingest_reviews: wrote $n rows to ${out#"$EX_DIR"/}"
}

main "$@"
