//! Applying a want event: checked against the want's state machine, stored with the want
//! id in `run_id`, and folded into the `wants` view.

use databuild_proto::{WantEvent, WantStatus};

use super::{EventRow, Rows};
use crate::{common, transitions, BelError, Event, LoggedEvent, WantRow};

/// Stores want event `w` (classified: of `want_id`, about `r`, with status `next`).
pub(super) async fn store<R: Rows>(
    rows: &mut R,
    w: WantEvent,
    want_id: String,
    r: String,
    next: WantStatus,
    ts: i64,
) -> Result<LoggedEvent, BelError> {
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
    let event = Event::Want(w);
    let (kind, body) = common::encode(&event);
    let Event::Want(w) = event else {
        unreachable!()
    };
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
        None => WantRow::created(&w, ts, seq),
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
    Ok(LoggedEvent {
        seq,
        event: Event::Want(w),
    })
}
