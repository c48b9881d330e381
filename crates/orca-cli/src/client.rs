//! A small typed client for the Orca HTTP API (docs/API.md), and the errors every command
//! reports: the server is unreachable, the server said no (its JSON error body), or the server
//! said something this client does not understand.

use crate::exit_code;
use orca_core::{Job, JobStatus};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// Why a call to the server failed. Each variant has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer at all: connection refused, DNS, TLS, timeout.
    #[error("cannot reach the Orca server at {url}: is it running? (set ORCA_API_URL)")]
    Unreachable { url: String, detail: String },
    /// The server answered 4xx/5xx; the fields come from its JSON error body.
    #[error("{message}")]
    Api { status: u16, code: String, message: String, fields: Vec<FieldError> },
    /// An answer that does not follow the API contract.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// One bad field named by a `validation_failed` error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Unreachable { .. } => exit_code::UNREACHABLE,
            Self::Api { .. } => exit_code::API,
            Self::Protocol(_) => exit_code::PROTOCOL,
        }
    }

    /// Lines to print under the `error: …` line: one per bad field, or the low-level cause.
    pub fn detail_lines(&self) -> Vec<String> {
        match self {
            Self::Unreachable { detail, .. } if !detail.is_empty() => vec![format!("({detail})")],
            Self::Api { fields, .. } => fields.iter().map(|f| format!("{}: {}", f.field, f.message)).collect(),
            _ => vec![],
        }
    }

    pub(crate) fn unreachable(base: &Url, cause: &dyn std::error::Error) -> Self {
        // The innermost cause ("Connection refused") says more than reqwest's outer wrapper.
        let mut inner = cause;
        while let Some(next) = inner.source() {
            inner = next;
        }
        Self::Unreachable { url: base.as_str().trim_end_matches('/').to_owned(), detail: inner.to_string() }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default)]
    fields: Vec<FieldError>,
}

/// Turns a 4xx/5xx answer into [`ClientError::Api`], using the JSON error body when there is one.
pub fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error: e }) => ClientError::Api { status, code: e.code, message: e.message, fields: e.fields },
        Err(_) => {
            let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
            ClientError::Api {
                status,
                code: format!("http_{status}"),
                message: format!("the server answered HTTP {status} {reason}").trim_end().to_owned(),
                fields: vec![],
            }
        }
    }
}

/// One page of `GET /api/v1/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<Job>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// Filters and paging of `GET /api/v1/jobs`; `None` leaves the server's default.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub status: Vec<JobStatus>,
    pub agent_type: Option<String>,
    pub repo_url: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

impl ListQuery {
    /// The query parameters, named as in the API.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![];
        if !self.status.is_empty() {
            p.push(("status", self.status.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")));
        }
        p.extend(self.agent_type.clone().map(|a| ("agentType", a)));
        p.extend(self.repo_url.clone().map(|r| ("repoUrl", r)));
        p.extend(self.since.and_then(|t| t.format(&Rfc3339).ok()).map(|t| ("since", t)));
        p.extend(self.limit.map(|n| ("limit", n.to_string())));
        p.extend(self.offset.map(|n| ("offset", n.to_string())));
        p
    }
}

/// `base` with `path` appended to its own path (so a base like `https://h/orca` works).
pub fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// The API client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
}

