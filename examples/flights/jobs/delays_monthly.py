"""A month of delay statistics: the fan-in of every daily metrics/delays partition of the
month (FLIGHTS_DAYS limits the days, for quick trials). Parquet, one table:

* `period = 'day'`: the daily rows, as they are;
* `period = 'month'`: per carrier and per origin over the month, from the daily sums
  (a monthly mean is total delay / delayed-flight count, not a mean of daily means).
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import common
from databuild_sdk import Config, Job, JobConfig, Ref

job = Job(
    "delays_monthly",
    outputs=rf"metrics/delays_monthly/month={common.MONTH}",
    requires=["duckdb"],
)


@job.config
def configure(outputs: List[Ref]) -> Config:
    (out,) = outputs
    days = common.month_days(out.month)
    return Config(inputs=[f"metrics/delays/date={d}" for d in days], args=[out.month])


@job.exec
def rollup(config: JobConfig) -> None:
    import duckdb

    daily = [
        common.require_file(common.partition_path(ref, ".parquet"), ref)
        for ref in config.materialized()
    ]
    files = "[" + ", ".join(common.sql_str(p) for p in daily) + "]"
    con = duckdb.connect()
    con.execute(f"CREATE VIEW d AS SELECT * FROM read_parquet({files})")
    con.execute(
        """
        CREATE TABLE m AS
        SELECT 'day' AS period, date, dimension, key, name, 1 AS days, flights, cancelled,
               dep_delay_n, dep_delay_sum, mean_dep_delay, delayed_15,
               arr_delay_n, arr_delay_sum, mean_arr_delay, precip_in, mean_visib
        FROM d
        UNION ALL
        SELECT 'month', NULL, dimension, key, any_value(name), count(DISTINCT date),
               sum(flights)::BIGINT, sum(cancelled)::BIGINT,
               sum(dep_delay_n)::BIGINT, sum(dep_delay_sum), sum(dep_delay_sum) / sum(dep_delay_n),
               sum(delayed_15)::BIGINT,
               sum(arr_delay_n)::BIGINT, sum(arr_delay_sum), sum(arr_delay_sum) / sum(arr_delay_n),
               sum(precip_in), avg(mean_visib)
        FROM d GROUP BY dimension, key
        ORDER BY period, date NULLS FIRST, dimension, key
        """
    )

    def write(tmp: Path) -> None:
        con.execute(f"COPY m TO {common.sql_str(tmp)} (FORMAT parquet)")

    out = common.partition_path(config.output.str, ".parquet")
    common.write_atomically(out, write)
    config.wrote(config.output, out)
    print(f"{config.output}: {len(daily)} days -> {out}")


if __name__ == "__main__":
    job.main()
