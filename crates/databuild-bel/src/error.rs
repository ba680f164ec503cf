//! Errors of the event log.

use std::path::PathBuf;

/// Why the event log could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BelError {
    /// The directory for the log could not be created or written.
    #[error("cannot create the event log directory `{path}`; check its permissions or pass `--bel` with a writable location")]
    Unwritable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The log was opened for reading only (its directory or file system is not writable).
    #[error("the event log `{path}` is read-only here (its directory or file system is not writable), so it can be read but not written; run commands that write where the log is writable, or pass `--bel` with a writable location")]
    ReadOnly { path: PathBuf },
    /// A SQLite log that would not outlive the command.
    #[error("the event log `{url}` would be lost when the command ends; the event log must be durable: pass `--bel` with a file path (e.g. `.databuild/bel.sqlite`) or a `postgres://` URL")]
    NotDurable { url: String },
    /// A directory on the way to the log is a file.
    #[error("cannot create the event log `{path}`: `{file}` is a file, not a directory; pass `--bel` with a path inside a directory")]
    NotADirectory { path: PathBuf, file: PathBuf },
    /// The file exists but is not a SQLite database.
    #[error("`{path}` is not a databuild event log (not a SQLite database); move it away or pass `--bel` with another path")]
    NotADatabase { path: PathBuf },
    /// The file is a database but not one databuild wrote.
    #[error("`{path}` is a SQLite database but not a databuild event log; pass `--bel` with another path")]
    ForeignDatabase { path: PathBuf },
    /// The log was written by a newer databuild.
    #[error("`{path}` was written by a newer databuild (event log schema version {found}, this databuild reads up to {supported}); upgrade databuild to read it")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// The URL names a backend this build does not include.
    #[error("event log backend of `{url}` is not supported; use `sqlite:///path/to/bel.sqlite` or `postgres://user:password@host:port/database`")]
    UnsupportedBackend { url: String },
    /// The URL could not be understood.
    #[error("invalid event log URL `{url}`; expected `sqlite:///path/to/bel.sqlite`")]
    InvalidUrl { url: String },
    /// A `postgres://` URL that does not parse (its password hidden).
    #[error("invalid event log URL `{url}`: {detail}; expected `postgres://user:password@host:port/database`")]
    InvalidPostgresUrl { url: String, detail: String },
    /// The PostgreSQL server could not be reached or refused the connection.
    #[error("cannot connect to the event log `{url}`: {reason}")]
    Connect { url: String, reason: String },
    /// The connection to the PostgreSQL server was lost and did not come back.
    #[error("lost the connection to the event log `{url}` and could not reconnect within {waited_s} s ({detail}); check the PostgreSQL server, then run the command again")]
    ConnectionLost {
        url: String,
        waited_s: u64,
        detail: String,
    },
    /// A PostgreSQL database that has tables but is not a databuild event log.
    #[error("the database of `{url}` has tables but is not a databuild event log; pass `--bel` with an empty database")]
    ForeignPostgresDatabase { url: String },
    /// A URL parameter that is unknown or has a bad value.
    #[error("invalid event log URL `{url}`: {detail}; the only parameter is `busy_timeout_ms=N` (milliseconds), e.g. `sqlite:///path/bel.sqlite?busy_timeout_ms=2000`")]
    InvalidUrlParameter { url: String, detail: String },
    /// A write that would break a state machine.
    #[error("invalid transition: {0}")]
    InvalidTransition(String),
    /// Another live graph run holds the partition.
    #[error("partition `{partition_ref}` is already being built by graph run `{owner_run_id}`")]
    Claimed {
        partition_ref: String,
        owner_run_id: String,
    },
    /// A want event for a want the log has never heard of.
    #[error("no want `{0}` in the event log; see `databuild wants list`")]
    UnknownWant(String),
    /// A want event its want's state does not allow (e.g. a second creation of one id, as
    /// when two reconcilers fire one schedule tick).
    #[error("want `{want_id}` is {} and cannot become {}", .current.as_str_name(), .next.as_str_name())]
    WantState {
        want_id: String,
        current: databuild_proto::WantStatus,
        next: databuild_proto::WantStatus,
    },
    /// A backfill event for a backfill the log has never heard of.
    #[error("no backfill `{0}` in the event log; see `databuild backfill list`")]
    UnknownBackfill(String),
    /// A backfill event its backfill's state does not allow.
    #[error("backfill `{backfill_id}` is {} and cannot become {}", .current.as_str_name(), .next.as_str_name())]
    BackfillState {
        backfill_id: String,
        current: databuild_proto::BackfillStatus,
        next: databuild_proto::BackfillStatus,
    },
    /// An event that cannot be stored as given.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// The database stayed locked by another writer.
    #[error("the event log `{path}` is locked by another writer (gave up after {waited_ms} ms); retry, or check for a stuck databuild process")]
    Busy { path: PathBuf, waited_ms: u64 },
    /// A query that cannot be answered as asked.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A log read through a databuild service (`--remote`) that could not be answered;
    /// the message says why.
    #[error("{0}")]
    Remote(String),
    /// A partition the log has never heard of.
    #[error("no partition `{0}` in the event log; see `databuild partitions list`")]
    UnknownPartition(String),
    /// Stored data that does not decode.
    #[error("corrupt event #{seq} in the event log: {error}")]
    Corrupt { seq: i64, error: prost::DecodeError },
    /// Any other database error.
    #[error("event log database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Any other PostgreSQL error.
    #[error("event log database error: {}", crate::postgres::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
}
