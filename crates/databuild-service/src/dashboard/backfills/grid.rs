//! The status grid of a backfill's partitions. When every ref carries a `YYYY-MM-DD` date
//! it is a calendar: one block per month, weeks as columns and weekdays (Monday first) as
//! rows, one cell per day, a day of several partitions coloured by its worst status;
//! otherwise one cell per partition in partition order. [`layout`] places the cells,
//! [`render`] draws them.

use std::{collections::BTreeMap, fmt::Write as _};

use databuild_proto::WantStatus;

use crate::dashboard::html::{self, esc};

/// Cells drawn at most; beyond, the page says how many it shows.
pub const MAX_CELLS: usize = 20_000;

/// A partition's state in its backfill, best first (a day shows its worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cell {
    /// Built: its want is satisfied.
    Satisfied,
    /// Not done yet: its want is active, or not created yet.
    Pending,
    /// Withdrawn: its want was cancelled or expired.
    Cancelled,
    /// Its build failed.
    Failed,
}

impl Cell {
    /// The state of a partition whose want has `status` (none yet: pending).
    pub fn of(status: Option<WantStatus>) -> Self {
        match status {
            Some(WantStatus::WantSatisfied) => Self::Satisfied,
            Some(WantStatus::WantFailed) => Self::Failed,
            Some(WantStatus::WantCancelled | WantStatus::WantExpired) => Self::Cancelled,
            _ => Self::Pending,
        }
    }

    /// The word people read (and the CSS class, `c-<word>`).
    pub fn word(self) -> &'static str {
        match self {
            Self::Satisfied => "satisfied",
            Self::Pending => "pending",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

/// A calendar day: year, month, day.
pub type Date = (i32, u32, u32);

/// One day of a calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    /// The day.
    pub date: Date,
    /// Week within its month's block (column, from 0).
    pub week: usize,
    /// Monday 0 … Sunday 6 (row).
    pub weekday: usize,
    /// Its partitions (ref, state), in partition order; none for a day without any.
    pub parts: Vec<(String, Cell)>,
}

impl Day {
    /// The worst state of its partitions (none: no partition that day).
    pub fn worst(&self) -> Option<Cell> {
        self.parts.iter().map(|p| p.1).max()
    }
}

/// The days of one month that the backfill spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Month {
    /// Year and month.
    pub year: i32,
    pub month: u32,
    /// Columns of the block.
    pub weeks: usize,
    /// Every day from the first to the last spanned, in order.
    pub days: Vec<Day>,
}

/// Where the cells go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Dated partitions, month by month.
    Calendar(Vec<Month>),
    /// One cell per partition, in partition order.
    Plain(Vec<(String, Cell)>),
}

/// The first valid `YYYY-MM-DD` in `s`.
pub fn date_in(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    (0..b.len().saturating_sub(9)).find_map(|i| {
        let shaped = digits(i..i + 4)
            && b[i + 4] == b'-'
            && digits(i + 5..i + 7)
            && b[i + 7] == b'-'
            && digits(i + 8..i + 10);
        if !shaped {
            return None;
        }
        // Not part of a longer number on either side.
        if (i > 0 && b[i - 1].is_ascii_digit()) || b.get(i + 10).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let y: i32 = s[i..i + 4].parse().ok()?;
        let m: u32 = s[i + 5..i + 7].parse().ok()?;
        let d: u32 = s[i + 8..i + 10].parse().ok()?;
        ((1..=12).contains(&m) && d >= 1 && d <= month_len(y, m)).then_some((y, m, d))
    })
}

