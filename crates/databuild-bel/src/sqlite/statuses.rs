//! The latest status of many refs: one lookup each, or — for refs in sorted order — a walk
//! along the partitions' primary key, merged with the refs, a run of them at a time.

use databuild_proto::PartitionStatus;
use rusqlite::{Connection, OptionalExtension};

use crate::BelError;

/// Refs read with one range walk; also the fewest for which sorted refs are walked.
pub(super) const STATUS_RUN: usize = 512;

/// How many partitions a walk may pass per ref it looks for before the run is looked up
/// ref by ref instead (the refs are sparse among the partitions).
const WALK_PER_REF: usize = 4;

fn status_of(s: i32) -> PartitionStatus {
    PartitionStatus::try_from(s).unwrap_or_default()
}

/// One indexed lookup per ref, in the order of `refs`.
pub(super) fn point_statuses(
    conn: &Connection,
    refs: &[String],
) -> Result<Vec<Option<PartitionStatus>>, BelError> {
    let mut stmt = conn.prepare_cached("SELECT status FROM partitions WHERE ref = ?1")?;
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let status: Option<i32> = stmt.query_row([r], |row| row.get(0)).optional()?;
        out.push(status.map(status_of));
    }
    Ok(out)
}

/// For strictly increasing `refs`: each run of [`STATUS_RUN`] refs reads the partitions
/// between its first and last ref in key order and merges them with the run, unless the
/// partitions there outnumber the run's refs by far, when the run is looked up ref by ref.
pub(super) fn sorted_statuses(
    conn: &Connection,
    refs: &[String],
) -> Result<Vec<Option<PartitionStatus>>, BelError> {
    let mut walk = conn.prepare_cached(
        "SELECT ref, status FROM partitions WHERE ref >= ?1 AND ref <= ?2 ORDER BY ref LIMIT ?3",
    )?;
    let mut out = Vec::with_capacity(refs.len());
    for run in refs.chunks(STATUS_RUN) {
        let (first, last) = (&run[0], &run[run.len() - 1]);
        let limit = (run.len() * WALK_PER_REF) as i64;
        let start = out.len();
        let mut next = 0;
        let mut passed = 0i64;
        let mut rows = walk.query(rusqlite::params![first, last, limit])?;
        while let Some(row) = rows.next()? {
            passed += 1;
            let key = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            while next < run.len() && run[next].as_str() < key {
                out.push(None);
                next += 1;
            }
            if next < run.len() && run[next] == key {
                out.push(Some(status_of(row.get(1)?)));
                next += 1;
            }
        }
        drop(rows);
        if passed == limit && next < run.len() {
            // Sparse: the walk stopped before the run's end.
            out.truncate(start);
            out.extend(point_statuses(conn, run)?);
            continue;
        }
        out.extend(std::iter::repeat_n(None, run.len() - next));
    }
    Ok(out)
}
