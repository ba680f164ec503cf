//! The `databuild.v1` protocol: prost types generated from `proto/` plus their proto3 JSON
//! mapping (serde, via pbjson), used by the job protocol and every `--json` output.

#[allow(clippy::all, clippy::pedantic, missing_docs)] // generated code
mod generated {
    include!(concat!(env!("OUT_DIR"), "/databuild.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/databuild.v1.serde.rs"));
}

pub use generated::*;

mod json;
mod refs;
pub use json::{from_json, to_json, to_json_pretty, JsonError};
pub use refs::{validate_ref, RefError, MAX_REF_BYTES};

/// The encoded `FileDescriptorSet` of `databuild.v1` (for reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/databuild_descriptor.bin"));

/// Converts a `SystemTime` into a protobuf timestamp.
pub fn timestamp(t: std::time::SystemTime) -> pbjson_types::Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// The current time as a protobuf timestamp.
pub fn now() -> pbjson_types::Timestamp {
    timestamp(std::time::SystemTime::now())
}

/// Microseconds since the Unix epoch of a protobuf timestamp.
pub fn timestamp_micros(ts: &pbjson_types::Timestamp) -> i64 {
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1_000
}

/// A protobuf timestamp from microseconds since the Unix epoch.
pub fn timestamp_from_micros(micros: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

impl PartitionRef {
    /// A ref from its string form.
    pub fn new(s: impl Into<String>) -> Self {
        Self { str: s.into() }
    }
}

impl JobLabel {
    /// A label from its string form.
    pub fn new(s: impl Into<String>) -> Self {
        Self { label: s.into() }
    }
}
