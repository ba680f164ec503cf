//! The guard in front of every route: the `Host` must name this service, a state-changing
//! browser request must come from its own origin, JSON endpoints take only
//! `application/json`, credentials (a bearer token or a session cookie) name the
//! principal, the principal's role must allow the request, and dashboard forms must carry
//! their CSRF token. Refusals never reach a handler, so they change nothing. Every answer
//! but gRPC's carries the security headers.

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};

use super::{
    roles::{required_role, Need},
    session, Principal, Security,
};
use crate::{
    errors::{ApiError, ErrorCode},
    state::App,
};

/// Largest dashboard form read to check its CSRF token.
const MAX_FORM: usize = 1024 * 1024;

/// The content security policy: scripts and styles only from the service itself (no
/// inline script), no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// How a refusal is written: gRPC status, JSON error, or a dashboard page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Grpc,
    Api,
    Page,
}

fn kind(req: &Request) -> Kind {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let path = req.uri().path();
    if grpc {
        Kind::Grpc
    } else if path.starts_with("/api/") || path == "/metrics" {
        Kind::Api
    } else {
        Kind::Page
    }
}

fn refuse(app: &App, kind: Kind, e: ApiError) -> Response {
    tracing::info!(code = e.code.name(), message = %e.message, "request refused");
    crate::metrics::Metrics::inc(&app.metrics.requests_refused);
    match kind {
        Kind::Grpc => {
            let (parts, ()) = tonic::Status::from(e).into_http::<()>().into_parts();
            Response::from_parts(parts, Body::empty())
        }
        Kind::Api => e.into_response(),
        Kind::Page => crate::dashboard::refusal(app, e),
    }
}

/// The authority a request names: `Host`, else the URI's (HTTP/2).
fn authority(req: &Request) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
}

/// Why a state-changing request from a browser is not from this service's own pages.
fn cross_origin(sec: &Security, headers: &HeaderMap, host: &str) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return Some(format!(
                "the browser says the request comes from another site (`Sec-Fetch-Site: {site}`)"
            ));
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("?");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match authority {
        Some(a) if a.eq_ignore_ascii_case(host) && sec.host_allowed(a) => None,
        _ => Some(format!(
            "it comes from the page of another origin (`Origin: {origin}`)"
        )),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case("application/json")
        })
}

/// The principal a request's credentials name, with its CSRF token; `Err` when they name
/// none (a wrong or revoked token, an ended session).
fn principal(app: &App, headers: &HeaderMap) -> Result<Option<(Principal, String)>, String> {
    let sec = &app.opts.security;
    let Some(tokens) = &sec.tokens else {
        return Ok(Some((
            Principal::anonymous(),
            sec.sessions.anonymous_csrf().to_string(),
        )));
    };
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or("the `Authorization` header is not `Bearer TOKEN`")?;
        return match tokens.verify(token.trim()) {
            // Bearer requests do not come from the dashboard's forms: no CSRF token.
            Some(p) => Ok(Some((p, String::new()))),
            None => Err("the access token is not valid (wrong, or revoked)".into()),
        };
    }
    if let Some(id) = session::cookie(headers) {
        return session::principal(app, id)
            .map(Some)
            .ok_or_else(|| "the dashboard session has ended; sign in again".into());
    }
    Ok(None)
}

/// Checks the CSRF field of a dashboard form; the request comes back with its body.
async fn check_csrf(req: Request, expected: &str) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| ApiError::invalid(format!("the form is larger than {MAX_FORM} bytes")))?;
    let sent = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == session::CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    match sent {
        Some(t) if !expected.is_empty() && t == expected => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "the form has no valid CSRF token: submit it from the dashboard's own page (reload the page and try again)",
        )),
    }
}

/// The guard (an axum middleware over the whole router).
pub async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    let kind = kind(&req);
    let mut r = match check(&app, kind, req).await {
        Ok((req, csrf, permit)) => {
            let r = session::with_csrf(csrf, next.run(req)).await;
            match permit {
                // The stream counts until its body is dropped.
                Some(p) => r.map(|b| {
                    Body::new(http_body_util::BodyExt::map_frame(b, move |f| {
                        let _ = &p;
                        f
                    }))
                }),
                None => r,
            }
        }
        Err(r) => r,
    };
    if kind != Kind::Grpc {
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    r
}

