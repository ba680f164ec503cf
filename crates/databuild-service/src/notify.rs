//! Where notifications about wants go, from the graph file's `[notify]`: the webhook (a
//! JSON POST over HTTP or HTTPS, verified against the system's CA bundle) and the command,
//! and the reconciler a service runs.

use std::{sync::Arc, time::Duration};

use axum::body::Bytes;
use databuild_core::{
    wants::{CommandNotifier, Notification, Notifier, Notifiers, ReconcileOptions, Reconciler},
    Graph,
};
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

use crate::App;

/// `[notify] webhook`: POSTs each notification as JSON; any answer but 2xx, or none
/// within the timeout, is a failed delivery.
pub struct WebhookNotifier {
    url: String,
    timeout: Duration,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl WebhookNotifier {
    /// A webhook at `url` (`https://` is verified against the system's CA bundle).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let roots = if url.starts_with("https://") {
            crate::tls::roots(None, "[notify] webhook").map_err(|e| e.0)?
        } else {
            rustls::RootCertStore::empty()
        };
        let tls = crate::tls::client_config(roots).map_err(|e| e.0)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(Self {
            url: url.to_string(),
            timeout,
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }
}

#[async_trait::async_trait]
impl Notifier for WebhookNotifier {
    fn target(&self) -> String {
        format!("webhook {}", self.url)
    }

    async fn send(&self, n: &Notification) -> Result<(), String> {
        let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(&self.url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("databuild/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| {
                let mut detail = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    detail = s.to_string();
                    source = s.source();
                }
                detail
            })?;
            let status = resp.status();
            // Read the answer so the connection can be reused; its content is not used.
            let _ = resp.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("it answered {status}"))
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }
}

/// The notifiers `[notify]` of `graph` configures.
pub fn notifiers(graph: &Graph) -> Result<Notifiers, String> {
    let mut out = Notifiers::new();
    if let Some(url) = &graph.notify.webhook {
        out.add(Arc::new(WebhookNotifier::new(url, graph.notify.timeout)?));
    }
    if let Some(argv) = &graph.notify.command {
        out.add(Arc::new(CommandNotifier {
            argv: argv.clone(),
            dir: graph.dir.clone(),
            timeout: graph.notify.timeout,
        }));
    }
    Ok(out)
}

/// Runs the reconciler of `app`'s graph and log until `stopped` turns true, then lets its
/// graph runs in flight finish. A failed pass (the event log unreachable, say) is logged
/// and retried after a pause; it never stops the service.
pub async fn reconcile(
    app: App,
    notifiers: Notifiers,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    let opts = ReconcileOptions::new(app.opts.build.clone());
    let mut r = Reconciler::new(app.graph.clone(), app.bel.clone(), opts, notifiers);
    let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    loop {
        match r.run(until(stopped.clone())).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!("reconciler: {e}; retrying in 5 s");
                eprintln!("reconciler: {e}; retrying in 5 s");
            }
        }
        tokio::select! {
            _ = until(stopped.clone()) => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
