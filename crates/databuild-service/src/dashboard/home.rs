//! The home page: recent graph runs, partitions counted by status, and a form to build.

use std::fmt::Write as _;

use databuild_bel::RunFilter;

use super::{
    html::{self, esc, Nav},
    PageError,
};
use crate::state::App;

/// Graph runs listed on the home page.
const RECENT_RUNS: usize = 25;

/// The home page; `error` and `refs` refill the build form after a refused build.
pub async fn page(
    app: &App,
    error: Option<&str>,
    refs: &str,
) -> Result<(String, Nav, String), PageError> {
    let mut body = String::new();
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"form-error\" role=\"alert\">{}</p>", esc(e))
    });
    let _ = write!(
        body,
        "<section class=\"build\"><h2>Build partitions</h2>\
<form method=\"post\" action=\"/actions/build\" id=\"build-form\">{}\
<textarea name=\"refs\" id=\"build-refs\" rows=\"2\" placeholder=\"one partition ref per line, e.g. reviews/daily/date=2025-01-01\" required>{}</textarea>\
<label><input type=\"checkbox\" name=\"force\" value=\"1\"> rebuild even if available</label>\
<button type=\"submit\">Build</button></form>{error}</section>",
        crate::security::session::csrf_field(),
        esc(refs)
    );
    body.push_str(&counts(app).await?);
    body.push_str(&runs(app).await?);
    Ok(("Runs".to_string(), Nav::Runs, body))
}

async fn counts(app: &App) -> Result<String, PageError> {
    let counts = app.bel.status_counts().await?;
    let total: u64 = counts.iter().map(|c| c.count).sum();
    let mut out = format!(
        "<section data-live=\"counts\"><h2>Partitions</h2><ul class=\"counts\">\
<li><a href=\"/partitions\"><span class=\"n\">{total}</span> all</a></li>"
    );
    for c in counts {
        let name = c.status.as_str_name();
        let word = html::status_word(name);
        let _ = write!(
            out,
            "<li><a href=\"/partitions?status={}\"><span class=\"n\">{}</span> {}</a></li>",
            html::q(&word.to_ascii_lowercase()),
            c.count,
            html::badge(name)
        );
    }
    out.push_str("</ul></section>");
    Ok(out)
}

async fn runs(app: &App) -> Result<String, PageError> {
    let runs = app
        .bel
        .list_runs(&RunFilter {
            limit: RECENT_RUNS,
            ..Default::default()
        })
        .await?;
    let mut out = String::from("<section data-live=\"runs\"><h2>Recent graph runs</h2>");
    if runs.is_empty() {
        out.push_str("<p class=\"muted\">No graph runs yet: build something above.</p></section>");
        return Ok(out);
    }
    out.push_str(
        "<table class=\"runs\"><thead><tr><th>run</th><th>status</th><th>graph</th>\
<th>started (UTC)</th><th>duration</th><th>host</th></tr></thead><tbody>",
    );
    let now = databuild_proto::timestamp_micros(&databuild_proto::now());
    for r in runs {
        let end = if r.is_finished() {
            r.updated_micros
        } else {
            now
        };
        let running = if r.is_finished() { "" } else { " so far" };
        let _ = write!(
            out,
            "<tr data-run=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{running}</td><td>{}</td></tr>",
            esc(&r.run_id),
            html::run_link(&r.run_id),
            html::badge(r.status.as_str_name()),
            esc(&r.label),
            html::time(r.started_micros),
            html::duration(end - r.started_micros),
            esc(r.host.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody></table></section>");
    Ok(out)
}
