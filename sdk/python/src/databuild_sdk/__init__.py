"""Write databuild jobs in Python.

A databuild job is one program with two entry points (see databuild's README, "The job
protocol"): ``<job> config <ref>...`` prints a ``JobConfigureResponse`` (which inputs,
args and env each set of outputs needs) and ``<job> exec <args>...`` builds the outputs
of the ``JobConfig`` in ``DATABUILD_JOB_CONFIG``. This package implements both ends of
that protocol; a job supplies two functions::

    from databuild_sdk import Config, Job, query

    job = Job("daily_summary", outputs=r"reviews/daily/date=(?P<date>\\d{4}-\\d{2}-\\d{2})")

    @job.config
    def configure(outputs):
        (out,) = outputs                     # one ref per call unless group_by is set
        return Config(
            inputs=[f"reviews/clean/date={out.date}",          # MATERIALIZE: built first
                    query(f"holidays/date={out.date}")],       # QUERY: read if present
            args=[out.date],
        )

    @job.exec
    def build(config):
        day = config.output.date
        ...                                                    # write the partition

    if __name__ == "__main__":
        job.main()

What the SDK does for you:

* ``config``: parses every requested ref with the job's patterns (named groups become
  ``ref.date``), refuses refs the job does not produce, calls your function once per
  group, checks what it returned (outputs match the patterns, no ref in two configs,
  every requested ref produced, inputs are valid refs, args and env are strings) and
  prints canonical proto3 JSON. Plain strings in ``inputs`` are **MATERIALIZE** inputs
  (the protocol's default is QUERY: the SDK writes ``depType`` out every time). Anything
  your function prints goes to stderr, so it cannot corrupt the JSON answer.
* ``exec``: reads the ``JobConfig`` from ``DATABUILD_JOB_CONFIG`` (or stdin), accepting
  both ``depType`` and ``dep_type`` spellings and enum names or numbers, parses the
  outputs, and calls your function; an exception prints its traceback to stderr (which
  databuild keeps in the job's log) and exits 1.
* Errors name the job and the refs, on stderr. Exit codes: 0 success; 1 the job failed
  (a :class:`ConfigError`, an exception, a ref the job does not produce, a missing
  package from ``requires``); 2 it was not called as the protocol says (no command, bad
  JSON).
"""

from ._job import EXIT_FAILED, EXIT_USAGE, ConfigError, Job
from ._proto import Config, DepType, Input, JobConfig, ProtocolError, materialize, query
from ._refs import Ref

__all__ = [
    "Config",
    "ConfigError",
    "DepType",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "Input",
    "Job",
    "JobConfig",
    "ProtocolError",
    "Ref",
    "materialize",
    "query",
]

__version__ = "0.1.0"
