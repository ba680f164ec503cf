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

EX_DIR=$(cd "$(dirname "$0")/.." && pwd)
OUT_DIR="$EX_DIR/data/out"
CATALOG="$EX_DIR/data/podcasts.csv"   # what catalog/podcasts stands for

die() { echo "daily_summary: $*" >&2; exit 1; }

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
            reviews/daily/date=*) d=${ref#reviews/daily/date=} ;;
            reviews/daily_top/date=*) d=${ref#reviews/daily_top/date=} ;;
            *) die "config: cannot parse ref '$ref' (expected reviews/daily/date=YYYY-MM-DD or reviews/daily_top/date=YYYY-MM-DD)" ;;
        esac
        valid_date "$d" || die "config: bad date '$d' in ref '$ref' (expected a real YYYY-MM-DD)"
        # Both outputs come from one run, so one config per date no matter
        # which (or both) of the two refs were asked for.
        case $seen in *" $d "*) continue ;; esac
        seen="$seen$d "
        prev=$(date -u -d "$d - 1 day" +%F)
        cfg="{\"outputs\":[{\"str\":\"reviews/daily/date=$d\"},{\"str\":\"reviews/daily_top/date=$d\"}]"
        cfg="$cfg,\"inputs\":["
        cfg="$cfg{\"depType\":\"MATERIALIZE\",\"partitionRef\":{\"str\":\"reviews/clean/date=$d\"}}"
        cfg="$cfg,{\"depType\":\"MATERIALIZE\",\"partitionRef\":{\"str\":\"catalog/podcasts\"}}"
        cfg="$cfg,{\"depType\":\"QUERY\",\"partitionRef\":{\"str\":\"reviews/daily/date=$prev\"}}"
        cfg="$cfg],\"args\":[\"$d\"]}"
        configs="${configs:+$configs,}$cfg"
    done
    printf '{"configs":[%s]}\n' "$configs"
}

# fmt_cents N [sign]: 425 -> 4.25 ; with "sign": 25 -> +0.25, -100 -> -1.00
fmt_cents() {
    n=$1; s=""
    if [ "$n" -lt 0 ]; then s="-"; n=$((-n)); elif [ "${2:-}" = sign ]; then s="+"; fi
    printf '%s%d.%02d' "$s" $((n / 100)) $((n % 100))
}

# to_cents "4.25" -> 425
to_cents() {
    i=${1%.*}; f=${1#*.}; f=${f#0}
    echo $((i * 100 + f))
}

execute() {
    [ $# -eq 1 ] || usage
    d=$1
    valid_date "$d" || die "exec: bad date '$d'"
    prev=$(date -u -d "$d - 1 day" +%F)
    clean="$OUT_DIR/reviews/clean/date=$d.csv"
    prev_daily="$OUT_DIR/reviews/daily/date=$prev.csv"
    daily="$OUT_DIR/reviews/daily/date=$d.csv"
    top="$OUT_DIR/reviews/daily_top/date=$d.csv"
    [ -f "$clean" ] || die "exec: input partition reviews/clean/date=$d missing ($clean)"
    [ -f "$CATALOG" ] || die "exec: external partition catalog/podcasts missing ($CATALOG)"
    echo "daily_summary: summarising $d (outputs: ${DATABUILD_OUTPUTS:-unset})"
    if [ -f "$prev_daily" ]; then
        echo "daily_summary: found reviews/daily/date=$prev, computing day-over-day delta"
    else
        echo "daily_summary: note: reviews/daily/date=$prev not built, avg_rating_delta left empty"
        prev_daily=""
    fi

    mkdir -p "$(dirname "$daily")" "$(dirname "$top")"
    tmp_daily=$(mktemp "$daily.tmp.XXXXXX")
    tmp_top=$(mktemp "$top.tmp.XXXXXX")
    trap 'rm -f "$tmp_daily" "$tmp_top"' EXIT
    trap 'exit 1' HUP INT TERM   # e.g. killed on timeout: still clean up

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

    chmod 644 "$tmp_daily" "$tmp_top"   # mktemp makes them 0600
    mv -f "$tmp_daily" "$daily"
    mv -f "$tmp_top" "$top"
    echo "daily_summary: wrote ${daily#"$EX_DIR"/} and ${top#"$EX_DIR"/}"
}

[ $# -ge 1 ] || usage
cmd=$1; shift
case $cmd in
    config) configure "$@" ;;
    exec) execute "$@" ;;
    *) usage ;;
esac
