#!/usr/bin/env python3
"""The dashboard at scale: time its pages against a `databuild serve` whose event log holds
N partitions (default 1,000,000), registered as available with
`databuild partitions register --from-file` and a few invalidated (STALE).

    python3 benches/dashboard.py                  # 1,000,000 partitions, 20 timed requests per page
    python3 benches/dashboard.py --partitions 100000 --reps 10
    python3 benches/dashboard.py --databuild target/release/databuild

Each page is requested twice to warm up, then --reps times over fresh HTTP connections on
the loopback interface; the table gives the median, 90th percentile and maximum of the
whole request (client-measured, so an upper bound of server time) and, for partition
searches, the query time the page itself reports. Standard library only.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workloads  # noqa: E402
from run import build_databuild  # noqa: E402

TARGET_MS = 200.0


def ref(i):
    return "bench/w4/part=%08d" % i


def setup(db, n, out):
    """A graph and an event log with `n` available partitions, 3 of them invalidated."""
    refs = workloads.write_available(n, out)
    graph = os.path.join(out, "databuild.toml")
    start = time.perf_counter()
    subprocess.run(
        [db, "--graph", graph, "partitions", "register", "--force", "--from-file", refs],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    for i in (n // 3, n // 2, n - 1):
        subprocess.run(
            [db, "--graph", graph, "partitions", "invalidate", ref(i)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return graph, time.perf_counter() - start


def serve(db, graph):
    p = subprocess.Popen(
        [db, "serve", "--graph", graph, "--addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = p.stdout.readline().strip()
    if not url.startswith("http://"):
        p.kill()
        raise SystemExit("databuild serve did not start")
    return p, url


def fetch(url):
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read().decode()
        status = r.status
    return (time.perf_counter() - start) * 1000.0, status, body


def pages(n):
    mid = ref(n // 2)
    deep = ref(n - 200)
    q = urllib.parse.quote
    return [
        ("home (runs, counts by status)", "/"),
        ("partitions, first page", "/partitions"),
        ("partitions, prefix `bench/w4/part=0042`", "/partitions?q=" + q("bench/w4/part=0042")),
        ("partitions, status available", "/partitions?status=available"),
        ("partitions, status stale (3 of N)", "/partitions?status=stale"),
        ("partitions, status failed (none)", "/partitions?status=failed"),
        ("partitions, a page deep in the log (`after`)", "/partitions?after=" + q(deep)),
        ("partitions, pattern `bench/w4/part=0*7`", "/partitions?q=" + q("bench/w4/part=0*7")),
        ("partitions, pattern `*77777` (no literal start: a scan)", "/partitions?q=" + q("*77777")),
        ("one partition", "/partition?ref=" + q(mid)),
        ("jobs", "/jobs"),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--databuild", help="the databuild binary (default: cargo build --release)")
    ap.add_argument("--keep", action="store_true", help="keep the generated event log")
    args = ap.parse_args()
    db = os.path.abspath(args.databuild) if args.databuild else build_databuild()
    out = tempfile.mkdtemp(prefix="databuild-dashboard-bench-")
    server = None
    try:
        print("registering %d partitions in %s ..." % (args.partitions, out), file=sys.stderr)
        graph, setup_s = setup(db, args.partitions, out)
        server, url = serve(db, graph)
        rows = []
        for name, path in pages(args.partitions):
            for _ in range(2):
                fetch(url + path)
            times, found, shown, status = [], [], 0, 0
            for _ in range(args.reps):
                ms, status, body = fetch(url + path)
                times.append(ms)
                m = re.search(r"(\d+) shown; found in ([0-9.]+) ms", body)
                if m:
                    shown = int(m.group(1))
                    found.append(float(m.group(2)))
            times.sort()
            p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
            rows.append(
                (
                    name,
                    status,
                    statistics.median(times),
                    p90,
                    times[-1],
                    statistics.median(found) if found else None,
                    shown if found else None,
                )
            )
        load = os.getloadavg()
        print("Dashboard pages, %s partitions in the SQLite event log (setup %.1f s), %d requests each, load %.2f" % (
            format(args.partitions, ","), setup_s, args.reps, load[0]))
        print()
        print("| page | status | request median | p90 | max | query (page's own timing), median | rows |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, status, med, p90, mx, q_ms, shown in rows:
            print("| %s | %d | %.1f ms | %.1f ms | %.1f ms | %s | %s |" % (
                name, status, med, p90, mx,
                "%.1f ms" % q_ms if q_ms is not None else "–",
                shown if shown is not None else "–"))
        first = [r for r in rows if r[0] == "partitions, first page"][0]
        print()
        print("partitions first page: %.1f ms median (target < %.0f ms): %s" % (
            first[2], TARGET_MS, "met" if first[2] < TARGET_MS else "MISSED"))
    finally:
        if server:
            server.kill()
            server.wait()
        if args.keep:
            print("kept: %s" % out, file=sys.stderr)
        else:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
