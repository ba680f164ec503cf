//! The backend-neutral parts of writing and reading the log that are not rules of
//! writing (those are in `apply/rules.rs`): stamping, classifying, encoding and decoding
//! events.

use databuild_proto::{
    BackfillEvent, BackfillStatus, JobGraphRunEvent, JobGraphRunStatus, JobRunStatus,
    PartitionEvent, PartitionStatus, WantEvent, WantStatus,
};
use prost::Message as _;

use crate::{BelError, Event, LoggedEvent};

/// `events.kind` of a graph event.
pub(crate) const KIND_GRAPH: i64 = 1;
/// `events.kind` of a job event.
pub(crate) const KIND_JOB: i64 = 2;
/// `events.kind` of a partition event.
pub(crate) const KIND_PARTITION: i64 = 3;
/// `events.kind` of a want event (stored with the want id in `run_id`).
pub(crate) const KIND_WANT: i64 = 4;
/// `events.kind` of a backfill event (stored with the backfill id in `run_id`).
pub(crate) const KIND_BACKFILL: i64 = 5;

/// The reason written on the claims of a graph run whose owner is gone (with
/// [`databuild_proto::FailureCause::OwnerRunLost`]).
pub(crate) const OWNER_LOST: &str = "owner run lost";

pub(crate) fn now_micros() -> i64 {
    databuild_proto::timestamp_micros(&databuild_proto::now())
}

/// Fills in a missing event id (a new UUIDv7) and timestamp (now). Returns the timestamp in
/// microseconds. Stamping before a write makes retrying that write idempotent.
pub(crate) fn stamp(event: &mut Event) -> i64 {
    let ts = match event.timestamp_micros() {
        0 => now_micros(),
        t => t,
    };
    let timestamp = Some(databuild_proto::timestamp_from_micros(ts));
    match event {
        Event::Run(e) => {
            e.timestamp = timestamp;
            if e.job_graph_run_event_id.is_empty() {
                e.job_graph_run_event_id = crate::new_id();
            }
            let id = e.job_graph_run_event_id.clone();
            if let Some(g) = &mut e.graph_event {
                g.job_graph_run_event_id = id;
            } else if let Some(j) = &mut e.job_event {
                j.job_graph_run_event_id = id;
            }
        }
        Event::Partition(p) => {
            p.timestamp = timestamp;
            if p.partition_event_id.is_empty() {
                p.partition_event_id = crate::new_id();
            }
        }
        Event::Want(w) => {
            w.timestamp = timestamp;
            if w.want_event_id.is_empty() {
                w.want_event_id = crate::new_id();
            }
        }
        Event::Backfill(b) => {
            b.timestamp = timestamp;
            if b.backfill_event_id.is_empty() {
                b.backfill_event_id = crate::new_id();
            }
        }
    }
    ts
}

/// The id of a stamped event.
pub(crate) fn event_id(event: &Event) -> &str {
    match event {
        Event::Run(e) => &e.job_graph_run_event_id,
        Event::Partition(p) => &p.partition_event_id,
        Event::Want(w) => &w.want_event_id,
        Event::Backfill(b) => &b.backfill_event_id,
    }
}

/// What an event is about, with its status checked to be a known one.
#[derive(Debug)]
pub(crate) enum Subject {
    /// A graph event of run `run_id`.
    Graph {
        run_id: String,
        label: String,
        status: JobGraphRunStatus,
    },
    /// A job event of job run `job_run_id` in graph run `run_id`.
    Job {
        run_id: String,
        job_run_id: String,
        label: String,
        job_key: String,
        status: JobRunStatus,
    },
    /// A partition event about `partition_ref` (a valid ref).
    Partition {
        partition_ref: String,
        status: PartitionStatus,
    },
    /// A want event of want `want_id` (non-empty) for `partition_ref` (a valid ref).
    Want {
        want_id: String,
        partition_ref: String,
        status: WantStatus,
    },
    /// A backfill event of backfill `backfill_id` (non-empty).
    Backfill {
        backfill_id: String,
        status: BackfillStatus,
    },
}

