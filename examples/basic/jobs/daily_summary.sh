#!/bin/sh
# daily_summary: one run per date builds TWO partitions
#   reviews/daily/date=D      per-podcast review count, rating sum, average
#                             and day-over-day change of the average
#   reviews/daily_top/date=D  the best-rated podcast of the day
#
# Inputs per date D:
#   MATERIALIZE reviews/clean/date=D      the reviews to summarise
#   MATERIALIZE catalog/podcasts          external; data/podcasts.csv (names)
#   QUERY       reviews/daily/date=D-1    used for the delta if it exists;
#                                         databuild never builds it for us
#
#   daily_summary.sh config <ref> [<ref> ...]   -> JobConfigureResponse JSON
#   daily_summary.sh exec <date>                -> writes both partitions
set -eu

JOB=daily_summary
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

CATALOG="$EX_DIR/data/podcasts.csv"   # what catalog/podcasts stands for

parse_ref() { ref_date "$1" reviews/daily/date= reviews/daily_top/date=; }

# Both outputs come from one run, so one config per date no matter which
# (or both) of the two refs were asked for.
config_for() {
    d=$2
    prev=$(date -u -d "$d - 1 day" +%F)
    add_output "reviews/daily/date=$d"
    add_output "reviews/daily_top/date=$d"
    add_input MATERIALIZE "reviews/clean/date=$d"
    add_input MATERIALIZE catalog/podcasts
    add_input QUERY "reviews/daily/date=$prev"
}

# to_cents "4.25" -> 425
to_cents() {
    i=${1%.*}; f=${1#*.}; f=${f#0}
    echo $((i * 100 + f))
}

execute() {
    d=$1
    valid_date "$d" || die "exec: bad date '$d'"
    prev=$(date -u -d "$d - 1 day" +%F)
    clean="$OUT_DIR/reviews/clean/date=$d.csv"
    prev_daily="$OUT_DIR/reviews/daily/date=$prev.csv"
    daily="$OUT_DIR/reviews/daily/date=$d.csv"
    top="$OUT_DIR/reviews/daily_top/date=$d.csv"
    need_input "reviews/clean/date=$d" "$clean"
    [ -f "$CATALOG" ] || die "exec: external partition catalog/podcasts missing ($CATALOG)"
    echo "daily_summary: summarising $d (outputs: ${DATABUILD_OUTPUTS:-unset})"
    if [ -f "$prev_daily" ]; then
        echo "daily_summary: found reviews/daily/date=$prev, computing day-over-day delta"
    else
        echo "daily_summary: note: reviews/daily/date=$prev not built, avg_rating_delta left empty"
        prev_daily=""
    fi

    mkdir -p "$(dirname "$daily")" "$(dirname "$top")"
    new_tmp "$daily"; tmp_daily=$tmp
    new_tmp "$top"; tmp_top=$tmp

    best_id=""; best_name=""; best_count=0; best_cents=-1; known=0
    echo "podcast_id,podcast_name,review_count,rating_sum,avg_rating,avg_rating_delta" >"$tmp_daily"
    while IFS=, read -r id name || [ -n "$id" ]; do
        [ "$id" = id ] && continue          # header
        [ -n "$id" ] || continue
        count=0; sum=0
        while IFS=, read -r pid rating _; do
            [ "$pid" = "$id" ] || continue
            count=$((count + 1)); sum=$((sum + rating))
        done <"$clean"
        known=$((known + count))
        avg=""; delta=""
        if [ "$count" -gt 0 ]; then
            cents=$(( (sum * 200 + count) / (2 * count) ))   # rounded
            avg=$(fmt_cents "$cents")
            if [ -n "$prev_daily" ]; then
                while IFS=, read -r p_id _ _ _ p_avg _; do
                    if [ "$p_id" = "$id" ] && [ -n "$p_avg" ]; then
                        delta=$(fmt_cents $((cents - $(to_cents "$p_avg"))) sign)
                    fi
                done <"$prev_daily"
            fi
            # best = highest average; ties go to the podcast with more reviews
            if [ "$cents" -gt "$best_cents" ] ||
               { [ "$cents" -eq "$best_cents" ] && [ "$count" -gt "$best_count" ]; }; then
                best_id=$id; best_name=$name; best_count=$count; best_cents=$cents
            fi
        fi
        echo "$id,$name,$count,$sum,$avg,$delta" >>"$tmp_daily"
    done <"$CATALOG"

    total=$(( $(wc -l <"$clean") - 1 ))
    if [ "$total" -gt "$known" ]; then
        echo "daily_summary: note: $((total - known)) review(s) for podcasts not in catalog/podcasts ignored"
    fi

    echo "podcast_id,podcast_name,review_count,avg_rating" >"$tmp_top"
    if [ -n "$best_id" ]; then
        echo "$best_id,$best_name,$best_count,$(fmt_cents "$best_cents")" >>"$tmp_top"
        echo "daily_summary: top podcast on $d: $best_name ($(fmt_cents "$best_cents") from $best_count reviews)"
    else
        echo "daily_summary: note: no reviews on $d, daily_top is empty"
    fi

    publish "$tmp_daily" "$daily" "$tmp_top" "$top"
    echo "daily_summary: wrote ${daily#"$EX_DIR"/} and ${top#"$EX_DIR"/}"
}

main "$@"
