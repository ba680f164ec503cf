//! Backfills on the dashboard: `/backfills` lists them with their progress, a backfill's
//! page shows its counts, refs, failures by cause and a calendar of its dated partitions;
//! its Cancel button needs the form's CSRF token and cancels it.

use crate::util::{jobs_graph, ref_job, TestGraph};

use super::{example, raw_request_as, Service};

/// The backfill id that `backfill start` announces on stderr.
fn started_id(stderr: &str) -> String {
    let re = regex::Regex::new(r"backfill (backfill-\S+) `").unwrap();
    re.captures(stderr)
        .unwrap_or_else(|| panic!("no backfill id in: {stderr}"))[1]
        .to_string()
}

fn page(svc: &Service, path: &str) -> String {
    let (status, body) = svc.request("GET", path, "");
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The `data-date`s of the grid's cells with class `c-<state>`.
fn days(body: &str, state: &str) -> Vec<String> {
    let re = regex::Regex::new(&format!(
        r#"<a class="cell c-{state}" style="[^"]*" href="[^"]*" title="[^"]*" data-date="([0-9-]+)""#
    ))
    .unwrap();
    re.captures_iter(body).map(|c| c[1].to_string()).collect()
}

#[test]
fn a_finished_backfill_is_listed_and_its_page_shows_every_day_built() {
    let g = example();
    let svc = Service::start(&g, &["--no-reconcile"]);
    let empty = page(&svc, "/backfills");
    assert!(empty.contains("id=\"no-backfills\""), "{empty}");
    let out = g.run(&[
        "backfill",
        "start",
        "reviews/daily/date=[2025-01-01..2025-01-20]",
        "--name",
        "january <early>",
        "--chunk",
        "5",
        "-j",
        "2",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = started_id(&out.stderr);

    let list = page(&svc, "/backfills");
    assert!(
        list.contains("<a href=\"/backfills\" class=\"here\">Backfills</a>"),
        "{list}"
    );
    let row_re = regex::Regex::new(&format!(
        r#"<tr data-backfill="{id}">.*?</tr>"#,
        id = regex::escape(&id)
    ))
    .unwrap();
    let row = row_re.find(&list).expect("a row for the backfill").as_str();
    assert!(row.contains(&format!("href=\"/backfills/{id}\"")), "{row}");
    assert!(row.contains("<td>january &lt;early&gt;</td>"), "{row}");
    assert!(row.contains("data-status=\"COMPLETED\""), "{row}");
    assert!(row.contains("<td class=\"progress\">20/20</td>"), "{row}");
    assert!(row.contains("<td class=\"failed\">0</td>"), "{row}");
    assert!(row.contains("<td class=\"pending\">0</td>"), "{row}");
    assert!(row.contains("<td class=\"eta\">—</td>"), "{row}");

    let body = page(&svc, &format!("/backfills/{id}"));
    assert!(
        body.contains("Backfill january &lt;early&gt;</h1>"),
        "{body}"
    );
    assert!(body.contains("id=\"n-built\">20/20<"), "{body}");
    assert!(body.contains("id=\"n-failed\">0<"), "{body}");
    assert!(body.contains("id=\"n-pending\">0<"), "{body}");
    assert!(
        body.contains("<code>reviews/daily/date=[2025-01-01..2025-01-20]</code>"),
        "{body}"
    );
    assert!(body.contains("data-live=\"progress\" data-running=\"false\""));
    assert!(body.contains(">January 2025<"), "{body}");
    let built = days(&body, "satisfied");
    let expected: Vec<String> = (1..=20).map(|d| format!("2025-01-{d:02}")).collect();
    assert_eq!(built, expected, "{body}");
    assert_eq!(body.matches("class=\"cell ").count(), 20, "{body}");
    // 2025-01-01 was a Wednesday: third row of the first column.
    assert!(body.contains(
        "style=\"grid-column:1;grid-row:3\" href=\"/partition?ref=reviews%2Fdaily%2Fdate%3D2025-01-01\" \
title=\"reviews/daily/date=2025-01-01: satisfied\""
    ));
    assert!(!body.contains("data-live=\"failures\"><h2>"), "no failures");
    assert!(
        !body.contains("id=\"cancel-backfill\""),
        "a finished backfill has no Cancel"
    );

    let (status, body) = svc.request("GET", "/backfills/backfill-none", "");
    assert_eq!(status, 404);
    assert!(
        body.contains("There is no backfill `backfill-none`"),
        "{body}"
    );
}

#[test]
fn failures_are_grouped_by_cause_and_cancel_needs_the_forms_token() {
    let g = TestGraph::new(&jobs_graph("days", &[("day", "")]));
    ref_job(&g, "day", "", "case \"$r\" in *-03) exit 3;; esac");
    let svc = Service::start(&g, &["--no-reconcile"]);
    // One partition a run; the first failure pauses it: two built, one failed, three to go.
    let out = g.run(&[
        "backfill",
        "start",
        "day/date=[2025-03-01..2025-03-06]",
        "--chunk",
        "1",
        "-j",
        "1",
        "--max-failures",
        "1",
    ]);
    let id = started_id(&out.stderr);
    let url = format!("/backfills/{id}");
    let body = page(&svc, &url);
    assert!(body.contains("data-status=\"PAUSED\""), "{body}");
    assert!(body.contains("id=\"n-built\">2/6<"), "{body}");
    assert!(body.contains("id=\"n-failed\">1<"), "{body}");
    assert!(body.contains("id=\"n-pending\">3<"), "{body}");
    assert_eq!(days(&body, "satisfied"), ["2025-03-01", "2025-03-02"]);
    assert_eq!(days(&body, "failed"), ["2025-03-03"]);
    assert_eq!(
        days(&body, "pending"),
        ["2025-03-04", "2025-03-05", "2025-03-06"]
    );
    let failures = regex::Regex::new(
        r#"<tr data-cause="([^"]+)"><td>[^<]*</td><td class="n">(\d+)</td><td>(.*?)</td></tr>"#,
    )
    .unwrap();
    let groups: Vec<(String, String, String)> = failures
        .captures_iter(&body)
        .map(|c| (c[1].to_string(), c[2].to_string(), c[3].to_string()))
        .collect();
    assert_eq!(groups.len(), 1, "{body}");
    assert_eq!(groups[0].1, "1");
    assert!(
        groups[0]
            .2
            .contains("<a class=\"ref\" href=\"/partition?ref=day%2Fdate%3D2025-03-03\">"),
        "{groups:?}"
    );
    assert!(body.contains("id=\"cancel-backfill\""), "{body}");

    // Without the form's token: refused, nothing changes.
    let form = format!("backfill={id}");
    let (status, refused) = raw_request_as(
        &svc.addr,
        "POST",
        "/actions/cancel-backfill",
        "application/x-www-form-urlencoded",
        &form,
    )
    .unwrap();
    assert_eq!(status, 403, "{refused}");
    assert!(page(&svc, &url).contains("data-status=\"PAUSED\""));

    let csrf = crate::dashboard::csrf_token(&svc.addr);
    let (status, _) = raw_request_as(
        &svc.addr,
        "POST",
        "/actions/cancel-backfill",
        "application/x-www-form-urlencoded",
        &format!("{form}&csrf={csrf}"),
    )
    .unwrap();
    assert_eq!(status, 303);
    let body = page(&svc, &url);
    assert!(body.contains("data-status=\"CANCELLED\""), "{body}");
    assert!(!body.contains("id=\"cancel-backfill\""), "{body}");
    let shown = g.run(&["backfill", "show", &id]);
    assert!(shown.stdout.contains("CANCELLED"), "{}", shown.stdout);
}
