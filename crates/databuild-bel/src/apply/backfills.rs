//! Applying a backfill event: checked against the backfill's state machine, stored with
//! the backfill id in `run_id`, and folded into the `backfills` view.

use databuild_proto::BackfillStatus;

use super::{EventRow, Rows};
use crate::{common, transitions, BackfillRow, BelError, Event};

/// Stores backfill event `event` (classified: of `backfill_id`, with status `next`);
/// returns its sequence number.
pub(super) async fn store<R: Rows>(
    rows: &mut R,
    event: &Event,
    backfill_id: String,
    next: BackfillStatus,
    ts: i64,
) -> Result<i64, BelError> {
    let Event::Backfill(b) = event else {
        unreachable!("a backfill subject comes from a backfill event")
    };
    let cur = rows.backfill(&backfill_id).await?;
    transitions::check_backfill(&backfill_id, cur.as_ref().map(|c| c.status), next)?;
    let (kind, body) = common::encode(event);
    let seq = rows
        .insert_event(EventRow {
            event_id: b.backfill_event_id.clone(),
            kind,
            run_id: backfill_id.clone(),
            run_seq: 0,
            job_run_id: None,
            partition_ref: None,
            status: b.status,
            ts,
            body,
        })
        .await?;
    let row = match cur {
        None => BackfillRow {
            backfill_id,
            name: b.name.clone(),
            status: next,
            refs: b.refs.clone(),
            total: b.total,
            max_failures: b.max_failures,
            parallelism: b.parallelism,
            requesters: b.requesting_clients.clone(),
            reason: b.reason.clone(),
            created_micros: ts,
            updated_micros: ts,
            seq,
        },
        Some(mut row) => {
            row.status = next;
            row.reason = b.reason.clone();
            row.updated_micros = ts;
            row.seq = seq;
            row
        }
    };
    rows.put_backfill(row)?;
    Ok(seq)
}
