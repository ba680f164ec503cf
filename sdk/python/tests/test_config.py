"""`<job> config <ref>...`: what the SDK prints for each protocol rule, and each error."""

from __future__ import annotations

import json

import pytest

from databuild_sdk import Config, ConfigError, Job, materialize, query
from conftest import call

DAILY = r"daily/date=(?P<date>\d{4}-\d{2}-\d{2})"


def daily_job(**kw) -> Job:
    job = Job("daily", outputs=DAILY, **kw)

    @job.config
    def configure(outputs):
        (out,) = outputs
        return Config(inputs=[f"raw/date={out.date}"], args=[out.date])

    return job


# --- protocol rules ---------------------------------------------------------------


def test_config_answers_all_refs_in_one_response_one_config_per_ref():
    resp = call(daily_job(), ["config", "daily/date=2025-01-01", "daily/date=2025-01-02"]).json()
    assert [c["outputs"] for c in resp["configs"]] == [
        [{"str": "daily/date=2025-01-01"}],
        [{"str": "daily/date=2025-01-02"}],
    ]
    assert [c["args"] for c in resp["configs"]] == [["2025-01-01"], ["2025-01-02"]]


def test_config_prints_exactly_one_json_line_on_stdout():
    r = call(daily_job(), ["config", "daily/date=2025-01-01"])
    assert r.code == 0
    assert r.out.count("\n") == 1 and r.out.endswith("\n")
    json.loads(r.out)
    assert r.err == ""


def test_config_emits_canonical_camel_case_field_and_enum_names():
    resp = call(daily_job(), ["config", "daily/date=2025-01-01"]).json()
    assert resp == {
        "configs": [
            {
                "outputs": [{"str": "daily/date=2025-01-01"}],
                "inputs": [{"depType": "MATERIALIZE", "partitionRef": {"str": "raw/date=2025-01-01"}}],
                "args": ["2025-01-01"],
                "env": {},
            }
        ]
    }


def test_plain_string_inputs_are_materialize_query_is_on_request_and_written_out():
    job = Job("j", outputs=DAILY)

    @job.config
    def configure(outputs):
        d = outputs[0].date
        return Config(inputs=[f"a/{d}", materialize(f"b/{d}"), query(f"c/{d}")])

    (cfg,) = call(job, ["config", "daily/date=2025-01-01"]).json()["configs"]
    assert cfg["inputs"] == [
        {"depType": "MATERIALIZE", "partitionRef": {"str": "a/2025-01-01"}},
        {"depType": "MATERIALIZE", "partitionRef": {"str": "b/2025-01-01"}},
        {"depType": "QUERY", "partitionRef": {"str": "c/2025-01-01"}},
    ]


def test_env_is_emitted_as_a_string_map():
    job = Job("j", outputs=DAILY)

    @job.config
    def configure(outputs):
        return Config(env={"MODE": "full", "DAY": outputs[0].date})

    (cfg,) = call(job, ["config", "daily/date=2025-01-01"]).json()["configs"]
    assert cfg["env"] == {"MODE": "full", "DAY": "2025-01-01"}


def test_named_groups_are_attributes_and_items_of_the_refs_config_gets():
    seen = []
    job = Job("j", outputs=r"sales/region=(?P<region>\w+)/date=(?P<date>[\d-]+)")

    @job.config
    def configure(outputs):
        (out,) = outputs
        seen.append((out.str, str(out), out.region, out["date"], out.groups))
        return Config()

    call(job, ["config", "sales/region=eu/date=2025-01-01"]).json()
    assert seen == [
        (
            "sales/region=eu/date=2025-01-01",
            "sales/region=eu/date=2025-01-01",
            "eu",
            "2025-01-01",
            {"region": "eu", "date": "2025-01-01"},
        )
    ]


def test_patterns_are_anchored_at_both_ends():
    job = daily_job()
    assert call(job, ["config", "x/daily/date=2025-01-01"]).code == 1
    assert call(job, ["config", "daily/date=2025-01-01/extra"]).code == 1


def test_named_patterns_tell_which_one_matched():
    seen = []
    job = Job("land", outputs={"flights": r"raw/flights/(?P<d>.+)", "weather": r"raw/weather/(?P<d>.+)"})

    @job.config
    def configure(outputs):
        seen.extend((o.name, o.d) for o in outputs)
        return Config()

    call(job, ["config", "raw/weather/1", "raw/flights/2"]).json()
    assert seen == [("weather", "1"), ("flights", "2")]


def test_unknown_group_is_an_attribute_error_naming_the_groups_it_has():
    job = daily_job()
    ref = job.parse("daily/date=2025-01-01")
    with pytest.raises(AttributeError, match=r"no named group `month`.*has: `date`"):
        ref.month  # noqa: B018


