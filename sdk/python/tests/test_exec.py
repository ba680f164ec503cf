"""`<job> exec <args>...`: reading the JobConfig, what exec gets, and each error."""

from __future__ import annotations

import json

import pytest

from databuild_sdk import Config, DepType, Input, Job, JobConfig, query
from conftest import call

DAILY = r"daily/date=(?P<date>\d{4}-\d{2}-\d{2})"

CONFIG = {
    "outputs": [{"str": "daily/date=2025-01-01"}],
    "inputs": [
        {"depType": "MATERIALIZE", "partitionRef": {"str": "raw/date=2025-01-01"}},
        {"depType": "QUERY", "partitionRef": {"str": "holidays/date=2025-01-01"}},
    ],
    "args": ["2025-01-01"],
    "env": {"MODE": "full"},
}


def recording_job(**kw):
    """A job whose exec records the JobConfig it got."""
    job = Job("daily", outputs=DAILY, **kw)
    got = []

    @job.exec
    def build(config: JobConfig) -> None:
        got.append(config)

    return job, got


def env_with(config, **extra):
    return {"DATABUILD_JOB_CONFIG": json.dumps(config), **extra}


# --- protocol rules ---------------------------------------------------------------


def test_exec_reads_the_job_config_from_DATABUILD_JOB_CONFIG():
    job, got = recording_job()
    r = call(job, ["exec", "2025-01-01"], env=env_with(CONFIG))
    assert r.code == 0, r.err
    (cfg,) = got
    assert [o.str for o in cfg.outputs] == ["daily/date=2025-01-01"]
    assert cfg.output.date == "2025-01-01"
    assert cfg.inputs == [
        Input("raw/date=2025-01-01", DepType.MATERIALIZE),
        Input("holidays/date=2025-01-01", DepType.QUERY),
    ]
    assert cfg.materialized() == ["raw/date=2025-01-01"]
    assert cfg.queried() == ["holidays/date=2025-01-01"]
    assert cfg.args == ["2025-01-01"]
    assert cfg.env == {"MODE": "full"}


def test_exec_reads_stdin_when_DATABUILD_JOB_CONFIG_is_not_set():
    job, got = recording_job()
    r = call(job, ["exec", "2025-01-01"], stdin=json.dumps(CONFIG))
    assert r.code == 0, r.err
    assert got[0].args == ["2025-01-01"]


def test_exec_prefers_DATABUILD_JOB_CONFIG_over_stdin():
    job, got = recording_job()
    other = dict(CONFIG, args=["from-stdin"])
    r = call(job, ["exec", "2025-01-01"], env=env_with(CONFIG), stdin=json.dumps(other))
    assert r.code == 0, r.err
    assert got[0].args == ["2025-01-01"]


def test_exec_accepts_snake_case_enum_numbers_and_unknown_fields():
    job, got = recording_job()
    snake = {
        "outputs": [{"str": "daily/date=2025-01-01"}],
        "inputs": [
            {"dep_type": 1, "partition_ref": {"str": "a"}},
            {"dep_type": "QUERY", "partition_ref": {"str": "b"}},
            {"depType": 0, "partitionRef": {"str": "c"}},
        ],
        "args": [],
        "futureField": True,
    }
    r = call(job, ["exec"], env=env_with(snake))
    assert r.code == 0, r.err
    assert [(i.ref, i.dep_type) for i in got[0].inputs] == [
        ("a", DepType.MATERIALIZE),
        ("b", DepType.QUERY),
        ("c", DepType.QUERY),
    ]


def test_an_input_without_dep_type_is_query_the_proto3_default():
    job, got = recording_job()
    cfg = {"outputs": [{"str": "daily/date=2025-01-01"}], "inputs": [{"partitionRef": {"str": "a"}}]}
    r = call(job, ["exec"], env=env_with(cfg))
    assert r.code == 0, r.err
    assert got[0].inputs[0].is_query
    assert got[0].args == [] and got[0].env == {}


def test_exec_gets_the_run_ids_from_the_environment():
    job, got = recording_job()
    r = call(
        job,
        ["exec", "2025-01-01"],
        env=env_with(CONFIG, DATABUILD_JOB_RUN_ID="run-1", DATABUILD_GRAPH_RUN_ID="graph-1"),
    )
    assert r.code == 0, r.err
    assert (got[0].job_run_id, got[0].graph_run_id) == ("run-1", "graph-1")


