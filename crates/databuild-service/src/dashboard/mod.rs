//! The web dashboard, served by `databuild serve` on the API's port: server-rendered pages
//! (runs, a run's job graph and timeline, job logs, partition search, a partition's status,
//! history and lineage, job statistics, wants and a want's history, backfills and a backfill's
//! progress and status grid) with one small script that follows the SSE
//! endpoints for live updates. No assets come from elsewhere at run time.

mod backfills;
mod dag;
mod home;
pub mod html;
mod jobs;
mod partitions;
mod runs;
mod wants;

use axum::{
    extract::{Form, Path, RawQuery, State},
    http::{header, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Extension, Router,
};
use serde::Deserialize;

use crate::{errors::ApiError, http::Params, ops, security::Principal, state::App};
use html::{esc, Nav};

/// A page that could not be shown: its status, a title and a message for people.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    title: String,
    message: String,
    /// Extra HTML after the message (e.g. a form to build a missing partition).
    extra: String,
}

impl PageError {
    /// A 404 page.
    pub fn not_found(title: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            title: title.into(),
            message: message.into(),
            extra: String::new(),
        }
    }

    fn with_extra(mut self, extra: String) -> Self {
        self.extra = extra;
        self
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        let status = e.code.http();
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "Bad request",
            StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
            s if s.is_server_error() => "Something went wrong",
            _ => "Cannot do that",
        };
        Self {
            status,
            title: title.to_string(),
            message: e.message,
            extra: String::new(),
        }
    }
}

macro_rules! from_via_api {
    ($($t:ty),*) => {$(
        impl From<$t> for PageError {
            fn from(e: $t) -> Self {
                ApiError::from(e).into()
            }
        }
    )*};
}
from_via_api!(
    databuild_bel::BelError,
    databuild_core::CoreError,
    databuild_proto::RefError
);

/// Renders `r`: the page, or the error page.
fn render(app: &App, r: Result<(String, Nav, String), PageError>) -> Response {
    match r {
        Ok((title, nav, body)) => html::respond(
            StatusCode::OK,
            html::page(&title, &app.graph.label, nav, &body),
        ),
        Err(e) => error_page(app, e),
    }
}

fn error_page(app: &App, e: PageError) -> Response {
    let body = format!(
        "<section class=\"error-page\"><h1>{}</h1><p class=\"message\">{}</p>{}\
<p><a href=\"/\">Recent runs</a> · <a href=\"/partitions\">Search partitions</a></p></section>",
        esc(&e.title),
        esc(&e.message),
        e.extra
    );
    html::respond(
        e.status,
        html::page(&e.title, &app.graph.label, Nav::None, &body),
    )
}

/// The dashboard's page for a request the guard refused.
pub(crate) fn refusal(app: &App, e: ApiError) -> Response {
    error_page(app, e.into())
}

/// The dashboard's 404 for a path no page has.
pub fn unknown_page(app: &App, path: &str) -> Response {
    error_page(
        app,
        PageError::not_found("Page not found", format!("There is no page at `{path}`.")),
    )
}