def test_group_by_gives_refs_with_equal_groups_to_one_call_for_a_multi_output_job():
    calls = []
    job = Job(
        "land",
        outputs=[r"raw/flights/date=(?P<date>.+)", r"raw/weather/date=(?P<date>.+)"],
        group_by="date",
    )

    @job.config
    def configure(outputs):
        calls.append([o.str for o in outputs])
        d = outputs[0].date
        return Config(outputs=[f"raw/flights/date={d}", f"raw/weather/date={d}"], args=[d])

    resp = call(job, ["config", "raw/flights/date=1", "raw/weather/date=2", "raw/weather/date=1"]).json()
    assert calls == [["raw/flights/date=1", "raw/weather/date=1"], ["raw/weather/date=2"]]
    assert [[o["str"] for o in c["outputs"]] for c in resp["configs"]] == [
        ["raw/flights/date=1", "raw/weather/date=1"],
        ["raw/flights/date=2", "raw/weather/date=2"],
    ]


def test_group_by_a_function():
    calls = []
    job = Job("j", outputs=DAILY, group_by=lambda r: r.date[:7])

    @job.config
    def configure(outputs):
        calls.append(len(outputs))
        return Config()

    call(job, ["config", "daily/date=2025-01-01", "daily/date=2025-02-01", "daily/date=2025-01-02"]).json()
    assert calls == [2, 1]


def test_config_may_split_a_group_into_several_configs():
    job = Job("j", outputs=DAILY, group_by=lambda r: "all")

    @job.config
    def configure(outputs):
        return [Config(outputs=[o], args=[o.date]) for o in outputs]

    resp = call(job, ["config", "daily/date=2025-01-01", "daily/date=2025-01-02"]).json()
    assert [c["args"] for c in resp["configs"]] == [["2025-01-01"], ["2025-01-02"]]


def test_a_ref_requested_twice_is_configured_once():
    resp = call(daily_job(), ["config", "daily/date=2025-01-01", "daily/date=2025-01-01"]).json()
    assert len(resp["configs"]) == 1


def test_without_a_config_function_each_ref_gets_no_inputs_and_no_args():
    job = Job("source", outputs=DAILY)
    resp = call(job, ["config", "daily/date=2025-01-01"]).json()
    assert resp == {
        "configs": [{"outputs": [{"str": "daily/date=2025-01-01"}], "inputs": [], "args": [], "env": {}}]
    }


def test_what_config_prints_goes_to_stderr_not_into_the_json():
    job = Job("chatty", outputs=DAILY)

    @job.config
    def configure(outputs):
        print("looking at the calendar")
        return Config()

    r = call(job, ["config", "daily/date=2025-01-01"])
    assert r.code == 0
    json.loads(r.out)
    assert "looking at the calendar" in r.err


# --- errors -------------------------------------------------------------------------


def test_ref_not_matching_the_pattern_exits_1_naming_job_ref_and_patterns():
    r = call(daily_job(), ["config", "daily/date=2025-01-01", "weekly/2025-W01"])
    assert r.code == 1
    assert r.out == ""
    assert r.err.startswith("error: job `daily`: cannot configure `weekly/2025-W01`: ")
    assert "matches none of the job's output patterns [`daily/date=" in r.err


def test_invalid_ref_exits_1():
    r = call(daily_job(), ["config", "daily/date=2025\n-01-01"])
    assert r.code == 1
    assert "not a valid partition ref: a partition ref must not contain control characters" in r.err
    r = call(daily_job(), ["config", ""])
    assert r.code == 1
    assert "must not be empty" in r.err


def test_config_without_refs_is_a_usage_error():
    r = call(daily_job(), ["config"])
    assert r.code == 2
    assert "`config` needs at least one partition ref" in r.err


def test_config_error_exits_1_with_the_message_and_no_traceback():
    job = Job("daily", outputs=DAILY)

    @job.config
    def configure(outputs):
        raise ConfigError(f"no data for {outputs[0].date}")

    r = call(job, ["config", "daily/date=2014-01-01"])
    assert r.code == 1
    assert r.out == ""
    assert r.err == "error: job `daily`: cannot configure [`daily/date=2014-01-01`]: no data for 2014-01-01\n"


def test_exception_in_config_exits_1_with_traceback_and_summary():
    job = Job("daily", outputs=DAILY)

    @job.config
    def configure(outputs):
        return {}["nope"]

    r = call(job, ["config", "daily/date=2025-01-01"])
    assert r.code == 1
    assert "Traceback (most recent call last)" in r.err
    assert r.err.rstrip().endswith(
        "error: job `daily`: config for [`daily/date=2025-01-01`] raised KeyError: 'nope'"
    )


