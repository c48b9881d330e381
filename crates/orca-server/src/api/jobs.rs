//! Job routes: submit, get, list, cancel, retry.

use super::{AppState, parse_id};
use crate::api::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use orca_core::{Job, JobFilter, JobPage, NewJob};

pub async fn submit(State(s): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<impl IntoResponse, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!("request body is over {} bytes", super::MAX_BODY_BYTES)),
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))?;
    let new = NewJob::parse(&value).map_err(ApiError::Validation)?;
    if let Some(url) = &new.webhook_url {
        crate::webhooks::target::check_url(url, s.webhooks.allow_private())
            .map_err(|m| ApiError::Validation(orca_core::ValidationErrors::single("webhookUrl", m)))?;
    }
    let job = s.manager.submit(new).await?;
    let location = format!("/api/v1/jobs/{}", job.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(job)))
}

/// The job, plus `retries` (the ids of the jobs retried from it, oldest first) and, while it
/// is queued, `queue` {position, waitingOn, maxConcurrentJobs, activeJobs}.
pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let job = s.manager.get(parse_id(&id)?).await?;
    let filter = JobFilter { retry_of: Some(job.id), limit: orca_core::filter::MAX_LIMIT, ..JobFilter::default() };
    let retries: Vec<String> = s.manager.list(&filter).await?.jobs.iter().rev().map(|j| j.id.to_string()).collect();
    let mut body = serde_json::to_value(&job).map_err(|e| ApiError::Internal(e.to_string()))?;
    body["retries"] = serde_json::json!(retries);
    if let Some(q) = s.manager.queue_info(&job).await? {
        body["queue"] = q;
    }
    Ok(Json(body))
}

pub async fn list(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<JobPage>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))?;
    let filter = JobFilter::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(ApiError::Validation)?;
    Ok(Json(s.manager.list(&filter).await?))
}

pub async fn cancel(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    Ok(Json(s.manager.cancel(parse_id(&id)?).await?))
}

pub async fn retry(State(s): State<AppState>, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let job = s.manager.retry(parse_id(&id)?).await?;
    let location = format!("/api/v1/jobs/{}", job.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(job)))
}

/// `GET /api/v1/jobs/:id/webhooks`: every delivery for the job with its attempts.
pub async fn webhooks(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    s.manager.get(id).await?;
    let deliveries = s.webhooks.store().for_job(id).await.map_err(crate::manager::ManagerError::from)?;
    let list: Vec<serde_json::Value> = deliveries
        .into_iter()
        .map(|(d, attempts)| {
            let mut v = serde_json::to_value(&d).unwrap_or_default();
            v["attempts"] = serde_json::json!(attempts);
            v["attemptCount"] = serde_json::json!(d.attempts);
            v
        })
        .collect();
    Ok(Json(serde_json::json!({ "deliveries": list })))
}
