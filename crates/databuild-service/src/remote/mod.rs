//! The HTTP client behind `databuild --remote URL`: typed calls to the service's JSON API,
//! a Server-Sent Events reader, and [`RemoteLog`], the event log read through the
//! service, so that the command line's read commands print a remote log exactly as a
//! local one.

mod log;

use std::{path::Path, time::Duration};

use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client as Hyper},
    rt::TokioExecutor,
};
use serde::{de::DeserializeOwned, Serialize};

pub use log::RemoteLog;

use crate::{state::CLIENT_HEADER, wire::WireError};

/// A call to the service that did not give an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The `--remote` URL is not `http://host:port` or `https://host:port`.
    #[error("invalid `--remote` URL `{url}`: {detail}; expected e.g. `http://127.0.0.1:50051` or `https://build.example.com:50051`")]
    InvalidUrl { url: String, detail: String },
    /// The CA file (or the system's CA bundle) cannot be used.
    #[error("cannot talk TLS to `{url}`: {detail}")]
    TlsSetup { url: String, detail: String },
    /// The server's certificate was refused.
    #[error("refusing the databuild service at `{url}`: its TLS certificate does not verify: {detail}; give the CA that signed it with `--ca-cert CA.pem`, and use the host name the certificate names")]
    Untrusted { url: String, detail: String },
    /// No connection.
    #[error("cannot reach the databuild service at `{url}`: {detail}; start it with `databuild serve --addr HOST:PORT`, or check `--remote`")]
    Unreachable { url: String, detail: String },
    /// The service answered with an error (its message is written for people).
    #[error("the service answered {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// An answer that is not what the API documents.
    #[error("unexpected answer from the databuild service at `{url}` to `{path}`: {detail}")]
    Protocol {
        url: String,
        path: String,
        detail: String,
    },
}

impl ClientError {
    /// Whether the service said the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }
}

/// A client of one databuild service.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    client_id: String,
    token: Option<String>,
    http: Hyper<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`message` if absent).
    pub event: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// Percent-encodes one path segment.
pub fn segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A query string from pairs.
pub fn query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The rustls error that `e` is or wraps (in `io::Error`s), if any.
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(t) = e.downcast_ref::<rustls::Error>() {
        return Some(t);
    }
    let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    tls_error(inner)
}

impl Client {
    /// A client of the service at `url` (`http://host:port`), recording requests as made
    /// by `client_id`.
    pub fn new(url: &str, client_id: &str) -> Result<Self, ClientError> {
        Self::with_ca(url, client_id, None)
    }

    /// A client of the service at `url` (`http://host:port` or `https://host:port`); over
    /// https the server's certificate must verify against the CA certificates of `ca`
    /// (PEM), else against the system's CA bundle.
    pub fn with_ca(url: &str, client_id: &str, ca: Option<&Path>) -> Result<Self, ClientError> {
        let bad = |detail: &str| ClientError::InvalidUrl {
            url: url.to_string(),
            detail: detail.to_string(),
        };
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
            ("https", rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            ("http", rest)
        } else {
            return Err(bad("only `http://` and `https://` are supported"));
        };
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(bad("give the service's address only, without a path"));
        }
        let base = format!("{scheme}://{host}");
        let roots = if scheme == "https" {
            crate::tls::roots(ca, "--ca-cert").map_err(|e| ClientError::TlsSetup {
                url: base.clone(),
                detail: e.0,
            })?
        } else {
            rustls::RootCertStore::empty() // never used: plain http
        };
        let tls = crate::tls::client_config(roots).map_err(|e| ClientError::TlsSetup {
            url: base.clone(),
            detail: e.0,
        })?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(Self {
            base,
            client_id: client_id.to_string(),
            token: None,
            http: Hyper::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The client, sending `token` as `Authorization: Bearer` (none: no header).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The service's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(CLIENT_HEADER, &self.client_id);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.protocol(path, e.to_string()))?;
        self.http.request(req).await.map_err(|e| {
            // The innermost cause says it best ("Connection refused (os error 111)").
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                if let Some(t) = tls_error(s) {
                    return ClientError::Untrusted {
                        url: self.base.clone(),
                        detail: t.to_string(),
                    };
                }
                detail = s.to_string();
                source = s.source();
            }
            ClientError::Unreachable {
                url: self.base.clone(),
                detail,
            }
        })
    }

    fn protocol(&self, path: &str, detail: String) -> ClientError {
        ClientError::Protocol {
            url: self.base.clone(),
            path: path.to_string(),
            detail,
        }
    }

    async fn read<T: DeserializeOwned>(
        &self,
        path: &str,
        resp: hyper::Response<hyper::body::Incoming>,
    ) -> Result<T, ClientError> {
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.protocol(path, format!("cannot read the body: {e}")))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        if !status.is_success() {
            return Err(match serde_json::from_str::<WireError>(&text) {
                Ok(e) => ClientError::Api {
                    status: status.as_u16(),
                    code: e.code,
                    message: e.message,
                },
                Err(_) => self.protocol(path, format!("HTTP {status}: {}", text.trim())),
            });
        }
        databuild_proto::from_json(&text).map_err(|e| self.protocol(path, e.to_string()))
    }

    /// `GET path` → JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self.send(Method::GET, path, None).await?;
        self.read(path, resp).await
    }

    /// `POST path` with a JSON body → JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let resp = self
            .send(Method::POST, path, Some(databuild_proto::to_json(body)))
            .await?;
        self.read(path, resp).await
    }

    /// Reads the Server-Sent Events of `GET path`, calling `on_event` for each until the
    /// stream ends or `on_event` returns false.
    pub async fn sse(
        &self,
        path: &str,
        mut on_event: impl FnMut(SseEvent) -> bool,
    ) -> Result<(), ClientError> {
        let resp = self.send(Method::GET, path, None).await?;
        if resp.status() != StatusCode::OK {
            return self.read::<serde_json::Value>(path, resp).await.map(|_| ());
        }
        let mut body = resp.into_body();
        let mut buf = String::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.protocol(path, format!("stream broken: {e}")))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buf.push_str(&String::from_utf8_lossy(data));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut ev = SseEvent::default();
                let mut data_lines = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim_start().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data_lines.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if data_lines.is_empty() && ev.event.is_empty() {
                    continue; // a keep-alive comment
                }
                ev.data = data_lines.join("\n");
                if ev.event.is_empty() {
                    ev.event = "message".into();
                }
                if !on_event(ev) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