fn leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_len(y: i32, m: u32) -> u32 {
    match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (proleptic Gregorian).
fn days(date: Date) -> i64 {
    let (y, m, d) = date;
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Monday 0 … Sunday 6.
fn weekday(date: Date) -> usize {
    // 1970-01-01 was a Thursday.
    (days(date) + 3).rem_euclid(7) as usize
}

fn next(date: Date) -> Date {
    let (y, m, d) = date;
    if d < month_len(y, m) {
        (y, m, d + 1)
    } else if m < 12 {
        (y, m + 1, 1)
    } else {
        (y + 1, 1, 1)
    }
}

/// Places `parts` (ref and state, in partition order): a calendar when every ref is dated,
/// else a plain grid.
pub fn layout(parts: &[(String, Cell)]) -> Layout {
    let dated: Option<Vec<Date>> = parts.iter().map(|(r, _)| date_in(r)).collect();
    let Some(dates) = dated.filter(|d| !d.is_empty()) else {
        return Layout::Plain(parts.to_vec());
    };
    let mut by_day: BTreeMap<Date, Vec<(String, Cell)>> = BTreeMap::new();
    for (date, part) in dates.iter().zip(parts) {
        by_day.entry(*date).or_default().push(part.clone());
    }
    let (first, last) = (
        *by_day.keys().next().expect("not empty"),
        *by_day.keys().next_back().expect("not empty"),
    );
    let mut months: Vec<Month> = Vec::new();
    let mut date = first;
    loop {
        let (y, m, _) = date;
        if months.last().is_none_or(|b| (b.year, b.month) != (y, m)) {
            months.push(Month {
                year: y,
                month: m,
                weeks: 0,
                days: Vec::new(),
            });
        }
        let block = months.last_mut().expect("pushed");
        let start = block.days.first().map_or(date, |d| d.date);
        let week = ((days(date) - days(start) + weekday(start) as i64) / 7) as usize;
        block.weeks = week + 1;
        block.days.push(Day {
            date,
            week,
            weekday: weekday(date),
            parts: by_day.remove(&date).unwrap_or_default(),
        });
        if date == last {
            break;
        }
        date = next(date);
    }
    Layout::Calendar(months)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn cell_html(out: &mut String, parts: &[(String, Cell)], worst: Cell, style: &str, date: &str) {
    let title = if parts.len() == 1 {
        format!("{}: {}", parts[0].0, worst.word())
    } else {
        let mut n: BTreeMap<Cell, usize> = BTreeMap::new();
        for p in parts {
            *n.entry(p.1).or_default() += 1;
        }
        let counts: Vec<String> = n.iter().map(|(c, k)| format!("{k} {}", c.word())).collect();
        format!(
            "{date}: {} partitions, {} (first {})",
            parts.len(),
            counts.join(", "),
            parts[0].0
        )
    };
    let _ = write!(
        out,
        "<a class=\"cell c-{}\"{style} href=\"{}\" title=\"{}\"{}></a>",
        worst.word(),
        html::partition_url(&parts[0].0),
        esc(&title),
        if date.is_empty() {
            String::new()
        } else {
            format!(" data-date=\"{}\"", esc(date))
        }
    );
}

/// The grid as HTML (`#backfill-grid`).
pub fn render(layout: &Layout) -> String {
    let mut out = String::from("<div id=\"backfill-grid\" class=\"grid\">");
    match layout {
        Layout::Plain(parts) => {
            out.push_str("<div class=\"plain\">");
            for p in parts {
                cell_html(&mut out, std::slice::from_ref(p), p.1, "", "");
            }
            out.push_str("</div>");
        }
        Layout::Calendar(months) => {
            out.push_str(
                "<div class=\"calendar\"><div class=\"month weekdays\"><div class=\"month-label\">&nbsp;</div><div class=\"days\">",
            );
            for (row, name) in ["Mon", "", "Wed", "", "Fri", "", "Sun"].iter().enumerate() {
                let _ = write!(
                    out,
                    "<span class=\"wd\" style=\"grid-row:{}\">{name}</span>",
                    row + 1
                );
            }
            out.push_str("</div></div>");
            for m in months {
                let _ = write!(
                    out,
                    "<div class=\"month\"><div class=\"month-label\">{} {}</div>\
<div class=\"days\" style=\"grid-template-columns:repeat({},12px)\">",
                    MONTHS[m.month as usize - 1],
                    m.year,
                    m.weeks
                );
                for d in &m.days {
                    let (y, mo, da) = d.date;
                    let date = format!("{y:04}-{mo:02}-{da:02}");
                    let style = format!(
                        " style=\"grid-column:{};grid-row:{}\"",
                        d.week + 1,
                        d.weekday + 1
                    );
                    match d.worst() {
                        Some(w) => cell_html(&mut out, &d.parts, w, &style, &date),
                        None => {
                            let _ = write!(
                                out,
                                "<span class=\"cell c-none\"{style} title=\"{date}: no partition\"></span>"
                            );
                        }
                    }
                }
                out.push_str("</div></div>");
            }
            out.push_str("</div>");
        }
    }
    out.push_str("</div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(r: &str, c: Cell) -> (String, Cell) {
        (r.to_string(), c)
    }

    #[test]
    fn dates_are_found_anywhere_in_a_ref_and_must_be_real() {
        assert_eq!(date_in("reviews/daily/date=2025-01-07"), Some((2025, 1, 7)));
        assert_eq!(date_in("a/2024-02-29/b"), Some((2024, 2, 29)));
        assert_eq!(date_in("a/2025-02-29"), None);
        assert_eq!(date_in("a/2025-13-01"), None);
        assert_eq!(date_in("a/12025-01-01"), None);
        assert_eq!(date_in("bulk/n=001"), None);
        assert_eq!(date_in("x=2025-1-07"), None);
        assert_eq!(weekday((2025, 1, 6)), 0, "a Monday");
        assert_eq!(weekday((2025, 1, 5)), 6, "a Sunday");
        assert_eq!(days((1970, 1, 1)), 0);
        assert_eq!(days((2000, 3, 1)) - days((2000, 2, 28)), 2);
    }

    #[test]
    fn dated_partitions_make_a_calendar_of_weeks_and_weekdays_by_month() {
        // 2025-01-30 is a Thursday; the range crosses into February.
        let parts = vec![
            part("d/date=2025-01-30", Cell::Satisfied),
            part("d/date=2025-01-31", Cell::Pending),
            part("d/date=2025-02-01", Cell::Satisfied),
            part("e/date=2025-02-01", Cell::Failed),
            part("d/date=2025-02-03", Cell::Cancelled),
        ];
        let Layout::Calendar(months) = layout(&parts) else {
            panic!("not a calendar");
        };
        assert_eq!(months.len(), 2);
        let jan = &months[0];
        assert_eq!((jan.year, jan.month, jan.weeks), (2025, 1, 1));
        let placed: Vec<(Date, usize, usize)> = jan
            .days
            .iter()
            .map(|d| (d.date, d.week, d.weekday))
            .collect();
        assert_eq!(placed, [((2025, 1, 30), 0, 3), ((2025, 1, 31), 0, 4)]);
        let feb = &months[1];
        // Sat 1st and Sun 2nd in the first column, Mon 3rd starts the second.
        let placed: Vec<(Date, usize, usize)> = feb
            .days
            .iter()
            .map(|d| (d.date, d.week, d.weekday))
            .collect();
        assert_eq!(
            placed,
            [
                ((2025, 2, 1), 0, 5),
                ((2025, 2, 2), 0, 6),
                ((2025, 2, 3), 1, 0)
            ]
        );
        assert_eq!(feb.weeks, 2);
        // Two partitions on the 1st: the worst wins; the 2nd has none.
        assert_eq!(feb.days[0].parts.len(), 2);
        assert_eq!(feb.days[0].worst(), Some(Cell::Failed));
        assert_eq!(feb.days[1].worst(), None);
        assert_eq!(feb.days[2].worst(), Some(Cell::Cancelled));

        let html = render(&Layout::Calendar(months));
        assert_eq!(html.matches("<div class=\"month\">").count(), 2);
        assert!(html.contains("<span class=\"wd\" style=\"grid-row:3\">Wed</span>"));
        assert!(html.contains(">January 2025<") && html.contains(">February 2025<"));
        assert!(html.contains(
            "<a class=\"cell c-failed\" style=\"grid-column:1;grid-row:6\" href=\"/partition?ref=d%2Fdate%3D2025-02-01\" \
title=\"2025-02-01: 2 partitions, 1 satisfied, 1 failed (first d/date=2025-02-01)\" data-date=\"2025-02-01\"></a>"
        ), "{html}");
        assert!(html.contains("c-none"));
    }

    #[test]
    fn undated_partitions_keep_their_order_in_a_plain_grid() {
        let parts = vec![
            part("b/<x>", Cell::Pending),
            part("a/date=2025-01-01", Cell::Satisfied),
        ];
        assert_eq!(layout(&parts), Layout::Plain(parts.clone()));
        let html = render(&layout(&parts));
        assert!(html.contains("title=\"b/&lt;x&gt;: pending\""), "{html}");
        assert!(html.find("c-pending") < html.find("c-satisfied"));
        assert_eq!(layout(&[]), Layout::Plain(Vec::new()));
    }

    #[test]
    fn cell_states_come_from_want_statuses() {
        assert_eq!(Cell::of(None), Cell::Pending);
        assert_eq!(Cell::of(Some(WantStatus::WantActive)), Cell::Pending);
        assert_eq!(Cell::of(Some(WantStatus::WantSatisfied)), Cell::Satisfied);
        assert_eq!(Cell::of(Some(WantStatus::WantFailed)), Cell::Failed);
        assert_eq!(Cell::of(Some(WantStatus::WantExpired)), Cell::Cancelled);
    }
}
