//! Connections, bounded: a cap on how many are open (below the open-file limit minus a
//! reserve kept for the builds' jobs and the event log), a timeout on reading a request's
//! headers (slowloris), and an idle timeout (no byte either way while no request is being
//! answered). At the cap, the connection idle longest is closed to make room; if none is
//! idle the new one is closed at once.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{body::Body, Router};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Notify,
};
use tower::ServiceExt as _;

use crate::{metrics::Metrics, state::App};

/// The limits of connections.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Most connections open at once (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// File descriptors kept free for everything but client connections.
    pub fd_reserve: u64,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a connection may stay without traffic while no request is answered.
    pub idle_timeout: Duration,
    /// Most streams (SSE or gRPC) one principal may have open at once.
    pub max_streams_per_principal: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            fd_reserve: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_streams_per_principal: 64,
        }
    }
}

/// Raises the soft open-file limit to the hard one; returns the limit in force.
#[allow(unsafe_code)] // getrlimit and setrlimit have no safe wrapper in std
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for the call to fill or read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

impl ConnLimits {
    /// The cap in force: `max_connections`, lowered so that `fd_reserve` descriptors stay
    /// free under the open-file limit (raised to its hard value first).
    pub fn effective_max(&self) -> usize {
        let nofile = raise_nofile();
        let room = nofile.saturating_sub(self.fd_reserve).max(16);
        self.max_connections
            .min(usize::try_from(room).unwrap_or(usize::MAX))
    }
}

/// What one connection did last.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last byte read or written.
    last_ms: AtomicU64,
    /// Requests being answered (their handler has not returned yet).
    in_flight: AtomicUsize,
    close: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            close: Notify::new(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    /// Resolves when the connection has been idle for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit && !self.busy() {
                return;
            }
            tokio::time::sleep(limit.saturating_sub(idle).max(Duration::from_millis(100))).await;
        }
    }
}

/// Counts a request as in flight until its handler returns (or is dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(a: &Arc<Activity>) -> Self {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A socket that records when bytes last moved.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The open connections.
#[derive(Debug, Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Registry {
    /// Registers a connection if there is room (closing the one idle longest if needed).
    fn admit(&self, max: usize, a: &Arc<Activity>) -> Option<u64> {
        let mut open = self.open.lock().expect("connections lock");
        if open.len() >= max {
            let victim = open
                .iter()
                .filter(|(_, c)| !c.busy())
                .max_by_key(|(_, c)| c.idle_for())
                .map(|(id, _)| *id)?;
            if let Some(c) = open.remove(&victim) {
                c.close.notify_one();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        open.insert(id, a.clone());
        Some(id)
    }

    fn remove(&self, id: u64) {
        self.open.lock().expect("connections lock").remove(&id);
    }
}

/// A connection's bytes, over TLS or not.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Accepts connections on `listener` and serves `router` on each, within `limits` (over
/// TLS when the options carry a server configuration; the handshake must end within the
/// header-read timeout), until `shutdown` resolves; then lets the open connections finish (graceful shutdown).
pub(crate) async fn serve(
    app: &App,
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = app.opts.conn.clone();
    let tls = app.opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let max = limits.effective_max();
    tracing::info!(max_connections = max, "accepting connections");
    let registry = Arc::new(Registry::default());
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // What one connection may have buffered: a client that stops reading holds no more.
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(256);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors or a connection reset before it was accepted: wait a
                // little instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let activity = Arc::new(Activity::new());
        let Some(id) = registry.admit(max, &activity) else {
            Metrics::inc(&app.metrics.connections_refused);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, builder, watcher, registry) = (
            router.clone(),
            builder.clone(),
            graceful.watcher(),
            registry.clone(),
        );
        let (idle_timeout, handshake_timeout) = (limits.idle_timeout, limits.header_read_timeout);
        let tls = tls.clone();
        tokio::spawn(async move {
            let a = activity.clone();
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let guard = InFlight::new(&a);
                    let router = router.clone();
                    async move {
                        let r = router.oneshot(req.map(Body::new)).await;
                        drop(guard);
                        r
                    }
                });
            let io = Tracked {
                inner: stream,
                activity: activity.clone(),
            };
            let run = async {
                let io: Box<dyn Io> = match tls {
                    None => Box::new(io),
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
                            Ok(Ok(s)) => Box::new(s),
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                };
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
                let _ = watcher.watch(conn.into_owned()).await;
            };
            tokio::select! {
                () = run => {}
                () = activity.idle(idle_timeout) => {}
                () = activity.close.notified() => {}
            }
            registry.remove(id);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
