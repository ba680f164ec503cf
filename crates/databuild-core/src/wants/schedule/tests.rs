//! Schedules: ticks, refs formatted from them, and the errors of a bad `[[wants]]`.

use super::*;

fn parse(text: &str) -> Result<Schedule, ScheduleError> {
    let t: toml::Table = toml::from_str(text).unwrap();
    Schedule::parse(1, &t)
}

fn micros(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
}

#[test]
fn a_daily_cron_ticks_at_its_time_and_wants_yesterday() {
    let s = parse(
        r#"name = "daily"
ref = "reviews/daily/date={date}/m={month}/h={hour}"
date = "tick - 1 day"
month = "tick - 1 month"
hour = "tick + 3 hours"
schedule = "0 2 * * *"
ttl = "30d"
sla = "6h"
catchup = "3d""#,
    )
    .unwrap();
    let ticks = s.ticks(
        micros("2025-03-01T00:00:00Z"),
        micros("2025-03-03T05:00:00Z"),
        10,
    );
    assert_eq!(
        ticks,
        [
            micros("2025-03-01T02:00:00Z"),
            micros("2025-03-02T02:00:00Z"),
            micros("2025-03-03T02:00:00Z")
        ]
    );
    assert_eq!(
        s.format_ref(ticks[0]),
        "reviews/daily/date=2025-02-28/m=2025-02/h=2025-03-01T05"
    );
    assert_eq!(s.want_id(ticks[0]), "daily@2025-03-01T02:00:00Z");
    assert_eq!(s.ttl, Some(Duration::from_secs(30 * 86400)));
    assert_eq!(s.catchup, Duration::from_secs(3 * 86400));
    // The newest ticks when limited, and a tick exactly at `until` counts.
    assert_eq!(
        s.ticks(0, micros("2025-03-03T02:00:00Z"), 1),
        [micros("2025-03-03T02:00:00Z")]
    );
    assert_eq!(
        s.next_tick(micros("2025-03-03T02:00:00Z")),
        Some(micros("2025-03-04T02:00:00Z"))
    );
}

#[test]
fn an_interval_ticks_on_multiples_so_every_process_agrees() {
    let s = parse("name = \"e\"\nref = \"x/{tick}\"\nevery = \"2s\"").unwrap();
    let t0 = micros("2025-01-01T00:00:00Z");
    assert_eq!(
        s.ticks(t0, t0 + 5_000_000, 10),
        [t0 + 2_000_000, t0 + 4_000_000]
    );
    assert_eq!(s.next_tick(t0 + 4_000_000), Some(t0 + 6_000_000));
    assert_eq!(s.format_ref(t0 + 2_000_000), "x/2025-01-01T00:00:02Z");
}

#[test]
fn explicit_formats_time_zones_and_month_ends() {
    let s = parse(
        r#"name = "m"
ref = "sales/{ym}/{d}"
ym = "tick - 1 month as %Y%m"
d = "tick as %d"
schedule = "30 1 * * *"
timezone = "+02:00""#,
    )
    .unwrap();
    // 23:30 UTC on 31 March is 01:30 on 1 April at +02:00.
    let t = micros("2025-03-31T23:30:00Z");
    assert_eq!(s.ticks(t - 1, t, 5), [t]);
    assert_eq!(s.format_ref(t), "sales/202503/01");
}

#[test]
fn bad_schedules_say_which_key_and_why() {
    let cases = [
        ("ref = \"a/{date}\"\nschedule = \"0 2 * * *\"", "name"),
        (
            "name = \"n\"\nref = \"a/{date}\"\nschedule = \"0 25 * * *\"",
            "schedule",
        ),
        (
            "name = \"n\"\nref = \"a/{date}\"\nschedule = \"0 2 * *\"",
            "schedule",
        ),
        (
            "name = \"n\"\nref = \"a/{date}\"\ndate = \"tick - 1 fortnight\"\nevery = \"1h\"",
            "date",
        ),
        (
            "name = \"n\"\nref = \"a/{date}\"\ndate = \"tick minus one\"\nevery = \"1h\"",
            "date",
        ),
        (
            "name = \"n\"\nref = \"a/{when}\"\nwhen = \"tick\"\nevery = \"1h\"",
            "when",
        ),
        (
            "name = \"n\"\nref = \"a/{date}\"\nevery = \"1h\"\nregion = \"eu\"",
            "region",
        ),
        (
            "name = \"n\"\nref = \"a/{date}\"\nevery = \"1h\"\nttl = \"soon\"",
            "ttl",
        ),
        (
            "name = \"n\"\nref = \"a/{date}\"\nevery = \"1h\"\nsla = \"6 hours\"",
            "sla",
        ),
        ("name = \"n\"\nref = \"a/{date\"\nevery = \"1h\"", "ref"),
        ("name = \"n\"\nref = \"a/b\"\nevery = \"1h\"", "ref"),
        ("name = \"n\"\nref = \"a/{date}\"", "schedule"),
        (
            "name = \"n\"\nref = \"a/{date}\"\nevery = \"1h\"\nschedule = \"* * * * *\"",
            "every",
        ),
        (
            "name = \"n\"\nref = \"a/{date}\"\nevery = \"1h\"\ntimezone = \"Europe/Paris\"",
            "timezone",
        ),
        (
            "name = \"n\"\nref = \"a/{d}\"\nd = \"tick as %Q\"\nevery = \"1h\"",
            "d",
        ),
    ];
    let mut messages = Vec::new();
    for (text, key) in cases {
        let e = parse(text).unwrap_err();
        assert_eq!(e.key, key, "{text}: {e}");
        messages.push(e.to_string());
    }
    insta::assert_snapshot!(messages.join("\n"));
}
