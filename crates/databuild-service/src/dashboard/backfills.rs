//! The backfills pages: every backfill with its status, progress and an estimate of when a
//! running one ends, and a backfill's page with its counts, its refs as given, its failures
//! grouped by cause, a status grid of its partitions (a calendar when they are dated) that
//! follows the backfill while it runs, and a button to cancel it.

pub mod grid;

use std::{collections::BTreeMap, fmt::Write as _};

use databuild_bel::{BackfillRow, Event, WantFilter, WantRow};
use databuild_core::backfill::{self, BackfillError, Counts};
use databuild_proto::{BackfillStatus, WantStatus};

use super::{
    html::{self, esc, Nav},
    PageError,
};
use crate::{errors::ApiError, state::App};

/// Failed partitions whose cause is looked up (one read each); the rest count as unknown.
const CAUSES_LOOKED_UP: usize = 500;
/// Partition refs listed under each cause.
const REFS_PER_CAUSE: usize = 5;

/// The URL of a backfill's page.
pub fn backfill_url(id: &str) -> String {
    format!("/backfills/{}", html::q(id))
}

impl From<BackfillError> for PageError {
    fn from(e: BackfillError) -> Self {
        match e {
            BackfillError::Unknown(id) => PageError::not_found(
                "Backfill not found",
                format!("There is no backfill `{id}`; the backfills page lists them."),
            ),
            BackfillError::Bel(e) => e.into(),
            BackfillError::Core(e) => e.into(),
            e => ApiError::invalid(e.to_string()).into(),
        }
    }
}

fn now_micros() -> i64 {
    databuild_proto::timestamp_micros(&databuild_proto::now())
}

fn badge(s: BackfillStatus) -> String {
    html::badge(s.as_str_name())
}

/// When a running backfill should end, from how long the partitions done so far took:
/// `(total - done) * elapsed / done`; `—` before anything is done or when not running.
pub fn eta(row: &BackfillRow, c: &Counts, now: i64) -> String {
    let done = c.total - c.pending();
    if row.status != BackfillStatus::BackfillRunning || done == 0 {
        return "—".to_string();
    }
    if c.pending() == 0 {
        return "any moment".to_string();
    }
    let elapsed = (now - row.created_micros).max(0) as i128;
    let left = i128::from(c.pending()) * elapsed / i128::from(done);
    format!(
        "in {}",
        html::duration(left.min(i128::from(i64::MAX)) as i64)
    )
}

/// `/backfills`.
pub async fn list_page(app: &App) -> Result<(String, Nav, String), PageError> {
    let rows = app.bel.backfills().await?;
    let mut body = String::from("<h1>Backfills</h1>");
    if rows.is_empty() {
        body.push_str(
            "<p class=\"muted\" id=\"no-backfills\">No backfills. Start one with <code>databuild backfill start REFS</code>, \
e.g. <code>databuild backfill start 'reviews/daily/date=[2025-01-01..2025-01-31]'</code>.</p>",
        );
        return Ok(("Backfills".to_string(), Nav::Backfills, body));
    }
    body.push_str(
        "<div id=\"live\" data-poll=\"backfills\"></div><section data-live=\"backfills\"><table class=\"backfills\" id=\"backfills\"><thead><tr><th>backfill</th><th>name</th>\
<th>status</th><th>built</th><th>failed</th><th>pending</th><th>started (UTC)</th><th>ETA</th></tr></thead><tbody>",
    );
    let now = now_micros();
    let mut running = false;
    for b in &rows {
        let c = backfill::counts(app.bel.as_ref(), b).await?;
        running |= b.status == BackfillStatus::BackfillRunning;
        let _ = write!(
            body,
            "<tr data-backfill=\"{}\"><td><a class=\"backfill\" href=\"{}\" title=\"{}\">{}</a></td><td>{}</td><td>{}</td>\
<td class=\"progress\">{}/{}</td><td class=\"failed\">{}</td><td class=\"pending\">{}</td><td>{}</td><td class=\"eta\">{}</td></tr>",
            esc(&b.backfill_id),
            backfill_url(&b.backfill_id),
            esc(&b.backfill_id),
            esc(html::short_id(&b.backfill_id)),
            esc(&b.name),
            badge(b.status),
            c.built,
            c.total,
            c.failed,
            c.pending(),
            html::time(b.created_micros),
            esc(&eta(b, &c, now)),
        );
    }
    let _ = write!(
        body,
        "</tbody></table><span data-running=\"{running}\"></span></section>"
    );
    Ok(("Backfills".to_string(), Nav::Backfills, body))
}

