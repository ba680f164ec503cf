//! The dashboard's sessions and CSRF tokens. Signing in exchanges an access token for a
//! session cookie (HttpOnly, SameSite=Strict, Secure under TLS); every state-changing form
//! carries the CSRF token of its session (without `--auth`, one per service), which a page
//! of another origin cannot read.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::{Form, RawQuery, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{tokens, Principal};
use crate::{
    dashboard::html::{self, esc, Nav},
    state::App,
};

/// The session cookie's name.
pub const COOKIE: &str = "databuild_session";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// How long a session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions held at once (the oldest goes first).
const MAX_SESSIONS: usize = 10_000;

tokio::task_local! {
    /// The CSRF token of the request being answered, for the forms its page renders.
    static CSRF: String;
}

/// Runs `f` with `token` as the CSRF token forms render.
pub async fn with_csrf<F: std::future::Future>(token: String, f: F) -> F::Output {
    CSRF.scope(token, f).await
}

/// The hidden form field with the current request's CSRF token.
pub fn csrf_field() -> String {
    CSRF.try_with(|t| {
        format!(
            "<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">",
            esc(t)
        )
    })
    .unwrap_or_default()
}

#[derive(Debug)]
struct Session {
    name: String,
    csrf: String,
    expires: Instant,
}

/// The sessions signed in (in memory: a restart signs everyone out).
#[derive(Debug)]
pub struct Sessions {
    by_id_hash: Mutex<HashMap<String, Session>>,
    /// The CSRF token of requests without a session.
    anonymous_csrf: String,
}

impl Sessions {
    pub(crate) fn new() -> Self {
        Self {
            by_id_hash: Mutex::new(HashMap::new()),
            anonymous_csrf: tokens::new_token().unwrap_or_else(|_| {
                // Without a random source no session can be made either; this token is
                // then as good as any.
                tokens::hash(&format!("{:?}", Instant::now()))
            }),
        }
    }

    /// Starts a session for `name`: (cookie value, CSRF token).
    fn start(&self, name: &str) -> std::io::Result<(String, String)> {
        let id = tokens::new_token()?;
        let csrf = tokens::new_token()?;
        let mut m = self.by_id_hash.lock().expect("sessions lock");
        let now = Instant::now();
        m.retain(|_, s| s.expires > now);
        if m.len() >= MAX_SESSIONS {
            if let Some(oldest) = m
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        m.insert(
            tokens::hash(&id),
            Session {
                name: name.to_string(),
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Ok((id, csrf))
    }

    /// The principal name and CSRF token of the session `id`, if it is live.
    pub(crate) fn get(&self, id: &str) -> Option<(String, String)> {
        let m = self.by_id_hash.lock().expect("sessions lock");
        m.get(&tokens::hash(id))
            .filter(|s| s.expires > Instant::now())
            .map(|s| (s.name.clone(), s.csrf.clone()))
    }

    fn end(&self, id: &str) {
        self.by_id_hash
            .lock()
            .expect("sessions lock")
            .remove(&tokens::hash(id));
    }

    /// The CSRF token of requests without a session.
    pub(crate) fn anonymous_csrf(&self) -> &str {
        &self.anonymous_csrf
    }
}

/// The session cookie's value in `headers`, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// A local path to go back to after signing in (never another site).
fn next_path(q: Option<&str>) -> String {
    let p = crate::http::Params::parse(q);
    match p.get("next") {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

fn sign_in_page(app: &App, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"form-error\" role=\"alert\">{}</p>", esc(e))
    });
    let body = format!(
        "<section class=\"sign-in\"><h1>Sign in</h1>\
<p>This service asks for an access token (made with <code>databuild auth add NAME --role ROLE</code>).</p>\
<form method=\"post\" action=\"/sign-in?next={}\" id=\"sign-in-form\">\
<label>Access token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\" required></label>\
<button type=\"submit\">Sign in</button></form>{error}</section>",
        html::q(next)
    );
    html::respond(
        status,
        html::page("Sign in", &app.graph.label, Nav::None, &body),
    )
}

/// `GET /sign-in`.
pub async fn sign_in_form(State(app): State<App>, RawQuery(q): RawQuery) -> Response {
    if !app.opts.security.requires_auth() {
        return Redirect::to("/").into_response();
    }
    sign_in_page(&app, &next_path(q.as_deref()), None, StatusCode::OK)
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    token: String,
}

/// `POST /sign-in`: a valid token gets a session cookie and goes on to `next`.
pub async fn sign_in(
    State(app): State<App>,
    RawQuery(q): RawQuery,
    Form(f): Form<SignInForm>,
) -> Response {
    let sec = &app.opts.security;
    let next = next_path(q.as_deref());
    let Some(tokens) = &sec.tokens else {
        return Redirect::to(&next).into_response();
    };
    let Some(p) = tokens.verify(f.token.trim()) else {
        return sign_in_page(
            &app,
            &next,
            Some("That token is not valid (mistyped, or revoked). Ask for one made with `databuild auth add`."),
            StatusCode::UNAUTHORIZED,
        );
    };
    let Ok((id, _)) = sec.sessions.start(&p.name) else {
        return sign_in_page(
            &app,
            &next,
            Some("The service cannot make a session now; try again."),
            StatusCode::SERVICE_UNAVAILABLE,
        );
    };
    let secure = if sec.opts.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    let mut r = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /sign-out`: ends the session.
pub async fn sign_out(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers) {
        app.opts.security.sessions.end(id);
    }
    let mut r = Redirect::to("/sign-in").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "databuild_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

/// The principal of session `id` as the token file says now, and its CSRF token.
pub(crate) fn principal(app: &App, id: &str) -> Option<(Principal, String)> {
    let sec = &app.opts.security;
    let (name, csrf) = sec.sessions.get(id)?;
    let p = sec.tokens.as_ref()?.current(&name)?;
    Some((p, csrf))
}
