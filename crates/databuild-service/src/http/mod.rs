//! The HTTP JSON API (axum) under `/api/v1`: the RPCs in the proto3 JSON mapping, Server-
//! Sent Events for partition events and a build's progress, an asynchronous build submit,
//! event-log reads for `databuild --remote`, the OpenAPI document and `/metrics`. Every
//! error is a JSON body `{"code": ..., "message": ...}` with the status of the error table.

mod log;
mod routes;
mod sse;

use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    errors::{ApiError, ErrorCode},
    metrics::Metrics,
    security::Principal,
    state::{App, CLIENT_HEADER},
    wire::WireError,
};

pub use routes::ROUTES;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = WireError {
            code: self.code.name().to_string(),
            message: self.message,
        };
        (self.code.http(), json_response(&body)).into_response()
    }
}

/// A JSON body with the right content type.
pub(crate) fn json_response<T: Serialize>(v: &T) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        databuild_proto::to_json(v),
    )
        .into_response()
}

/// The last segment of a type's path: the message name.
fn type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Parses a proto3 JSON body (an empty body is `{}`).
pub(crate) fn parse<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        let why = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            format!("it is larger than {MAX_BODY} bytes")
        } else {
            e.body_text()
        };
        ApiError::invalid(format!("cannot read the request body: {why}"))
    })?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid("the request body is not UTF-8 text; send proto3 JSON"))?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    databuild_proto::from_json(text).map_err(|e| {
        ApiError::invalid(format!(
            "malformed JSON body: {e}; send a `{}` in the proto3 JSON mapping",
            type_name::<T>()
        ))
    })
}

/// The result of an operation as a response.
pub(crate) fn respond<T: Serialize>(r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => json_response(&v),
        Err(e) => e.into_response(),
    }
}

/// Who asks: the principal the guard authenticated, with the `x-databuild-client` label
/// (if any) after it.
pub(crate) fn client(principal: Option<&Principal>, headers: &HeaderMap) -> String {
    let label = headers.get(CLIENT_HEADER).and_then(|v| v.to_str().ok());
    principal
        .cloned()
        .unwrap_or_else(Principal::anonymous)
        .requester(label)
}

/// Query parameters, repeated keys allowed.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A non-negative integer parameter, at most `max`.
    pub(crate) fn int(&self, key: &str, default: i64, max: i64) -> Result<i64, ApiError> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        let n: i64 = v.parse().map_err(|_| {
            ApiError::invalid(format!(
                "query parameter `{key}` must be a whole number (got `{v}`)"
            ))
        })?;
        if !(0..=max).contains(&n) {
            return Err(ApiError::invalid(format!(
                "query parameter `{key}` must be between 0 and {max} (got {n})"
            )));
        }
        Ok(n)
    }

    /// An optional whole number (any sign).
    pub(crate) fn opt_int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::invalid(format!(
                        "query parameter `{key}` must be a whole number (got `{v}`)"
                    ))
                })
            })
            .transpose()
    }

    /// A boolean parameter (`true`/`false`, `1`/`0`).
    pub(crate) fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1" | "") => Ok(true),
            Some(v) => Err(ApiError::invalid(format!(
                "query parameter `{key}` must be `true` or `false` (got `{v}`)"
            ))),
        }
    }

    /// Partition statuses given as `available`, `AVAILABLE` or `PARTITION_AVAILABLE`.
    pub(crate) fn statuses(&self) -> Result<Vec<databuild_proto::PartitionStatus>, ApiError> {
        self.all("status")
            .iter()
            .map(|s| {
                databuild_proto::PartitionStatus::parse_name(s)
                    .map_err(|e| ApiError::invalid(e.to_string()))
            })
            .collect()
    }

    /// The `ref` parameters, each a valid partition ref.
    pub(crate) fn refs(&self) -> Result<Vec<String>, ApiError> {
        let refs = self.all("ref");
        for r in &refs {
            databuild_proto::validate_ref(r)?;
        }
        Ok(refs)
    }
}

/// Answers what no route matched: gRPC's UNIMPLEMENTED for gRPC requests, a JSON 404
/// under `/api/`, else the dashboard's 404 page.
async fn fallback(app: App, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented(format!(
            "no gRPC method `{}`; the services are databuild.v1.DataBuildService, databuild.v1.Catalog, databuild.v1.GraphLookup and databuild.v1.Wants",
            uri.path()
        ))
        .into_http::<()>()
        .into_parts();
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    if !uri.path().starts_with("/api/") {
        return crate::dashboard::unknown_page(&app, uri.path());
    }
    ApiError::new(
        ErrorCode::NotFound,
        format!(
            "no route `{}`; the API is described at /api/v1/openapi.json",
            uri.path()
        ),
    )
    .into_response()
}

/// Counts HTTP requests (gRPC ones are counted by their service).
async fn count(
    axum::extract::State(app): axum::extract::State<App>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if !grpc {
        Metrics::inc(&app.metrics.http_requests);
    }
    next.run(req).await
}

/// One router for the whole port: the gRPC services (`grpc`, routed by their
/// `/databuild.v1.X/Method` paths), every HTTP route of [`ROUTES`] and the dashboard.
pub fn router(app: &App, grpc: tonic::service::Routes) -> Router {
    let mut r: Router<App> = Router::new();
    for (doc, handler) in routes::routes() {
        r = r.route(doc.path, handler);
    }
    grpc.into_axum_router()
        .merge(r.with_state(app.clone()))
        .merge(crate::dashboard::router().with_state(app.clone()))
        .fallback({
            let app = app.clone();
            move |headers: HeaderMap, uri: axum::http::Uri| fallback(app.clone(), headers, uri)
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::security::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(app.clone(), count))
}
