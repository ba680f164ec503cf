//! The wants pages: wants with their status, SLA countdown and what each unsatisfied one
//! waits for (filtered by status, newest first), and a want's page with its event history
//! and a button to cancel it.

use std::fmt::Write as _;

use databuild_bel::{Event, WantFilter, WantRow};
use databuild_core::wants;
use databuild_proto::WantStatus;

use super::{
    html::{self, esc, Nav},
    PageError,
};
use crate::{errors::ApiError, http::Params, state::App};

/// Wants listed on the page (the newest).
pub const PAGE: usize = 200;

/// The URL of a want's page.
pub fn want_url(id: &str) -> String {
    format!("/wants/{}", html::q(id))
}

/// `2d 4h`, `2h 3m`, `4m 5s`, `12s`: how long until a deadline.
pub fn countdown(micros: i64) -> String {
    let s = micros.max(0) / 1_000_000;
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

/// The SLA of want `w` at `now`: none, `due in ...`, `missed`, `met`, or `no longer due`
/// (the want ended otherwise); the deadline is its title.
pub fn sla_cell(w: &WantRow, now: i64) -> String {
    let Some(due) = w.sla_micros else {
        return "<span class=\"muted\">–</span>".to_string();
    };
    let title = format!("deadline {} UTC", html::time(due));
    let (class, text) = if w.sla_missed || (w.status == WantStatus::WantActive && now >= due) {
        ("sla-missed", "missed".to_string())
    } else if w.status == WantStatus::WantActive {
        ("sla-due", format!("due in {}", countdown(due - now)))
    } else if w.status == WantStatus::WantSatisfied {
        ("sla-met", "met".to_string())
    } else {
        ("muted", "no longer due".to_string())
    };
    format!(
        "<span class=\"{class}\" title=\"{}\">{}</span>",
        esc(&title),
        esc(&text)
    )
}

/// `text` as HTML with each `` `quoted` `` ref linked to its partition's page (and each
/// graph run to its run's page); other quoted text becomes code.
pub fn linkify(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('`') {
        let Some(len) = rest[start + 1..].find('`') else {
            break;
        };
        let (before, quoted) = (&rest[..start], &rest[start + 1..start + 1 + len]);
        out.push_str(&esc(before));
        if before.ends_with("graph run ") && !quoted.is_empty() {
            out.push_str(&html::run_link(quoted));
        } else if !quoted.is_empty() && !quoted.contains(char::is_whitespace) {
            out.push_str(&html::partition_link(quoted));
        } else {
            let _ = write!(out, "<code>{}</code>", esc(quoted));
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(&esc(rest));
    out
}

fn now_micros() -> i64 {
    databuild_proto::timestamp_micros(&databuild_proto::now())
}

/// The status word of a want status (`ACTIVE`), as a badge.
fn badge(s: WantStatus) -> String {
    html::badge(s.as_str_name())
}

/// `/wants?status=..`.
pub async fn list_page(app: &App, p: &Params) -> Result<(String, Nav, String), PageError> {
    let status = p.get("status").unwrap_or("").trim().to_ascii_lowercase();
    let statuses = if status.is_empty() {
        Vec::new()
    } else {
        vec![WantStatus::parse_name(&status).map_err(|e| ApiError::invalid(e.to_string()))?]
    };
    let rows = app
        .bel
        .wants(&WantFilter {
            statuses,
            ..Default::default()
        })
        .await?;
    let mut body = String::from("<h1>Wants</h1>");
    let options: String = std::iter::once((String::new(), "any status".to_string()))
        .chain(
            WantStatus::short_names()
                .into_iter()
                .map(|s| (s.clone(), s)),
        )
        .map(|(v, text)| {
            let sel = if v == status { " selected" } else { "" };
            format!("<option value=\"{v}\"{sel}>{text}</option>")
        })
        .collect();
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/wants\" class=\"search\">\
<select name=\"status\" id=\"wants-status\">{options}</select><button type=\"submit\">Show</button></form>"
    );
    if rows.is_empty() {
        body.push_str(
            "<p class=\"muted\" id=\"no-wants\">No wants. Create them with <code>POST /api/v1/wants</code> (or <code>Wants.CreateWants</code>), or with <code>[[wants]]</code> schedules in the graph file.</p>",
        );
        return Ok(("Wants".to_string(), Nav::Wants, body));
    }
    body.push_str(
        "<table class=\"wants\" id=\"wants\"><thead><tr><th>want</th><th>partition</th><th>status</th>\
<th>SLA</th><th>created (UTC)</th><th>schedule</th><th>waiting for</th></tr></thead><tbody>",
    );
    let now = now_micros();
    for w in rows.iter().rev().take(PAGE) {
        let waiting = if w.status == WantStatus::WantActive {
            linkify(&wants::waiting_for(&app.graph, app.bel.as_ref(), w).await?)
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr data-want=\"{}\"><td><a class=\"want\" href=\"{}\" title=\"{}\">{}</a></td><td>{}</td><td>{}</td>\
<td>{}</td><td>{}</td><td>{}</td><td class=\"waiting\">{waiting}</td></tr>",
            esc(&w.want_id),
            want_url(&w.want_id),
            esc(&w.want_id),
            esc(html::short_id(&w.want_id)),
            html::partition_link(&w.partition_ref),
            badge(w.status),
            sla_cell(w, now),
            html::time(w.created_micros),
            schedule_cell(w),
        );
    }
    body.push_str("</tbody></table>");
    let _ = write!(
        body,
        "<p class=\"muted\">{} of {} shown, newest first.</p>",
        rows.len().min(PAGE),
        rows.len()
    );
    Ok(("Wants".to_string(), Nav::Wants, body))
}

fn schedule_cell(w: &WantRow) -> String {
    if w.schedule.is_empty() {
        return "<span class=\"muted\">–</span>".to_string();
    }
    match w.tick_micros {
        Some(t) => format!(
            "{} <span class=\"muted\">({})</span>",
            esc(&w.schedule),
            html::time(t)
        ),
        None => esc(&w.schedule),
    }
}

/// `/wants/{id}`.
pub async fn want_page(app: &App, id: &str) -> Result<(String, Nav, String), PageError> {
    let w = match crate::ops::wants::row(app, id).await {
        Ok(w) => w,
        Err(e) if e.code == crate::errors::ErrorCode::NotFound => {
            return Err(PageError::not_found(
                "Want not found",
                format!("There is no want `{id}`; the wants page lists them."),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let waiting = wants::waiting_for(&app.graph, app.bel.as_ref(), &w).await?;
    let now = now_micros();
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1 class=\"ref-title\">Want {}</h1><section><p class=\"summary\"><span id=\"want-status\">{}</span> \
<span class=\"why\" id=\"waiting-for\">waiting for {}</span></p>",
        esc(&w.want_id),
        badge(w.status),
        linkify(&waiting)
    );
    if w.is_live() {
        let _ = write!(
            body,
            "<div class=\"actions\"><form method=\"post\" action=\"/actions/unwant\" class=\"inline\">{}\
<input type=\"hidden\" name=\"want\" value=\"{}\"><button type=\"submit\" id=\"cancel-want\" class=\"danger\">Cancel this want</button></form></div>",
            crate::security::session::csrf_field(),
            esc(&w.want_id)
        );
    }
    let expires = w
        .expires_micros
        .map_or("never".to_string(), |t| format!("{} UTC", html::time(t)));
    let sla = match w.sla_micros {
        Some(t) => format!("{} UTC: {}", html::time(t), sla_cell(&w, now)),
        None => "none".to_string(),
    };
    let _ = write!(
        body,
        "<table class=\"kv\"><tr><th>partition</th><td>{}</td></tr><tr><th>created</th><td>{} UTC</td></tr>\
<tr><th>expires</th><td>{}</td></tr><tr><th>SLA</th><td>{}</td></tr><tr><th>schedule</th><td>{}</td></tr>\
<tr><th>asked by</th><td>{}</td></tr>{}</table></section>",
        html::partition_link(&w.partition_ref),
        html::time(w.created_micros),
        esc(&expires),
        sla,
        schedule_cell(&w),
        esc(&w.requesters.join(", ")),
        if w.reason.is_empty() {
            String::new()
        } else {
            format!("<tr><th>reason</th><td>{}</td></tr>", esc(&w.reason))
        }
    );
    body.push_str(&history(app, &w.want_id).await?);
    Ok((
        format!("Want {}", html::short_id(&w.want_id)),
        Nav::Wants,
        body,
    ))
}

async fn history(app: &App, id: &str) -> Result<String, PageError> {
    let events = app.bel.want_events(id).await?;
    let mut out = String::from(
        "<section><h2>History</h2><table class=\"history\" id=\"want-history\"><thead><tr><th>time (UTC)</th>\
<th>event</th><th>graph run</th><th>detail</th></tr></thead><tbody>",
    );
    for e in events.iter().rev() {
        let Event::Want(w) = &e.event else {
            continue;
        };
        let status = WantStatus::try_from(w.status).unwrap_or_default();
        let mut detail = vec![esc(&w.reason)];
        if w.late {
            detail.push("satisfied after its SLA deadline".to_string());
        }
        if status == WantStatus::WantActive {
            if let Some(t) = &w.expires_at {
                detail.push(format!(
                    "expires {} UTC",
                    html::time(databuild_proto::timestamp_micros(t))
                ));
            }
            if let Some(t) = &w.sla_deadline {
                detail.push(format!(
                    "due {} UTC",
                    html::time(databuild_proto::timestamp_micros(t))
                ));
            }
            if !w.requesting_clients.is_empty() {
                detail.push(format!(
                    "asked by {}",
                    esc(&w.requesting_clients.join(", "))
                ));
            }
        }
        let detail: Vec<String> = detail.into_iter().filter(|d| !d.is_empty()).collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html::time(e.event.timestamp_micros()),
            badge(status),
            if w.job_graph_run_id.is_empty() {
                String::new()
            } else {
                html::run_link(&w.job_graph_run_id)
            },
            detail.join("; ")
        );
    }
    out.push_str("</tbody></table></section>");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(status: WantStatus, sla: Option<i64>, missed: bool) -> WantRow {
        WantRow {
            want_id: "want-1".into(),
            partition_ref: "a/1".into(),
            status,
            created_micros: 0,
            updated_micros: 0,
            expires_micros: None,
            sla_micros: sla,
            sla_missed: missed,
            schedule: String::new(),
            tick_micros: None,
            requesters: Vec::new(),
            reason: String::new(),
            seq: 1,
            backfill: String::new(),
        }
    }

    #[test]
    fn countdowns_read_like_a_person_would_say_them() {
        let s = 1_000_000;
        assert_eq!(countdown(12 * s), "12s");
        assert_eq!(countdown(245 * s), "4m 5s");
        assert_eq!(countdown((2 * 3600 + 3 * 60 + 9) * s), "2h 3m");
        assert_eq!(countdown((2 * 86_400 + 4 * 3600) * s), "2d 4h");
        assert_eq!(countdown(-5), "0s");
    }

    #[test]
    fn the_sla_is_due_missed_or_met() {
        let h = 3_600_000_000;
        let active = want(WantStatus::WantActive, Some(10 * h), false);
        assert!(sla_cell(&active, 8 * h).contains(">due in 2h 0m<"));
        assert!(sla_cell(&active, 11 * h).contains(">missed<"));
        let late = want(WantStatus::WantSatisfied, Some(10 * h), true);
        assert!(sla_cell(&late, 8 * h).contains(">missed<"));
        let met = want(WantStatus::WantSatisfied, Some(10 * h), false);
        assert!(sla_cell(&met, 11 * h).contains(">met<"));
        assert!(sla_cell(&want(WantStatus::WantActive, None, false), 0).contains("–"));
        let gone = want(WantStatus::WantCancelled, Some(10 * h), false);
        assert!(sla_cell(&gone, 8 * h).contains(">no longer due<"));
    }

    #[test]
    fn quoted_refs_and_runs_become_links_and_the_rest_is_escaped() {
        assert_eq!(
            linkify("`a/b=1` is FAILED (graph run `r1`): <x> in `databuild x y`"),
            "<a class=\"ref\" href=\"/partition?ref=a%2Fb%3D1\">a/b=1</a> is FAILED (graph run \
<a class=\"run\" href=\"/runs/r1\" title=\"r1\">r1</a>): &lt;x&gt; in <code>databuild x y</code>"
        );
        assert_eq!(linkify("a `b"), "a `b");
    }
}
