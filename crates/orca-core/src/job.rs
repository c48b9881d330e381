//! The job record: what a user submitted and what became of it.
//!
//! **Invariant:** secrets (the git token) are accepted but never serialized: [`Secret`] has no
//! `Serialize` impl that reveals it, and its `Debug` prints `[redacted]`.

use crate::agent::AgentType;
use crate::state::{IllegalTransition, JobStatus, StatusChange};
use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;
use uuid::Uuid;

/// A job's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    /// A fresh id whose timestamp part is `now`.
    pub fn new_at(now: OffsetDateTime) -> Self {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            now.unix_timestamp() as u64,
            now.nanosecond(),
        );
        Self(Uuid::new_v7(ts))
    }

    pub fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s).ok().map(Self)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A value that must never be shown: not in API responses, logs, events or errors.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The only way to read the value; grep for it to audit every use.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Per-job options. Everything here except the secrets is shown back to users.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobConfig {
    /// Token for private repositories. Write-only: never serialized.
    #[serde(skip)]
    pub git_token: Option<Secret>,
    /// Echo agent: how many text events to emit (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_steps: Option<u32>,
    /// Echo agent: milliseconds between its events (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_delay_ms: Option<u64>,
    /// Echo agent: exit with this code instead of finishing (to exercise failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_exit_code: Option<i32>,
}

impl JobConfig {
    /// True when the config has a secret to hand to the worker.
    pub fn has_git_token(&self) -> bool {
        self.git_token.is_some()
    }
}

/// One job: the request plus its lifecycle fields. JSON uses the spec's camelCase names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: JobId,
    pub repo_url: Option<String>,
    pub prompt: String,
    pub agent_type: AgentType,
    pub branch: Option<String>,
    pub config: JobConfig,
    pub timeout_seconds: u32,
    pub webhook_url: Option<String>,
    pub status: JobStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub exit_code: Option<i32>,
    pub failure_reason: Option<String>,
    pub retry_of: Option<JobId>,
}

impl Job {
    /// Applies one status change through the state machine, returning the updated job.
    ///
    /// Entering `running` stamps `startedAt`; entering a terminal state stamps `finishedAt`
    /// and records the exit code and reason.
    pub fn transition(&self, change: &StatusChange, now: OffsetDateTime) -> Result<Job, IllegalTransition> {
        let to = change.to.unwrap_or(self.status);
        self.status.check_transition(to)?;
        let mut next = self.clone();
        next.status = to;
        if to == JobStatus::Running && next.started_at.is_none() {
            next.started_at = Some(now);
        }
        if to == JobStatus::Queued {
            next.started_at = None;
        }
        if to.is_terminal() {
            next.finished_at = Some(now);
            next.exit_code = change.exit_code;
            if to != JobStatus::Succeeded {
                next.failure_reason = change.reason.clone();
            }
        }
        Ok(next)
    }

    /// The job a retry creates: same request, fresh lifecycle, linked by `retryOf`.
    pub fn retry(&self, now: OffsetDateTime) -> Job {
        Job {
            id: JobId::new_at(now),
            status: JobStatus::Queued,
            created_at: now,
            started_at: None,
            finished_at: None,
            exit_code: None,
            failure_reason: None,
            retry_of: Some(self.id),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn job() -> Job {
        let now = datetime!(2026-12-04 10:00 UTC);
        Job {
            id: JobId::new_at(now),
            repo_url: None,
            prompt: "hi".into(),
            agent_type: AgentType::default(),
            branch: None,
            config: JobConfig { git_token: Some(Secret::new("ghp_supersecret")), ..Default::default() },
            timeout_seconds: 1800,
            webhook_url: None,
            status: JobStatus::Queued,
            created_at: now,
            started_at: None,
            finished_at: None,
            exit_code: None,
            failure_reason: None,
            retry_of: None,
        }
    }

    #[test]
    fn git_token_is_never_serialized_or_debug_printed() {
        let j = job();
        let json = serde_json::to_string(&j).unwrap();
        assert!(!json.contains("supersecret"), "{json}");
        assert!(!format!("{j:?}").contains("supersecret"));
        assert!(json.contains("\"repoUrl\":null") && json.contains("\"agentType\":\"echo\""));
    }

    #[test]
    fn transitions_stamp_times_and_outcome() {
        let t1 = datetime!(2026-12-04 10:01 UTC);
        let t2 = datetime!(2026-12-04 10:02 UTC);
        let j = job().transition(&StatusChange::to(JobStatus::Scheduled), t1).unwrap();
        let j = j.transition(&StatusChange::to(JobStatus::Running), t1).unwrap();
        assert_eq!(j.started_at, Some(t1));
        let failed = StatusChange::to(JobStatus::Failed).with_reason("boom").with_exit_code(Some(3));
        let j = j.transition(&failed, t2).unwrap();
        assert_eq!((j.finished_at, j.exit_code, j.failure_reason.as_deref()), (Some(t2), Some(3), Some("boom")));
        let err = j.transition(&StatusChange::to(JobStatus::Running), t2).unwrap_err();
        assert_eq!((err.from, err.to), (JobStatus::Failed, JobStatus::Running));
    }

    #[test]
    fn retry_links_and_resets() {
        let now = datetime!(2026-12-04 11:00 UTC);
        let j = job();
        let r = j.retry(now);
        assert_eq!(r.retry_of, Some(j.id));
        assert_ne!(r.id, j.id);
        assert_eq!(r.status, JobStatus::Queued);
        assert_eq!(r.prompt, j.prompt);
        assert!(r.config.has_git_token(), "a retry keeps the token it needs to clone");
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let a = JobId::new_at(datetime!(2026-12-04 10:00 UTC));
        let b = JobId::new_at(datetime!(2026-12-04 10:00:01 UTC));
        assert!(a < b);
    }
}
