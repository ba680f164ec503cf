#!/usr/bin/env python3
"""databuild's benchmarks, side by side with make and ninja (PRODUCT.md section 8).

    python3 benches/run.py            # the full suite (5 repetitions; W4 up to 1,000,000)
    python3 benches/run.py --quick    # 3 repetitions, W4 at 100,000 only, W6 at 100,000
    python3 benches/run.py --smoke    # tiny sizes, 1 repetition: checks the suite works

Workloads (docs/benchmarks.md explains them):
  W1 chain of N no-op jobs, W2 fan-out 1 -> N -> 1, W3 L layers x W nodes, 3 parents each,
     at N = 200 and 1,000: databuild vs `make -j2` vs `ninja -j2` on the same DAG and the
     same command per node, cold (everything to build) and no-op (everything built),
     interleaved per repetition. Each with a per-ref `config` run once per planning wave,
     and as one persistent process (`config_mode = "persistent"`); the chain of 1,000
     also with a `config` that answers for the whole upstream chain at once. A cold
     build's wall time is also split, per tool, into before the first job, the jobs, and
     after the last job (from the stamp files' times). A fourth runner, "floor"
     (benches/floor.c, built with cc), runs the same DAG with databuild's job protocol
     and nothing else: what databuild spends above it is its own work.
  W4 a no-op request for N already-available partitions: wall time and peak RSS.
  W5 concurrent clients asking for overlapping partitions of one SQLite event log:
     wall time and duplicate executions (must be 0).
  W6 the event log's own benchmark (`cargo bench -p databuild-bel`).
  W7 one level of 100,000 independent partitions, cold, against make, ninja and the floor.
  W8 `databuild serve` under read load: 50 clients, latest status of a partition, over
     HTTP/1.1 and gRPC, timed by h2load (benches/serve_load.py).
  PG W5 on a PostgreSQL event log, and 1, 4 and 8 builders at once on disjoint
     partitions (job runs/s) on SQLite and PostgreSQL.

Prints markdown tables of medians on stdout (and to --out FILE). Uses only the Python
standard library; installs make, ninja-build and nghttp2-client (h2load) with apt-get, and
PostgreSQL through scripts/postgres.sh, when they are missing (except with --smoke, which
skips a missing tool and says so, and uses $DATABUILD_TEST_POSTGRES for PostgreSQL).
"""

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import serve_load  # noqa: E402
import spawner  # noqa: E402
import workloads  # noqa: E402

JOBS = "2"  # the same parallelism for every tool


class Result:
    """One timed process (tree): wall seconds, CPU seconds of it and its children, peak
    RSS in KiB of the largest process, exit code, output, and when it started and ended
    (system clock, seconds)."""

    def __init__(self, wall, cpu, rss_kib, code, out, span):
        self.wall, self.cpu, self.rss_kib, self.code, self.out = wall, cpu, rss_kib, code, out
        self.start, self.end = span


def timed(argv, cwd):
    """Runs argv and measures it with wait4 (wall, user+sys of the tree, peak RSS), from
    the small helper process of `spawner` (see there why)."""
    fd, path = tempfile.mkstemp(prefix="databuild-bench-out-")
    os.close(fd)
    try:
        wall, cpu, rss_kib, code, span = spawner.run(argv, cwd, path)
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    finally:
        os.unlink(path)
    return Result(wall, cpu, rss_kib, code, text, span)


def check(res, what):
    if res.code != 0:
        sys.exit("benchmark step failed: %s exited %d\n%s" % (what, res.code, res.out[-3000:]))
    return res


def run_quiet(argv, cwd=None):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True)


def median(xs):
    return statistics.median(xs) if xs else None


def fmt_s(x):
    if x is None:
        return "–"
    return "%.3f s" % x if x < 10 else "%.1f s" % x


def fmt_ratio(a, b):
    if a is None or b is None or b <= 0:
        return "–"
    return "%.2f×" % (a / b)


