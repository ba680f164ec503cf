//! Applying a want event: checked against the want's state machine, stored with the want
//! id in `run_id`, and folded into the `wants` view.

use databuild_proto::WantStatus;

use super::{EventRow, Rows};
use crate::{common, transitions, BelError, Event, WantRow};

/// Stores want event `event` (classified: of `want_id`, about `r`, with status `next`);
/// returns its sequence number.
pub(super) async fn store<R: Rows>(
    rows: &mut R,
    event: &Event,
    want_id: String,
    r: String,
    next: WantStatus,
    ts: i64,
) -> Result<i64, BelError> {
    let Event::Want(w) = event else {
        unreachable!("a want subject comes from a want event")
    };
    let cur = rows.want(&want_id).await?;
    transitions::check_want(
        &want_id,
        cur.as_ref().map(|c| (c.status, c.sla_missed)),
        next,
    )?;
    if let Some(c) = &cur {
        if c.partition_ref != r {
            return Err(BelError::InvalidEvent(format!(
                "want `{want_id}` is for `{}`, not `{r}`",
                c.partition_ref
            )));
        }
    }
    let (kind, body) = common::encode(event);
    let seq = rows
        .insert_event(EventRow {
            event_id: w.want_event_id.clone(),
            kind,
            run_id: want_id.clone(),
            run_seq: 0,
            job_run_id: None,
            partition_ref: None,
            status: w.status,
            ts,
            body,
        })
        .await?;
    let row = match cur {
        None => WantRow::created(w, ts, seq),
        Some(mut row) => {
            if next == WantStatus::WantSlaMissed {
                row.sla_missed = true;
            } else {
                row.status = next;
                row.reason = w.reason.clone();
            }
            row.updated_micros = ts;
            row.seq = seq;
            row
        }
    };
    rows.put_want(row)?;
    Ok(seq)
}
