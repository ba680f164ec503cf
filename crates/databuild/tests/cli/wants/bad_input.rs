//! Bad input about wants gets a clear error (exit 2) and records nothing: schedules in
//! the graph file, `[notify]`, durations, refs no job produces, unknown wants.

use crate::util::{assert_code, jobs_graph, ref_job, TestGraph};

fn graph(extra: &str) -> TestGraph {
    let g = TestGraph::new(&format!("{}\n{extra}", jobs_graph("g", &[("a", "")])));
    ref_job(&g, "a", "", "true");
    g
}

/// Runs `args` on a graph with `extra` appended, expecting exit 2 and no event recorded;
/// returns stderr with the directory redacted.
fn refused(extra: &str, args: &[&str]) -> String {
    let g = graph(extra);
    let before = if g.bel_path().exists() {
        g.events().len()
    } else {
        0
    };
    let out = g.run(args);
    assert_code(&out, 2);
    let after = if g.bel_path().exists() {
        g.events().len()
    } else {
        0
    };
    assert_eq!(before, after, "nothing recorded");
    g.redact(&out.stderr)
}

#[test]
fn bad_schedules_and_notify_settings_stop_the_graph_file_from_loading() {
    let cases = [
        ("cron", "[[wants]]\nname = \"d\"\nref = \"a/{date}\"\nschedule = \"61 * * * *\""),
        ("placeholder", "[[wants]]\nname = \"d\"\nref = \"a/{day_before}\"\nschedule = \"0 2 * * *\""),
        ("offset", "[[wants]]\nname = \"d\"\nref = \"a/{date}\"\ndate = \"tick - one day\"\nschedule = \"0 2 * * *\""),
        ("ttl", "[[wants]]\nname = \"d\"\nref = \"a/{date}\"\nschedule = \"0 2 * * *\"\nttl = \"forever\""),
        ("sla", "[[wants]]\nname = \"d\"\nref = \"a/{date}\"\nevery = \"1h\"\nsla = \"-1h\""),
        ("duplicate", "[[wants]]\nname = \"d\"\nref = \"a/{date}\"\nevery = \"1h\"\n[[wants]]\nname = \"d\"\nref = \"a/{hour}\"\nevery = \"1h\""),
        ("webhook", "[notify]\nwebhook = \"ftp://example.com/hook\""),
        ("command", "[notify]\ncommand = []"),
    ];
    for (name, extra) in cases {
        let err = refused(extra, &["check"]);
        insta::assert_snapshot!(format!("wants_graph_{name}"), err);
    }
}

#[test]
fn bad_wants_are_refused_and_record_nothing() {
    let g = graph("");
    assert_code(&g.run(&["want", "a/1"]), 0);
    let before = g.events().len();
    for (name, args) in [
        ("ttl", vec!["want", "a/2", "--ttl", "soon"]),
        (
            "unproduced",
            vec!["want", "a/3", "nobody/makes/this", "nor/this"],
        ),
        ("unwant_unknown", vec!["unwant", "want-does-not-exist"]),
        ("unwant_partly_unknown", vec!["unwant", "a/1", "a/99"]),
        ("show_unknown", vec!["wants", "show", "want-nope"]),
        ("status", vec!["wants", "list", "--status", "pending"]),
    ] {
        let out = g.run(&args);
        assert_code(&out, 2);
        insta::assert_snapshot!(format!("wants_{name}"), g.redact(&out.stderr));
        assert_eq!(g.events().len(), before, "{name} recorded nothing");
    }
    // The good want is still there, still active.
    let w = super::wants(&g, &[]);
    assert_eq!(w.len(), 1);
    assert_eq!(w.values().next().unwrap().1, "WANT_ACTIVE");
}