/// Checks what can be checked of `event` without the log: one of graph and job event, a
/// known status, a job run id, a valid partition ref.
pub(crate) fn classify(event: &Event) -> Result<Subject, BelError> {
    match event {
        Event::Run(e) => match (&e.graph_event, &e.job_event) {
            (Some(g), None) => Ok(Subject::Graph {
                run_id: g.job_graph_run_id.clone(),
                label: g
                    .label
                    .as_ref()
                    .map(|l| l.label.clone())
                    .unwrap_or_default(),
                status: JobGraphRunStatus::try_from(g.status).map_err(|_| {
                    BelError::InvalidEvent(format!("unknown graph status {}", g.status))
                })?,
            }),
            (None, Some(j)) => {
                let status = JobRunStatus::try_from(j.status).map_err(|_| {
                    BelError::InvalidEvent(format!("unknown job status {}", j.status))
                })?;
                if j.job_run_id.is_empty() {
                    return Err(BelError::InvalidEvent(
                        "job event without a job_run_id".into(),
                    ));
                }
                Ok(Subject::Job {
                    run_id: j.job_graph_run_id.clone(),
                    job_run_id: j.job_run_id.clone(),
                    label: j.label_name().to_string(),
                    job_key: j.job_key.clone(),
                    status,
                })
            }
            _ => Err(BelError::InvalidEvent(
                "a JobGraphRunEvent must carry exactly one of graph_event and job_event".into(),
            )),
        },
        Event::Partition(p) => {
            let r = p
                .partition_ref
                .as_ref()
                .map(|r| r.str.as_str())
                .unwrap_or("");
            databuild_proto::validate_ref(r).map_err(|e| BelError::InvalidEvent(e.to_string()))?;
            let status = PartitionStatus::try_from(p.status).map_err(|_| {
                BelError::InvalidEvent(format!("unknown partition status {}", p.status))
            })?;
            Ok(Subject::Partition {
                partition_ref: r.to_string(),
                status,
            })
        }
        Event::Want(w) => {
            let r = w
                .partition_ref
                .as_ref()
                .map(|r| r.str.as_str())
                .unwrap_or("");
            databuild_proto::validate_ref(r).map_err(|e| BelError::InvalidEvent(e.to_string()))?;
            if w.want_id.is_empty() || w.want_id.len() > 512 {
                return Err(BelError::InvalidEvent(
                    "a want event needs a want_id of 1 to 512 bytes".into(),
                ));
            }
            let status = WantStatus::try_from(w.status)
                .ok()
                .filter(|s| *s != WantStatus::WantUnknown)
                .ok_or_else(|| {
                    BelError::InvalidEvent(format!("unknown want status {}", w.status))
                })?;
            Ok(Subject::Want {
                want_id: w.want_id.clone(),
                partition_ref: r.to_string(),
                status,
            })
        }
        Event::Backfill(b) => {
            if b.backfill_id.is_empty() || b.backfill_id.len() > 256 || b.backfill_id.contains('#')
            {
                return Err(BelError::InvalidEvent(
                    "a backfill event needs a backfill_id of 1 to 256 bytes without `#`".into(),
                ));
            }
            let status = BackfillStatus::try_from(b.status)
                .ok()
                .filter(|s| *s != BackfillStatus::BackfillUnknown)
                .ok_or_else(|| {
                    BelError::InvalidEvent(format!("unknown backfill status {}", b.status))
                })?;
            Ok(Subject::Backfill {
                backfill_id: b.backfill_id.clone(),
                status,
            })
        }
    }
}

/// Sets the per-run `sequence` of a graph or job event.
pub(crate) fn set_run_sequence(event: &mut Event, seq: i64) {
    if let Event::Run(e) = event {
        if let Some(g) = &mut e.graph_event {
            g.sequence = seq;
        } else if let Some(j) = &mut e.job_event {
            j.sequence = seq;
        }
    }
}

/// The encoded body and `kind` of a stamped event.
pub(crate) fn encode(event: &Event) -> (i64, Vec<u8>) {
    match event {
        Event::Run(e) if e.graph_event.is_some() => (KIND_GRAPH, e.encode_to_vec()),
        Event::Run(e) => (KIND_JOB, e.encode_to_vec()),
        Event::Partition(p) => (KIND_PARTITION, p.encode_to_vec()),
        Event::Want(w) => (KIND_WANT, w.encode_to_vec()),
        Event::Backfill(b) => (KIND_BACKFILL, b.encode_to_vec()),
    }
}

/// Decodes a stored event body.
pub(crate) fn decode(seq: i64, kind: i64, body: &[u8]) -> Result<LoggedEvent, BelError> {
    let event = if kind == KIND_PARTITION {
        let mut e =
            PartitionEvent::decode(body).map_err(|error| BelError::Corrupt { seq, error })?;
        crate::cause::fill_legacy_cause(&mut e);
        Event::Partition(e)
    } else if kind == KIND_WANT {
        Event::Want(WantEvent::decode(body).map_err(|error| BelError::Corrupt { seq, error })?)
    } else if kind == KIND_BACKFILL {
        Event::Backfill(
            BackfillEvent::decode(body).map_err(|error| BelError::Corrupt { seq, error })?,
        )
    } else {
        Event::Run(
            JobGraphRunEvent::decode(body).map_err(|error| BelError::Corrupt { seq, error })?,
        )
    };
    Ok(LoggedEvent { seq, event })
}

/// The request on `first`, a graph run's first event (its GRAPH_STARTED).
pub(crate) fn run_request(
    first: Option<&crate::LoggedEvent>,
) -> Option<databuild_proto::GraphRequestEvent> {
    match &first?.event {
        crate::Event::Run(r) => r.graph_event.as_ref()?.request.clone(),
        crate::Event::Partition(_) | crate::Event::Want(_) | crate::Event::Backfill(_) => None,
    }
}