def clean(d, bel=True):
    stamps = os.path.join(d, "stamps")
    for f in os.listdir(stamps):
        os.unlink(os.path.join(stamps, f))
    for f in (".ninja_log", ".ninja_deps", "executions.log"):
        if os.path.exists(os.path.join(d, f)):
            os.unlink(os.path.join(d, f))
    shutil.rmtree(os.path.join(d, "logs"), ignore_errors=True)  # the floor's job logs
    if bel:
        shutil.rmtree(os.path.join(d, ".databuild"), ignore_errors=True)


# --- tools -----------------------------------------------------------------------------


def ensure_tools(smoke):
    """make and ninja: installed with apt-get if missing (not in smoke mode). Returns the
    tools to compare with (name: the command that builds a workload in its directory) and
    notes about the ones skipped."""
    wanted = {"make": "make", "ninja": "ninja-build"}
    missing = [pkg for tool, pkg in wanted.items() if shutil.which(tool) is None]
    if missing and not smoke:
        print("installing %s with apt-get" % " ".join(missing), file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-qq"] + missing
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
            subprocess.run(cmd, env=env, check=True, capture_output=True)
    tools, notes = {}, []
    for tool in wanted:
        if shutil.which(tool):
            tools[tool] = [tool, "-j", JOBS]
        else:
            notes.append("%s not installed: skipped (--smoke does not install it)" % tool)
    return tools, notes


def build_floor(root):
    """benches/floor.c, the least a runner with databuild's job protocol does, compiled
    with `cc` (which building databuild needs as its linker). Returns the command that
    builds a workload with it, or None and why not."""
    cc = shutil.which("cc")
    if cc is None:
        return None, "cc not installed: the floor of the job protocol is skipped"
    path = os.path.join(root, "floor")
    res = subprocess.run([cc, "-O2", "-o", path, os.path.join(HERE, "floor.c")], capture_output=True, text=True)
    if res.returncode != 0:
        return None, "benches/floor.c did not compile, the floor is skipped: " + res.stderr.strip()[-300:]
    return [path, "-j", JOBS, "deps.txt", "jobs/noop"], None


def build_databuild():
    print("building databuild: cargo build --release -p databuild", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "-p", "databuild"], cwd=REPO, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    return os.path.join(target, "release", "databuild")


def version(argv):
    try:
        return run_quiet(argv).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return "?"


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = "%.0f GiB" % (int(line.split()[1]) / 1024 / 1024)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "load": load,
        "mem": mem,
        "kernel": platform.release(),
    }


# --- W1-W3: databuild vs make vs ninja ---------------------------------------------------


def bench_dag(db, d, tools, reps, rows, name):
    """Interleaves databuild and `tools` (name: command; make, ninja, the floor) per
    repetition; cold then no-op for each (the floor only cold: it keeps no record of what
    it built)."""
    targets = os.path.join(d, "targets.txt")
    n_nodes = sum(1 for _ in open(os.path.join(d, "deps.txt")))
    t = {k: [] for k in ("plan", "cold", "noop")}
    cmds = {"databuild": [db, "build", "-j", JOBS, "--from-file", targets], **tools}
    times = {tool: {"cold": [], "noop": []} for tool in cmds}
    cpu = {tool: {"cold": [], "noop": []} for tool in cmds}
    rss = []  # databuild's peak RSS in cold builds, KiB
    phases = {tool: [] for tool in cmds}  # cold_phases of each cold build
    for rep in range(reps):
        for tool in cmds:
            clean(d)
            if tool == "databuild":
                # Planning alone: every `config` call, no job runs.
                plan = check(timed([db, "analyze", "--from-file", targets], d), "databuild analyze")
                t["plan"].append(plan.wall)
                clean(d)
            cold = check(timed(cmds[tool], d), tool + " (cold)")
            stamped = stamp_times(d)
            if len(stamped) != n_nodes:
                sys.exit("%s built %d of %d nodes on %s" % (tool, len(stamped), n_nodes, name))
            phases[tool].append(cold_phases(stamped, cold))
            times[tool]["cold"].append(cold.wall)
            cpu[tool]["cold"].append(cold.cpu)
            if tool == "floor":
                continue  # it keeps no record of what it built: no no-op to time
            noop = check(timed(cmds[tool], d), tool + " (no-op)")
            if tool == "databuild" and "nothing to do" not in noop.out:
                sys.exit("databuild's second build was not a no-op:\n" + noop.out)
            times[tool]["noop"].append(noop.wall)
            cpu[tool]["noop"].append(noop.cpu)
            if tool == "databuild":
                rss.append(cold.rss_kib)
        print("  %s: repetition %d/%d done" % (name, rep + 1, reps), file=sys.stderr)
    for mode, label in (("cold", "cold"), ("noop", "no-op")):
        m = {tool: median(times[tool][mode]) for tool in times}
        c = {tool: median(cpu[tool][mode]) for tool in cpu}
        rows.append(
            {
                "workload": name,
                "mode": label,
                "databuild": m["databuild"],
                "make": m.get("make"),
                "ninja": m.get("ninja"),
                "floor": m.get("floor"),
                "cpu": c,
                "jobs": n_nodes,
                "rss": max(rss) / 1024 if mode == "cold" and rss else None,
                "phases": {
                    tool: tuple(median([p[i] for p in phases[tool]]) for i in range(3))
                    for tool in phases
                }
                if mode == "cold"
                else None,
            }
        )
    rows.append(
        {
            "workload": name,
            "mode": "databuild planning only (`analyze`)",
            "databuild": median(t["plan"]),
            "make": None,
            "ninja": None,
            "cpu": {},
        }
    )


