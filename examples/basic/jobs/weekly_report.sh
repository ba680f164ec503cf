#!/bin/sh
# weekly_report: reports/weekly/week=M, where M is a Monday
#
# Fan-in: MATERIALIZE reviews/daily/date=M .. M+6 (Monday..Sunday) and
# write a small plain-text report (reviews and average per podcast for the
# week, plus reviews per day).
#
#   weekly_report.sh config <ref> [<ref> ...]   -> JobConfigureResponse JSON
#   weekly_report.sh exec <monday>              -> writes the report
set -eu

JOB=weekly_report
# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

EXEC_ARG='<YYYY-MM-DD (a Monday)>'

# check_monday D: exits with a clear message unless D is a real Monday.
check_monday() {
    valid_date "$1" || die "$2: bad week '$1' (expected a real YYYY-MM-DD)"
    if [ "$(date -u -d "$1" +%u)" != 1 ]; then
        die "$2: week '$1' is a $(date -u -d "$1" +%A), weeks must start on a Monday (try week=$(date -u -d "$1 - $(( $(date -u -d "$1" +%u) - 1 )) days" +%F))"
    fi
}

parse_ref() {
    ref_suffix "$1" reports/weekly/week=
    check_monday "$key" "config: ref '$1'"
}

config_for() {
    w=$2
    add_output "$1"
    i=0
    while [ $i -lt 7 ]; do
        day=$(date -u -d "$w + $i day" +%F)
        add_input MATERIALIZE "reviews/daily/date=$day"
        i=$((i + 1))
    done
    sunday=$(date -u -d "$w + 6 day" +%F)
    add_env WEEK_END "$sunday"
}

execute() {
    w=$1
    check_monday "$w" "exec"
    sunday=$(date -u -d "$w + 6 day" +%F)
    # WEEK_END comes from the config's env; check it agrees with the args.
    if [ -n "${WEEK_END:-}" ] && [ "$WEEK_END" != "$sunday" ]; then
        die "exec: WEEK_END=$WEEK_END does not match week $w (expected $sunday)"
    fi
    out="$OUT_DIR/reports/weekly/week=$w.txt"
    echo "weekly_report: week $w .. $sunday (outputs: ${DATABUILD_OUTPUTS:-unset})"

    days=""
    i=0
    while [ $i -lt 7 ]; do
        day=$(date -u -d "$w + $i day" +%F)
        f="$OUT_DIR/reviews/daily/date=$day.csv"
        need_input "reviews/daily/date=$day" "$f"
        days="$days $day"
        i=$((i + 1))
    done

    mkdir -p "$(dirname "$out")"
    new_tmp "$out"
    remove_on_exit "$tmp.ids"

    # Podcast ids/names in the order of the first daily file (= catalog order).
    # shellcheck disable=SC2086  # split the date list on purpose
    set -- $days
    while IFS=, read -r id name _; do
        [ "$id" = podcast_id ] || echo "$id,$name"
    done <"$OUT_DIR/reviews/daily/date=$1.csv" >"$tmp.ids"

    {
        echo "Weekly podcast review report"
        echo "Week: $w (Mon) .. $sunday (Sun)"
        echo
        printf '%-22s %8s %8s\n' "podcast" "reviews" "avg"
        week_total=0
        best=""; best_cents=-1
        while IFS=, read -r id name; do
            count=0; sum=0
            for day in $days; do
                while IFS=, read -r p_id _ p_count p_sum _; do
                    if [ "$p_id" = "$id" ]; then
                        count=$((count + p_count)); sum=$((sum + p_sum))
                    fi
                done <"$OUT_DIR/reviews/daily/date=$day.csv"
            done
            week_total=$((week_total + count))
            if [ "$count" -gt 0 ]; then
                cents=$(( (sum * 200 + count) / (2 * count) ))
                avg=$(fmt_cents "$cents")
                if [ "$cents" -gt "$best_cents" ]; then best=$name; best_cents=$cents; fi
            else
                avg="-"
            fi
            printf '%-22s %8d %8s\n' "$name" "$count" "$avg"
        done <"$tmp.ids"
        echo
        echo "Reviews per day:"
        for day in $days; do
            n=0
            while IFS=, read -r p_id _ p_count _; do
                [ "$p_id" = podcast_id ] || n=$((n + p_count))
            done <"$OUT_DIR/reviews/daily/date=$day.csv"
            printf '  %s %s %4d\n' "$day" "$(date -u -d "$day" +%a)" "$n"
        done
        echo
        echo "Total reviews: $week_total"
        if [ -n "$best" ]; then
            echo "Podcast of the week: $best ($(fmt_cents "$best_cents"))"
        fi
    } >"$tmp"
    publish "$tmp" "$out"
    echo "weekly_report: wrote ${out#"$EX_DIR"/}"
}

main "$@"