/// `/backfills/{id}`.
pub async fn backfill_page(app: &App, id: &str) -> Result<(String, Nav, String), PageError> {
    let b = backfill::get(app.bel.as_ref(), id).await?;
    let c = backfill::counts(app.bel.as_ref(), &b).await?;
    let mut body = format!(
        "<div id=\"live\" data-poll=\"backfill\"></div><h1 class=\"ref-title\">Backfill {}</h1>",
        esc(&b.name)
    );
    body.push_str(&progress(app, &b, &c).await?);
    let refs: Vec<String> = b
        .refs
        .iter()
        .map(|r| format!("<code>{}</code>", esc(r)))
        .collect();
    let _ = write!(
        body,
        "<section><table class=\"kv\" id=\"backfill-details\"><tr><th>id</th><td>{}</td></tr>\
<tr><th>refs</th><td id=\"backfill-refs\">{}</td></tr><tr><th>started</th><td>{} UTC</td></tr>\
<tr><th>asked by</th><td>{}</td></tr><tr><th>jobs at once</th><td>{}</td></tr><tr><th>pauses after</th><td>{}</td></tr></table></section>",
        esc(&b.backfill_id),
        refs.join(" "),
        html::time(b.created_micros),
        esc(&b.requesters.join(", ")),
        b.parallelism,
        if b.max_failures == 0 {
            "never".to_string()
        } else {
            format!("{} failed partitions", b.max_failures)
        },
    );
    body.push_str(&failures(app, &b.backfill_id).await?);
    Ok((format!("Backfill {}", b.name), Nav::Backfills, body))
}

/// Status, counts, ETA, reason, the Cancel button and the grid: the part that follows a running backfill.
async fn progress(app: &App, b: &BackfillRow, c: &Counts) -> Result<String, PageError> {
    let running = b.status == BackfillStatus::BackfillRunning;
    let pct = |n: u64| {
        if c.total == 0 {
            0.0
        } else {
            n as f64 * 100.0 / c.total as f64
        }
    };
    let mut out = format!(
        "<section data-live=\"progress\" data-running=\"{running}\"><p class=\"summary\"><span id=\"backfill-status\">{}</span> \
<span class=\"why\" id=\"backfill-reason\">{}</span></p>\
<div class=\"progress-bar\" id=\"backfill-bar\" title=\"{} of {} built\"><span class=\"c-satisfied\" style=\"width:{:.2}%\"></span>\
<span class=\"c-failed\" style=\"width:{:.2}%\"></span><span class=\"c-cancelled\" style=\"width:{:.2}%\"></span></div>\
<ul class=\"counts\" id=\"backfill-counts\"><li><span class=\"n\" id=\"n-built\">{}/{}</span>built</li>\
<li><span class=\"n\" id=\"n-failed\">{}</span>failed</li><li><span class=\"n\" id=\"n-cancelled\">{}</span>cancelled</li>\
<li><span class=\"n\" id=\"n-pending\">{}</span>pending</li><li><span class=\"n\" id=\"eta\">{}</span>ETA</li></ul>",
        badge(b.status),
        esc(&b.reason),
        c.built,
        c.total,
        pct(c.built),
        pct(c.failed),
        pct(c.cancelled),
        c.built,
        c.total,
        c.failed,
        c.cancelled,
        c.pending(),
        esc(&eta(b, c, now_micros())),
    );
    if running || b.status == BackfillStatus::BackfillPaused {
        let _ = write!(
            out,
            "<div class=\"actions\"><form method=\"post\" action=\"/actions/cancel-backfill\" class=\"inline\">{}\
<input type=\"hidden\" name=\"backfill\" value=\"{}\"><button type=\"submit\" id=\"cancel-backfill\" class=\"danger\">Cancel this backfill</button></form>\
<span class=\"muted\">running jobs finish; nothing more is started</span></div>",
            crate::security::session::csrf_field(),
            esc(&b.backfill_id)
        );
    }
    out.push_str(&status_grid(app, b).await?);
    out.push_str("</section>");
    Ok(out)
}

