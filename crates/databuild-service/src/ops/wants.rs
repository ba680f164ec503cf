//! The `Wants` RPCs: record wants, withdraw them, list them and show one with its events
//! and what it waits for; [`want_of`] is the one mapping of a want row to its message.

use std::time::Duration;

use databuild_bel::{Event, WantFilter, WantRow};
use databuild_core::wants::{self, WantError};
use databuild_proto::{
    CancelWantsRequest, CancelWantsResponse, CreateWantsRequest, CreateWantsResponse,
    GetWantRequest, GetWantResponse, ListWantsRequest, ListWantsResponse, Want, WantStatus,
};

use crate::{errors::ApiError, state::App};

/// Wants listed when a request sets no limit.
pub const DEFAULT_LIMIT: u32 = 1000;

/// Most wants one list answers.
pub const MAX_LIMIT: u32 = 10_000;

/// The message of want row `w`.
pub fn want_of(w: &WantRow) -> Want {
    w.to_proto()
}

impl From<WantError> for ApiError {
    fn from(e: WantError) -> Self {
        match e {
            WantError::Unproduced { .. } => ApiError::invalid(e.to_string()),
            WantError::Unknown(_) => ApiError::not_found(e.to_string()),
            WantError::Bel(b) => b.into(),
            WantError::Core(c) => c.into(),
        }
    }
}

/// The duration of field `field` (`""`: none), in the graph file's syntax.
pub fn duration_of(s: &str, field: &str) -> Result<Option<Duration>, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match databuild_core::graph::parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(Some(d)),
        Some(_) => Err(ApiError::invalid(format!(
            "`{field}` must be longer than zero (got `{s}`); e.g. `30d` or `6h`, or leave it out for none"
        ))),
        None => Err(ApiError::invalid(format!(
            "`{field}` `{s}` is not a duration; write a number with a unit, e.g. `30s`, `10m`, `6h` or `30d`"
        ))),
    }
}

/// `Wants.CreateWants`: one want per ref, recorded by `client`.
pub async fn create(
    app: &App,
    req: CreateWantsRequest,
    client: &str,
) -> Result<CreateWantsResponse, ApiError> {
    let refs = super::refs_of(&req.partition_refs, "partition_refs")?;
    record(app, &refs, &req.ttl, &req.sla, client).await
}

/// Records one want of each of `refs` (at least one), living `ttl` and due within `sla`
/// (durations as the graph file writes them; `""`: none).
pub async fn record(
    app: &App,
    refs: &[String],
    ttl: &str,
    sla: &str,
    client: &str,
) -> Result<CreateWantsResponse, ApiError> {
    if refs.len() > super::MAX_REFS {
        return Err(ApiError::invalid(format!(
            "{} refs given; at most {} are accepted in one request",
            refs.len(),
            super::MAX_REFS
        )));
    }
    for r in refs {
        databuild_proto::validate_ref(r)?;
    }
    let ttl = duration_of(ttl, "ttl")?;
    let sla = duration_of(sla, "sla")?;
    let rows = wants::create(&app.graph, app.bel.as_ref(), refs, ttl, sla, client).await?;
    Ok(CreateWantsResponse {
        wants: rows.iter().map(want_of).collect(),
    })
}

/// `Wants.CancelWants`: each entry a want id, or a ref whose live wants all go.
pub async fn cancel(
    app: &App,
    req: CancelWantsRequest,
    client: &str,
) -> Result<CancelWantsResponse, ApiError> {
    if req.wants.is_empty() {
        return Err(ApiError::invalid(
            "`wants` is empty; name at least one want id or partition ref, e.g. {\"wants\": [\"want-0193...\"]}",
        ));
    }
    for w in &req.wants {
        databuild_proto::validate_ref(w)?;
    }
    let reason = format!("cancelled by {client}");
    let rows = wants::cancel(app.bel.as_ref(), &req.wants, &reason).await?;
    Ok(CancelWantsResponse {
        wants: rows.iter().map(want_of).collect(),
    })
}

