//! The OpenAPI 3 document of the HTTP API, generated from the route table
//! ([`crate::http::ROUTES`]), the `databuild.v1` descriptors (message schemas in the
//! proto3 JSON mapping) and the error table, so that it cannot drift from the code. A copy
//! is checked in as `openapi.json` and a test fails when it is out of date. The schemas of
//! the `wire` types are written by hand; [`check`] validates JSON against the document, and
//! its tests check a sample of every `wire` type (all fields set, and none) against them.

pub mod check;

use prost::Message as _;
use prost_types::{field_descriptor_proto::Label, field_descriptor_proto::Type, DescriptorProto};
use serde_json::{json, Map, Value};

use crate::{errors::ErrorCode, http::ROUTES};

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        for (name, description) in r.params {
            params.push(json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}}));
        }
        let content = match r.response {
            "text/event-stream" | "text/plain" => {
                json!({ r.response: {"schema": {"type": "string"}} })
            }
            schema => json!({"application/json": {"schema": schema_ref(schema)}}),
        };
        let ok = if r.method == "POST" && r.path == "/api/v1/builds" {
            "202"
        } else {
            "200"
        };
        let mut op = json!({
            "summary": r.summary,
            "operationId": format!("{} {}", r.method, r.path),
            "parameters": params,
            "responses": {
                ok: {"description": "success", "content": content},
                "default": {"description": "an error (see the error table)", "content": {"application/json": {"schema": schema_ref("WireError")}}}
            }
        });
        if let Some(req) = r.request {
            op["requestBody"] = json!({"required": false, "description": "proto3 JSON; an empty body is `{}`", "content": {"application/json": {"schema": schema_ref(req)}}});
        }
        let entry = paths.entry(r.path).or_insert_with(|| json!({}));
        entry[r.method.to_ascii_lowercase()] = op;
    }
    let mut schemas = message_schemas();
    schemas.extend(wire_schemas());
    let mut errors = String::from(
        "Errors have the body `{\"code\": ..., \"message\": ...}`. One table maps each code to its gRPC status and HTTP status:\n\n| code | gRPC | HTTP |\n| --- | --- | --- |\n",
    );
    for (name, grpc, http) in ErrorCode::table() {
        errors.push_str(&format!("| `{name}` | {grpc:?} | {} |\n", http.as_u16()));
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "databuild",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("The HTTP JSON API of `databuild serve`, mirroring the gRPC services `databuild.v1.DataBuildService`, `Catalog`, `GraphLookup` and `Wants` (same port). Messages use the proto3 JSON mapping. A service started with `--auth` requires `Authorization: Bearer TOKEN` (roles `read`, `build`, `admin`); the requester recorded is the token's principal (`anonymous@loopback` without `--auth`), and `x-databuild-client: NAME` adds a label to it. POST bodies must be sent as `Content-Type: application/json`.\n\n{errors}")
        },
        "paths": paths,
        "components": {"schemas": schemas}
    })
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Schemas of every `databuild.v1` message, from the compiled descriptors.
fn message_schemas() -> Map<String, Value> {
    let fds = prost_types::FileDescriptorSet::decode(databuild_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled descriptor set decodes");
    let file = fds
        .file
        .iter()
        .find(|f| f.package() == "databuild.v1")
        .expect("databuild.v1 is in the descriptor set");
    let enums: Vec<(String, Vec<String>)> = file
        .enum_type
        .iter()
        .map(|e| {
            (
                format!(".databuild.v1.{}", e.name()),
                e.value.iter().map(|v| v.name().to_string()).collect(),
            )
        })
        .collect();
    let mut out = Map::new();
    for m in &file.message_type {
        out.insert(m.name().to_string(), message_schema(m, &enums));
    }
    out
}

fn message_schema(m: &DescriptorProto, enums: &[(String, Vec<String>)]) -> Value {
    let mut props = Map::new();
    for f in &m.field {
        let map_entry = m.nested_type.iter().find(|n| {
            n.options.as_ref().is_some_and(|o| o.map_entry())
                && f.type_name().ends_with(&format!(".{}", n.name()))
        });
        let schema = match map_entry {
            Some(entry) => {
                json!({"type": "object", "additionalProperties": field_type(&entry.field[1], enums)})
            }
            None if f.label() == Label::Repeated => {
                json!({"type": "array", "items": field_type(f, enums)})
            }
            None => field_type(f, enums),
        };
        props.insert(f.json_name().to_string(), schema);
    }
    json!({"type": "object", "description": format!("databuild.v1.{} (proto3 JSON)", m.name()), "properties": props})
}

fn field_type(f: &prost_types::FieldDescriptorProto, enums: &[(String, Vec<String>)]) -> Value {
    match f.r#type() {
        Type::String => json!({"type": "string"}),
        Type::Bool => json!({"type": "boolean"}),
        Type::Double | Type::Float => json!({"type": "number"}),
        Type::Int64 | Type::Uint64 | Type::Sint64 | Type::Fixed64 | Type::Sfixed64 => {
            json!({"type": "string", "format": "int64"})
        }
        Type::Bytes => json!({"type": "string", "format": "byte"}),
        Type::Enum => {
            let values = enums
                .iter()
                .find(|(n, _)| n == f.type_name())
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            json!({"type": "string", "enum": values})
        }
        Type::Message | Type::Group => match f.type_name() {
            ".google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
            ".google.protobuf.Struct" => json!({"type": "object"}),
            name => schema_ref(name.rsplit('.').next().unwrap_or(name)),
        },
        _ => json!({"type": "integer", "format": "int32"}),
    }
}

