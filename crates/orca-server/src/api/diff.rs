//! `GET /api/v1/jobs/:id/diff`: what the job changed in its repository, as the worker recorded
//! it when the agent ended: `{files, diffstat, patch, truncated, patchBytes, baseCommit?}`.
//!
//! The job record points at its `changes` event (`changes.eventId`); until the job has ended
//! (or for a job recorded before that pointer existed) the event log is searched instead.
//! 404 when there is no such event: the job has no repository, or its agent has not finished.

use super::{AppState, parse_id};
use crate::api::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use orca_core::{AgentEvent, Changes, EventRecord, JobId};

/// Events read per page, and the most pages searched, when the job has no pointer yet.
const PAGE: usize = 1000;
const MAX_PAGES: usize = 200;

pub async fn diff(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Changes>, ApiError> {
    let id = parse_id(&id)?;
    let job = s.manager.get(id).await?;
    let bus = s.manager.bus();
    let pointed = match job.outcome.changes {
        Some(sum) if sum.event_id > 0 => changes_in(bus.read(id, sum.event_id - 1, 1).await?),
        _ => None,
    };
    let found = match pointed {
        Some(c) => Some(c),
        None => search(&s, id).await?,
    };
    found.map(Json).ok_or_else(|| {
        ApiError::NotFound(format!(
            "job {id} has no recorded changes (it has no repository, or its agent has not finished yet)"
        ))
    })
}

fn changes_in(records: Vec<EventRecord>) -> Option<Changes> {
    records.into_iter().rev().find_map(|r| match r.event {
        AgentEvent::Changes(c) => Some(c),
        _ => None,
    })
}

/// The last `changes` event in the job's log.
async fn search(s: &AppState, id: JobId) -> Result<Option<Changes>, ApiError> {
    let mut found = None;
    let mut after = 0;
    for _ in 0..MAX_PAGES {
        let page = s.manager.bus().read(id, after, PAGE).await?;
        let (len, last) = (page.len(), page.last().map(|r| r.id));
        if let Some(c) = changes_in(page) {
            found = Some(c);
        }
        match last {
            Some(l) if len == PAGE => after = l,
            _ => break,
        }
    }
    Ok(found)
}
