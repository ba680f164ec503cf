//! The service's shared state: the graph, the event log (timed for metrics), the options
//! builds run with, the registry of builds started here, and the shutdown flag.

use std::{sync::Arc, time::Duration};

use databuild_bel::EventLog;
use databuild_core::{BuildOptions, Graph};
use tokio::sync::watch;

use crate::{
    builds::Builds,
    conn::ConnLimits,
    errors::{ApiError, ErrorCode},
    metrics::{Metrics, TimedLog},
    security::Security,
};

/// The request header (HTTP) or metadata key (gRPC) with a label of the client; recorded
/// in `requesting_clients` after the authenticated principal, never instead of it.
pub const CLIENT_HEADER: &str = "x-databuild-client";

/// How the service behaves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The options of every build the service starts (`handle_signals` is forced off: a
    /// signal stops the service from accepting builds, it does not cancel them).
    pub build: BuildOptions,
    /// Events buffered per stream consumer before it counts as slow.
    pub stream_buffer: usize,
    /// How long a stream waits for a slow consumer with a full buffer before closing it.
    pub slow_consumer_grace: Duration,
    /// Who may do what (tokens, allowed hosts); default: no authentication.
    pub security: Arc<Security>,
    /// Bounds on client connections.
    pub conn: ConnLimits,
    /// The port speaks TLS with this configuration (`serve --tls-cert/--tls-key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            build: BuildOptions::default(),
            stream_buffer: 1024,
            slow_consumer_grace: Duration::from_secs(2),
            security: Security::open(),
            conn: ConnLimits::default(),
            tls: None,
        }
    }
}

/// The state every handler shares (cheap to clone).
#[derive(Debug, Clone)]
pub struct App(Arc<Inner>);

/// What [`App`] holds.
#[derive(Debug)]
pub struct Inner {
    /// The graph served.
    pub graph: Arc<Graph>,
    /// The event log, appends timed.
    pub bel: Arc<dyn EventLog>,
    /// The options.
    pub opts: ServeOptions,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Builds started here.
    pub builds: Builds,
    shutdown: watch::Sender<bool>,
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl App {
    /// The state of a service of `graph` over `bel`.
    pub fn new(graph: Graph, bel: Arc<dyn EventLog>, mut opts: ServeOptions) -> Self {
        opts.build.handle_signals = false;
        let metrics = Arc::new(Metrics::default());
        let bel: Arc<dyn EventLog> = Arc::new(TimedLog::new(bel, metrics.clone()));
        Self(Arc::new(Inner {
            graph: Arc::new(graph),
            bel,
            opts,
            metrics,
            builds: Builds::default(),
            shutdown: watch::channel(false).0,
        }))
    }

    /// Whether the service is shutting down (it accepts no new builds).
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves when shutdown begins.
    pub async fn on_shutdown(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Stops accepting builds; streams end.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Refuses new work once shutting down.
    pub fn check_accepting(&self) -> Result<(), ApiError> {
        if self.shutting_down() {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "the service is shutting down and accepts no new builds; retry against a running service",
            ));
        }
        Ok(())
    }

    /// The build options for a request by `client_id`.
    pub fn build_options(&self, client_id: &str) -> BuildOptions {
        BuildOptions {
            client_id: client_id.to_string(),
            handle_signals: false,
            ..self.opts.build.clone()
        }
    }
}
