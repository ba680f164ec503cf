"""The client (``databuild.Client``) against a real ``databuild serve``: the binary named
by ``DATABUILD_BIN``, else ``databuild`` on PATH (the wheel's), serving a graph of
Python jobs written with the SDK in a temporary directory."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import databuild
from databuild import (
    ApiError,
    BuildFailed,
    Client,
    ConnectionFailed,
    InvalidArgument,
    NotFound,
    PartitionFailed,
    WaitTimeout,
)

JOBS = {
    # ok/N: no inputs; writes out/ok_N.
    "ok": """
        @job.exec
        def build(config):
            (OUT / config.output.str.replace("/", "_")).write_text("ok")
    """,
    # bad/N: fails with a message in its log.
    "bad": """
        @job.exec
        def build(config):
            raise RuntimeError("the disk is on fire")
    """,
    # down/N: needs bad/N (MATERIALIZE), so it fails upstream.
    "down": """
        @job.config
        def configure(outputs):
            (out,) = outputs
            return Config(inputs=[f"bad/{out.n}"])

        @job.exec
        def build(config):
            (OUT / config.output.str.replace("/", "_")).write_text("down")
    """,
    # slow/N: waits for the file out/release (at most 20 s), then succeeds.
    "slow": """
        @job.exec
        def build(config):
            deadline = time.monotonic() + 20
            while not (OUT / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            (OUT / config.output.str.replace("/", "_")).write_text("slow")
    """,
}


def databuild_bin() -> str:
    found = os.environ.get("DATABUILD_BIN") or shutil.which("databuild")
    if not found:
        pytest.fail(
            "no `databuild` binary: set DATABUILD_BIN (e.g. target/debug/databuild after "
            "`cargo build -p databuild`) or install the wheel (scripts/wheel.sh) into this virtualenv"
        )
    return found


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("graph")
    (d / "jobs").mkdir()
    (d / "out").mkdir()
    toml = ['[graph]\nlabel = "client_test"\n']
    for name, body in JOBS.items():
        head = textwrap.dedent(f"""\
            import time
            from pathlib import Path
            from databuild import Config, Job

            OUT = Path(__file__).resolve().parent.parent / "out"
            job = Job({name!r}, outputs=r"{name}/(?P<n>\\d+)")
            """)
        tail = '\nif __name__ == "__main__":\n    job.main()\n'
        (d / "jobs" / f"{name}.py").write_text(head + textwrap.dedent(body) + tail)
        toml.append(
            f'[[jobs]]\nlabel = "{name}"\nentrypoint = ["{sys.executable}", "jobs/{name}.py"]\n'
            f"produces = ['{name}/\\d+']\n"
        )
    (d / "databuild.toml").write_text("\n".join(toml))
    return d


@pytest.fixture(scope="module")
def url(graph: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [databuild_bin(), "--graph", str(graph / "databuild.toml"), "serve", "--addr", "127.0.0.1:0", "-j", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    if not first.startswith("http"):
        proc.kill()
        pytest.fail(f"`databuild serve` printed {first!r}, not its URL; stderr: {proc.stderr.read() if proc.stderr else ''}")
    yield first
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def client(url: str) -> Client:
    return Client(url, token="test-token", timeout=10)


def test_a_build_streams_its_events_and_waits_for_its_partitions(client: Client) -> None:
    handle = client.submit(["ok/1", "ok/2"])
    kinds, available = [], set()
    for e in handle.events():
        kinds.append(e.kind)
        if e.partition is not None and e.partition.status == "PARTITION_AVAILABLE":
            available.add(e.partition.ref)
    assert kinds[0] == "jobGraphRunEvent" and kinds[-1] == "end", kinds
    assert available == {"ok/1", "ok/2"}
    parts = client.wait_for(["ok/1", "ok/2"], timeout=10)
    assert {p.status for p in parts.values()} == {"PARTITION_AVAILABLE"}
    assert parts["ok/1"].run_id == handle.run_id
    outcome = handle.wait(timeout=10)
    assert outcome.success and sorted(outcome.built) == ["ok/1", "ok/2"]
    assert client.status("ok/1") is not None
    assert client.status("ok/999") is None
    assert handle.run_id in [r.run_id for r in client.runs(limit=50)]
    assert "ok/2" in [p.ref for p in client.partitions(prefix="ok/", status="available")]
    assert client.why("ok/1").root_cause.startswith("`ok/1` is AVAILABLE")


def test_blocking_build_and_up_to_date(client: Client) -> None:
    first = client.build("ok/3", timeout=30)
    assert first.built == ["ok/3"]
    again = client.build(["ok/3"], timeout=30)
    assert again.built == [] and again.up_to_date == ["ok/3"]
    forced = client.build(["ok/3"], force=True, timeout=30)
    assert forced.built == ["ok/3"]


def test_the_partition_event_stream_replays_and_follows(client: Client) -> None:
    client.build("ok/4", timeout=30)
    stream = client.events(refs=["ok/4"], since="2000-01-01T00:00:00Z")
    statuses = []
    for e in stream:
        assert e.ref == "ok/4"
        statuses.append(e.status)
        if e.status == "PARTITION_AVAILABLE":
            break
    stream.close()  # type: ignore[attr-defined]
    assert statuses[-1] == "PARTITION_AVAILABLE" and "PARTITION_BUILDING" in statuses, statuses


def test_request_a_partition(client: Client) -> None:
    client.build("ok/5", timeout=30)
    r = client.request("ok/5")
    assert r.kind == "available" and r.manifest is not None
    started = client.request("ok/6")
    assert started.kind == "building" and started.run_id
    client.wait_for("ok/6", timeout=30)


def test_a_failed_partition_names_its_root_cause(client: Client) -> None:
    handle = client.submit(["down/1"])
    with pytest.raises(PartitionFailed) as failed:
        client.wait_for(["down/1"], timeout=30)
    # down/1 failed because bad/1 did: the root cause is bad/1's own failure.
    assert failed.value.ref == "down/1"
    assert failed.value.why.root_cause.startswith("`bad/1` is FAILED"), failed.value.why
    assert "`bad/1` is FAILED" in str(failed.value)
    with pytest.raises(BuildFailed) as build_failed:
        handle.wait(timeout=30)
    assert build_failed.value.outcome.run_id == handle.run_id
    assert {f.ref for f in build_failed.value.outcome.failed} >= {"down/1", "bad/1"}
    assert "`bad/1` is FAILED" in str(build_failed.value)


def test_a_wait_that_times_out_names_what_is_pending(client: Client, graph: Path) -> None:
    handle = client.submit(["slow/1"])
    try:
        start = time.monotonic()
        with pytest.raises(WaitTimeout) as timed_out:
            client.wait_for(["slow/1"], timeout=0.5)
        assert time.monotonic() - start < 5
        assert isinstance(timed_out.value, TimeoutError)
        assert list(timed_out.value.pending) == ["slow/1"]
        assert "timed out after 0.5 s waiting for partitions: `slow/1`" in str(timed_out.value)
        with pytest.raises(WaitTimeout):
            handle.wait(timeout=0.2)
    finally:
        (graph / "out" / "release").write_text("")
    assert handle.wait(timeout=30).built == ["slow/1"]


def test_an_error_code_from_the_service(client: Client) -> None:
    with pytest.raises(NotFound) as nf:
        client.build_state("no-such-run")
    assert nf.value.code == "not_found" and nf.value.status == 404
    assert "no graph run `no-such-run`" in nf.value.message
    with pytest.raises(InvalidArgument) as bad:
        client.partitions(status="nonsense")
    assert bad.value.code == "invalid_argument" and bad.value.status == 400
    with pytest.raises(ApiError) as no_job:
        client.build(["nojob/1"], timeout=30)
    assert no_job.value.code == "invalid_argument", no_job.value
    assert "no job of graph `client_test` produces it" in str(no_job.value)


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = Client(f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(ConnectionFailed) as refused:
        c.partitions()
    assert f"cannot reach the databuild service at http://127.0.0.1:{port}" in str(refused.value)
    assert "is `databuild serve` running there?" in str(refused.value)
    with pytest.raises(ValueError):
        Client("127.0.0.1:50051")


def test_the_token_is_sent_as_a_bearer_header() -> None:
    seen = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve_one() -> None:
        conn, _ = srv.accept()
        with conn:
            seen.append(conn.recv(65536).decode())
            body = b'{"partitions": []}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

    t = threading.Thread(target=serve_one)
    t.start()
    try:
        assert Client(f"http://127.0.0.1:{srv.getsockname()[1]}", token="s3cret").partitions() == []
    finally:
        t.join(10)
        srv.close()
    assert "Authorization: Bearer s3cret" in seen[0]


def test_the_old_sdk_name_is_the_same_sdk() -> None:
    import databuild_sdk

    assert databuild.Job is databuild_sdk.Job and databuild.Config is databuild_sdk.Config
