//! `google.protobuf.Timestamp` in the proto3 JSON form: RFC 3339 in UTC, always with a `Z`
//! and 0, 3, 6 or 9 fractional digits (`2025-01-01T12:00:00.250Z`); any RFC 3339 offset is
//! accepted when reading.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::UtcTime;

/// A point in time: seconds and nanoseconds since the Unix epoch (the protobuf message).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second, 0 to 999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t = UtcTime::from_micros(self.seconds.saturating_mul(1_000_000));
        let nanos = self.nanos.clamp(0, 999_999_999);
        let fraction = if nanos == 0 {
            String::new()
        } else if nanos % 1_000_000 == 0 {
            format!(".{:03}", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            format!(".{:06}", nanos / 1_000)
        } else {
            format!(".{nanos:09}")
        };
        serializer.serialize_str(&format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}Z",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        ))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let t = pbjson_types::Timestamp::deserialize(deserializer)?;
        Ok(Self {
            seconds: t.seconds,
            nanos: t.nanos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    fn json(seconds: i64, nanos: i32) -> String {
        serde_json::to_string(&Timestamp { seconds, nanos }).unwrap()
    }

    #[test]
    fn written_in_utc_with_z_and_the_shortest_of_0_3_6_9_digits() {
        assert_eq!(json(1_735_689_600, 0), r#""2025-01-01T00:00:00Z""#);
        assert_eq!(
            json(1_735_689_600, 250_000_000),
            r#""2025-01-01T00:00:00.250Z""#
        );
        assert_eq!(
            json(1_735_689_600, 123_456_000),
            r#""2025-01-01T00:00:00.123456Z""#
        );
        assert_eq!(json(0, 1), r#""1970-01-01T00:00:00.000000001Z""#);
    }

    #[test]
    fn read_with_any_offset() {
        let read = |s: &str| serde_json::from_str::<Timestamp>(s).unwrap();
        let t = Timestamp {
            seconds: 1_735_689_600,
            nanos: 250_000_000,
        };
        assert_eq!(read(r#""2025-01-01T00:00:00.25Z""#), t);
        assert_eq!(read(r#""2025-01-01T01:00:00.250+01:00""#), t);
        assert!(serde_json::from_str::<Timestamp>(r#""yesterday""#).is_err());
    }
}
