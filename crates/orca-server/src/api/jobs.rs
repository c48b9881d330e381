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
    let job = s.manager.submit(new).await?;
    let location = format!("/api/v1/jobs/{}", job.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(job)))
}

pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    Ok(Json(s.manager.get(parse_id(&id)?).await?))
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
