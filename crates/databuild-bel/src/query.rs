//! Validation of partition event queries, shared by every backend: limits, offsets, time
//! ranges and `order_by` fields are checked once, here, into a [`PartitionQuery`].

use databuild_proto::{PartitionEventQuery, PartitionStatus};

use crate::BelError;

/// Most events one query returns.
pub const MAX_LIMIT: i64 = 10_000;
/// Events returned when the query sets no limit.
pub const DEFAULT_LIMIT: i64 = 100;

/// A column partition events can be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderField {
    /// Append order (the default; equal to time order).
    Timestamp,
    /// The partition ref, then append order.
    PartitionRef,
    /// The status number, then append order.
    Status,
}

/// The `order_by.field` names accepted.
pub const ORDER_FIELDS: &[&str] = &["timestamp", "partition_ref", "status"];

/// A validated `PartitionEventQuery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionQuery {
    /// Only these refs (all if empty).
    pub refs: Vec<String>,
    /// Only these statuses (all if empty).
    pub statuses: Vec<PartitionStatus>,
    /// Only events of these graph runs (all if empty).
    pub run_ids: Vec<String>,
    /// Events at or after this time, microseconds.
    pub start_micros: Option<i64>,
    /// Events before this time, microseconds.
    pub end_micros: Option<i64>,
    /// 1..=MAX_LIMIT.
    pub limit: i64,
    /// >= 0.
    pub offset: i64,
    /// Sort column.
    pub order: OrderField,
    /// Ascending (default) or descending.
    pub ascending: bool,
}

impl PartitionQuery {
    /// Checks a protocol query: non-negative limit and offset (limit capped at
    /// [`MAX_LIMIT`], 0 meaning [`DEFAULT_LIMIT`]), known statuses, a time range whose start
    /// is not after its end, and a known `order_by.field`.
    pub fn from_proto(q: &PartitionEventQuery) -> Result<Self, BelError> {
        if q.limit < 0 {
            return Err(BelError::InvalidQuery(format!(
                "limit must not be negative (got {})",
                q.limit
            )));
        }
        if i64::from(q.limit) > MAX_LIMIT {
            return Err(BelError::InvalidQuery(format!(
                "limit {} is above the maximum of {MAX_LIMIT}; page with offset",
                q.limit
            )));
        }
        if q.offset < 0 {
            return Err(BelError::InvalidQuery(format!(
                "offset must not be negative (got {})",
                q.offset
            )));
        }
        let statuses = q
            .statuses
            .iter()
            .map(|&s| {
                PartitionStatus::try_from(s)
                    .map_err(|_| BelError::InvalidQuery(format!("unknown partition status {s}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<String> = q.partition_refs.iter().map(|r| r.str.clone()).collect();
        for r in &refs {
            databuild_proto::validate_ref(r).map_err(|e| BelError::InvalidQuery(e.to_string()))?;
        }
        let (start_micros, end_micros) = match &q.time_range {
            None => (None, None),
            Some(t) => {
                let start = t.start.as_ref().map(check_timestamp).transpose()?;
                let end = t.end.as_ref().map(check_timestamp).transpose()?;
                if let (Some(s), Some(e)) = (start, end) {
                    if s > e {
                        return Err(BelError::InvalidQuery(
                            "time range start is after its end".into(),
                        ));
                    }
                }
                (start, end)
            }
        };
        let (order, ascending) = match &q.order_by {
            None => (OrderField::Timestamp, true),
            Some(o) => (
                match o.field.as_str() {
                    "" | "timestamp" => OrderField::Timestamp,
                    "partition_ref" | "partitionRef" => OrderField::PartitionRef,
                    "status" => OrderField::Status,
                    other => {
                        return Err(BelError::InvalidQuery(format!(
                            "unknown order_by field `{other}`; expected one of [{}]",
                            ORDER_FIELDS
                                .iter()
                                .map(|f| format!("`{f}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )))
                    }
                },
                o.ascending,
            ),
        };
        Ok(Self {
            refs,
            statuses,
            run_ids: q.job_graph_run_ids.clone(),
            start_micros,
            end_micros,
            limit: if q.limit == 0 {
                DEFAULT_LIMIT
            } else {
                i64::from(q.limit)
            },
            offset: i64::from(q.offset),
            order,
            ascending,
        })
    }
}

fn check_timestamp(t: &databuild_proto::Timestamp) -> Result<i64, BelError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(BelError::InvalidQuery(format!(
            "malformed timestamp: nanos {} is outside 0..1e9",
            t.nanos
        )));
    }
    Ok(databuild_proto::timestamp_micros(t))
}

#[cfg(test)]
mod tests {
    use databuild_proto::OrderBy;

    use super::*;

    #[test]
    fn unknown_order_fields_and_negative_paging_are_errors() {
        let q = PartitionEventQuery {
            order_by: Some(OrderBy {
                field: "colour".into(),
                ascending: true,
            }),
            ..Default::default()
        };
        let e = PartitionQuery::from_proto(&q).unwrap_err().to_string();
        assert!(e.contains("unknown order_by field `colour`"), "{e}");
        let q = PartitionEventQuery {
            limit: -1,
            ..Default::default()
        };
        assert!(PartitionQuery::from_proto(&q).is_err());
        let q = PartitionEventQuery {
            offset: -5,
            ..Default::default()
        };
        assert!(PartitionQuery::from_proto(&q).is_err());
        let q = PartitionEventQuery::default();
        assert_eq!(PartitionQuery::from_proto(&q).unwrap().limit, DEFAULT_LIMIT);
    }
}