/// The dashboard's routes.
pub fn router() -> Router<App> {
    Router::new()
        .route(
            "/",
            get(|State(app): State<App>| async move {
                render(&app, home::page(&app, None, "").await)
            }),
        )
        .route(
            "/runs/{run_id}",
            get(
                |State(app): State<App>, Path(id): Path<String>| async move {
                    render(&app, runs::run_page(&app, &id).await)
                },
            ),
        )
        .route(
            "/job-runs/{job_run_id}",
            get(
                |State(app): State<App>, Path(id): Path<String>| async move {
                    render(&app, runs::job_run_page(&app, &id).await)
                },
            ),
        )
        .route(
            "/partitions",
            get(
                |State(app): State<App>, RawQuery(q): RawQuery| async move {
                    let p = Params::parse(q.as_deref());
                    render(&app, partitions::search_page(&app, &p).await)
                },
            ),
        )
        .route(
            "/partition",
            get(
                |State(app): State<App>, RawQuery(q): RawQuery| async move {
                    let p = Params::parse(q.as_deref());
                    render(&app, partitions::partition_page(&app, &p).await)
                },
            ),
        )
        .route(
            "/jobs",
            get(|State(app): State<App>| async move { render(&app, jobs::page(&app).await) }),
        )
        .route(
            "/wants",
            get(
                |State(app): State<App>, RawQuery(q): RawQuery| async move {
                    let p = Params::parse(q.as_deref());
                    render(&app, wants::list_page(&app, &p).await)
                },
            ),
        )
        .route(
            "/wants/{want_id}",
            get(
                |State(app): State<App>, Path(id): Path<String>| async move {
                    render(&app, wants::want_page(&app, &id).await)
                },
            ),
        )
        .route(
            "/backfills",
            get(|State(app): State<App>| async move {
                render(&app, backfills::list_page(&app).await)
            }),
        )
        .route(
            "/backfills/{backfill_id}",
            get(
                |State(app): State<App>, Path(id): Path<String>| async move {
                    render(&app, backfills::backfill_page(&app, &id).await)
                },
            ),
        )
        .route(
            "/sign-in",
            get(crate::security::session::sign_in_form).post(crate::security::session::sign_in),
        )
        .route("/sign-out", post(crate::security::session::sign_out))
        .route("/actions/build", post(build))
        .route("/actions/invalidate", post(invalidate))
        .route("/actions/unwant", post(unwant))
        .route("/actions/cancel-backfill", post(cancel_backfill))
        .route(
            "/assets/dashboard.css",
            get(|| async { asset("text/css", include_str!("assets/dashboard.css")) }),
        )
        .route(
            "/assets/dashboard.js",
            get(|| async {
                asset(
                    "text/javascript",
                    include_str!("assets/dashboard.js"),
                )
            }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Who clicked: the principal the guard authenticated, labelled `dashboard`.
fn who(p: Option<&Principal>) -> String {
    p.cloned()
        .unwrap_or_else(Principal::anonymous)
        .requester(Some("dashboard"))
}

/// The form of the Build buttons: refs separated by white space or new lines.
#[derive(Debug, Deserialize)]
struct BuildForm {
    refs: String,
    #[serde(default)]
    force: Option<String>,
}

async fn build(
    State(app): State<App>,
    p: Option<Extension<Principal>>,
    Form(f): Form<BuildForm>,
) -> Response {
    let refs: Vec<String> = f.refs.split_whitespace().map(str::to_string).collect();
    let started = async {
        if refs.is_empty() {
            return Err(ApiError::invalid(
                "name at least one partition to build, e.g. `reviews/daily/date=2025-01-01`",
            ));
        }
        let req = databuild_proto::GraphBuildRequest {
            outputs: refs
                .iter()
                .map(|r| databuild_proto::PartitionRef::new(r.clone()))
                .collect(),
        };
        let who = who(p.as_deref());
        ops::submit_build(&app, req, f.force.is_some(), &who).await
    }
    .await;
    match started {
        Ok(s) => Redirect::to(&html::run_url(&s.run_id)).into_response(),
        Err(e) => {
            let status = e.code.http();
            let mut r = render(&app, home::page(&app, Some(&e.message), &f.refs).await);
            *r.status_mut() = status;
            r
        }
    }
}

/// The form of the Invalidate button.
#[derive(Debug, Deserialize)]
struct InvalidateForm {
    #[serde(rename = "ref")]
    partition_ref: String,
}

async fn invalidate(
    State(app): State<App>,
    p: Option<Extension<Principal>>,
    Form(f): Form<InvalidateForm>,
) -> Response {
    let done = async {
        databuild_proto::validate_ref(&f.partition_ref)?;
        let name = p.map_or(crate::security::ANONYMOUS.to_string(), |p| p.name.clone());
        let reason = format!("from the dashboard by {name}");
        app.bel.invalidate(&f.partition_ref, &reason).await?;
        Ok::<_, PageError>(())
    }
    .await;
    match done {
        Ok(()) => Redirect::to(&html::partition_url(&f.partition_ref)).into_response(),
        Err(e) => error_page(&app, e),
    }
}

/// The form of the Cancel button of a want's page.
#[derive(Debug, Deserialize)]
struct UnwantForm {
    want: String,
}

async fn unwant(
    State(app): State<App>,
    p: Option<Extension<Principal>>,
    Form(f): Form<UnwantForm>,
) -> Response {
    let req = databuild_proto::CancelWantsRequest {
        wants: vec![f.want.clone()],
    };
    match ops::wants::cancel(&app, req, &who(p.as_deref())).await {
        Ok(_) => Redirect::to(&wants::want_url(&f.want)).into_response(),
        Err(e) => error_page(&app, e.into()),
    }
}

/// The form of the Cancel button of a backfill's page.
#[derive(Debug, Deserialize)]
struct CancelBackfillForm {
    backfill: String,
}

async fn cancel_backfill(State(app): State<App>, Form(f): Form<CancelBackfillForm>) -> Response {
    match databuild_core::backfill::cancel(app.bel.as_ref(), &f.backfill, false).await {
        Ok(_) => Redirect::to(&backfills::backfill_url(&f.backfill)).into_response(),
        Err(e) => error_page(&app, e.into()),
    }
}
