//! Opening an existing event log for reading only, where its directory or file system is
//! not writable (a read-only mount, an archived copy): read commands work, writes are
//! refused with [`BelError::ReadOnly`].

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::BelError;

/// Whether `e` says the log could not be opened for writing.
pub(super) fn is_unwritable(e: &BelError) -> bool {
    match e {
        BelError::Unwritable { .. } => true,
        BelError::Sqlite(s) => matches!(
            s.sqlite_error_code(),
            Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
        ),
        _ => false,
    }
}

/// A `file:` URI for `path` (`?`, `#` and `%` escaped).
fn uri(path: &Path, params: &str) -> String {
    let mut out = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    format!("{out}?{params}")
}

/// Opens the log at `path` read-only and checks that databuild wrote it. Without a WAL
/// file beside it every committed event is in the file itself, so it is opened immutable
/// (SQLite then needs no `-shm` file, which it could not create here).
pub(super) fn open(path: &Path) -> Result<Connection, BelError> {
    let wal = path.with_file_name(format!(
        "{}-wal",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let params = if wal.exists() {
        "mode=ro"
    } else {
        "mode=ro&immutable=1"
    };
    let conn = Connection::open_with_flags(
        uri(path, params),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )?;
    let found: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|_| BelError::ForeignDatabase {
            path: path.to_path_buf(),
        })?;
    if super::schema::check_version(found, path)? < 2 {
        // A log from before builds were recorded, which cannot be upgraded here: an empty
        // `builds` of this connection's own reads as "no version, no digest".
        conn.execute_batch(
            "CREATE TEMP TABLE builds (ref TEXT PRIMARY KEY, job TEXT NOT NULL, \
             version TEXT NOT NULL, digest TEXT NOT NULL)",
        )?;
    }
    Ok(conn)
}