/// The status a list request selects (`WANT_UNKNOWN`: all).
fn status_filter(status: i32) -> Result<Vec<WantStatus>, ApiError> {
    match WantStatus::try_from(status) {
        Ok(WantStatus::WantUnknown) => Ok(Vec::new()),
        Ok(WantStatus::WantSlaMissed) | Err(_) => Err(ApiError::invalid(format!(
            "`status` {} is not a want status; use one of {}",
            WantStatus::try_from(status).map_or(status.to_string(), |s| s.as_str_name().into()),
            WantStatus::short_names()
                .iter()
                .map(|s| format!("WANT_{}", s.to_ascii_uppercase()))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        Ok(s) => Ok(vec![s]),
    }
}

/// `Wants.ListWants`: in id order (oldest first), at most `limit` (0: [`DEFAULT_LIMIT`]).
pub async fn list(app: &App, req: ListWantsRequest) -> Result<ListWantsResponse, ApiError> {
    let statuses = status_filter(req.status)?;
    if req.limit > MAX_LIMIT {
        return Err(ApiError::invalid(format!(
            "`limit` must be at most {MAX_LIMIT} (got {})",
            req.limit
        )));
    }
    let limit = if req.limit == 0 {
        DEFAULT_LIMIT
    } else {
        req.limit
    };
    if !req.after.is_empty() {
        databuild_proto::validate_ref(&req.after).map_err(|e| {
            ApiError::invalid(format!(
                "`after` must be the id of a want (the `nextAfter` of the previous page): {e}"
            ))
        })?;
    }
    let rows = app
        .bel
        .wants(&WantFilter {
            statuses,
            limit: limit as usize,
            after: (!req.after.is_empty()).then(|| req.after.clone()),
            ..Default::default()
        })
        .await?;
    let next_after = match rows.last() {
        Some(last) if rows.len() == limit as usize => last.want_id.clone(),
        _ => String::new(),
    };
    Ok(ListWantsResponse {
        wants: rows.iter().map(want_of).collect(),
        next_after,
    })
}

/// The row of want `id`, or NOT_FOUND.
pub async fn row(app: &App, id: &str) -> Result<WantRow, ApiError> {
    if id.is_empty() {
        return Err(ApiError::invalid(
            "`want_id` is missing; give the id of a want, e.g. {\"wantId\": \"want-0193...\"}",
        ));
    }
    databuild_proto::validate_ref(id)?;
    app.bel.want(id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no want `{id}`; list the wants with GET /api/v1/wants (or `Wants.ListWants`)"
        ))
    })
}

/// `Wants.GetWant`: the want, its events (oldest first) and what it waits for.
pub async fn get(app: &App, req: GetWantRequest) -> Result<GetWantResponse, ApiError> {
    let w = row(app, &req.want_id).await?;
    let events = app
        .bel
        .want_events(&w.want_id)
        .await?
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Want(w) => Some(w),
            Event::Run(_) | Event::Partition(_) | Event::Backfill(_) => None,
        })
        .collect();
    let waiting_for = wants::waiting_for(&app.graph, app.bel.as_ref(), &w).await?;
    Ok(GetWantResponse {
        want: Some(want_of(&w)),
        events,
        waiting_for,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_checked_with_a_message_that_says_what_to_write() {
        assert_eq!(duration_of("", "ttl").unwrap(), None);
        assert_eq!(
            duration_of("6h", "sla").unwrap(),
            Some(Duration::from_secs(6 * 3600))
        );
        assert_eq!(
            duration_of("soon", "ttl").unwrap_err().message,
            "`ttl` `soon` is not a duration; write a number with a unit, e.g. `30s`, `10m`, `6h` or `30d`"
        );
        assert!(duration_of("0s", "sla").is_err());
    }

    #[test]
    fn sla_missed_is_not_a_status_to_list_by() {
        assert_eq!(status_filter(0).unwrap(), vec![]);
        assert_eq!(
            status_filter(WantStatus::WantActive as i32).unwrap(),
            vec![WantStatus::WantActive]
        );
        assert!(status_filter(WantStatus::WantSlaMissed as i32).is_err());
        assert!(status_filter(99).is_err());
    }
}
