//! Connections to the PostgreSQL server: a small pool with per-connection prepared
//! statements, clear messages for connection failures, and the retry policy that rides
//! out a server restart.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio_postgres::{error::SqlState, tls::MakeTlsConnect, Client, Config, Socket, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::BelError;

/// How long a read or write keeps trying to reconnect after the server went away.
pub(super) const RECONNECT_WINDOW: Duration = Duration::from_secs(30);
/// How long connecting may take when the URL does not say (`connect_timeout=N`, seconds).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 4;

/// One connection and the statements prepared on it.
pub(super) struct Conn {
    pub client: Client,
    pub stmts: Stmts,
}

/// Statements prepared on one connection, by their SQL.
#[derive(Default)]
pub(super) struct Stmts(HashMap<&'static str, Statement>);

impl Stmts {
    /// The statement for `sql`, prepared on first use.
    pub async fn get(
        &mut self,
        client: &impl tokio_postgres::GenericClient,
        sql: &'static str,
    ) -> Result<Statement, BelError> {
        if let Some(s) = self.0.get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(sql).await?;
        self.0.insert(sql, s.clone());
        Ok(s)
    }
}

/// The stream of a connection (TLS or not, as `sslmode` says).
pub(super) type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// Connections to one database.
pub(super) struct Pool {
    config: Config,
    tls: MakeRustlsConnect,
    /// What verifies the server, for messages (`sslrootcert=FILE`), if anything does.
    verified_by: Option<String>,
    /// The URL with its password hidden, for messages.
    pub url: String,
    idle: Mutex<Vec<Conn>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("url", &self.url).finish()
    }
}

impl Pool {
    /// Parses `url` (a `postgres://` or `postgresql://` URL; `sslmode` and `sslrootcert`
    /// as libpq's, see [`super::tls`]).
    pub fn new(url: &str) -> Result<Self, BelError> {
        let shown = redact(url);
        let invalid = |detail: String| BelError::InvalidPostgresUrl {
            url: shown.clone(),
            detail,
        };
        let (rest, ssl) = super::tls::split_url(url).map_err(&invalid)?;
        let tls = ssl.connector().map_err(&invalid)?;
        let mut config: Config =
            rest.parse()
                .map_err(|e: tokio_postgres::Error| BelError::InvalidPostgresUrl {
                    url: shown.clone(),
                    detail: source_text(&e).unwrap_or_else(|| e.to_string()),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("databuild");
        }
        config.ssl_mode(ssl.pg_mode());
        let verified_by = match (ssl.mode, &ssl.rootcert) {
            (super::tls::SslMode::VerifyCa | super::tls::SslMode::VerifyFull, None) => {
                Some("`~/.postgresql/root.crt`".to_string())
            }
            (super::tls::SslMode::Disable | super::tls::SslMode::Prefer, _) | (_, None) => None,
            (_, Some(f)) => Some(format!("`sslrootcert={f}`")),
        };
        Ok(Self {
            config,
            tls,
            verified_by,
            url: shown,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A new connection; its driver runs on the current tokio runtime.
    pub async fn connect(&self) -> Result<Conn, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "event log connection ended");
            }
        });
        Ok(Conn {
            client,
            stmts: Stmts::default(),
        })
    }

    /// A new connection whose driver the caller runs (to receive notifications).
    pub async fn connect_unspawned(
        &self,
    ) -> Result<(Client, tokio_postgres::Connection<Socket, TlsStream>), tokio_postgres::Error>
    {
        self.config.connect(self.tls.clone()).await
    }

    /// An idle connection, or a new one.
    pub async fn get(&self) -> Result<Conn, tokio_postgres::Error> {
        loop {
            let Some(c) = self.idle.lock().expect("pool lock").pop() else {
                break;
            };
            if !c.client.is_closed() {
                return Ok(c);
            }
        }
        self.connect().await
    }

    /// Returns a connection for reuse (closed ones are dropped).
    pub fn put(&self, c: Conn) {
        if c.client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    /// Drops every idle connection (after the server went away).
    pub fn clear(&self) {
        self.idle.lock().expect("pool lock").clear();
    }

    /// The one-line error for a failed first connection.
    pub fn connect_error(&self, e: &tokio_postgres::Error) -> BelError {
        let host = format!(
            "{}:{}",
            match self.config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
                None => "localhost".into(),
            },
            self.config.get_ports().first().copied().unwrap_or(5432)
        );
        let user = self.config.get_user().unwrap_or("");
        let db = self.config.get_dbname().unwrap_or(user);
        let reason = match e.code() {
            Some(c) if *c == SqlState::INVALID_PASSWORD => format!(
                "password authentication failed for user `{user}`; check the user and password in the URL"
            ),
            Some(c) if *c == SqlState::INVALID_CATALOG_NAME => {
                let (h, p) = host.rsplit_once(':').unwrap_or((host.as_str(), "5432"));
                format!(
                    "database `{db}` does not exist on {host}; create it (`createdb -h {h} -p {p} -U {user} {db}`) or name another database in the URL"
                )
            }
            Some(_) => e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default(),
            None if tls_cause(e).is_some() => {
                let t = tls_cause(e).map(ToString::to_string).unwrap_or_default();
                match &self.verified_by {
                    Some(by) => format!(
                        "the server's TLS certificate does not verify against {by}: {t} ({host}); check that file names the CA that signed the server's certificate, and, with `sslmode=verify-full`, that the certificate names the host of the URL"
                    ),
                    None => format!("TLS with {host} failed: {t}"),
                }
            }
            None => {
                let detail = source_text(e).unwrap_or_else(|| e.to_string());
                if detail.contains("refused") {
                    format!("connection refused by {host}; check that PostgreSQL is running and listening there")
                } else if e.to_string().contains("timeout") || detail.contains("timed out") {
                    format!("no answer from {host} within the connect timeout; check the host and port")
                } else {
                    format!("{detail} ({host})")
                }
            }
        };
        BelError::Connect {
            url: self.url.clone(),
            reason,
        }
    }
}