def stamp_times(d):
    """The modification times of the workload's stamp files, one per node built."""
    stamps = os.path.join(d, "stamps")
    return [os.stat(os.path.join(stamps, f)).st_mtime for f in os.listdir(stamps)]


def cold_phases(times, res):
    """Where a cold build's wall time went, from its stamp files' `times`: before the
    first stamp was written (start-up, planning, claims: what precedes the first job),
    from the first stamp to the last (the jobs), and after the last (the last job's exit,
    the tool's end). Seconds; file times are as coarse as the kernel's clock tick."""
    first, last = min(times), max(times)
    return (max(0.0, first - res.start), last - first, max(0.0, res.end - last))


def dag_table(rows, tools):
    lines = [
        "| workload | mode | databuild | make -j2 | ninja -j2 | floor -j2 | databuild / make | databuild / ninja | databuild / floor | floor / make |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
            % (
                r["workload"],
                r["mode"],
                fmt_s(r["databuild"]),
                fmt_s(r["make"]),
                fmt_s(r["ninja"]),
                fmt_s(r.get("floor")),
                fmt_ratio(r["databuild"], r["make"]),
                fmt_ratio(r["databuild"], r["ninja"]),
                fmt_ratio(r["databuild"], r.get("floor")),
                fmt_ratio(r.get("floor"), r["make"]),
            )
        )
    lines += [
        "",
        "CPU time (user + sys of the tool and every process it started), medians:",
        "",
        "| workload | mode | databuild | make -j2 | ninja -j2 | floor -j2 | databuild − make, per job | databuild − floor, per job | databuild peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["cpu"]:
            c = r["cpu"]
            def per_job(than):
                if c.get(than) is None or r["mode"] != "cold":
                    return "–"
                return "%+.2f ms" % ((c["databuild"] - c[than]) / r["jobs"] * 1000)

            lines.append(
                "| %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                % (
                    r["workload"],
                    r["mode"],
                    fmt_s(c.get("databuild")),
                    fmt_s(c.get("make")),
                    fmt_s(c.get("ninja")),
                    fmt_s(c.get("floor")),
                    per_job("make"),
                    per_job("floor"),
                    "%.0f MiB" % r["rss"] if r.get("rss") else "–",
                )
            )
    lines += [
        "",
        "Where the cold wall time goes, medians (from the stamp files' times): before the "
        "first job's stamp, from the first stamp to the last, after the last:",
        "",
        "| workload | before (%s) | jobs (%s) | jobs, databuild / make | after (%s) |" % ((" / ".join(["databuild"] + tools),) * 3),
        "|---|---:|---:|---:|---:|",
    ]
    ms = lambda x: "–" if x is None else "%.0f" % (x * 1000)
    for r in rows:
        if not r.get("phases"):
            continue
        p = r["phases"]
        part = lambda i: " / ".join(ms(p[t][i]) if t in p else "–" for t in ["databuild"] + tools) + " ms"
        jobs_ratio = "–"
        if "make" in p:
            jobs_ratio = fmt_ratio(p["databuild"][1], p["make"][1])
        lines.append("| %s | %s | %s | %s | %s |" % (r["workload"], part(0), part(1), jobs_ratio, part(2)))
    return lines


