//! API errors: one JSON shape for every failure, with a stable `code`.
//!
//! The full cause goes to the log; the client gets a clear message without internals.

use crate::manager::ManagerError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use orca_core::ValidationErrors;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    Validation(ValidationErrors),
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    PayloadTooLarge(String),
    Unavailable(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, fields) = match self {
            ApiError::Validation(errs) => (StatusCode::BAD_REQUEST, "validation_failed", errs.to_string(), Some(errs)),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m, None),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m, None),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m, None),
            ApiError::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m, None),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m, None),
            ApiError::Internal(m) => {
                tracing::error!("internal error: {m}");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error; see the server log".to_owned(), None)
            }
        };
        let mut body = json!({"error": {"code": code, "message": message}});
        if let Some(f) = fields {
            body["error"]["fields"] = json!(f);
        }
        (status, Json(body)).into_response()
    }
}

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::NotFound(id) => ApiError::NotFound(format!("no job with id {id}")),
            ManagerError::Conflict(m) => ApiError::Conflict(m),
            ManagerError::Store(e) => {
                tracing::error!("store: {e}");
                ApiError::Unavailable("the job store is unavailable; try again".into())
            }
            ManagerError::Bus(e) => {
                tracing::error!("event bus: {e}");
                ApiError::Unavailable("the event log is unavailable; try again".into())
            }
            ManagerError::Invalid(errs) => ApiError::Validation(errs),
        }
    }
}

impl From<crate::events::BusError> for ApiError {
    fn from(e: crate::events::BusError) -> Self {
        ManagerError::Bus(e).into()
    }
}