/// A compact schema: fields as (name, type) with types `string`, `integer`, `boolean`,
/// `object`, `Name` (a schema) and `[T]` (an array). A field is required (always
/// written) unless its type ends in `?` (left out when empty); `T|null` is written but
/// may be `null`.
fn obj(description: &str, fields: &[(&str, &str)]) -> Value {
    fn ty(t: &str) -> Value {
        if let Some(inner) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return json!({"type": "array", "items": ty(inner)});
        }
        if let Some(inner) = t.strip_suffix("|null") {
            let mut v = ty(inner);
            v["nullable"] = json!(true);
            return v;
        }
        match t {
            "string" | "integer" | "boolean" | "object" => json!({"type": t}),
            name => schema_ref(name),
        }
    }
    let props: Map<String, Value> = fields
        .iter()
        .map(|(n, t)| (n.to_string(), ty(t.trim_end_matches('?'))))
        .collect();
    let required: Vec<&str> = fields
        .iter()
        .filter(|(_, t)| !t.ends_with('?'))
        .map(|(n, _)| *n)
        .collect();
    json!({"type": "object", "description": description, "properties": props, "required": required})
}

fn wire_schemas() -> Map<String, Value> {
    let mut m = Map::new();
    let mut add = |name: &str, v: Value| {
        m.insert(name.to_string(), v);
    };
    add(
        "WireError",
        obj(
            "an error: a code from the error table and a message",
            &[("code", "string"), ("message", "string")],
        ),
    );
    add(
        "WireHealth",
        obj("`SERVING` or `NOT_SERVING`", &[("status", "string")]),
    );
    add(
        "OpenAPI",
        json!({"type": "object", "description": "an OpenAPI 3 document"}),
    );
    add(
        "WireEvent",
        obj(
            "an event with its log position; exactly one of the events is set",
            &[
                ("seq", "integer"),
                ("jobGraphRunEvent", "JobGraphRunEvent?"),
                ("partitionEvent", "PartitionEvent?"),
                ("wantEvent", "WantEvent?"),
                ("backfillEvent", "BackfillEvent?"),
            ],
        ),
    );
    add(
        "WireEvents",
        obj("events in log order", &[("events", "[WireEvent]")]),
    );
    add(
        "WirePartition",
        obj(
            "a partition's latest state",
            &[
                ("partitionRef", "string"),
                ("status", "string"),
                ("jobGraphRunId", "string"),
                ("jobRunId", "string"),
                ("seq", "integer"),
                ("updatedMicros", "integer"),
            ],
        ),
    );
    add(
        "WirePartitions",
        obj("partitions", &[("partitions", "[WirePartition]")]),
    );
    add(
        "WireRun",
        obj(
            "a graph run's summary",
            &[
                ("jobGraphRunId", "string"),
                ("label", "string"),
                ("status", "string"),
                ("startedMicros", "integer"),
                ("updatedMicros", "integer"),
                ("host", "string|null"),
                ("pid", "integer|null"),
                ("leaseUntilMicros", "integer|null"),
            ],
        ),
    );
    add(
        "WireRuns",
        obj("graph runs, newest first", &[("runs", "[WireRun]")]),
    );
    add(
        "WireJobRun",
        obj(
            "a job run's summary",
            &[
                ("jobRunId", "string"),
                ("jobGraphRunId", "string"),
                ("label", "string"),
                ("jobKey", "string"),
                ("status", "string"),
                ("scheduledMicros", "integer"),
                ("updatedMicros", "integer"),
            ],
        ),
    );
    add(
        "WireJobRuns",
        obj("job runs", &[("jobRuns", "[WireJobRun]")]),
    );
    add(
        "WireLineage",
        obj(
            "(upstream, downstream) pairs, each a two-element array",
            &[("pairs", "[[string]]")],
        ),
    );
    add(
        "WireWhy",
        obj(
            "why a partition is in its state: the explanation and its last link, the root cause",
            &[
                ("partitionRef", "string"),
                ("why", "string"),
                ("rootCause", "string"),
            ],
        ),
    );
    add(
        "WireFailure",
        obj(
            "a failed partition",
            &[("partitionRef", "string"), ("reason", "string")],
        ),
    );
    add(
        "WireOutcome",
        obj(
            "what a graph run did",
            &[
                ("jobGraphRunId", "string"),
                ("success", "boolean"),
                ("built", "[string]"),
                ("delegated", "[string]"),
                ("cutOff", "[string]"),
                ("upToDate", "[string]"),
                ("failed", "[WireFailure]"),
                ("jobRuns", "integer"),
                ("cancelled", "boolean"),
                ("manifests", "[PartitionManifest]"),
            ],
        ),
    );
    add(
        "WireBuild",
        obj(
            "a build's state: `running`, `succeeded`, `failed` or `error`",
            &[
                ("jobGraphRunId", "string"),
                ("state", "string"),
                ("outcome", "WireOutcome?"),
                ("error", "WireError?"),
            ],
        ),
    );
    add(
        "WireWantRequest",
        obj(
            "refs to keep built, one want each; `ttl` and `sla` are durations such as `30d` or `6h` (left out: none)",
            &[("refs", "[string]"), ("ttl", "string?"), ("sla", "string?")],
        ),
    );
    add(
        "WireSubmitted",
        obj(
            "a build started",
            &[
                ("jobGraphRunId", "string"),
                ("statusUrl", "string"),
                ("eventsUrl", "string"),
            ],
        ),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.trim_start_matches("#/components/schemas/").to_string());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn openapi_document_lists_every_route_and_resolves_every_schema() {
        let doc = document();
        for r in ROUTES {
            assert!(
                doc["paths"][r.path][r.method.to_ascii_lowercase()].is_object(),
                "{} {} missing",
                r.method,
                r.path
            );
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            assert!(
                doc["components"]["schemas"][&r].is_object(),
                "unresolved schema `{r}`"
            );
        }
        let manifest = &doc["components"]["schemas"]["JobConfig"]["properties"];
        assert_eq!(manifest["env"]["type"], "object", "{manifest}");
    }

    #[test]
    fn checked_in_openapi_json_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let fresh = serde_json::to_string_pretty(&document()).unwrap() + "\n";
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        if old != fresh {
            std::fs::write(&path, &fresh).unwrap();
            panic!(
                "{} was out of date and has been regenerated; review and commit it",
                path.display()
            );
        }
    }
}