# --- W4: no-op request of N available partitions -----------------------------------------


def bench_available(db, root, sizes, reps):
    lines = [
        "| partitions | register (setup, once) | no-op `build`: wall | CPU | peak RSS (max) | `analyze` alone: wall | CPU | peak RSS | `build --keep-outdated` (no version check): wall | version check costs | runs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        d = os.path.join(root, "w4-%d" % n)
        refs = workloads.write_available(n, d)
        reg = check(
            timed([db, "partitions", "register", "--force", "--from-file", refs], d),
            "databuild partitions register",
        )
        pristine = os.path.join(d, "pristine.sqlite")
        bel = os.path.join(d, ".databuild", "bel.sqlite")
        # As if the graph's versioned job had built them all at its current version (the
        # registration records external data): the version check then has a million
        # builds of that job to look through, as it would after real builds.
        con = sqlite3.connect(bel)
        con.execute("UPDATE builds SET job = 'noop', version = '1'")
        con.commit()
        con.close()
        shutil.copyfile(bel, pristine)
        walls, cpus, rss, plans, kept = [], [], [], [], []
        n_reps = 1 if n >= 10_000_000 else reps  # minutes per repetition at 10M
        for rep in range(n_reps):
            # Every request appends events; start each repetition from the same log.
            shutil.rmtree(os.path.join(d, ".databuild"))
            os.makedirs(os.path.dirname(bel))
            shutil.copyfile(pristine, bel)
            # Planning alone (reads every status, writes nothing), then the request.
            plans.append(
                check(timed([db, "analyze", "--from-file", refs], d), "databuild analyze (W4)")
            )
            res = check(
                timed([db, "build", "-j", JOBS, "--from-file", refs], d), "databuild build (W4)"
            )
            if "nothing to do" not in res.out:
                sys.exit("W4 request was not a no-op:\n" + res.out[-2000:])
            walls.append(res.wall)
            cpus.append(res.cpu)
            rss.append(res.rss_kib)
            # The same request without the version check, from the same log.
            shutil.rmtree(os.path.join(d, ".databuild"))
            os.makedirs(os.path.dirname(bel))
            shutil.copyfile(pristine, bel)
            keep = check(
                timed([db, "build", "-j", JOBS, "--keep-outdated", "--from-file", refs], d),
                "databuild build --keep-outdated (W4)",
            )
            kept.append(keep.wall)
            print("  W4 %d: repetition %d/%d done" % (n, rep + 1, n_reps), file=sys.stderr)
        lines.append(
            "| %s | %s | %s | %s | %.0f MiB | %s | %s | %.0f MiB | %s | %+.1f %% | %d |"
            % (
                f"{n:,}",
                fmt_s(reg.wall),
                fmt_s(median(walls)),
                fmt_s(median(cpus)),
                max(rss) / 1024,
                fmt_s(median([p.wall for p in plans])),
                fmt_s(median([p.cpu for p in plans])),
                max(p.rss_kib for p in plans) / 1024,
                fmt_s(median(kept)),
                (median(walls) / median(kept) - 1) * 100,
                n_reps,
            )
        )
        shutil.rmtree(d)
    return lines


# --- W5: concurrent clients, overlapping requests ----------------------------------------


def bench_concurrent(db, root, clients, per, reps, bel=None, name="w5"):
    """W5: `clients` builds at once, `per` partitions each, consecutive clients sharing
    half of theirs, on one event log (SQLite beside the graph, or a fresh database from
    `bel()` per repetition)."""
    step = per // 2  # consecutive clients share half their partitions
    total = step * (clients - 1) + per
    d = os.path.join(root, name)
    workloads.write_workload("flat", total, d, env={"BENCH_EXEC_LOG": "executions.log"})
    nodes = [line.split()[0] for line in open(os.path.join(d, "deps.txt"))]
    parts = [nodes[c * step : c * step + per] for c in range(clients)]
    walls, dups, missing = run_clients(db, d, parts, total, reps, bel, "W5")
    return [
        "| clients × partitions | distinct partitions | wall (median) | duplicate executions (sum) | never built |",
        "|---|---:|---:|---:|---:|",
        "| %d × %s, 50 %% overlap | %s | %s | %d | %d |"
        % (clients, f"{per:,}", f"{total:,}", fmt_s(median(walls)), sum(dups), sum(missing)),
    ], sum(dups) + sum(missing)


def run_clients(db, d, parts, total, reps, bel, what):
    """Runs one `databuild build` per list of nodes in `parts`, all at once, `reps` times
    from a clean state; returns the wall times, duplicate executions and partitions never
    built per repetition."""
    files = []
    for c, nodes in enumerate(parts):
        path = os.path.join(d, "client-%d.txt" % c)
        with open(path, "w") as f:
            f.write("".join("bench/%s\n" % x for x in nodes))
        files.append(path)
    walls, dups, missing = [], [], []
    for rep in range(reps):
        clean(d)
        url = bel() if bel else None
        # Output goes to files: a client blocked on a full pipe would stall the others
        # waiting on partitions it holds.
        logs = [tempfile.TemporaryFile() for _ in files]
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [db] + (["--bel", url] if url else []) + ["build", "-j", JOBS, "--from-file", f],
                cwd=d,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for f, log in zip(files, logs)
        ]
        for p in procs:
            p.wait()
        walls.append(time.perf_counter() - start)
        for p, log in zip(procs, logs):
            log.seek(0)
            out = log.read().decode(errors="replace")
            log.close()
            if p.returncode != 0:
                sys.exit("%s client exited %d:\n%s" % (what, p.returncode, out[-3000:]))
        log_path = os.path.join(d, "executions.log")
        ran = open(log_path).read().split() if os.path.exists(log_path) else []
        dups.append(len(ran) - len(set(ran)))
        missing.append(total - len(set(ran)))
        print("  %s: repetition %d/%d done" % (what, rep + 1, reps), file=sys.stderr)
    return walls, dups, missing


