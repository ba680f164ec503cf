//! Schedules (`[[wants]]` in the graph file): when each one ticks (cron or a fixed
//! interval), and the want a tick makes — its ref formatted from the tick time, its id,
//! TTL and SLA. Checked when the graph file loads; no I/O.

use std::time::Duration;

use chrono::{DateTime, Datelike as _, FixedOffset, Months, TimeZone as _, Utc};

/// One `[[wants]]` schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Its name (unique in the graph file).
    pub name: String,
    /// The ref template, with `{placeholder}`s.
    pub template: String,
    placeholders: Vec<(String, Placeholder)>,
    when: When,
    /// How long a tick's want stays active.
    pub ttl: Option<Duration>,
    /// How long after its tick a want must be AVAILABLE.
    pub sla: Option<Duration>,
    /// Ticks missed while nothing ran are replayed back to this far.
    pub catchup: Duration,
    zone: FixedOffset,
}

#[derive(Debug, Clone)]
enum When {
    Cron(Box<croner::Cron>),
    Every(Duration),
}

/// How a placeholder derives from the tick: an offset, then a format.
#[derive(Debug, Clone)]
struct Placeholder {
    amount: i64,
    unit: Unit,
    format: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// A `[[wants]]` entry that cannot be used: which key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`[[wants]]` #{index}{}: invalid `{key}`: {message}", name.as_ref().map(|n| format!(" (`{n}`)")).unwrap_or_default())]
pub struct ScheduleError {
    /// 1-based position in the file.
    pub index: usize,
    /// Its name, if it got that far.
    pub name: Option<String>,
    /// The key at fault.
    pub key: String,
    /// What is wrong and how to write it.
    pub message: String,
}

const KEYS: &[&str] = &[
    "name", "ref", "schedule", "every", "ttl", "sla", "catchup", "timezone",
];

/// The default format of a placeholder by its name.
fn default_format(name: &str) -> Option<&'static str> {
    Some(match name {
        "date" | "day" => "%Y-%m-%d",
        "month" => "%Y-%m",
        "hour" => "%Y-%m-%dT%H",
        "minute" => "%Y-%m-%dT%H:%M",
        "year" => "%Y",
        "tick" => "%Y-%m-%dT%H:%M:%SZ",
        _ => return None,
    })
}

