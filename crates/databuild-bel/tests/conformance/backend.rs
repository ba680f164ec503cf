//! The backends under test: a SQLite file in a temporary directory, or a fresh PostgreSQL
//! database created (and dropped afterwards) on the server named by
//! `DATABUILD_TEST_POSTGRES`.

use std::{path::PathBuf, sync::Arc};

use databuild_bel::{BelError, EventLog};

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_ENV: &str = "DATABUILD_TEST_POSTGRES";

/// One fresh event log, and how to reach it again.
pub enum Backend {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        admin_url: String,
        db: String,
        url: String,
    },
}

impl Backend {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bel.sqlite");
        Self::Sqlite { _dir: dir, path }
    }

    /// A new database on the server of `DATABUILD_TEST_POSTGRES`.
    pub async fn postgres() -> Self {
        let admin_url = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
            panic!(
                "{POSTGRES_ENV} is not set: the PostgreSQL conformance cases need a server. \
                 Run the tests with `scripts/test.sh`, which starts one, or start one with \
                 `scripts/postgres.sh start` and `export {POSTGRES_ENV}=$(scripts/postgres.sh url)`"
            )
        });
        let db = format!("databuild_test_{}", uuid::Uuid::now_v7().simple());
        admin(&admin_url, &format!("CREATE DATABASE {db}")).await;
        let url = with_database(&admin_url, &db);
        Self::Postgres { admin_url, db, url }
    }

    /// The log's URL.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite { path, .. } => format!("sqlite://{}", path.display()),
            Self::Postgres { url, .. } => url.clone(),
        }
    }

    /// Opens (another handle to) the log: its own connections, like another process.
    pub async fn open(&self) -> Result<Arc<dyn EventLog>, BelError> {
        databuild_bel::open(&self.url(), std::path::Path::new("/")).await
    }

    /// PostgreSQL: a connection of its own to the log's database, outside databuild (as
    /// another writer would have), with the task driving it; SQLite: none.
    pub async fn postgres_client(
        &self,
    ) -> Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
        let Self::Postgres { url, .. } = self else {
            return None;
        };
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e:?}"));
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Some((client, driver))
    }

    /// Records `version` as the log's schema version, as a newer databuild would.
    pub async fn set_schema_version(&self, version: i64) {
        let sql = format!("UPDATE meta SET value = '{version}' WHERE key = 'schema_version'");
        match self {
            Self::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open sqlite");
                conn.execute(&sql, []).expect("update meta");
            }
            Self::Postgres { url, .. } => admin(url, &sql).await,
        }
    }

    /// Runs `sql` on the log's database, outside databuild.
    pub async fn execute(&self, sql: &str) {
        match self {
            Self::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open sqlite");
                conn.execute_batch(sql).expect("execute");
            }
            Self::Postgres { url, .. } => admin(url, sql).await,
        }
    }

    /// Drops the PostgreSQL database (the SQLite directory goes with `self`).
    pub async fn cleanup(self) {
        if let Self::Postgres { admin_url, db, .. } = self {
            // FORCE cannot end a backend of another role (an autovacuum worker that
            // happens to be in the database): try again a few times, then leave the
            // database behind rather than fail the case that just passed.
            let sql = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
            for attempt in 1..=5 {
                match try_admin(&admin_url, &sql).await {
                    Ok(()) => return,
                    Err(e) if attempt == 5 => eprintln!("could not drop test database {db}: {e}"),
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                }
            }
        }
    }
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    format!("{base}/{db}{query}")
}

/// Runs one statement on `url`, saying why if it fails.
async fn try_admin(url: &str, sql: &str) -> Result<(), String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to {POSTGRES_ENV} ({url}): {e:?}"))?;
    let driver = tokio::spawn(connection);
    let done = client
        .batch_execute(sql)
        .await
        .map_err(|e| format!("`{sql}` failed: {e:?}"));
    drop(client);
    let _ = driver.await;
    done
}

/// Runs one statement on `url`.
async fn admin(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_ENV} ({url}): {e:?}"));
    let driver = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}` failed: {e:?}"));
    drop(client);
    let _ = driver.await;
}