/// The index of a backfill's want from its id (`<backfill>#<index>`).
fn index_of(backfill_id: &str, want_id: &str) -> Option<usize> {
    want_id
        .strip_prefix(backfill_id)?
        .strip_prefix('#')?
        .parse()
        .ok()
}

/// The first [`grid::MAX_CELLS`] partitions of backfill `id` (`all`, in order) with the
/// states of their wants (`(want id, status)`); a partition without a want yet is pending.
fn grid_parts(
    id: &str,
    mut all: Vec<String>,
    wants: &[(&str, WantStatus)],
) -> Vec<(String, grid::Cell)> {
    all.truncate(grid::MAX_CELLS);
    let mut status: Vec<Option<WantStatus>> = vec![None; all.len()];
    for (want_id, s) in wants {
        if let Some(slot) = index_of(id, want_id).and_then(|i| status.get_mut(i)) {
            *slot = Some(*s);
        }
    }
    all.into_iter()
        .zip(status)
        .map(|(r, s)| (r, grid::Cell::of(s)))
        .collect()
}

async fn status_grid(app: &App, b: &BackfillRow) -> Result<String, PageError> {
    let all = databuild_core::ranges::expand_refs(&b.refs)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let wants = backfill::wants(app.bel.as_ref(), &b.backfill_id, grid::MAX_CELLS).await?;
    let statuses: Vec<(&str, WantStatus)> = wants
        .iter()
        .map(|w| (w.want_id.as_str(), w.status))
        .collect();
    let parts = grid_parts(&b.backfill_id, all, &statuses);
    let shown = parts.len();
    let mut out = String::from(
        "<h2>Partitions</h2><ul class=\"legend\"><li><span class=\"swatch c-satisfied\"></span>built</li>\
<li><span class=\"swatch c-pending\"></span>pending</li><li><span class=\"swatch c-failed\"></span>failed</li>\
<li><span class=\"swatch c-cancelled\"></span>cancelled</li></ul>",
    );
    out.push_str(&grid::render(&grid::layout(&parts)));
    if (b.total as usize) > shown {
        let _ = write!(
            out,
            "<p class=\"muted\" id=\"grid-capped\">showing the first {shown} of {} partitions</p>",
            b.total
        );
    }
    Ok(out)
}

/// `unknown`, `job failed`, ...: a failure cause as people read it.
fn cause_word(cause: databuild_proto::FailureCause) -> String {
    cause
        .as_str_name()
        .trim_start_matches("FAILURE_CAUSE_")
        .to_ascii_lowercase()
        .replace('_', " ")
}

/// The cause recorded with a failed want's latest FAILED event.
async fn cause_of(app: &App, w: &WantRow) -> Result<String, PageError> {
    let events = app.bel.want_events(&w.want_id).await?;
    let cause = events.iter().rev().find_map(|e| match &e.event {
        Event::Want(e) if e.status == WantStatus::WantFailed as i32 => Some(e.failure_cause()),
        _ => None,
    });
    Ok(cause_word(
        cause.unwrap_or(databuild_proto::FailureCause::Unknown),
    ))
}