def test_args_env_and_inputs_round_trip_from_config_to_exec():
    job = Job("daily", outputs=DAILY)
    got = []

    @job.config
    def configure(outputs):
        d = outputs[0].date
        return Config(
            inputs=[f"raw/date={d}", query(f"w/date={d}")],
            args=[d, "--with spaces", "ünïcode"],
            env={"MODE": "full", "EMPTY": ""},
        )

    job.exec(got.append)
    resp = call(job, ["config", "daily/date=2025-01-01"]).json()
    (cfg,) = resp["configs"]
    r = call(job, ["exec", *cfg["args"]], env=env_with(cfg))
    assert r.code == 0, r.err
    (jc,) = got
    assert jc.args == ["2025-01-01", "--with spaces", "ünïcode"]
    assert jc.env == {"MODE": "full", "EMPTY": ""}
    assert [(i.ref, i.dep_type) for i in jc.inputs] == [
        ("raw/date=2025-01-01", DepType.MATERIALIZE),
        ("w/date=2025-01-01", DepType.QUERY),
    ]


def test_config_output_piped_into_exec_by_hand_works():
    job, got = recording_job()
    job.config(lambda outputs: Config(args=[outputs[0].date]))
    resp = call(job, ["config", "daily/date=2025-01-01"])
    r = call(job, ["exec"], stdin=resp.out)
    assert r.code == 0, r.err
    assert got[0].args == ["2025-01-01"]


def test_multi_output_exec_parses_every_output():
    job = Job("land", outputs={"flights": r"raw/flights/date=(?P<date>.+)", "weather": r"raw/weather/date=(?P<date>.+)"})
    got = []
    job.exec(got.append)
    cfg = {"outputs": [{"str": "raw/flights/date=1"}, {"str": "raw/weather/date=1"}]}
    r = call(job, ["exec"], env=env_with(cfg))
    assert r.code == 0, r.err
    assert [(o.name, o.date) for o in got[0].outputs] == [("flights", "1"), ("weather", "1")]
    with pytest.raises(ValueError, match="builds 2 outputs, not one"):
        got[0].output  # noqa: B018


def test_differing_command_line_args_are_warned_about():
    job, got = recording_job()
    r = call(job, ["exec", "other"], env=env_with(CONFIG))
    assert r.code == 0
    assert "warning: job `daily`: command-line args ['other'] differ" in r.err
    assert got[0].args == ["2025-01-01"]


# --- errors -------------------------------------------------------------------------


def test_exception_in_exec_prints_the_traceback_and_exits_1():
    job = Job("daily", outputs=DAILY)

    @job.exec
    def build(config):
        raise RuntimeError(f"disk full while writing {config.output}")

    r = call(job, ["exec"], env=env_with(CONFIG))
    assert r.code == 1
    assert "job `daily` failed building [`daily/date=2025-01-01`]:" in r.err
    assert "Traceback (most recent call last)" in r.err
    assert 'raise RuntimeError(f"disk full while writing {config.output}")' in r.err
    assert "databuild_sdk" not in r.err, "the traceback starts in the job's code"
    # The last line (databuild quotes it as the failure reason) is the exception.
    assert r.err.rstrip().splitlines()[-1] == "RuntimeError: disk full while writing daily/date=2025-01-01"


class QueryError(Exception):
    """An exception from a library, with a message of several lines."""


def test_a_multi_line_exception_message_still_ends_stderr_with_its_first_line():
    job = Job("daily", outputs=DAILY)

    @job.exec
    def build(config):
        raise QueryError("Binder Error: no function sum(VARCHAR)\nLINE 2: SELECT sum(precip)\n       ^^^^^^^")

    r = call(job, ["exec"], env=env_with(CONFIG))
    assert r.code == 1
    assert "LINE 2: SELECT sum(precip)" in r.err
    assert r.err.rstrip().splitlines()[-1] == (
        "test_exec.QueryError: Binder Error: no function sum(VARCHAR)"
    )


def test_sys_exit_in_exec_keeps_its_code():
    job = Job("daily", outputs=DAILY)

    @job.exec
    def build(config):
        raise SystemExit(3)

    assert call(job, ["exec"], env=env_with(CONFIG)).code == 3


def test_exec_without_a_job_config_is_a_usage_error():
    job, got = recording_job()
    r = call(job, ["exec", "2025-01-01"])
    assert r.code == 2
    assert "`exec` got no JobConfig: DATABUILD_JOB_CONFIG is not set and stdin is empty" in r.err
    assert got == []


