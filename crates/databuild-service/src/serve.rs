//! Running the service: one listener for gRPC and HTTP, and graceful shutdown — on the
//! signal, new builds are refused, streams end, connections drain, and in-flight builds
//! run to their end (keeping their claims) before `serve` returns. Connections are
//! bounded by [`crate::conn`].

use std::future::Future;

use crate::{grpc, http, state::App};

/// Serves `app` on `listener` until `shutdown` resolves, then shuts down gracefully.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = http::router(&app, grpc::routes(&app).await);
    let app2 = app.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!(
            builds_in_flight = app2.builds.in_flight(),
            "shutting down: no new builds; waiting for the builds in flight"
        );
        app2.begin_shutdown();
    };
    crate::conn::serve(&app, listener, router, signal).await?;
    app.builds.idle().await;
    Ok(())
}