# --- PostgreSQL: W5 and builders on disjoint partitions ----------------------------------


def postgres(smoke):
    """A PostgreSQL server and a function that creates a fresh database on it and returns
    its URL; or None and why not. With --smoke, the tests' server
    ($DATABUILD_TEST_POSTGRES, which `scripts/test.sh` starts) if set; otherwise a private
    cluster (`scripts/postgres.sh start`, installing PostgreSQL if needed) on port
    $DATABUILD_BENCH_PG_PORT (default 55632, apart from the tests')."""
    base = os.environ.get("DATABUILD_TEST_POSTGRES") if smoke else None
    if smoke and not base:
        return None, "DATABUILD_TEST_POSTGRES is not set (--smoke starts no PostgreSQL)"
    if not base:
        port = os.environ.get("DATABUILD_BENCH_PG_PORT", "55632")
        env = dict(os.environ, DATABUILD_PG_PORT=port)
        res = subprocess.run(
            ["bash", os.path.join(REPO, "scripts", "postgres.sh"), "start"],
            env=env, capture_output=True, text=True,
        )
        if res.returncode != 0:
            return None, "PostgreSQL could not be started: " + res.stderr.strip()[-500:]
        base = res.stdout.strip().splitlines()[-1]
    if shutil.which("psql") is None:
        return None, "`psql` is not installed"
    seq = [0]

    def fresh():
        seq[0] += 1
        name = "bench_%d_%d" % (os.getpid(), seq[0])
        subprocess.run(
            ["psql", base, "-q", "-v", "ON_ERROR_STOP=1", "-c", "DROP DATABASE IF EXISTS %s" % name,
             "-c", "CREATE DATABASE %s" % name],
            check=True, capture_output=True,
        )
        fresh.made.append(name)
        return base.rsplit("/", 1)[0] + "/" + name

    fresh.made = []
    fresh.base = base
    return fresh, None