/// The URL with its password replaced by `***`.
pub(super) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match auth.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The TLS error under `e`, if it is one.
fn tls_cause(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = cur {
        if let Some(t) = super::tls::tls_error(s) {
            return Some(t);
        }
        cur = s.source();
    }
    None
}

/// The innermost message of `e`'s cause chain (tokio-postgres shows only the kind).
fn source_text(e: &tokio_postgres::Error) -> Option<String> {
    let mut cur: &dyn std::error::Error = std::error::Error::source(e)?;
    while let Some(next) = cur.source() {
        cur = next;
    }
    Some(cur.to_string())
}

/// The text of a database error for [`BelError::Postgres`].
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => match d.detail() {
            Some(detail) => format!("{} ({detail})", d.message()),
            None => d.message().to_string(),
        },
        None => match source_text(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

/// Whether `e` means the connection is gone or the server is restarting: worth a retry
/// on a new connection.
pub(super) fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || code.code().starts_with("08");
    }
    if e.as_db_error().is_none() {
        // I/O errors, refused or reset connections, timeouts while connecting.
        let s = e.to_string();
        return s.starts_with("error communicating")
            || s.starts_with("error connecting")
            || s.starts_with("timeout");
    }
    false
}

/// Retries of one read or write after connection failures, with backoff, within
/// [`RECONNECT_WINDOW`] of the first failure.
pub(super) struct Retry {
    first_failure: Option<Instant>,
    delay: Duration,
}

impl Retry {
    pub fn new() -> Self {
        Self {
            first_failure: None,
            delay: Duration::from_millis(50),
        }
    }

    /// After `e`: waits and returns `None` when another try is worth it, else the error
    /// to return.
    pub async fn after(&mut self, pool: &Pool, e: BelError) -> Option<BelError> {
        let BelError::Postgres(pg) = &e else {
            return Some(e);
        };
        if !is_transient(pg) {
            return Some(e);
        }
        if self.first_failure.is_none() {
            tracing::warn!(error = %describe(pg), "lost the event log connection; reconnecting");
        }
        let first = *self.first_failure.get_or_insert_with(Instant::now);
        if first.elapsed() >= RECONNECT_WINDOW {
            return Some(BelError::ConnectionLost {
                url: pool.url.clone(),
                waited_s: RECONNECT_WINDOW.as_secs(),
                detail: describe(pg),
            });
        }
        pool.clear();
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(1));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden_in_urls() {
        assert_eq!(
            redact("postgres://u:secret@h:5/db?x=1"),
            "postgres://u:***@h:5/db?x=1"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgresql://h"), "postgresql://h");
    }
}