/// Whether `method path` opens a stream.
fn is_stream(method: &Method, path: &str) -> bool {
    (method == Method::GET
        && (path == "/api/v1/events/stream"
            || (path.starts_with("/api/v1/builds/") && path.ends_with("/events"))))
        || path == "/databuild.v1.Catalog/StreamPartitionEvents"
}

type Checked = (Request, String, Option<super::StreamPermit>);

async fn check(app: &App, kind: Kind, mut req: Request) -> Result<Checked, Response> {
    let sec = &app.opts.security;
    let host = authority(&req).unwrap_or_default();
    if !sec.host_allowed(&host) {
        return Err(refuse(app, kind, ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "this service does not answer to the host `{host}` (it answers to loopback names{}); to reach it by that name, start it with `databuild serve --allowed-host {}`",
                if sec.opts.allowed_hosts.is_empty() { String::new() } else { format!(" and [{}]", sec.opts.allowed_hosts.join(", ")) },
                super::host_name(&host),
            ),
        )));
    }
    let method = req.method().clone();
    let writes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if writes && kind != Kind::Grpc {
        if let Some(why) = cross_origin(sec, req.headers(), &host) {
            return Err(refuse(
                app,
                kind,
                ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!("cross-origin request refused: {why}; use the dashboard's own page or a non-browser client"),
                ),
            ));
        }
    }
    if writes && kind == Kind::Api && !is_json(req.headers()) {
        let sent = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map_or("none".into(), |v| {
                format!("`{}`", v.to_str().unwrap_or("?"))
            });
        return Err(refuse(
            app,
            kind,
            ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("the JSON API takes only `Content-Type: application/json` (got {sent}); send the body as proto3 JSON with that header"),
            ),
        ));
    }
    let path = req.uri().path().to_string();
    let need = required_role(&method, &path);
    let who = match principal(app, req.headers()) {
        Ok(p) => p,
        Err(why) if need != Need::Public => {
            return Err(unauthenticated(app, kind, &method, &req, why));
        }
        Err(_) => None,
    };
    let csrf = who.as_ref().map(|(_, c)| c.clone()).unwrap_or_default();
    if let Need::Role(role) = need {
        let Some((p, _)) = &who else {
            return Err(unauthenticated(
                app,
                kind,
                &method,
                &req,
                "this service requires an access token".into(),
            ));
        };
        if p.role < role {
            return Err(refuse(
                app,
                kind,
                ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!(
                        "principal `{}` has role `{}`; {} {path} needs role `{role}` (ask an admin for a token with `databuild auth add NAME --role {role}`)",
                        p.name, p.role, method
                    ),
                ),
            ));
        }
    }
    if writes && kind == Kind::Page && path != "/sign-in" {
        req = check_csrf(req, &csrf)
            .await
            .map_err(|e| refuse(app, kind, e))?;
    }
    let mut permit = None;
    if let Some((p, _)) = who {
        if is_stream(&method, &path) {
            let max = app.opts.conn.max_streams_per_principal;
            let Some(got) = sec.streams.acquire(&p.name, max) else {
                crate::metrics::Metrics::inc(&app.metrics.streams_refused);
                return Err(refuse(
                    app,
                    kind,
                    ApiError::new(
                        ErrorCode::ResourceExhausted,
                        format!("principal `{}` has {max} streams open, as many as one principal may; close one first", p.name),
                    ),
                ));
            };
            permit = Some(got);
        }
        req.extensions_mut().insert(p);
    }
    Ok((req, csrf, permit))
}

fn unauthenticated(app: &App, kind: Kind, method: &Method, req: &Request, why: String) -> Response {
    if kind == Kind::Page && method == Method::GET {
        let next = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        return Redirect::to(&format!(
            "/sign-in?next={}",
            crate::dashboard::html::q(&next)
        ))
        .into_response();
    }
    refuse(
        app,
        kind,
        ApiError::new(
            ErrorCode::Unauthenticated,
            format!("{why}; send `Authorization: Bearer TOKEN` (for the CLI: `DATABUILD_TOKEN` or `--token-file`), or sign in at /sign-in"),
        ),
    )
}
