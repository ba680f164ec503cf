#!/usr/bin/env python3
"""The reconciler's cost (PRODUCT §8, "Wants"), with the real binary:

* one pass over N active wants of which 1 % are unsatisfied: `databuild reconcile --once
  --dry-run` on a log holding N live wants in the state a running reconciler leaves them —
  99 % SATISFIED with their partitions AVAILABLE (ten of those since gone STALE), 1 %
  ACTIVE and not built — the time to load the wants that need attention and decide them,
  the rest of the pass, wall, CPU and peak RSS; and, once, the first pass after the 99 %
  were wanted (it records each one SATISFIED);
* from a wanted partition going STALE to its rebuild starting: `databuild serve` keeps one
  want built; an upstream partition is invalidated; the time between the STALE event and
  the reconciler's GRAPH_STARTED event, both read from the event log.

Usage: python3 benches/wants.py --databuild target/release/databuild [--wants N] [--reps R]
(also run by benches/run.py as its "Wants" section).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workloads  # noqa: E402

# `up/N` (made by job up) <- `w/N` (made by job w, from up/N).
JOB = r"""#!/bin/sh
if [ "$1" = config ]; then
    shift
    if [ -n "$DATABUILD_REFS_FILE" ]; then set -- $(cat "$DATABUILD_REFS_FILE"); fi
    sep=""
    printf '{"configs":['
    for r in "$@"; do
        case "$r" in
        w/*) printf '%s{"outputs":[{"str":"%s"}],"inputs":[{"depType":"MATERIALIZE","partitionRef":{"str":"up/%s"}}]}' "$sep" "$r" "${r#w/}" ;;
        *) printf '%s{"outputs":[{"str":"%s"}]}' "$sep" "$r" ;;
        esac
        sep=,
    done
    printf ']}\n'
fi
"""

TOML = """[graph]
label = "bench_wants"

[[jobs]]
label = "w"
entrypoint = ["jobs/job"]
produces = ['w/\\d+']

[[jobs]]
label = "up"
entrypoint = ["jobs/job"]
produces = ['up/\\d+']
"""


STALE = 10


def setup(root, n):
    d = os.path.join(root, "wants-%d" % n)
    shutil.rmtree(d, ignore_errors=True)
    workloads.write(os.path.join(d, "jobs", "job"), JOB, executable=True)
    workloads.write(os.path.join(d, "databuild.toml"), TOML)
    satisfied = n - max(1, n // 100)
    available = os.path.join(d, "available.txt")
    unsatisfied = os.path.join(d, "unsatisfied.txt")
    with open(available, "w") as f:
        for i in range(satisfied):
            f.write("w/%d\n" % i)
    with open(unsatisfied, "w") as f:
        for i in range(satisfied, n):
            f.write("w/%d\n" % i)
    return d, available, unsatisfied, satisfied


def bench_pass(db, root, n, reps, timed, check):
    d, available, unsatisfied, satisfied = setup(root, n)
    t0 = time.perf_counter()
    check(timed([db, "partitions", "register", "--force", "--from-file", available], d), "register")
    check(timed([db, "want", "--from-file", available], d), "want")
    setup_s = time.perf_counter() - t0
    # The first pass after they were wanted: every one is found AVAILABLE and recorded
    # SATISFIED (nothing to build).
    first = check(timed([db, "reconcile", "--once"], d), "reconcile --once")
    check(timed([db, "want", "--from-file", unsatisfied], d), "want")
    for i in range(STALE):
        check(timed([db, "partitions", "invalidate", "w/%d" % i], d), "invalidate")
    rows = []
    for _ in range(reps):
        res = check(timed([db, "--json", "reconcile", "--once", "--dry-run"], d), "reconcile --dry-run")
        line = [l for l in res.out.splitlines() if l.startswith("{")][-1]
        rows.append((res, json.loads(line)))
    rows.sort(key=lambda r: r[0].wall)
    res, report = rows[len(rows) // 2]
    need = n - satisfied + STALE
    assert report["live"] == need and report["wouldBuild"] == need, report
    return (
        "| %s | %s | %.2f s | %.2f s, %.0f MiB | %.0f ms | %.0f ms | %.2f s | %.2f s | %.0f MiB | %s |"
        % (
            format(n, ","),
            format(need, ","),
            setup_s,
            first.wall,
            first.rss_kib / 1024,
            report["loadMs"],
            report["passMs"],
            res.wall,
            res.cpu,
            res.rss_kib / 1024,
            report["wouldBuild"],
        )
    )


def bench_stale(db, root, reps):
    d = os.path.join(root, "wants-stale")
    shutil.rmtree(d, ignore_errors=True)
    workloads.write(os.path.join(d, "jobs", "job"), JOB, executable=True)
    workloads.write(os.path.join(d, "databuild.toml"), TOML)
    serve = subprocess.Popen(
        [db, "serve", "--addr", "127.0.0.1:0"],
        cwd=d,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    latencies = []
    try:
        serve.stdout.readline()
        subprocess.run([db, "want", "w/1"], cwd=d, check=True, capture_output=True)
        for i in range(reps + 1):
            wait_runs(db, d, i + 1)
            if i == reps:
                break
            subprocess.run(
                [db, "partitions", "invalidate", "up/1"], cwd=d, check=True, capture_output=True
            )
        latencies = stale_to_start(db, d)
    finally:
        serve.terminate()
        serve.wait()
    latencies.sort()
    return latencies


def wait_runs(db, d, count, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        out = subprocess.run(
            [db, "--json", "runs", "list", "--limit", "0"], cwd=d, capture_output=True, text=True
        )
        if out.returncode == 0:
            runs = json.loads(out.stdout)["runs"]
            if len(runs) >= count and all(r["status"] in ("GRAPH_SUCCESS", "GRAPH_FAILED") for r in runs):
                return
        time.sleep(0.05)
    sys.exit("benches/wants.py: the reconciler did not rebuild within %ds" % deadline)


def stale_to_start(db, d):
    """For each STALE of the wanted partition, the time to the next GRAPH_STARTED (ms)."""
    out = subprocess.run([db, "events", "--json"], cwd=d, capture_output=True, text=True, check=True)
    events = [json.loads(l) for l in out.stdout.splitlines()]

    def micros(ts):
        from datetime import datetime

        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1e6

    stale, started = [], []
    for e in events:
        p = e.get("partitionEvent")
        g = (e.get("jobGraphRunEvent") or {}).get("graphEvent")
        if p and p.get("status") == "PARTITION_STALE" and p["partitionRef"]["str"] == "w/1":
            stale.append(micros(p["timestamp"]))
        # GRAPH_STARTED is the enum's zero: proto3 JSON leaves it out.
        if g and g.get("status", "GRAPH_STARTED") == "GRAPH_STARTED":
            started.append(micros(e["jobGraphRunEvent"]["timestamp"]))
    out = []
    for s in stale:
        after = [t for t in started if t >= s]
        if after:
            out.append((min(after) - s) / 1000)
    return out


def section(db, root, sizes, reps, timed, check):
    lines = [
        "### Wants: the reconciler",
        "",
        "One pass of a reconciler starting on N live wants (`reconcile --once --dry-run`), 1 % of them "
        "unsatisfied (not built, or gone STALE); the first pass after the satisfied ones were wanted "
        "(each recorded SATISFIED) is timed once:",
        "",
        "| live wants | unsatisfied | setup (register + want) | first pass after wanting them | load and decide the unsatisfied | rest of the pass | wall | CPU | peak RSS | to build |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        lines.append(bench_pass(db, root, n, reps, timed, check))
    lat = bench_stale(db, root, max(3, reps))
    lines += [
        "",
        "From a wanted partition going STALE (an upstream invalidated) to its rebuild's graph run starting, "
        "in `databuild serve` (event timestamps): median %.0f ms, max %.0f ms over %d rebuilds."
        % (lat[len(lat) // 2], lat[-1], len(lat)),
    ]
    return lines


def main():
    import run  # noqa: E402  (timed, check)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--databuild", required=True)
    ap.add_argument("--wants", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="databuild-bench-wants-")
    try:
        db = os.path.abspath(args.databuild)
        print("\n".join(section(db, root, [args.wants], args.reps, run.timed, run.check)))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()


def backfill_section(db, root, plan_n, run_n, reps, timed, check, clean):
    """Backfills: planning N partitions of one job with no inputs (`backfill start
    --dry-run`), and running a backfill of M no-op partitions next to `make -j2` doing
    the same work."""
    lines = [
        "### Backfills",
        "",
        "| what | partitions | wall | CPU | peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    d = os.path.join(root, "backfill-plan")
    workloads.write_workload("flat", plan_n, d)
    # One `config` call answers for every partition: about 80 bytes each.
    toml = os.path.join(d, "databuild.toml")
    with open(toml) as f:
        text = f.read().replace("[graph]\n", "[graph]\nmax_config_bytes = %d\n" % (200 * plan_n + (1 << 20)), 1)
    with open(toml, "w") as f:
        f.write(text)
    rng = "bench/n[%07d..%07d]" % (0, plan_n - 1)
    runs = []
    for _ in range(reps):
        clean(d)
        runs.append(check(timed([db, "backfill", "start", rng, "--dry-run", "-j", "2"], d), "backfill --dry-run"))
    runs.sort(key=lambda r: r.wall)
    r = runs[len(runs) // 2]
    if "wanted: %d partitions" % plan_n not in r.out:
        sys.exit("backfill --dry-run did not plan %d partitions:\n%s" % (plan_n, r.out[-2000:]))
    lines.append(
        "| planning (`backfill start --dry-run`, one job, no inputs) | %s | %.2f s | %.2f s | %.0f MiB |"
        % (format(plan_n, ","), r.wall, r.cpu, r.rss_kib / 1024)
    )
    d = os.path.join(root, "backfill-run")
    workloads.write_workload("flat", run_n, d)
    targets = os.path.join(d, "targets.txt")
    walls = {"databuild": [], "make": []}
    cpus = {"databuild": [], "make": []}
    for _ in range(reps):
        clean(d)
        res = check(
            timed([db, "backfill", "start", "--from-file", targets, "-j", "2"], d), "backfill start"
        )
        built = len(os.listdir(os.path.join(d, "stamps")))
        if built != run_n:
            sys.exit("the backfill built %d of %d partitions" % (built, run_n))
        walls["databuild"].append(res.wall)
        cpus["databuild"].append(res.cpu)
        clean(d)
        res = check(timed(["make", "-j", "2"], d), "make")
        walls["make"].append(res.wall)
        cpus["make"].append(res.cpu)
    med = {k: sorted(v)[len(v) // 2] for k, v in walls.items()}
    cpu = {k: sorted(v)[len(v) // 2] for k, v in cpus.items()}
    lines.append(
        "| running: `backfill start -j 2` (one chunk) | %s | %.2f s | %.2f s | |" % (format(run_n, ","), med["databuild"], cpu["databuild"])
    )
    lines.append("| running: `make -j2`, the same no-op command per partition | %s | %.2f s | %.2f s | |" % (format(run_n, ","), med["make"], cpu["make"]))
    lines += [
        "",
        "Per partition, the backfill costs %.2f ms of wall time and %.2f ms of CPU more than `make -j2` (%.2f× its wall time)."
        % (
            (med["databuild"] - med["make"]) * 1000 / run_n,
            (cpu["databuild"] - cpu["make"]) * 1000 / run_n,
            med["databuild"] / med["make"] if med["make"] else float("nan"),
        ),
    ]
    return lines
