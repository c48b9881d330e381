//! The HTTP API (axum): routes exactly as in the spec, plus `GET /api/v1/jobs/:id/events`.
//!
//! Handlers parse input into domain types, call the [`JobManager`], and map its errors to
//! [`error::ApiError`]. They hold no state of their own. See `docs/API.md`.

mod diff;
mod error;
mod health;
mod jobs;
mod stream;

pub use error::ApiError;

use crate::manager::JobManager;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub manager: Arc<JobManager>,
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// Cancelled when the server shuts down, so streams close cleanly.
    pub shutdown: CancellationToken,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/api/v1/jobs/{id}", get(jobs::get))
        .route("/api/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/api/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/api/v1/jobs/{id}/events", get(stream::history))
        .route("/api/v1/jobs/{id}/diff", get(diff::diff))
        .route("/api/v1/jobs/{id}/webhooks", get(jobs::webhooks))
        .route("/api/v1/jobs/{id}/stream", get(stream::websocket))
        .route("/api/v1/health", get(health::health))
        .fallback(|| async { ApiError::NotFound("no such route; see docs/API.md".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Parses a job id from the path; an id that is not a UUID names no job.
fn parse_id(raw: &str) -> Result<orca_core::JobId, ApiError> {
    orca_core::JobId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("no job with id {raw}")))
}
