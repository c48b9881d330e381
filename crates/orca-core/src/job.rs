//! The job record: what a user submitted and what became of it.
//!
//! **Invariant:** secrets (the git token) are accepted but never serialized: [`Secret`] has no
//! `Serialize` impl that reveals it, and its `Debug` prints `[redacted]`.

use crate::agent::AgentType;
use crate::agent_options::PushBranch;
use crate::changes::ChangesSummary;
use crate::event::Usage;
use crate::state::{FailureClass, IllegalTransition, JobStatus, StatusChange};
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
    /// The model the agent uses (its own default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The most turns the agent may take (Claude Code's `--max-turns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// Extra flags for the agent's command line, from its allowlist (see `agent_options`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_args: Option<Vec<String>>,
    /// Commit and push the changes: `true` for branch `orca/<job id>`, or a branch name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_branch: Option<PushBranch>,
    /// Sandbox memory limit in MiB (server default and maximum apply; see `sandbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// Sandbox CPU limit in thousandths of a CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
    /// Sandbox limit on processes and threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u32>,
    /// Echo agent: report what the sandbox looks like from inside (a `raw` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_probe: Option<bool>,
    /// Echo agent: allocate and touch this many MiB (to exercise the memory limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_alloc_mb: Option<u32>,
}

impl JobConfig {
    /// True when the config has a secret to hand to the worker.
    pub fn has_git_token(&self) -> bool {
        self.git_token.is_some()
    }
}

/// What the agent's run produced, as the backend recorded it from the job's events. Every field
/// is optional, so jobs stored before these fields existed still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobOutcome {
    /// Tokens and cost of the run (the agent's last report).
    pub usage: Option<Usage>,
    pub num_turns: Option<u32>,
    /// The agent's session id (Claude Code) or thread id (Codex).
    pub session_id: Option<String>,
    /// The branch the worker pushed the changes to.
    pub result_branch: Option<String>,
    /// The commit it pushed.
    pub result_commit: Option<String>,
    /// Totals of the recorded diff; the whole diff is at `GET /api/v1/jobs/:id/diff`.
    pub changes: Option<ChangesSummary>,
}

/// One job: the request plus its lifecycle fields. JSON uses the spec's camelCase names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// For failed and timed-out jobs: agent, infrastructure or limit.
    #[serde(default)]
    pub failure_class: Option<FailureClass>,
    pub retry_of: Option<JobId>,
    /// Usage, cost, session and results of the run (flattened into the job's JSON).
    #[serde(flatten, default)]
    pub outcome: JobOutcome,
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
            next.failure_class = change.class.filter(|_| FailureClass::default_for(to).is_some()).or(FailureClass::default_for(to));
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
            failure_class: None,
            retry_of: Some(self.id),
            outcome: JobOutcome::default(),
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
            failure_class: None,
            retry_of: None,
            outcome: JobOutcome::default(),
        }
    }

    #[test]
    fn jobs_stored_before_the_outcome_fields_still_load() {
        let mut v = serde_json::to_value(job()).unwrap();
        for k in ["usage", "numTurns", "sessionId", "resultBranch", "resultCommit", "changes"] {
            assert!(v.as_object_mut().unwrap().remove(k).is_some(), "{k} is serialized");
        }
        let back: Job = serde_json::from_value(v).unwrap();
        assert_eq!(back.outcome, JobOutcome::default());
        let mut j = job();
        j.outcome.usage = Some(Usage { input_tokens: 3, cost_usd: Some(0.5), ..Default::default() });
        j.outcome.result_branch = Some("orca/x".into());
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!((v["usage"]["costUsd"].as_f64(), v["resultBranch"].as_str()), (Some(0.5), Some("orca/x")));
        assert_eq!(v["numTurns"], serde_json::Value::Null);
    }

    #[test]
    fn a_retry_starts_without_the_old_outcome() {
        let mut j = job();
        j.outcome.num_turns = Some(4);
        assert_eq!(j.retry(datetime!(2026-12-04 11:00 UTC)).outcome, JobOutcome::default());
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
        assert_eq!(j.failure_class, Some(FailureClass::Infrastructure), "the default for a failure the backend decides");
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
