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
mod status;
mod timestamp;
pub use json::{from_json, to_json, to_json_pretty, JsonError};
pub use refs::{validate_ref, RefError, MAX_REF_BYTES};
pub use status::StatusError;
pub use timestamp::Timestamp;

/// The encoded `FileDescriptorSet` of `databuild.v1` (for reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/databuild_descriptor.bin"));

/// Converts a `SystemTime` into a protobuf timestamp.
pub fn timestamp(t: std::time::SystemTime) -> Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// The current time as a protobuf timestamp.
pub fn now() -> Timestamp {
    timestamp(std::time::SystemTime::now())
}

/// Microseconds since the Unix epoch of a protobuf timestamp.
pub fn timestamp_micros(ts: &Timestamp) -> i64 {
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1_000
}

/// A protobuf timestamp from microseconds since the Unix epoch.
pub fn timestamp_from_micros(micros: i64) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// A UTC time broken into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    /// Year.
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: i64,
    /// Minute, 0–59.
    pub minute: i64,
    /// Second, 0–59.
    pub second: i64,
    /// Milliseconds, 0–999.
    pub millis: i64,
}

impl UtcTime {
    /// The calendar fields of `micros` since the Unix epoch (proleptic Gregorian, Howard
    /// Hinnant's civil-from-days).
    pub fn from_micros(micros: i64) -> Self {
        let secs = micros.div_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Self {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
            millis: micros.rem_euclid(1_000_000) / 1000,
        }
    }
}

impl JobEvent {
    /// The job label ("" when unset).
    pub fn label_name(&self) -> &str {
        self.label.as_ref().map_or("", |l| l.label.as_str())
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
