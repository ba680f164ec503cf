"""A job as a real program: argv dispatch, exit codes and streams of the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

JOB = textwrap.dedent(
    '''
    from databuild_sdk import Config, ConfigError, Job

    job = Job("daily", outputs=r"daily/date=(?P<date>\\d{4}-\\d{2}-\\d{2})")

    @job.config
    def configure(outputs):
        (out,) = outputs
        if out.date.startswith("2014"):
            raise ConfigError(f"no data for {out.date}")
        return Config(inputs=[f"raw/date={out.date}"], args=[out.date], env={"K": "v"})

    @job.exec
    def build(config):
        if config.output.date == "2025-06-06":
            print("read 3 rows")
            raise ValueError("bad day")
        print("built", config.output, config.args, config.env)

    if __name__ == "__main__":
        job.main()
    '''
)


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    p = tmp_path / "daily.py"
    p.write_text(JOB)
    return p


def run(job_file: Path, *args: str, env=None, stdin: str = "") -> subprocess.CompletedProcess:
    """Runs the job with this environment (minus any DATABUILD_ variables) plus `env`."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("DATABUILD_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, str(job_file), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
    )


def test_config_then_exec_as_databuild_calls_them(job_file):
    c = run(job_file, "config", "daily/date=2025-01-01")
    assert c.returncode == 0, c.stderr
    (cfg,) = json.loads(c.stdout)["configs"]
    e = run(
        job_file,
        "exec",
        *cfg["args"],
        env={"DATABUILD_JOB_CONFIG": json.dumps(cfg), "DATABUILD_JOB_RUN_ID": "r1"},
        stdin=json.dumps(cfg),
    )
    assert e.returncode == 0, e.stderr
    assert e.stdout == "built daily/date=2025-01-01 ['2025-01-01'] {'K': 'v'}\n"


def test_config_reads_the_refs_file_when_no_refs_are_on_the_command_line(job_file, tmp_path):
    # databuild leaves many refs off the command line; they are always in the file.
    refs = [f"daily/date=2025-01-{d:02d}" for d in range(1, 29)]
    refs_file = tmp_path / "refs.txt"
    refs_file.write_text("".join(r + "\n" for r in refs))
    c = run(job_file, "config", env={"DATABUILD_REFS_FILE": str(refs_file)})
    assert c.returncode == 0, c.stderr
    outputs = [cfg["outputs"][0]["str"] for cfg in json.loads(c.stdout)["configs"]]
    assert outputs == refs
    # Refs on the command line are the same refs; they are used when given.
    c = run(job_file, "config", refs[0], env={"DATABUILD_REFS_FILE": str(refs_file)})
    assert c.returncode == 0, c.stderr
    assert len(json.loads(c.stdout)["configs"]) == 1


def test_config_error_exits_1_with_the_message_on_stderr(job_file):
    c = run(job_file, "config", "daily/date=2014-01-01")
    assert c.returncode == 1
    assert c.stdout == ""
    assert c.stderr == "error: job `daily`: cannot configure [`daily/date=2014-01-01`]: no data for 2014-01-01\n"


def test_exec_exception_exits_1_with_the_traceback_on_stderr(job_file):
    cfg = {"outputs": [{"str": "daily/date=2025-06-06"}]}
    e = run(job_file, "exec", env={"DATABUILD_JOB_CONFIG": json.dumps(cfg)})
    assert e.returncode == 1
    assert "Traceback (most recent call last)" in e.stderr
    assert e.stderr.rstrip().splitlines()[-1] == "ValueError: bad day"


def test_exec_output_reaches_a_shared_log_in_the_order_it_was_written(job_file):
    cfg = {"outputs": [{"str": "daily/date=2025-06-06"}]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABUILD_")}
    env["DATABUILD_JOB_CONFIG"] = json.dumps(cfg)
    e = subprocess.run(
        [sys.executable, str(job_file), "exec"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one log, as databuild keeps it
        text=True,
        env=env,
        timeout=60,
    )
    assert e.returncode == 1
    assert e.stdout.index("read 3 rows") < e.stdout.index("Traceback")


@pytest.mark.parametrize("argv", [[], ["build"]])
def test_no_or_unknown_command_exits_2_with_usage(job_file, argv):
    c = run(job_file, *argv)
    assert c.returncode == 2
    assert "usage: <job> config <partition ref>..." in c.stderr


def test_help_exits_0_with_usage_on_stdout(job_file):
    c = run(job_file, "--help")
    assert c.returncode == 0
    assert "outputs of job `daily`" in c.stdout
