"""hello: builds the partition hello/date=<YYYY-MM-DD> by writing
data/hello/date=<date>/greeting.txt beside databuild.toml.

A databuild job is one program with two entry points, ``config`` and ``exec``; the
``databuild`` package (the job SDK) implements both: this job only says what it produces
and how to build one partition.
"""

from pathlib import Path

from databuild import Job, JobConfig

ROOT = Path(__file__).resolve().parent.parent

job = Job("hello", outputs=r"hello/date=(?P<date>\d{4}-\d{2}-\d{2})")


@job.exec
def build(config: JobConfig) -> None:
    out = ROOT / "data" / "hello" / f"date={config.output.date}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "greeting.txt").write_text(f"hello from databuild, for {config.output.date}\n")
    print(f"hello: wrote data/hello/date={config.output.date}/greeting.txt")


if __name__ == "__main__":
    job.main()
