"""Runs timed commands from a small helper process, so that their peak RSS is their own.

Linux gives a process that a parent starts with vfork or clone(CLONE_VM) (Python's
`subprocess` does) the parent's peak RSS as its own starting peak when it calls exec: a
runner that once held 400 MiB would report every later command as at least 400 MiB. The
helper is started while the runner is small and stays small, and reports each command's
wall time, CPU time (it and its children) and peak RSS from wait4.
"""

import json
import os
import subprocess
import sys

SERVE = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    req = json.loads(line)
    with open(req["out"], "wb") as out:
        start, epoch = time.perf_counter(), time.time()
        p = subprocess.Popen(req["argv"], cwd=req["cwd"], env=req["env"],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - start
    sys.stdout.write(json.dumps({
        "start": epoch, "end": time.time(), "wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_kib": ru.ru_maxrss,
        "code": os.waitstatus_to_exitcode(status)}) + "\n")
    sys.stdout.flush()
"""

_helper = None


def start():
    """Starts the helper (call it early, while the runner is small)."""
    global _helper
    if _helper is None or _helper.poll() is not None:
        _helper = subprocess.Popen(
            [sys.executable, "-c", SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
    return _helper


def run(argv, cwd, out_path):
    """Runs argv in cwd with its output to out_path; returns (wall, cpu, rss_kib, code,
    (start, end)), start and end on the system clock (the clock of file times)."""
    h = start()
    req = {"argv": list(argv), "cwd": cwd, "env": dict(os.environ), "out": out_path}
    h.stdin.write(json.dumps(req) + "\n")
    h.stdin.flush()
    line = h.stdout.readline()
    if not line:
        raise RuntimeError("the benchmark's process helper stopped")
    r = json.loads(line)
    return r["wall"], r["cpu"], r["rss_kib"], r["code"], (r["start"], r["end"])
