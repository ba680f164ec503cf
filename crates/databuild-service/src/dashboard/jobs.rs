//! Job statistics: per job label, the success rate, duration percentiles and the most
//! recent runs, over the latest job runs in the event log.

use std::{collections::BTreeMap, fmt::Write as _};

use databuild_bel::JobRunRow;
use databuild_proto::JobRunStatus;

use super::{
    html::{self, esc, Nav},
    PageError,
};
use crate::state::App;

/// Job runs the statistics are computed over.
pub const WINDOW: usize = 10_000;
/// Recent runs listed per job.
const RECENT: usize = 8;

/// Statistics of one job label.
#[derive(Debug, Default, PartialEq)]
pub struct Stats {
    /// Finished runs.
    pub finished: usize,
    /// Of which succeeded.
    pub succeeded: usize,
    /// Still scheduled or running.
    pub in_flight: usize,
    /// Duration percentiles of finished runs (p50, p90, p99), microseconds.
    pub percentiles: Option<(i64, i64, i64)>,
}

/// The value at quantile `q` of sorted `v` (nearest rank).
fn quantile(v: &[i64], q: f64) -> i64 {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Statistics of `runs` (all of one label).
pub fn stats(runs: &[&JobRunRow]) -> Stats {
    let mut s = Stats::default();
    let mut durations = Vec::new();
    for r in runs {
        match r.status {
            JobRunStatus::JobSuccess | JobRunStatus::JobFailed => {
                s.finished += 1;
                if r.status == JobRunStatus::JobSuccess {
                    s.succeeded += 1;
                }
                durations.push(r.updated_micros - r.scheduled_micros);
            }
            _ => s.in_flight += 1,
        }
    }
    durations.sort_unstable();
    if !durations.is_empty() {
        s.percentiles = Some((
            quantile(&durations, 0.5),
            quantile(&durations, 0.9),
            quantile(&durations, 0.99),
        ));
    }
    s
}

/// The jobs page.
pub async fn page(app: &App) -> Result<(String, Nav, String), PageError> {
    let runs = app.bel.recent_job_runs(None, WINDOW).await?;
    let mut by_label: BTreeMap<&str, Vec<&JobRunRow>> = BTreeMap::new();
    for j in &app.graph.jobs {
        by_label.entry(j.label.as_str()).or_default();
    }
    for r in &runs {
        by_label.entry(r.label.as_str()).or_default().push(r);
    }
    let mut body = format!(
        "<h1>Jobs</h1><p class=\"muted\">Over the latest {} job runs; a duration is from the job \
run being scheduled to its end.</p><table class=\"jobs\" id=\"jobs\"><thead><tr><th>job</th><th>runs</th>\
<th>success rate</th><th>p50</th><th>p90</th><th>p99</th><th>recent runs (newest first)</th></tr></thead><tbody>",
        runs.len()
    );
    for (label, runs) in &by_label {
        let s = stats(runs);
        let rate = if s.finished == 0 {
            "–".to_string()
        } else {
            format!(
                "{:.0}% <span class=\"muted\">({} of {})</span>",
                s.succeeded as f64 * 100.0 / s.finished as f64,
                s.succeeded,
                s.finished
            )
        };
        let (p50, p90, p99) = s.percentiles.map_or_else(
            || ("–".to_string(), "–".to_string(), "–".to_string()),
            |(a, b, c)| (html::duration(a), html::duration(b), html::duration(c)),
        );
        let recent: String = runs
            .iter()
            .take(RECENT)
            .map(|r| {
                let word = html::status_word(r.status.as_str_name()).to_ascii_lowercase();
                format!(
                    "<a class=\"chip s-{word}\" href=\"{}\" title=\"{} {} UTC\"></a>",
                    html::job_run_url(&r.job_run_id),
                    esc(&word),
                    html::time(r.scheduled_micros)
                )
            })
            .collect();
        let in_flight = if s.in_flight > 0 {
            format!(" <span class=\"muted\">+{} running</span>", s.in_flight)
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr data-job=\"{label_attr}\"><td><b>{label}</b></td><td>{}{in_flight}</td><td>{rate}</td><td>{p50}</td><td>{p90}</td><td>{p99}</td><td class=\"chips\">{recent}</td></tr>",
            s.finished,
            label_attr = esc(label),
            label = esc(label),
        );
    }
    body.push_str("</tbody></table>");
    Ok(("Jobs".to_string(), Nav::Jobs, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: JobRunStatus, micros: i64) -> JobRunRow {
        JobRunRow {
            job_run_id: String::new(),
            run_id: String::new(),
            label: "j".into(),
            job_key: String::new(),
            status,
            scheduled_micros: 0,
            updated_micros: micros,
        }
    }

    #[test]
    fn stats_count_finished_runs_and_take_nearest_rank_percentiles() {
        let mut rows: Vec<JobRunRow> = (1..=10)
            .map(|i| run(JobRunStatus::JobSuccess, i * 1000))
            .collect();
        rows.push(run(JobRunStatus::JobFailed, 100_000));
        rows.push(run(JobRunStatus::JobRunning, 5));
        let refs: Vec<&JobRunRow> = rows.iter().collect();
        assert_eq!(
            stats(&refs),
            Stats {
                finished: 11,
                succeeded: 10,
                in_flight: 1,
                percentiles: Some((6000, 10_000, 100_000)),
            }
        );
        assert_eq!(stats(&[]).percentiles, None);
    }
}
