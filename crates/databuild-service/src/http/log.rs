//! Reads of the event log over HTTP (what `databuild --remote` shows with the same
//! formatting as a local log): events after a position, partitions, runs, job runs and
//! lineage, in the JSON shapes of [`crate::wire`].

use axum::{
    extract::{Path, RawQuery, State},
    response::Response,
};
use databuild_bel::{query::MAX_LIMIT, PartitionFilter, RunFilter};
use databuild_proto::JobGraphRunStatus;

use super::{respond, Params};
use crate::{
    errors::ApiError,
    state::App,
    wire::{
        WireEvent, WireEvents, WireJobRun, WireJobRuns, WireLineage, WirePartition, WirePartitions,
        WireRun, WireRuns, WireWhy,
    },
};

fn events(v: &[databuild_bel::LoggedEvent]) -> WireEvents {
    WireEvents {
        events: v.iter().map(WireEvent::from).collect(),
    }
}

/// `GET /api/v1/log?after=N&limit=N`.
pub(super) async fn events_after(State(app): State<App>, RawQuery(q): RawQuery) -> Response {
    respond(
        async {
            let p = Params::parse(q.as_deref());
            let after = p.int("after", 0, i64::MAX)?;
            let limit = p.int("limit", 1000, MAX_LIMIT)?;
            let limit = if limit == 0 { 1000 } else { limit };
            Ok(events(&app.bel.events_after(after, limit as usize).await?))
        }
        .await,
    )
}

/// `GET /api/v1/partitions?ref=..` (those refs) or
/// `?status=..&prefix=..&pattern=..&after=..&limit=..&offset=..`.
pub(super) async fn partitions(State(app): State<App>, RawQuery(q): RawQuery) -> Response {
    respond(
        async {
            let p = Params::parse(q.as_deref());
            let refs = p.refs()?;
            let rows = if refs.is_empty() {
                app.bel
                    .list_partitions(&PartitionFilter {
                        statuses: p.statuses()?,
                        prefix: p.get("prefix").map(str::to_string),
                        pattern: p.get("pattern").map(str::to_string),
                        after: p.get("after").map(str::to_string),
                        limit: p.int("limit", 0, i64::MAX)? as usize,
                        offset: p.int("offset", 0, i64::MAX)? as usize,
                    })
                    .await?
            } else {
                app.bel.partitions(&refs).await?
            };
            Ok(WirePartitions {
                partitions: rows.iter().map(WirePartition::from).collect(),
            })
        }
        .await,
    )
}

fn one_ref(p: &Params) -> Result<String, ApiError> {
    let mut refs = p.refs()?;
    match refs.len() {
        1 => Ok(refs.remove(0)),
        n => Err(ApiError::invalid(format!(
            "give exactly one `ref` query parameter (got {n})"
        ))),
    }
}

/// `GET /api/v1/partitions/history?ref=..`.
pub(super) async fn history(State(app): State<App>, RawQuery(q): RawQuery) -> Response {
    respond(
        async {
            let r = one_ref(&Params::parse(q.as_deref()))?;
            Ok(events(&app.bel.partition_history(&r).await?))
        }
        .await,
    )
}

/// `GET /api/v1/partitions/why?ref=..`.
pub(super) async fn why(State(app): State<App>, RawQuery(q): RawQuery) -> Response {
    respond(
        async {
            let r = one_ref(&Params::parse(q.as_deref()))?;
            let chain =
                databuild_core::catalog::why_chain(Some(&app.graph), app.bel.as_ref(), &r).await?;
            Ok(WireWhy {
                partition_ref: r,
                why: chain.join(" <- "),
                root_cause: chain.last().cloned().unwrap_or_default(),
            })
        }
        .await,
    )
}

/// `GET /api/v1/lineage?ref=..&downstream=true`.
pub(super) async fn lineage(State(app): State<App>, RawQuery(q): RawQuery) -> Response {
    respond(
        async {
            let p = Params::parse(q.as_deref());
            let refs = p.refs()?;
            let pairs = app.bel.lineage(&refs, p.flag("downstream")?).await?;
            Ok(WireLineage { pairs })
        }
        .await,
    )
}

/// `GET /api/v1/runs?label=..&status=..&limit=..&offset=..`.
pub(super) async fn runs(State(app): State<App>, RawQuery(q): RawQuery) -> Response {
    respond(
        async {
            let p = Params::parse(q.as_deref());
            let statuses = p
                .all("status")
                .iter()
                .map(|s| {
                    JobGraphRunStatus::parse_name(s).map_err(|e| ApiError::invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let rows = app
                .bel
                .list_runs(&RunFilter {
                    label: p.get("label").map(str::to_string),
                    statuses,
                    started_from: p.opt_int("startedFromMicros")?,
                    started_before: p.opt_int("startedBeforeMicros")?,
                    limit: p.int("limit", 0, i64::MAX)? as usize,
                    offset: p.int("offset", 0, i64::MAX)? as usize,
                })
                .await?;
            Ok(WireRuns {
                runs: rows.iter().map(WireRun::from).collect(),
            })
        }
        .await,
    )
}

/// `GET /api/v1/runs/{run_id}`.
pub(super) async fn run(State(app): State<App>, Path(id): Path<String>) -> Response {
    respond(
        async {
            match app.bel.run(&id).await? {
                Some(r) => Ok(WireRun::from(&r)),
                None => Err(ApiError::not_found(format!(
                    "no graph run `{id}`; see GET /api/v1/runs"
                ))),
            }
        }
        .await,
    )
}

/// `GET /api/v1/runs/{run_id}/events`.
pub(super) async fn run_events(State(app): State<App>, Path(id): Path<String>) -> Response {
    respond(async { Ok::<_, ApiError>(events(&app.bel.run_events(&id).await?)) }.await)
}

/// `GET /api/v1/runs/{run_id}/jobs`.
pub(super) async fn job_runs(State(app): State<App>, Path(id): Path<String>) -> Response {
    respond(
        async {
            Ok::<_, ApiError>(WireJobRuns {
                job_runs: app
                    .bel
                    .job_runs(&id)
                    .await?
                    .iter()
                    .map(WireJobRun::from)
                    .collect(),
            })
        }
        .await,
    )
}

/// `GET /api/v1/jobs/{job_run_id}`.
pub(super) async fn job_run(State(app): State<App>, Path(id): Path<String>) -> Response {
    respond(
        async {
            match app.bel.job_run(&id).await? {
                Some(r) => Ok(WireJobRun::from(&r)),
                None => Err(ApiError::not_found(format!("no job run `{id}`"))),
            }
        }
        .await,
    )
}

/// `GET /api/v1/jobs/{job_run_id}/events`.
pub(super) async fn job_run_events(State(app): State<App>, Path(id): Path<String>) -> Response {
    respond(async { Ok::<_, ApiError>(events(&app.bel.job_run_events(&id).await?)) }.await)
}