def test_output_not_matching_the_pattern_exits_1():
    job = Job("daily", outputs=DAILY)

    @job.config
    def configure(outputs):
        return Config(outputs=[outputs[0], "weekly/2025-W01"])

    r = call(job, ["config", "daily/date=2025-01-01"])
    assert r.code == 1
    assert r.out == ""
    assert (
        "error: job `daily`: config for [`daily/date=2025-01-01`] returned output `weekly/2025-W01`, "
        "but it matches none of the job's output patterns" in r.err
    )


def test_two_configs_producing_the_same_output_exit_1():
    job = Job("daily", outputs=DAILY, group_by=lambda r: "all")

    @job.config
    def configure(outputs):
        return [Config(outputs=[o, "daily/date=2025-12-31"]) for o in outputs]

    r = call(job, ["config", "daily/date=2025-01-01", "daily/date=2025-01-02"])
    assert r.code == 1
    assert "configs #1 and #2 both produce `daily/date=2025-12-31`" in r.err


def test_requested_ref_missing_from_every_config_exits_1():
    job = Job("daily", outputs=DAILY)

    @job.config
    def configure(outputs):
        return Config(outputs=["daily/date=2025-12-31"])

    r = call(job, ["config", "daily/date=2025-01-01"])
    assert r.code == 1
    assert "returned no config producing [`daily/date=2025-01-01`]" in r.err


def test_config_with_empty_outputs_exits_1():
    job = Job("daily", outputs=DAILY)

    @job.config
    def configure(outputs):
        return Config(outputs=[])

    r = call(job, ["config", "daily/date=2025-01-01"])
    assert r.code == 1
    assert "with no outputs" in r.err


@pytest.mark.parametrize(
    "cfg, message",
    [
        (Config(args=[1]), "returned arg 1 (int); args must be strings"),
        (Config(args="2025-01-01"), "returned `args` as one string; give a list"),
        (Config(env={"N": 3}), "env names and values must be strings"),
        (Config(env={"A=B": "x"}), "which is not a valid environment variable"),
        (Config(inputs=[3]), "returned input 3 (int); give a ref string, query(ref) or materialize(ref)"),
        (Config(inputs="raw/x"), "returned `inputs` as one ref; give a list"),
        (Config(inputs=[""]), "returned an invalid input '': a partition ref must not be empty"),
    ],
)
def test_malformed_config_fields_exit_1_with_what_to_fix(cfg, message):
    job = Job("daily", outputs=DAILY)
    job.config(lambda outputs: cfg)
    r = call(job, ["config", "daily/date=2025-01-01"])
    assert r.code == 1
    assert r.out == ""
    assert r.err.startswith("error: job `daily`: config for [`daily/date=2025-01-01`] ")
    assert message in r.err


def test_config_returning_something_else_exits_1():
    job = Job("daily", outputs=DAILY)
    job.config(lambda outputs: {"inputs": []})
    r = call(job, ["config", "daily/date=2025-01-01"])
    assert r.code == 1
    assert "returned dict; return a databuild_sdk.Config or a list of them" in r.err


def test_missing_required_package_fails_config_naming_it():
    job = daily_job(requires={"databuild_sdk_no_such_module": "no-such-package"})
    r = call(job, ["config", "daily/date=2025-01-01"])
    assert r.code == 1
    assert r.out == ""
    assert "error: job `daily`: needs the Python package `no-such-package`, not installed for" in r.err
    assert "-m pip install no-such-package" in r.err


def test_invalid_pattern_is_refused_when_the_job_is_declared():
    with pytest.raises(ValueError, match="not a valid regular expression"):
        Job("bad", outputs=r"daily/(?P<date")


# --- config --persistent ----------------------------------------------------------


def test_persistent_config_answers_each_request_line_with_one_line():
    stdin = (
        json.dumps({"refs": ["daily/date=2025-01-01"]})
        + "\n"
        + json.dumps({"refs": ["daily/date=2025-01-02", "daily/date=2025-01-03"]})
        + "\n"
    )
    r = call(daily_job(), ["config", "--persistent"], stdin=stdin)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert [c["args"] for c in first["configs"]] == [["2025-01-01"]]
    assert [c["args"] for c in second["configs"]] == [["2025-01-02"], ["2025-01-03"]]


def test_persistent_config_stops_at_a_request_that_is_not_json():
    r = call(daily_job(), ["config", "--persistent"], stdin="daily/date=2025-01-01\n")
    assert r.code == 2
    assert r.out == ""
    assert 'request line 1 is not {"refs": ["<ref>", ...]}' in r.err


def test_persistent_config_exits_with_the_failure_of_a_request():
    stdin = json.dumps({"refs": ["nope"]}) + "\n" + json.dumps({"refs": ["daily/date=2025-01-01"]}) + "\n"
    r = call(daily_job(), ["config", "--persistent"], stdin=stdin)
    assert r.code == 1
    assert r.out == ""
    assert "cannot configure `nope`" in r.err
