//! HTML building blocks of the dashboard: escaping, links, the page frame, status badges
//! and human times. Every piece of data goes through [`esc`] or [`q`] on its way into a page.

use std::fmt::Write as _;

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};

/// `s` escaped for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded as a query parameter value (then safe in an attribute too).
pub fn q(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The URL of a partition's page.
pub fn partition_url(r: &str) -> String {
    format!("/partition?ref={}", q(r))
}

/// A link to a partition's page, the ref as its text.
pub fn partition_link(r: &str) -> String {
    format!(
        "<a class=\"ref\" href=\"{}\">{}</a>",
        partition_url(r),
        esc(r)
    )
}

/// The URL of a graph run's page.
pub fn run_url(id: &str) -> String {
    format!("/runs/{}", q(id))
}

/// A link to a graph run's page, with a short id as its text.
pub fn run_link(id: &str) -> String {
    format!(
        "<a class=\"run\" href=\"{}\" title=\"{}\">{}</a>",
        run_url(id),
        esc(id),
        esc(short_id(id))
    )
}

/// The URL of a job run's page (its log).
pub fn job_run_url(id: &str) -> String {
    format!("/job-runs/{}", q(id))
}

/// The last 12 characters of a UUID-like id: enough to tell runs apart on a page.
pub fn short_id(id: &str) -> &str {
    let n = id.chars().count();
    if n <= 12 {
        return id;
    }
    let skip = id.char_indices().nth(n - 12).map_or(0, |(i, _)| i);
    &id[skip..]
}

/// A status word as a coloured badge; `status` is the enum name (e.g. `PARTITION_FAILED`).
pub fn badge(status: &str) -> String {
    let word = status_word(status);
    format!(
        "<span class=\"badge s-{}\" data-status=\"{}\">{}</span>",
        esc(&word.to_ascii_lowercase()),
        esc(&word),
        esc(&word)
    )
}

/// `PARTITION_FAILED` → `FAILED`, `JOB_RUNNING` → `RUNNING`, `GRAPH_SUCCESS` → `SUCCESS`,
/// `WANT_ACTIVE` → `ACTIVE`, `BACKFILL_PAUSED` → `PAUSED`.
pub fn status_word(status: &str) -> String {
    status
        .trim_start_matches("PARTITION_")
        .trim_start_matches("JOB_")
        .trim_start_matches("GRAPH_")
        .trim_start_matches("WANT_")
        .trim_start_matches("BACKFILL_")
        .to_string()
}

/// A UTC time, `2025-01-01 12:00:00`.
pub fn time(micros: i64) -> String {
    if micros <= 0 {
        return "–".to_string();
    }
    let t = databuild_proto::UtcTime::from_micros(micros);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// A duration, `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn duration(micros: i64) -> String {
    let ms = micros.max(0) / 1000;
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60)
    } else {
        format!("{} h {:02} min", ms / 3_600_000, ms / 60_000 % 60)
    }
}

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The home page and runs.
    Runs,
    /// Partition search and pages.
    Partitions,
    /// Job statistics.
    Jobs,
    /// Wants and a want's page.
    Wants,
    /// Backfills and a backfill's page.
    Backfills,
    /// None (error pages).
    None,
}

/// A whole page: `title` (plain text), the graph label, and `body` (HTML).
pub fn page(title: &str, graph: &str, nav: Nav, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let item = |href: &str, text: &str, this: Nav| {
        let class = if nav == this { " class=\"here\"" } else { "" };
        format!("<a href=\"{href}\"{class}>{text}</a>")
    };
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · databuild</title>\
<link rel=\"stylesheet\" href=\"/assets/dashboard.css\">\
<script src=\"/assets/dashboard.js\" defer></script></head>\
<body><header><a class=\"brand\" href=\"/\">databuild</a>\
<span class=\"graph\" title=\"graph label\">{graph}</span><nav>{}{}{}{}{}</nav>\
<span id=\"conn\" class=\"conn\" role=\"status\" aria-live=\"polite\"></span></header>\
<main>{body}</main></body></html>\n",
        item("/", "Runs", Nav::Runs),
        item("/partitions", "Partitions", Nav::Partitions),
        item("/jobs", "Jobs", Nav::Jobs),
        item("/wants", "Wants", Nav::Wants),
        item("/backfills", "Backfills", Nav::Backfills),
        title = esc(title),
        graph = esc(graph),
    );
    out
}

/// An HTML response.
pub fn respond(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_data_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(
            partition_link("a/b=c?d#e f/ü<i>"),
            "<a class=\"ref\" href=\"/partition?ref=a%2Fb%3Dc%3Fd%23e+f%2F%C3%BC%3Ci%3E\">a/b=c?d#e f/ü&lt;i&gt;</a>"
        );
    }

    #[test]
    fn times_and_durations_read_like_a_person_would_write_them() {
        assert_eq!(time(1_735_689_600_000_000), "2025-01-01 00:00:00");
        assert_eq!(
            time(951_782_400_000_000 + 3_723_000_000),
            "2000-02-29 01:02:03"
        );
        assert_eq!(duration(850_000), "850 ms");
        assert_eq!(duration(12_340_000), "12.3 s");
        assert_eq!(duration(245_000_000), "4 min 05 s");
        assert_eq!(duration(7_380_000_000), "2 h 03 min");
    }

    #[test]
    fn short_ids_keep_the_tail() {
        assert_eq!(
            short_id("0193c3a4-5b6c-7d8e-9f00-112233445566"),
            "112233445566"
        );
        assert_eq!(short_id("r1"), "r1");
    }
}