impl Client {
    /// Needs the rustls crypto provider installed first (see `main`).
    pub fn new(base: Url) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("orca-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Protocol(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self { http, base })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `POST /api/v1/jobs` with a job request body.
    pub async fn submit(&self, body: &Value) -> Result<Job, ClientError> {
        self.call(Method::POST, endpoint(&self.base, "/api/v1/jobs"), Some(body)).await
    }

    /// `GET /api/v1/jobs/:id`.
    pub async fn job(&self, id: Uuid) -> Result<Job, ClientError> {
        self.call(Method::GET, endpoint(&self.base, &format!("/api/v1/jobs/{id}")), None).await
    }

    /// `POST /api/v1/jobs/:id/cancel`.
    pub async fn cancel(&self, id: Uuid) -> Result<Job, ClientError> {
        self.call(Method::POST, endpoint(&self.base, &format!("/api/v1/jobs/{id}/cancel")), None).await
    }

    /// `POST /api/v1/jobs/:id/retry`: the new job.
    pub async fn retry(&self, id: Uuid) -> Result<Job, ClientError> {
        self.call(Method::POST, endpoint(&self.base, &format!("/api/v1/jobs/{id}/retry")), None).await
    }

    /// `GET /api/v1/jobs/:id/diff`: what the job changed.
    pub async fn diff(&self, id: Uuid) -> Result<orca_core::Changes, ClientError> {
        self.call(Method::GET, endpoint(&self.base, &format!("/api/v1/jobs/{id}/diff")), None).await
    }

    /// `GET /api/v1/jobs?…`.
    pub async fn list(&self, q: &ListQuery) -> Result<JobList, ClientError> {
        let mut url = endpoint(&self.base, "/api/v1/jobs");
        let pairs = q.pairs();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        self.call(Method::GET, url, None).await
    }

    async fn call<T: DeserializeOwned>(&self, method: Method, url: Url, body: Option<&Value>) -> Result<T, ClientError> {
        let what = format!("{method} {}", url.path());
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("{what}: {e}")))
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        if e.is_decode() || e.is_builder() {
            ClientError::Protocol(e.to_string())
        } else {
            ClientError::unreachable(&self.base, &e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn endpoints_keep_the_base_path() {
        let b = Url::parse("http://h:3000").unwrap();
        assert_eq!(endpoint(&b, "/api/v1/jobs").as_str(), "http://h:3000/api/v1/jobs");
        let b = Url::parse("https://h/orca/?x=1").unwrap();
        assert_eq!(endpoint(&b, "/api/v1/jobs").as_str(), "https://h/orca/api/v1/jobs");
    }

    #[test]
    fn list_query_uses_api_names() {
        let q = ListQuery {
            status: vec![JobStatus::Queued, JobStatus::TimedOut],
            agent_type: Some("echo".into()),
            since: Some(time::macros::datetime!(2026-12-04 10:00 UTC)),
            limit: Some(5),
            ..Default::default()
        };
        let p = q.pairs();
        assert_eq!(p[0], ("status", "queued,timed_out".into()));
        assert_eq!(p[1], ("agentType", "echo".into()));
        assert_eq!(p[2], ("since", "2026-12-04T10:00:00Z".into()));
        assert_eq!(p[3], ("limit", "5".into()));
        assert!(ListQuery::default().pairs().is_empty());
    }

    #[test]
    fn error_bodies_become_api_errors() {
        let body = br#"{"error":{"code":"validation_failed","message":"prompt: must not be empty",
            "fields":[{"field":"prompt","message":"must not be empty"}]}}"#;
        let e = api_error(400, body);
        assert_eq!(e.to_string(), "prompt: must not be empty");
        assert_eq!(e.detail_lines(), ["prompt: must not be empty"]);
        assert_eq!(e.exit_code(), exit_code::API);
        let e = api_error(502, b"<html>bad gateway</html>");
        assert_eq!(e.to_string(), "the server answered HTTP 502 Bad Gateway");
        assert!(matches!(e, ClientError::Api { status: 502, .. }));
    }

    /// Serves one canned HTTP answer on a local port and returns the base URL.
    async fn canned(response: String) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let _ = sock.read(&mut buf).await;
            sock.write_all(response.as_bytes()).await.unwrap();
            sock.shutdown().await.unwrap();
        });
        Url::parse(&format!("http://{addr}")).unwrap()
    }

    #[tokio::test]
    async fn client_reports_api_protocol_and_unreachable_errors() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let body = r#"{"error":{"code":"not_found","message":"no job 1"}}"#;
        let resp = format!(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let c = Client::new(canned(resp).await).unwrap();
        match c.job(Uuid::nil()).await.unwrap_err() {
            ClientError::Api { status: 404, code, message, .. } => assert_eq!((code.as_str(), message.as_str()), ("not_found", "no job 1")),
            e => panic!("{e:?}"),
        }

        let c = Client::new(canned("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".into()).await).unwrap();
        assert!(matches!(c.job(Uuid::nil()).await.unwrap_err(), ClientError::Protocol(_)));

        let c = Client::new(Url::parse("http://127.0.0.1:1").unwrap()).unwrap();
        let e = c.job(Uuid::nil()).await.unwrap_err();
        assert_eq!(e.exit_code(), exit_code::UNREACHABLE);
        assert!(e.to_string().contains("http://127.0.0.1:1: is it running? (set ORCA_API_URL)"), "{e}");
    }
}
