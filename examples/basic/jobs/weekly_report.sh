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

EX_DIR=$(cd "$(dirname "$0")/.." && pwd)
OUT_DIR="$EX_DIR/data/out"

die() { echo "weekly_report: $*" >&2; exit 1; }

usage() {
    echo "usage: $0 config <ref> [<ref> ...]" >&2
    echo "       $0 exec <YYYY-MM-DD (a Monday)>" >&2
    exit 2
}

valid_date() {
    case $1 in
        [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]) ;;
        *) return 1 ;;
    esac
    [ "$(date -u -d "$1" +%F 2>/dev/null)" = "$1" ]
}

# check_monday D: exits with a clear message unless D is a real Monday.
check_monday() {
    valid_date "$1" || die "$2: bad week '$1' (expected a real YYYY-MM-DD)"
    if [ "$(date -u -d "$1" +%u)" != 1 ]; then
        die "$2: week '$1' is a $(date -u -d "$1" +%A), weeks must start on a Monday (try week=$(date -u -d "$1 - $(( $(date -u -d "$1" +%u) - 1 )) days" +%F))"
    fi
}

configure() {
    [ $# -ge 1 ] || die "config: no partition refs given"
    configs=""
    seen=" "
    for ref in "$@"; do
        case $ref in
            reports/weekly/week=*) w=${ref#reports/weekly/week=} ;;
            *) die "config: cannot parse ref '$ref' (expected reports/weekly/week=YYYY-MM-DD)" ;;
        esac
        check_monday "$w" "config: ref '$ref'"
        case $seen in *" $w "*) continue ;; esac
        seen="$seen$w "
        inputs=""
        i=0
        while [ $i -lt 7 ]; do
            day=$(date -u -d "$w + $i day" +%F)
            inputs="${inputs:+$inputs,}{\"depType\":\"MATERIALIZE\",\"partitionRef\":{\"str\":\"reviews/daily/date=$day\"}}"
            i=$((i + 1))
        done
        sunday=$(date -u -d "$w + 6 day" +%F)
        cfg="{\"outputs\":[{\"str\":\"$ref\"}],\"inputs\":[$inputs],\"args\":[\"$w\"]"
        cfg="$cfg,\"env\":{\"WEEK_END\":\"$sunday\"}}"
        configs="${configs:+$configs,}$cfg"
    done
    printf '{"configs":[%s]}\n' "$configs"
}

fmt_cents() { printf '%d.%02d' $(($1 / 100)) $(($1 % 100)); }

execute() {
    [ $# -eq 1 ] || usage
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
        [ -f "$f" ] || die "exec: input partition reviews/daily/date=$day missing ($f)"
        days="$days $day"
        i=$((i + 1))
    done

    mkdir -p "$(dirname "$out")"
    tmp=$(mktemp "$out.tmp.XXXXXX")
    trap 'rm -f "$tmp" "$tmp.ids"' EXIT
    trap 'exit 1' HUP INT TERM   # e.g. killed on timeout: still clean up

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
    chmod 644 "$tmp"   # mktemp makes it 0600
    mv -f "$tmp" "$out"
    echo "weekly_report: wrote ${out#"$EX_DIR"/}"
}

[ $# -ge 1 ] || usage
cmd=$1; shift
case $cmd in
    config) configure "$@" ;;
    exec) execute "$@" ;;
    *) usage ;;
esac
