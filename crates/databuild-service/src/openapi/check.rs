//! Checks JSON against the schemas of the OpenAPI document, so that what the types
//! serialize to and what the document says cannot drift apart: an object may have only
//! the properties its schema lists (an `additionalProperties` schema covers the rest)
//! and must have every `required` one; `null` only where `nullable`; arrays, strings
//! (`enum`, `int64` as a decimal string), integers, numbers and booleans by `type`.

use serde_json::Value;

/// Checks `v` against schema `name` of `doc` (`components.schemas`); the error names the
/// path of the first mismatch, e.g. `WireRuns.runs[0].pid`.
pub fn check_named(doc: &Value, name: &str, v: &Value) -> Result<(), String> {
    let schema = schema_named(doc, name)?;
    check(doc, schema, v, name)
}

fn schema_named<'a>(doc: &'a Value, name: &str) -> Result<&'a Value, String> {
    let s = &doc["components"]["schemas"][name];
    if s.is_object() {
        Ok(s)
    } else {
        Err(format!("no schema `{name}` in the document"))
    }
}

/// Checks `v` against `schema` (which may be a `$ref` into `doc`); `at` names `v` in
/// errors.
pub fn check(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return check(doc, schema_named(doc, name)?, v, at);
    }
    if v.is_null() {
        return if schema["nullable"] == true {
            Ok(())
        } else {
            Err(format!("{at}: null where the schema allows no null"))
        };
    }
    let wrong = |what: &str| Err(format!("{at}: expected {what}, got {v}"));
    match schema["type"].as_str() {
        Some("object") => {
            let Some(obj) = v.as_object() else {
                return wrong("an object");
            };
            let props = schema["properties"].as_object();
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, val) in obj {
                let at = format!("{at}.{k}");
                match (props.and_then(|p| p.get(k)), extra) {
                    (Some(s), _) | (None, Some(s)) => check(doc, s, val, &at)?,
                    (None, None) if props.is_some() => {
                        return Err(format!("{at}: a field the schema does not document"))
                    }
                    (None, None) => {}
                }
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap_or_default();
                if !obj.contains_key(r) {
                    return Err(format!("{at}: required field `{r}` is missing"));
                }
            }
            Ok(())
        }
        Some("array") => {
            let Some(items) = v.as_array() else {
                return wrong("an array");
            };
            for (i, item) in items.iter().enumerate() {
                check(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        Some("string") => {
            let Some(s) = v.as_str() else {
                return wrong("a string");
            };
            if let Some(values) = schema["enum"].as_array() {
                if !values.iter().any(|e| e == s) {
                    return wrong("one of the schema's enum values");
                }
            }
            if schema["format"] == "int64" && s.parse::<i128>().is_err() {
                return wrong("a whole number as a string");
            }
            Ok(())
        }
        Some("integer") if !(v.is_i64() || v.is_u64()) => wrong("an integer"),
        Some("number") if !v.is_number() => wrong("a number"),
        Some("boolean") if !v.is_boolean() => wrong("a boolean"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use databuild_bel::{Event, JobRunRow, LoggedEvent, PartitionRow, RunRow};
    use databuild_proto::{
        FailureCause, JobEvent, JobGraphRunEvent, JobGraphRunStatus, JobLabel, JobRunStatus,
        PartitionEvent, PartitionManifest, PartitionRef, PartitionStatus,
    };
    use serde::Serialize;
    use serde_json::Value;

    use super::*;
    use crate::wire::*;

    fn json<T: Serialize>(v: &T) -> Value {
        serde_json::from_str(&databuild_proto::to_json(v)).unwrap()
    }

    fn manifest() -> PartitionManifest {
        PartitionManifest {
            outputs: vec![PartitionRef::new("a/1")],
            start_time: Some(databuild_proto::now()),
            end_time: Some(databuild_proto::now()),
            ..Default::default()
        }
    }

    fn partition_event() -> PartitionEvent {
        let mut storage_metadata = std::collections::HashMap::new();
        storage_metadata.insert("slurm_job_id".to_string(), "42".to_string());
        PartitionEvent {
            partition_ref: Some(PartitionRef::new("a/1")),
            status: PartitionStatus::PartitionFailed as i32,
            timestamp: Some(databuild_proto::now()),
            job_graph_run_id: "run".into(),
            job_run_id: "job-run".into(),
            producing_job: Some(JobLabel::new("j")),
            requesting_clients: vec!["cli@host".into()],
            failure_reason: "exit code 3".into(),
            failure_cause: FailureCause::JobFailed as i32,
            upstream_deps: vec![PartitionRef::new("b/1")],
            manifest: Some(manifest()),
            storage_metadata,
            ..Default::default()
        }
    }

    fn run_event() -> JobGraphRunEvent {
        JobGraphRunEvent {
            job_event: Some(JobEvent {
                job_run_id: "job-run".into(),
                status: JobRunStatus::JobSuccess as i32,
                outputs: vec![PartitionRef::new("a/1")],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn outcome(full: bool) -> WireOutcome {
        if !full {
            return WireOutcome::default();
        }
        WireOutcome {
            job_graph_run_id: "run".into(),
            success: false,
            built: vec!["a/1".into()],
            delegated: vec!["b/1".into()],
            cut_off: vec!["e/1".into()],
            up_to_date: vec!["c/1".into()],
            failed: vec![WireFailure {
                partition_ref: "d/1".into(),
                reason: "exit code 3".into(),
            }],
            job_runs: 2,
            cancelled: false,
            manifests: vec![manifest()],
        }
    }

    /// Two values of every `wire` type, serialized: `(schema, one with every field set
    /// (for `WireEvent`, the partition one), one with none (the graph one))`.
    fn samples() -> Vec<(&'static str, Value, Value)> {
        let event = |e: Event| json(&WireEvent::from(&LoggedEvent { seq: 7, event: e }));
        let p_event = event(Event::Partition(partition_event()));
        let r_event = event(Event::Run(run_event()));
        let w_event = event(Event::Want(databuild_proto::WantEvent {
            want_id: "want-1".into(),
            status: databuild_proto::WantStatus::WantActive as i32,
            partition_ref: Some(PartitionRef::new("a/1")),
            sla_deadline: Some(databuild_proto::now()),
            ..Default::default()
        }));
        let b_event = event(Event::Backfill(databuild_proto::BackfillEvent {
            backfill_id: "bf-1".into(),
            status: databuild_proto::BackfillStatus::BackfillRunning as i32,
            name: "year".into(),
            refs: vec!["a/[1..3]".into()],
            total: 3,
            ..Default::default()
        }));
        let partition = json(&WirePartition::from(&PartitionRow {
            partition_ref: "a/1".into(),
            status: PartitionStatus::PartitionAvailable,
            run_id: "run".into(),
            job_run_id: "job-run".into(),
            seq: 3,
            updated_micros: 1,
        }));
        let run = |full: bool| {
            json(&WireRun::from(&RunRow {
                run_id: "run".into(),
                label: "g".into(),
                status: JobGraphRunStatus::GraphSuccess,
                started_micros: 1,
                updated_micros: 2,
                host: full.then(|| "host".into()),
                pid: full.then_some(42),
                lease_until_micros: full.then_some(3),
            }))
        };
        let job_run = json(&WireJobRun::from(&JobRunRow {
            job_run_id: "job-run".into(),
            run_id: "run".into(),
            label: "j".into(),
            job_key: "k".into(),
            status: JobRunStatus::JobFailed,
            scheduled_micros: 1,
            updated_micros: 2,
        }));
        let error = WireError {
            code: "not_found".into(),
            message: "no graph run `x`".into(),
        };
        let build = |full: bool| WireBuild {
            job_graph_run_id: "run".into(),
            state: "failed".into(),
            outcome: full.then(|| outcome(true)),
            error: full.then(|| error.clone()),
        };
        let health = WireHealth {
            status: "SERVING".into(),
        };
        let submitted = WireSubmitted {
            job_graph_run_id: "run".into(),
            status_url: "/api/v1/builds/run".into(),
            events_url: "/api/v1/builds/run/events".into(),
        };
        let why = WireWhy {
            partition_ref: "a/1".into(),
            why: "`a/1` is FAILED: exit code 3".into(),
            root_cause: "`a/1` is FAILED: exit code 3".into(),
        };
        let wrap = |key: &str, v: Value| serde_json::json!({ key: [v] });
        vec![
            ("WireError", json(&error), json(&error)),
            ("WireHealth", json(&health), json(&health)),
            ("WireEvent", p_event.clone(), r_event),
            ("WireEvent", w_event.clone(), w_event),
            ("WireEvent", b_event.clone(), b_event),
            (
                "WireEvents",
                wrap("events", p_event),
                json(&WireEvents::default()),
            ),
            ("WirePartition", partition.clone(), partition.clone()),
            (
                "WirePartitions",
                wrap("partitions", partition),
                json(&WirePartitions::default()),
            ),
            ("WireRun", run(true), run(false)),
            (
                "WireRuns",
                wrap("runs", run(false)),
                json(&WireRuns::default()),
            ),
            ("WireJobRun", job_run.clone(), job_run.clone()),
            (
                "WireJobRuns",
                wrap("jobRuns", job_run),
                json(&WireJobRuns::default()),
            ),
            (
                "WireLineage",
                json(&WireLineage {
                    pairs: vec![("a/1".into(), "b/1".into())],
                }),
                json(&WireLineage::default()),
            ),
            ("WireWhy", json(&why), json(&why)),
            (
                "WireFailure",
                json(&outcome(true).failed[0]),
                json(&outcome(true).failed[0]),
            ),
            ("WireOutcome", json(&outcome(true)), json(&outcome(false))),
            ("WireBuild", json(&build(true)), json(&build(false))),
            ("WireSubmitted", json(&submitted), json(&submitted)),
            (
                "WireWantRequest",
                json(&WireWantRequest {
                    refs: vec!["a/1".into()],
                    ttl: "30d".into(),
                    sla: "6h".into(),
                }),
                json(&WireWantRequest::default()),
            ),
        ]
    }

    #[test]
    fn every_wire_type_serializes_as_the_document_says() {
        let doc = super::super::document();
        let mut written: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (name, full, none) in samples() {
            for v in [&full, &none] {
                check_named(&doc, name, v).unwrap_or_else(|e| panic!("{e}\n{v}"));
                let keys = v.as_object().unwrap().keys().cloned();
                written.entry(name).or_default().extend(keys);
            }
        }
        // Every documented field is one the type writes.
        for (name, keys) in written {
            let props = doc["components"]["schemas"][name]["properties"]
                .as_object()
                .unwrap();
            for p in props.keys() {
                assert!(
                    keys.contains(p),
                    "{name}.{p} is documented but the type does not write it"
                );
            }
        }
    }

    #[test]
    fn every_wire_schema_has_a_sample() {
        let doc = super::super::document();
        let sampled: std::collections::BTreeSet<&str> =
            samples().iter().map(|(n, _, _)| *n).collect();
        for name in doc["components"]["schemas"].as_object().unwrap().keys() {
            if name.starts_with("Wire") {
                assert!(sampled.contains(name.as_str()), "no sample of `{name}`");
            }
        }
    }

    #[test]
    fn mismatches_are_named_with_their_path() {
        let doc = super::super::document();
        let bad = serde_json::json!({"runs": [{"jobGraphRunId": "r", "label": "g", "status": "GRAPH_SUCCESS", "startedMicros": 1, "updatedMicros": 2, "host": null, "pid": "x", "leaseUntilMicros": null}]});
        assert_eq!(
            check_named(&doc, "WireRuns", &bad).unwrap_err(),
            r#"WireRuns.runs[0].pid: expected an integer, got "x""#
        );
        let extra = serde_json::json!({"partitionRef": "a", "reason": "r", "why": 1});
        assert_eq!(
            check_named(&doc, "WireFailure", &extra).unwrap_err(),
            "WireFailure.why: a field the schema does not document"
        );
        let missing = serde_json::json!({"code": "x"});
        assert_eq!(
            check_named(&doc, "WireError", &missing).unwrap_err(),
            "WireError: required field `message` is missing"
        );
        let enum_value = serde_json::json!({"seq": 1, "partitionEvent": {"status": "DONE"}});
        assert!(check_named(&doc, "WireEvent", &enum_value).is_err());
    }
}