def test_invalid_json_is_a_usage_error_naming_where_it_came_from():
    job, _ = recording_job()
    r = call(job, ["exec"], env={"DATABUILD_JOB_CONFIG": "{not json"})
    assert r.code == 2
    assert "the JobConfig in DATABUILD_JOB_CONFIG is not valid JSON" in r.err
    r = call(job, ["exec"], stdin="[1, 2]")
    assert r.code == 2
    assert "the JobConfig in stdin is not a JobConfig: JobConfig: expected an object, got an array" in r.err


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"outputs": "daily/date=2025-01-01"}, "outputs: expected an array"),
        ({"outputs": [{"str": 3}]}, "outputs[0].str: expected a string, got the number 3"),
        (
            {"outputs": [{"str": "daily/date=2025-01-01"}], "inputs": [{"depType": "SOMETIMES", "partitionRef": {"str": "a"}}]},
            "inputs[0].depType: expected `QUERY` or `MATERIALIZE`, got the string 'SOMETIMES'",
        ),
        (
            {"outputs": [{"str": "daily/date=2025-01-01"}], "inputs": [{"depType": 7, "partitionRef": {"str": "a"}}]},
            "inputs[0].depType: unknown enum number 7",
        ),
        ({"outputs": [{"str": "daily/date=2025-01-01"}], "inputs": [{"depType": 1}]}, "inputs[0]: `partitionRef` is missing"),
        (
            {"outputs": [{"str": "daily/date=2025-01-01"}], "inputs": [{"depType": 1, "partitionRef": {"str": "a"}, "partition_ref": {"str": "b"}}]},
            "both `partitionRef` and `partition_ref` are set",
        ),
        ({"outputs": [{"str": "daily/date=2025-01-01"}], "args": [1]}, "args[0]: expected a string"),
        ({"outputs": [{"str": "daily/date=2025-01-01"}], "env": {"A": 1}}, "env.A: expected a string"),
        ({"outputs": []}, "has no outputs; there is nothing to build"),
    ],
)
def test_malformed_job_config_is_a_usage_error_saying_what_is_wrong(cfg, message):
    job, got = recording_job()
    r = call(job, ["exec"], env=env_with(cfg))
    assert r.code == 2, r.err
    assert message in r.err
    assert got == []


def test_exec_of_an_output_not_matching_the_pattern_exits_1():
    job, got = recording_job()
    cfg = dict(CONFIG, outputs=[{"str": "weekly/2025-W01"}])
    r = call(job, ["exec"], env=env_with(cfg))
    assert r.code == 1
    assert "error: job `daily`: `exec` was asked to build `weekly/2025-W01`, but it matches none of" in r.err
    assert got == []


def test_missing_required_package_fails_exec_naming_it_before_the_job_runs():
    job, got = recording_job(requires=["databuild_sdk_no_such_module"])
    r = call(job, ["exec"], env=env_with(CONFIG))
    assert r.code == 1
    assert "needs the Python package `databuild_sdk_no_such_module`, not installed for" in r.err
    assert got == []


def test_exec_without_an_exec_function_is_a_usage_error():
    job = Job("daily", outputs=DAILY)
    r = call(job, ["exec"], env=env_with(CONFIG))
    assert r.code == 2
    assert "has no exec function; declare one with `@job.exec`" in r.err


# --- digests ------------------------------------------------------------------------


def test_wrote_reports_the_sha256_of_each_output_in_DATABUILD_DIGESTS(tmp_path):
    import hashlib

    job = Job("daily", outputs=DAILY)
    out = tmp_path / "daily.csv"

    @job.exec
    def build(config: JobConfig) -> None:
        out.write_text("a,b\n")
        config.wrote(config.output, out)

    digests = tmp_path / "digests.json"
    r = call(job, ["exec"], env=env_with(CONFIG, DATABUILD_DIGESTS=str(digests)))
    assert r.code == 0, r.err
    want = "sha256:" + hashlib.sha256(b"a,b\n").hexdigest()
    assert json.loads(digests.read_text()) == {"daily/date=2025-01-01": want}


def test_wrote_refuses_a_ref_that_is_not_an_output_and_a_failed_exec_reports_nothing(tmp_path):
    job = Job("daily", outputs=DAILY)

    @job.exec
    def build(config: JobConfig) -> None:
        config.wrote("daily/date=2025-01-02", tmp_path / "x")

    digests = tmp_path / "digests.json"
    r = call(job, ["exec"], env=env_with(CONFIG, DATABUILD_DIGESTS=str(digests)))
    assert r.code == 1
    assert "`daily/date=2025-01-02` is not an output of this run" in r.err
    assert not digests.exists()
