"""W8: `databuild serve` under read load on loopback: concurrent clients asking for the
latest status of a partition, over HTTP/1.1 (`GET /api/v1/partitions?ref=...`) and over
gRPC (`databuild.v1.Catalog/GetLatestPartitionEvent`, HTTP/2 without TLS), timed by
`h2load` (Debian's `nghttp2-client`, installed with apt-get when missing).

Used by benches/run.py; standard library only.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import workloads


def ensure_h2load(smoke):
    """The path of h2load, installing nghttp2-client if needed (not in smoke mode);
    None when it is missing."""
    if shutil.which("h2load") is None and not smoke:
        print("installing nghttp2-client (h2load) with apt-get", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-qq", "nghttp2-client"]
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            subprocess.run(cmd, env=env, capture_output=True)
    return shutil.which("h2load")


def grpc_body(ref):
    """A gRPC frame of GetLatestPartitionEventRequest{partition_ref: {str: ref}}."""
    inner = b"\x0a" + varint(len(ref.encode())) + ref.encode()
    msg = b"\x0a" + varint(len(inner)) + inner
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


def h2load(argv, log):
    """Runs h2load; returns (requests/s, p50 ms, p99 ms, failed) from its per-request log."""
    res = subprocess.run(argv + ["--log-file", log], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit("h2load failed (%d):\n%s\n%s" % (res.returncode, res.stdout[-2000:], res.stderr[-2000:]))
    rows = [line.split("\t") for line in open(log) if line.strip()]
    ok = [int(r[2]) / 1000 for r in rows if r[1] == "200"]
    failed = len(rows) - len(ok)  # h2load counts a 4xx/5xx answer as done: the log tells
    rps = None
    for line in res.stdout.splitlines():
        # "finished in 10.00s, 23456.70 req/s, 3.2MB/s"
        if line.startswith("finished in") and "req/s" in line:
            rps = float(line.split(",")[1].split()[0])
    return rps, percentile(ok, 50), percentile(ok, 99), failed


def bench_serve(db, root, partitions, clients, seconds, h2, reps):
    """Starts `databuild serve` on a log of `partitions` available partitions and loads it
    with `clients` connections for `seconds` (after 1 s of warm-up), HTTP then gRPC,
    `reps` times; returns the table lines."""
    d = os.path.join(root, "w8")
    refs_path = workloads.write_available(partitions, d)
    reg = subprocess.run(
        [db, "partitions", "register", "--force", "--from-file", refs_path],
        cwd=d, capture_output=True, text=True,
    )
    if reg.returncode != 0:
        sys.exit("W8: partitions register failed:\n" + reg.stderr[-2000:])
    refs = [line.strip() for line in open(refs_path)]
    step = max(1, len(refs) // 100)
    sample = refs[::step][:100]
    serve = subprocess.Popen(
        [db, "serve", "--addr", "127.0.0.1:0"],
        cwd=d, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        url = serve.stdout.readline().strip().rstrip("/")
        if not url.startswith("http"):
            sys.exit("W8: `databuild serve` printed no URL: %r" % url)
        body = os.path.join(d, "grpc-body.bin")
        with open(body, "wb") as f:
            f.write(grpc_body(sample[len(sample) // 2]))
        common = ["-c", str(clients), "-t", "1", "-D", str(seconds), "--warm-up-time", "1"]
        http_uris = ["%s/api/v1/partitions?ref=%s" % (url, r.replace("=", "%3D")) for r in sample]
        runs = {
            "HTTP/1.1 `GET /api/v1/partitions?ref=…` (100 refs in turn)":
                [h2, "--h1", "-m", "1"] + common + http_uris,
            "gRPC `Catalog/GetLatestPartitionEvent` (h2c, 1 stream per client)":
                [h2, "-m", "1", "-d", body, "-H", "content-type: application/grpc",
                 "-H", "te: trailers"] + common + [url + "/databuild.v1.Catalog/GetLatestPartitionEvent"],
        }
        lines = [
            "| protocol | clients | requests/s | p50 | p99 | failed | runs |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        with tempfile.TemporaryDirectory() as tmp:
            for name, argv in runs.items():
                got = []
                for rep in range(reps):
                    got.append(h2load(argv, os.path.join(tmp, "log-%d" % rep)))
                    print("  W8 %s: repetition %d/%d done" % (name.split()[0], rep + 1, reps), file=sys.stderr)
                med = lambda i: statistics.median(g[i] for g in got if g[i] is not None)
                lines.append(
                    "| %s | %d | %.0f | %.2f ms | %.2f ms | %d | %d |"
                    % (name, clients, med(0), med(1), med(2), sum(g[3] for g in got), reps)
                )
        return lines
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=10)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        shutil.rmtree(d, ignore_errors=True)