impl Schedule {
    /// Reads entry `index` (1-based) of `[[wants]]`.
    pub fn parse(index: usize, table: &toml::Table) -> Result<Schedule, ScheduleError> {
        let err = |name: &Option<String>, key: &str, message: String| ScheduleError {
            index,
            name: name.clone(),
            key: key.to_string(),
            message,
        };
        let string = |name: &Option<String>, key: &str| -> Result<Option<String>, ScheduleError> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(err(name, key, "expected a string".into())),
            }
        };
        let name = Some(
            string(&None, "name")?
                .filter(|n| !n.is_empty() && !n.contains(['@', '\n']))
                .ok_or_else(|| {
                    err(
                        &None,
                        "name",
                        "every schedule needs a `name` (not empty, without `@`)".into(),
                    )
                })?,
        );
        let template = string(&name, "ref")?.ok_or_else(|| {
            err(
                &name,
                "ref",
                "missing; e.g. `ref = \"reviews/daily/date={date}\"`".into(),
            )
        })?;
        let used = placeholders_in(&template).map_err(|m| err(&name, "ref", m))?;
        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) && !used.contains(key) {
                return Err(err(
                    &name,
                    key,
                    format!(
                        "unknown key: not a schedule key ({}) and not a placeholder of `ref`",
                        KEYS.join(", ")
                    ),
                ));
            }
        }
        let mut placeholders = Vec::new();
        for p in &used {
            let expr = match string(&name, p)? {
                Some(e) => e,
                // `{date}`, `{month}`, ... alone are the tick's own.
                None if default_format(p).is_some() => "tick".into(),
                None => {
                    return Err(err(
                        &name,
                        p,
                        format!("`ref` uses `{{{p}}}` but the schedule does not say how it derives from the tick (only date, day, month, hour, minute, year and tick default to the tick itself); add e.g. `{p} = \"tick - 1 day\"`"),
                    ))
                }
            };
            let parsed = Placeholder::parse(p, &expr).map_err(|m| err(&name, p, m))?;
            placeholders.push((p.clone(), parsed));
        }
        let duration = |key: &str| -> Result<Option<Duration>, ScheduleError> {
            string(&name, key)?
                .map(|v| {
                    crate::graph::parse_duration(&v).ok_or_else(|| {
                        err(
                            &name,
                            key,
                            format!("`{v}` is not a duration; use e.g. `30s`, `10m`, `6h`, `30d`"),
                        )
                    })
                })
                .transpose()
        };
        let when = match (string(&name, "schedule")?, duration("every")?) {
            (Some(_), Some(_)) => {
                return Err(err(&name, "every", "give `schedule` (cron) or `every`, not both".into()))
            }
            (None, None) => {
                return Err(err(&name, "schedule", "missing; give a cron expression (`schedule = \"0 2 * * *\"`) or an interval (`every = \"10m\"`)".into()))
            }
            (Some(c), None) => When::Cron(Box::new(parse_cron(&c).map_err(|m| err(&name, "schedule", m))?)),
            (None, Some(d)) if d < Duration::from_secs(1) => {
                return Err(err(&name, "every", "must be at least 1s".into()))
            }
            (None, Some(d)) => When::Every(d),
        };
        let zone = match string(&name, "timezone")? {
            None => FixedOffset::east_opt(0).expect("UTC"),
            Some(z) => parse_zone(&z).map_err(|m| err(&name, "timezone", m))?,
        };
        Ok(Schedule {
            name: name.clone().expect("set above"),
            template,
            placeholders,
            when,
            ttl: duration("ttl")?,
            sla: duration("sla")?,
            catchup: duration("catchup")?.unwrap_or(Duration::ZERO),
            zone,
        })
    }

    /// The ticks after `after` (exclusive) up to `until` (inclusive), microseconds, oldest
    /// first, at most `limit` of the newest.
    pub fn ticks(&self, after: i64, until: i64, limit: usize) -> Vec<i64> {
        let mut out = Vec::new();
        match &self.when {
            When::Every(d) => {
                let step = d.as_micros().max(1) as i64;
                let mut t = until.div_euclid(step) * step;
                while t > after && out.len() < limit {
                    out.push(t);
                    t -= step;
                }
            }
            When::Cron(c) => {
                let Some(mut t) = self.local(until) else {
                    return out;
                };
                let inclusive = c.is_time_matching(&t).unwrap_or(false);
                if !inclusive {
                    match c.find_previous_occurrence(&t, false) {
                        Ok(p) => t = p,
                        Err(_) => return out,
                    }
                }
                while out.len() < limit {
                    let micros = t.timestamp_micros();
                    if micros <= after {
                        break;
                    }
                    out.push(micros);
                    match c.find_previous_occurrence(&t, false) {
                        Ok(p) => t = p,
                        Err(_) => break,
                    }
                }
            }
        }
        out.reverse();
        out
    }

    /// The first tick after `after`, microseconds.
    pub fn next_tick(&self, after: i64) -> Option<i64> {
        match &self.when {
            When::Every(d) => {
                let step = d.as_micros().max(1) as i64;
                Some((after.div_euclid(step) + 1) * step)
            }
            When::Cron(c) => c
                .find_next_occurrence(&self.local(after)?, false)
                .ok()
                .map(|t| t.timestamp_micros()),
        }
    }

    fn local(&self, micros: i64) -> Option<DateTime<FixedOffset>> {
        Some(DateTime::<Utc>::from_timestamp_micros(micros)?.with_timezone(&self.zone))
    }

    /// The ref the tick at `tick` (microseconds) wants.
    pub fn format_ref(&self, tick: i64) -> String {
        let t = self.local(tick).unwrap_or_else(|| {
            self.zone
                .timestamp_opt(0, 0)
                .single()
                .expect("the epoch exists")
        });
        let mut out = self.template.clone();
        for (name, p) in &self.placeholders {
            out = out.replace(&format!("{{{name}}}"), &p.format(t));
        }
        out
    }

    /// The id of the want of the tick at `tick`: the same in every process, so a tick is
    /// recorded once.
    pub fn want_id(&self, tick: i64) -> String {
        let t = DateTime::<Utc>::from_timestamp_micros(tick).unwrap_or_default();
        format!("{}@{}", self.name, t.format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

impl Placeholder {
    /// `tick`, `tick - 1 day`, `tick + 2 hours`, each optionally followed by
    /// `as <format>` (strftime: `%Y`, `%m`, `%d`, `%H`, `%M`, ...).
    fn parse(name: &str, expr: &str) -> Result<Placeholder, String> {
        let (expr, format) = match expr.split_once(" as ") {
            Some((e, f)) if !f.trim().is_empty() => (e, Some(f.trim().to_string())),
            Some(_) => return Err(format!("`{expr}`: `as` needs a format, e.g. `as %Y%m%d`")),
            None => (expr, None),
        };
        let format = match format {
            Some(f) => {
                check_format(&f)?;
                f
            }
            None => default_format(name)
                .ok_or_else(|| format!("`{name}` has no default format (only date, day, month, hour, minute, year and tick do); add one, e.g. `\"tick - 1 day as %Y%m%d\"`"))?
                .to_string(),
        };
        let words: Vec<&str> = expr.split_whitespace().collect();
        let usage = "write `tick`, or `tick - N unit` / `tick + N unit` with unit minute, hour, day, week, month or year (plural allowed)";
        let (amount, unit) = match words.as_slice() {
            ["tick"] => (0, Unit::Day),
            ["tick", sign @ ("+" | "-"), n, unit] => {
                let n: i64 = n
                    .parse()
                    .ok()
                    .filter(|n: &i64| (0..=100_000).contains(n))
                    .ok_or_else(|| {
                        format!("`{expr}`: `{n}` is not a whole number from 0 to 100000; {usage}")
                    })?;
                let unit = match unit.trim_end_matches('s') {
                    "minute" => Unit::Minute,
                    "hour" => Unit::Hour,
                    "day" => Unit::Day,
                    "week" => Unit::Week,
                    "month" => Unit::Month,
                    "year" => Unit::Year,
                    _ => return Err(format!("`{expr}`: unknown unit `{unit}`; {usage}")),
                };
                (if *sign == "-" { -n } else { n }, unit)
            }
            _ => return Err(format!("`{expr}` is not an offset of the tick; {usage}")),
        };
        Ok(Placeholder {
            amount,
            unit,
            format,
        })
    }

    fn format(&self, t: DateTime<FixedOffset>) -> String {
        let n = self.amount;
        let shifted = match self.unit {
            Unit::Minute => Some(t + chrono::Duration::minutes(n)),
            Unit::Hour => Some(t + chrono::Duration::hours(n)),
            Unit::Day => Some(t + chrono::Duration::days(n)),
            Unit::Week => Some(t + chrono::Duration::weeks(n)),
            Unit::Month | Unit::Year => {
                let months = if self.unit == Unit::Year { n * 12 } else { n };
                // From the first of the month, so that "tick - 1 month" of 31 March is
                // February, not an error.
                let first = t.with_day(1).unwrap_or(t);
                if months >= 0 {
                    first.checked_add_months(Months::new(months as u32))
                } else {
                    first.checked_sub_months(Months::new((-months) as u32))
                }
            }
        };
        shifted.unwrap_or(t).format(&self.format).to_string()
    }
}

/// The placeholder names `{name}` in a ref template, in order, each once.
fn placeholders_in(template: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("`{template}`: `{{` without a closing `}}`"))?;
        let name = &after[..close];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`{template}`: `{{{name}}}` is not a placeholder name (letters, digits, `_`)"
            ));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("`{template}`: `}}` without an opening `{{`"));
    }
    if out.is_empty() {
        return Err(format!("`{template}` has no placeholder, so every tick would want the same partition; use e.g. `{{date}}`"));
    }
    Ok(out)
}

fn check_format(f: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "`{f}` is not a valid time format (strftime: %Y, %m, %d, %H, %M, ...)"
        ));
    }
    Ok(())
}

fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) && !expr.trim_start().starts_with('@') {
        return Err(format!("`{expr}` has {fields} fields; a cron expression has 5 (minute hour day month weekday) or 6 (with seconds first)"));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| format!("`{expr}` is not a valid cron expression: {e}"))
}

fn parse_zone(z: &str) -> Result<FixedOffset, String> {
    if z.eq_ignore_ascii_case("utc") || z == "Z" {
        return Ok(FixedOffset::east_opt(0).expect("UTC"));
    }
    let bad = || format!("`{z}`: use `UTC` or a fixed offset such as `+02:00` or `-05:30`");
    let (sign, rest) = match z.as_bytes().first() {
        Some(b'+') => (1, &z[1..]),
        Some(b'-') => (-1, &z[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

#[cfg(test)]
mod tests;
