#!/usr/bin/env bash
# A one-machine Slurm cluster (munged, slurmctld, slurmd) for databuild's tests and for
# trying `executor = "slurm"`.
#
#   scripts/slurm.sh start   # install Slurm if missing, start the daemons, print `export SLURM_CONF=...`
#   scripts/slurm.sh env     # the same (use: eval "$(scripts/slurm.sh env)")
#   scripts/slurm.sh stop    # stop the daemons this script started (by their pid files)
#
# `start` also recovers a cluster whose daemons were killed (even with -9): a daemon is
# found by its pid file only if that pid is still the daemon (else by its name), stale pid
# files and munge's socket do not stop a restart, and a node left down comes back.
#
# The cluster's files live in $DATABUILD_SLURM_DIR (default /tmp/databuild-slurm): slurm.conf,
# state, spool, logs and the job-completion file `sacct -c` reads. The controller listens on
# port $DATABUILD_SLURM_PORT (default 16817), slurmd on the next port. `start` is
# idempotent. Needs root (the daemons run as root, munged as `munge`).
#
# The configuration is the one in the project's ENGINES notes plus one line:
# `SchedulerParameters=batch_sched_delay=0,...` starts a queued job as soon as a CPU is
# free (Slurm's default waits up to 3 s), which keeps the tests' Slurm jobs quick.
set -euo pipefail

S=${DATABUILD_SLURM_DIR:-/tmp/databuild-slurm}
PORT=${DATABUILD_SLURM_PORT:-16817}
CONF=$S/slurm.conf
MUNGE_PID=/run/munge/munged.pid

say() { echo "slurm.sh: $*" >&2; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && [[ -x /usr/sbin/munged ]]; then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        say "Slurm is not installed; install it (e.g. \`sudo apt-get install -y slurm-wlm\`) and run this again"
        exit 1
    fi
    say "installing Slurm from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm >/dev/null
}

# The pid of the running daemon named $2 (the program's name): the one pid file $1 names
# if that process is the daemon (not a reused pid), else any process of that name (its pid
# file lost); nothing if none runs. A zombie does not count.
daemon_pid() {
    local file=$1 name=$2 pid d
    if [[ -f $file ]]; then
        pid=$(cat "$file" 2>/dev/null || true)
        if [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] &&
            ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
            echo "$pid"
            return 0
        fi
    fi
    for d in /proc/[0-9]*; do
        if [[ $(cat "$d/comm" 2>/dev/null) == "$name" ]] &&
            ! grep -q '^State:.*Z' "$d/status" 2>/dev/null; then
            echo "${d#/proc/}"
            return 0
        fi
    done
}

# Whether daemon $2 runs; its pid file $1 is rewritten when it named another process.
alive() {
    local pid
    pid=$(daemon_pid "$1" "$2")
    if [[ -z $pid ]]; then
        rm -f "$1"
        return 1
    fi
    [[ -f $1 && $(cat "$1" 2>/dev/null) == "$pid" ]] || echo "$pid" >"$1" 2>/dev/null || true
}

write_conf() {
    local h
    h=$(hostname -s)
    mkdir -p "$S"/{state,spool,log}
    local want
    want=$(cat <<EOF
ClusterName=databuild
SlurmctldHost=$h
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/filetxt
JobCompLoc=$S/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
NodeName=$h CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)
    if [[ ! -f $CONF || $(cat "$CONF") != "$want" ]]; then
        printf '%s\n' "$want" >"$CONF"
        CONF_CHANGED=1
    fi
}

running() {
    alive "$MUNGE_PID" munged && alive "$S/slurmctld.pid" slurmctld && alive "$S/slurmd.pid" slurmd
}

start() {
    install
    if [[ $(id -u) -ne 0 ]]; then
        running && return 0
        say "starting the Slurm daemons needs root"
        exit 1
    fi
    write_conf
    export SLURM_CONF=$CONF
    # Any of the daemons may have been killed (even with -9) and left a stale pid file or
    # socket behind: each one that does not run is started again, with --force where a
    # leftover would stop it.
    if ! alive "$MUNGE_PID" munged; then
        mkdir -p /run/munge && chown munge:munge /run/munge
        [[ -f /etc/munge/munge.key ]] || { mungekey --create >/dev/null 2>&1 || create-munge-key -f >/dev/null; }
        runuser -u munge -- /usr/sbin/munged --force
        touch "$S/munged.ours"
    fi
    if alive "$S/slurmctld.pid" slurmctld; then
        [[ -z ${CONF_CHANGED:-} ]] || scontrol reconfigure
    else
        slurmctld -i
    fi
    alive "$S/slurmd.pid" slurmd || slurmd
    local deadline=$((SECONDS + 30)) state="" resumed=""
    while :; do
        state=$(sinfo -h -o %t 2>/dev/null || true)
        case $state in
        idle | mix | alloc | comp) break ;;
        down* | drain* | fail*)
            # A node that went down with its slurmd comes back once told so.
            if [[ -z $resumed ]] && alive "$S/slurmd.pid" slurmd; then
                scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true
                resumed=1
            fi
            ;;
        esac
        if ((SECONDS >= deadline)); then
            say "the Slurm node did not come up (state \`$state\`); see $S/log/slurmctld.log and $S/log/slurmd.log"
            exit 1
        fi
        sleep 0.2
    done
}

stop_pidfile() {
    local f=$1 name=$2
    if alive "$f" "$name"; then
        local pid
        pid=$(cat "$f")
        kill "$pid"
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && say "$name (pid $pid) did not stop within 5 s"
    fi
    rm -f "$f"
}

stop() {
    stop_pidfile "$S/slurmd.pid" slurmd
    stop_pidfile "$S/slurmctld.pid" slurmctld
    if [[ -f $S/munged.ours ]]; then
        stop_pidfile "$MUNGE_PID" munged
        rm -f "$S/munged.ours"
    fi
}

case "${1:-}" in
start | env) start; echo "export SLURM_CONF=$CONF" ;;
stop) stop ;;
*) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
esac
