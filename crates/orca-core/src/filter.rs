//! The job list query: filters, paging and the page it returns.

use crate::agent::AgentType;
use crate::job::Job;
use crate::state::JobStatus;
use crate::validation::ValidationErrors;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
pub const MAX_OFFSET: u64 = 1_000_000_000;

/// A validated `GET /api/v1/jobs` query. Results are newest first (createdAt, then id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFilter {
    /// Any of these statuses (empty: all).
    pub status: Vec<JobStatus>,
    pub agent_type: Option<AgentType>,
    pub repo_url: Option<String>,
    /// Retries of this job.
    pub retry_of: Option<crate::JobId>,
    /// Jobs created at or after this instant.
    pub since: Option<OffsetDateTime>,
    pub limit: u32,
    pub offset: u64,
}

impl Default for JobFilter {
    fn default() -> Self {
        Self { status: vec![], agent_type: None, repo_url: None, retry_of: None, since: None, limit: DEFAULT_LIMIT, offset: 0 }
    }
}

impl JobFilter {
    /// Parses query parameters (`status` may be comma-separated), naming each bad one.
    pub fn parse<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<JobFilter, ValidationErrors> {
        let mut f = JobFilter::default();
        let mut errs = ValidationErrors::default();
        for (k, v) in params {
            match k {
                "status" => {
                    for s in v.split(',').filter(|s| !s.is_empty()) {
                        match s.parse() {
                            Ok(st) => f.status.push(st),
                            Err(m) => errs.push("status", m),
                        }
                    }
                }
                "agentType" => match AgentType::parse(v) {
                    Ok(a) => f.agent_type = Some(a),
                    Err(m) => errs.push("agentType", m),
                },
                "repoUrl" => f.repo_url = Some(v.to_owned()),
                "retryOf" => match crate::JobId::parse(v) {
                    Some(id) => f.retry_of = Some(id),
                    None => errs.push("retryOf", "must be a job id"),
                },
                "since" => match OffsetDateTime::parse(v, &Rfc3339) {
                    Ok(t) => f.since = Some(t),
                    Err(_) => errs.push("since", "must be an RFC 3339 timestamp, e.g. 2026-12-04T10:00:00Z"),
                },
                "limit" => match v.parse::<u32>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => f.limit = n,
                    _ => errs.push("limit", format!("must be a whole number from 1 to {MAX_LIMIT}")),
                },
                "offset" => match v.parse::<u64>() {
                    Ok(n) if n <= MAX_OFFSET => f.offset = n,
                    _ => errs.push("offset", format!("must be a whole number from 0 to {MAX_OFFSET}")),
                },
                other => errs.push(other, "is not a known filter; known: status, agentType, repoUrl, retryOf, since, limit, offset"),
            }
        }
        errs.into_result(f)
    }

    /// Whether one job passes the filters (paging aside). Stores may use it or do it in SQL.
    pub fn matches(&self, job: &Job) -> bool {
        (self.status.is_empty() || self.status.contains(&job.status))
            && self.agent_type.as_ref().is_none_or(|a| *a == job.agent_type)
            && self.repo_url.as_ref().is_none_or(|r| job.repo_url.as_ref() == Some(r))
            && self.retry_of.is_none_or(|r| job.retry_of == Some(r))
            && self.since.is_none_or(|s| job.created_at >= s)
    }
}

/// One page of the job list, with the total count of matching jobs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_bad_params() {
        let f = JobFilter::parse([("status", "queued,running"), ("limit", "10"), ("since", "2026-12-04T10:00:00Z")]).unwrap();
        assert_eq!(f.status, vec![JobStatus::Queued, JobStatus::Running]);
        assert_eq!(f.limit, 10);
        let e = JobFilter::parse([("status", "nope"), ("limit", "0"), ("offset", "-1"), ("since", "yesterday"), ("x", "1")]).unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["status", "limit", "offset", "since", "x"]);
    }
}