def drop_databases(fresh):
    for name in fresh.made:
        subprocess.run(["psql", fresh.base, "-q", "-c", "DROP DATABASE IF EXISTS %s" % name],
                       capture_output=True)


def bench_scaling(db, root, counts, per, reps, bels):
    """`k` builders at once on disjoint partitions (`per` each), for each k in `counts`
    and each event log in `bels` (name -> None for SQLite or a fresh-database function):
    job runs per second."""
    lines = [
        "| event log | builders × partitions | job runs | wall (median) | job runs/s | vs 1 builder | duplicates | never built |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    bad = 0
    for log_name, bel in bels.items():
        base = None
        for k in counts:
            d = os.path.join(root, "scale-%s-%d" % (log_name.lower(), k))
            total = k * per
            workloads.write_workload("flat", total, d, env={"BENCH_EXEC_LOG": "executions.log"})
            nodes = [line.split()[0] for line in open(os.path.join(d, "deps.txt"))]
            parts = [nodes[c * per : (c + 1) * per] for c in range(k)]
            walls, dups, missing = run_clients(
                db, d, parts, total, reps, bel, "builders %s %d" % (log_name, k)
            )
            rate = total / median(walls)
            base = base or rate
            bad += sum(dups) + sum(missing)
            lines.append(
                "| %s | %d × %s | %s | %s | %.0f | %.2f× | %d | %d |"
                % (log_name, k, f"{per:,}", f"{total:,}", fmt_s(median(walls)), rate,
                   rate / base, sum(dups), sum(missing))
            )
            shutil.rmtree(d, ignore_errors=True)
    return lines, bad


# --- W6: the event log's own benchmark ---------------------------------------------------


def bench_bel(n):
    argv = ["cargo", "bench", "-q", "-p", "databuild-bel", "--bench", "bel", "--"]
    if n:
        argv.append(str(n))
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if res.returncode != 0:
        return ["`cargo bench -p databuild-bel` failed:", "", "```", res.stderr[-2000:], "```"]
    return [line for line in res.stdout.splitlines() if line.startswith(("|", "event log"))]


# --- main --------------------------------------------------------------------------------


def main():
    spawner.start()  # while this process is small
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 repetitions, W4 at 100,000, W6 at 100,000")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repetition, no W6, no installs")
    ap.add_argument("--databuild", help="the databuild binary (default: cargo build --release)")
    ap.add_argument("--reps", type=int, help="repetitions (default 5; --quick 3; --smoke 1)")
    ap.add_argument(
        "--only", help="comma-separated workloads to run, e.g. W1,W4 (default: all)"
    )
    ap.add_argument("--out", help="also write the report (markdown) to this file")
    ap.add_argument("--keep", action="store_true", help="keep the generated workloads")
    ap.add_argument("--w4", help="W4 sizes, comma-separated (default 100000,1000000), e.g. 10000000")
    args = ap.parse_args()

    # W7: one level of independent partitions; W8: (partitions, clients, seconds);
    # PG: (W5 clients, partitions each), (builder counts, partitions each).
    if args.smoke:
        reps = args.reps or 1
        sizes = {"W1": [5], "W2": [5], "W3": ["3x4"]}
        w4, w5, w7 = [200], (2, 20), 20
        w8 = (200, 4, 1)
        pg_w5, pg_scale = (2, 20), ([1, 2], 10)
        wanted = [200]
        backfills = (300, 50)
        w6 = None
    elif args.quick:
        reps = args.reps or 3
        sizes = {"W1": [200, 1000], "W2": [200, 1000], "W3": ["10x20", "10x100"]}
        w4, w5, w7 = [100_000], (10, 1000), 10_000
        w8 = (100_000, 50, 5)
        pg_w5, pg_scale = (10, 1000), ([1, 4, 8], 250)
        w6 = 100_000
        wanted = [100_000]
        backfills = (100_000, 2000)
    else:
        reps = args.reps or 5
        sizes = {"W1": [200, 1000], "W2": [200, 1000], "W3": ["10x20", "10x100"]}
        # 10,000,000 only with `--w4` (about 5 minutes, most of it registering the refs).
        w4, w5, w7 = [100_000, 1_000_000], (10, 1000), 100_000
        w8 = (100_000, 50, 10)
        pg_w5, pg_scale = (10, 1000), ([1, 4, 8], 500)
        w6 = 0  # the bench's default, 1,000,000
        wanted = [1_000_000]
        backfills = (1_000_000, 2000)
    if args.w4:
        w4 = [int(x) for x in args.w4.split(",")]
    only = set((args.only or "W1,W2,W3,W4,W5,W6,W7,W8,PG,WANTS").upper().split(","))

    tools, notes = ensure_tools(args.smoke)
    db = os.path.abspath(args.databuild) if args.databuild else build_databuild()
    root = tempfile.mkdtemp(prefix="databuild-bench-")
    floor, why = build_floor(root)
    if floor:
        tools["floor"] = floor
    else:
        notes.append(why)
    info = machine()
    started = time.time()
    out = []
    say = out.append
    say("## Results")
    say("")
    say(
        "Machine: %s CPUs (`nproc`), %s, %s RAM, Linux %s; load average at start %s."
        % (info["nproc"], info["cpu"], info["mem"], info["kernel"], info["load"])
    )
    say(
        "Tools: %s; %s; %s. Repetitions: %d (medians shown)."
        % (
            version([db, "--version"]),
            version(["make", "--version"]) if "make" in tools else "make: skipped",
            "ninja " + version(["ninja", "--version"]) if "ninja" in tools else "ninja: skipped",
            reps,
        )
    )
    for n in notes:
        say("")
        say("Note: " + n + ".")
    failed = 0

    def attempt(what, section, report=out):
        """Runs one workload's section; a failure (a step that exited non-zero, a full disk)
        is reported in `report` (in its place, by default) and the next workload still runs."""
        nonlocal failed
        try:
            bad = section()
        except SystemExit as e:
            bad, why = 1, str(e.code)
        except Exception as e:  # a crash of the runner itself, e.g. OSError
            bad, why = 1, "%s: %s" % (type(e).__name__, e)
        else:
            why = None
        if why is not None:
            report.extend(["", "**%s failed**; the suite went on:" % what, "", "```"])
            report.extend(why.strip().splitlines()[-20:])
            report.append("```")
            print("%s failed: %s" % (what, why.strip()), file=sys.stderr)
        failed += bad or 0

    # (workload, shape, title, variant): every shape at every size with a per-ref `config`
    # run once per planning wave (the reference) and as one persistent process
    # (`config_mode = "persistent"`); the largest chain also with a `config` that answers
    # for every ref upstream of the one asked (pre-configured refs: one call plans it).
    shapes = [
        ("W1", "chain", "chain of %s", "per-call"),
        ("W1", "chain", "chain of %s, persistent `config`", "persistent"),
        ("W1", "chain", "chain of %s, `config` answers for its upstream", "closure"),
        ("W2", "fanout", "fan-out 1 → %s → 1", "per-call"),
        ("W2", "fanout", "fan-out 1 → %s → 1, persistent `config`", "persistent"),
        ("W3", "layers", "layers %s, 3 parents", "per-call"),
        ("W3", "layers", "layers %s, 3 parents, persistent `config`", "persistent"),
    ]
    rows = []
    dag_failures = []

    def dag(d, title, dag_reps, write):
        """One W1–W3 or W7 workload; its failure is reported after the table, which keeps
        the rows of the workloads that ran."""

        def section():
            write(d)
            bench_dag(db, d, tools, dag_reps, rows, title)
            shutil.rmtree(d, ignore_errors=True)

        attempt(title, section, dag_failures)

    for key, shape, title, variant in shapes:
        if key not in only:
            continue
        for size in sizes[key] if variant != "closure" else sizes[key][-1:]:
            dag(
                os.path.join(root, "%s-%s-%s" % (key.lower(), size, variant)),
                "%s %s" % (key, title % size),
                reps,
                lambda d, shape=shape, size=size, variant=variant: workloads.write_workload(
                    shape, size, d, closure=variant == "closure", persistent=variant == "persistent"
                ),
            )
    if "W7" in only:
        dag(
            os.path.join(root, "w7"),
            "W7 one level of %s independent partitions" % f"{w7:,}",
            1 if w7 >= 100_000 else reps,
            lambda d: workloads.write_workload("flat", w7, d),
        )
    if rows:
        say("")
        say("### W1–W3: wall time, medians (`-j2` for every tool; cold = nothing built, no-op = everything built)")
        say("")
        out.extend(dag_table(rows, list(tools)))
    out.extend(dag_failures)

    if "W4" in only:
        say("")
        say("### W4: no-op request of already-available partitions")
        say("")
        attempt("W4", lambda: out.extend(bench_available(db, root, w4, min(reps, 3))))

    if "W5" in only:
        say("")
        say("### W5: concurrent clients on one SQLite event log")
        say("")

        def w5_section():
            lines, bad = bench_concurrent(db, root, w5[0], w5[1], min(reps, 3))
            out.extend(lines)
            return bad

        attempt("W5", w5_section)

    if "W8" in only:
        say("")
        say("### W8: `databuild serve` under read load (latest status of a partition, loopback, `h2load`)")
        say("")

        def w8_section():
            h2 = serve_load.ensure_h2load(args.smoke)
            if h2 is None:
                say("Skipped: `h2load` (Debian's `nghttp2-client`) is not installed (--smoke does not install it).")
                return 0
            say(
                "%s available partitions; %d clients for %d s after 1 s of warm-up; latency percentiles from h2load's per-request log."
                % (f"{w8[0]:,}", w8[1], w8[2])
            )
            say("")
            out.extend(serve_load.bench_serve(db, root, w8[0], w8[1], w8[2], h2, min(reps, 3)))
            return 0

        attempt("W8", w8_section)

    if "PG" in only:
        say("")
        say("### PostgreSQL event log: W5, and builders on disjoint partitions")
        say("")

        def pg_section():
            fresh, why = postgres(args.smoke)
            if fresh is None:
                say("Skipped: " + why + ".")
                return 0
            bad = 0
            try:
                lines, b = bench_concurrent(
                    db, root, pg_w5[0], pg_w5[1], min(reps, 3), bel=fresh, name="w5-pg"
                )
                say("W5 on PostgreSQL:")
                say("")
                out.extend(lines)
                bad += b
                say("")
                say("Builders at once on disjoint partitions (`-j2` each), the same flat workload, job runs per second:")
                say("")
                lines, b = bench_scaling(
                    db, root, pg_scale[0], pg_scale[1], min(reps, 3),
                    {"SQLite": None, "PostgreSQL": fresh},
                )
                out.extend(lines)
                bad += b
            finally:
                drop_databases(fresh)
            return bad

        attempt("PostgreSQL", pg_section)

    if "W6" in only and w6 is not None:
        say("")
        say("### W6: event log (`cargo bench -p databuild-bel --bench bel%s`)" % (" -- %d" % w6 if w6 else ""))
        say("")
        attempt("W6", lambda: out.extend(bench_bel(w6)))

    if "WANTS" in only:
        import wants

        say("")
        attempt("Wants", lambda: out.extend(wants.section(db, root, wanted, min(reps, 3), timed, check)))
        say("")
        plan_n, run_n = backfills
        attempt(
            "Backfills",
            lambda: out.extend(
                wants.backfill_section(db, root, plan_n, run_n, min(reps, 3), timed, check, clean)
            ),
        )

    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    say("")
    say("Load average at the end: %s; the suite took %.0f s." % (load, time.time() - started))
    report = "\n".join(out) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print("workloads kept in " + root, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
