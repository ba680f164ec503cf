# lib.sh: what the job scripts in this directory have in common. It is not
# run on its own: a job sets JOB (its name, which starts all its messages),
# then sources this file and ends with `main "$@"`:
#
#   JOB=clean_reviews
#   . "$(dirname "$0")/lib.sh"
#
# The job defines three functions for this file to call:
#
#   parse_ref REF        sets key to the date (or week) REF is for, or dies;
#                        ref_date does it for refs that end in a date
#   config_for REF KEY   describes the run for KEY with add_output, add_input
#                        and add_env; its args are always [KEY]
#   execute ARG          the `exec` command: builds the partitions for ARG
#
# Partitions are files under OUT_DIR (data/out/<ref>.csv or .txt, or under
# $REVIEWS_OUT_DIR when set: the Bazel example keeps them in its own package).
# shellcheck shell=sh

EX_DIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC2034  # used by the jobs
OUT_DIR=${REVIEWS_OUT_DIR:-"$EX_DIR/data/out"}

# What `exec` takes, for usage. A job may set it after sourcing this file.
EXEC_ARG='<YYYY-MM-DD>'

die() { echo "$JOB: $*" >&2; exit 1; }

usage() {
    echo "usage: $0 config <ref> [<ref> ...]" >&2
    echo "       $0 exec $EXEC_ARG" >&2
    exit 2
}

# main "$@": runs the command the job was called with.
main() {
    [ $# -ge 1 ] || usage
    _cmd=$1; shift
    case $_cmd in
        config) configure "$@" ;;
        exec) [ $# -eq 1 ] || usage; execute "$1" ;;
        *) usage ;;
    esac
}

# valid_date D: D is YYYY-MM-DD and a real calendar day.
valid_date() {
    case $1 in
        [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]) ;;
        *) return 1 ;;
    esac
    [ "$(date -u -d "$1" +%F 2>/dev/null)" = "$1" ]
}

# fmt_cents N [sign]: 425 -> 4.25 ; with "sign": 25 -> +0.25, -100 -> -1.00
fmt_cents() {
    _n=$1; _s=""
    if [ "$_n" -lt 0 ]; then _s="-"; _n=$((-_n)); elif [ "${2:-}" = sign ]; then _s="+"; fi
    printf '%s%d.%02d' "$_s" $((_n / 100)) $((_n % 100))
}

# --- config ----------------------------------------------------------------

# configure REF...: the `config` command. Prints a JobConfigureResponse with
# one config per key, in the order first asked for: refs with the same key
# (the same ref twice, or two outputs of one run) share a config.
configure() {
    [ $# -ge 1 ] || die "config: no partition refs given"
    _configs=""
    _seen=" "
    for ref in "$@"; do
        parse_ref "$ref"
        case $_seen in *" $key "*) continue ;; esac
        _seen="$_seen$key "
        _outputs=""; _inputs=""; _env=""
        config_for "$ref" "$key"
        _cfg="{\"outputs\":[$_outputs],\"inputs\":[$_inputs],\"args\":[\"$key\"]"
        if [ -n "$_env" ]; then _cfg="$_cfg,\"env\":{$_env}"; fi
        _configs="${_configs:+$_configs,}$_cfg}"
    done
    printf '{"configs":[%s]}\n' "$_configs"
}

# ref_suffix REF PREFIX...: sets key to the rest of REF after the first
# PREFIX it starts with. Dies if it starts with none, naming the forms
# expected (each PREFIX followed by YYYY-MM-DD).
ref_suffix() {
    _ref=$1; shift
    _forms=""
    for _prefix in "$@"; do
        case $_ref in "$_prefix"*) key=${_ref#"$_prefix"}; return 0 ;; esac
        _forms="${_forms:+$_forms or }${_prefix}YYYY-MM-DD"
    done
    die "config: cannot parse ref '$_ref' (expected $_forms)"
}

# ref_date REF PREFIX...: ref_suffix, then dies unless key is a real date.
ref_date() {
    ref_suffix "$@"
    valid_date "$key" || die "config: bad date '$key' in ref '$1' (expected a real YYYY-MM-DD)"
}

# add_output REF: the run writes partition REF.
add_output() { _outputs="${_outputs:+$_outputs,}{\"str\":\"$1\"}"; }

# add_input DEPTYPE REF: the run reads partition REF. DEPTYPE is MATERIALIZE
# (REF is built first) or QUERY (used only if it already exists).
add_input() {
    _inputs="${_inputs:+$_inputs,}{\"depType\":\"$1\",\"partitionRef\":{\"str\":\"$2\"}}"
}

# add_env NAME VALUE: the run gets NAME=VALUE in its environment.
add_env() { _env="${_env:+$_env,}\"$1\":\"$2\""; }

# --- exec ------------------------------------------------------------------

# need_input REF FILE: dies unless input partition REF (stored in FILE) exists.
need_input() {
    [ -f "$2" ] || die "exec: input partition $1 missing ($2)"
}

# new_tmp OUT: creates a temp file next to OUT (the same directory, so
# publish can rename it) and sets tmp to its name. It is removed on exit
# unless published by then.
new_tmp() {
    tmp=$(mktemp "$1.tmp.XXXXXX")
    remove_on_exit "$tmp"
}

# publish TMP OUT [TMP OUT ...]: makes every TMP readable (mktemp makes them
# 0600), then renames each onto its OUT, so no OUT is ever seen half-written.
publish() {
    _tmps=""
    _i=1
    while [ "$_i" -lt $# ]; do
        _tmps="$_tmps \"\${$_i}\""   # "${1}" "${3}" ...: the TMPs
        _i=$((_i + 2))
    done
    eval "chmod 644$_tmps"
    while [ $# -ge 2 ]; do
        mv -f "$1" "$2"
        shift 2
    done
}

# remove_on_exit FILE...: deletes each FILE when the job exits, also when it
# fails or is killed (e.g. on timeout). The names are kept in _rm_1, _rm_2,
# ..., which the EXIT trap expands only when it runs.
_rm_count=0
_rm_list=""
remove_on_exit() {
    for _file in "$@"; do
        _rm_count=$((_rm_count + 1))
        eval "_rm_$_rm_count=\$_file"
        _rm_list="$_rm_list \"\$_rm_$_rm_count\""
    done
    # shellcheck disable=SC2064  # _rm_list is meant to expand now
    trap "rm -f$_rm_list" EXIT
    trap 'exit 1' HUP INT TERM
}