async fn failures(app: &App, id: &str) -> Result<String, PageError> {
    let failed = app
        .bel
        .wants(&WantFilter {
            statuses: vec![WantStatus::WantFailed],
            backfill: Some(id.to_string()),
            ..Default::default()
        })
        .await?;
    if failed.is_empty() {
        return Ok("<div data-live=\"failures\"></div>".to_string());
    }
    let mut by_cause: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (i, w) in failed.iter().enumerate() {
        let cause = if i < CAUSES_LOOKED_UP {
            cause_of(app, w).await?
        } else {
            cause_word(databuild_proto::FailureCause::Unknown)
        };
        by_cause.entry(cause).or_default().push(&w.partition_ref);
    }
    let mut out = format!(
        "<section class=\"failures\" data-live=\"failures\"><h2>Failed partitions ({})</h2>\
<table id=\"backfill-failures\"><thead><tr><th>cause</th><th>partitions</th><th>the first of them</th></tr></thead><tbody>",
        failed.len()
    );
    for (cause, refs) in &by_cause {
        let links: Vec<String> = refs
            .iter()
            .take(REFS_PER_CAUSE)
            .map(|r| html::partition_link(r))
            .collect();
        let more = refs.len().saturating_sub(REFS_PER_CAUSE);
        let _ = write!(
            out,
            "<tr data-cause=\"{}\"><td>{}</td><td class=\"n\">{}</td><td>{}{}</td></tr>",
            esc(cause),
            esc(cause),
            refs.len(),
            links.join(", "),
            if more > 0 {
                format!(" <span class=\"muted\">and {more} more</span>")
            } else {
                String::new()
            }
        );
    }
    if failed.len() > CAUSES_LOOKED_UP {
        let _ = write!(
            out,
            "<tr><td colspan=\"3\" class=\"muted\">causes of the first {CAUSES_LOOKED_UP} failures looked up</td></tr>"
        );
    }
    out.push_str("</tbody></table><p class=\"muted\"><code>databuild backfill retry</code> rebuilds only these.</p></section>");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: BackfillStatus, created: i64) -> BackfillRow {
        BackfillRow {
            backfill_id: "backfill-1".into(),
            name: "n".into(),
            status,
            refs: vec!["a/[1..4]".into()],
            total: 4,
            max_failures: 0,
            parallelism: 1,
            requesters: Vec::new(),
            reason: String::new(),
            created_micros: created,
            updated_micros: created,
            seq: 1,
        }
    }

    #[test]
    fn the_eta_scales_the_time_so_far_by_what_is_left() {
        let s = 1_000_000;
        let running = row(BackfillStatus::BackfillRunning, 100 * s);
        let c = |built, failed| Counts {
            total: 4,
            built,
            failed,
            cancelled: 0,
        };
        assert_eq!(eta(&running, &c(0, 0), 110 * s), "—");
        // One of four done in 10 s: three more take 30 s.
        assert_eq!(eta(&running, &c(1, 0), 110 * s), "in 30.0 s");
        assert_eq!(eta(&running, &c(1, 1), 110 * s), "in 10.0 s");
        assert_eq!(eta(&running, &c(4, 0), 110 * s), "any moment");
        let done = row(BackfillStatus::BackfillCompleted, 100 * s);
        assert_eq!(eta(&done, &c(4, 0), 110 * s), "—");
    }

    #[test]
    fn want_ids_give_the_index_of_their_partition() {
        assert_eq!(index_of("backfill-1", "backfill-1#17"), Some(17));
        assert_eq!(index_of("backfill-1", "backfill-12#1"), None);
        assert_eq!(index_of("backfill-1", "want-1"), None);
    }
    #[test]
    fn the_grid_takes_the_first_partitions_with_their_wants_states() {
        let all: Vec<String> = (0..grid::MAX_CELLS + 5).map(|i| format!("n/{i}")).collect();
        let wants = [
            ("b#000000000", WantStatus::WantSatisfied),
            ("b#000000002", WantStatus::WantFailed),
            ("other#000000001", WantStatus::WantSatisfied),
        ];
        let parts = grid_parts("b", all, &wants);
        assert_eq!(parts.len(), grid::MAX_CELLS);
        assert_eq!(parts[0], ("n/0".to_string(), grid::Cell::Satisfied));
        assert_eq!(parts[1], ("n/1".to_string(), grid::Cell::Pending));
        assert_eq!(parts[2], ("n/2".to_string(), grid::Cell::Failed));
        assert_eq!(
            parts.last().unwrap().0,
            format!("n/{}", grid::MAX_CELLS - 1)
        );
    }
}
