//! The event schema: what a job tells the world while it runs.
//!
//! An [`AgentEvent`] is one thing that happened (JSON with a `type` tag, camelCase fields);
//! an [`EventRecord`] is that event as stored and streamed: it adds the per-job [`EventId`],
//! the job id, a timestamp and the schema version `v`.
//!
//! Events are agent-neutral: Claude Code's stream-json, Codex's JSONL and the echo agent all
//! map onto these variants. Anything a parser does not understand is kept as
//! [`AgentEvent::Raw`] rather than dropped, and [`AgentEvent::from_json_line`] never fails.
//!
//! **Invariant:** event ids are per job, start at 1 and increase by one with each append.

use crate::changes::Changes;
use crate::job::JobId;
use crate::state::JobStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// Version of this schema, carried in every record as `v`. Bumped on breaking changes only;
/// adding a variant or an optional field is not breaking (readers keep unknown events as raw).
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// Position of an event in its job's stream: 1, 2, 3, ...
pub type EventId = u64;

/// Token counts and cost, as reported by the agent (cumulative for the run so far).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// One entry of a [`AgentEvent::Plan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanItem {
    pub text: String,
    #[serde(default)]
    pub completed: bool,
}

/// One thing that happened in a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum AgentEvent {
    /// The job's status changed (written by the backend only).
    Status {
        status: JobStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    /// Progress of the worker itself (cloning, starting the agent, ...).
    Log { message: String },
    /// The agent started a session.
    Session {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    /// Text the agent said.
    Text { text: String },
    /// The agent's visible reasoning.
    Thinking { text: String },
    /// The agent called a tool.
    ToolCall {
        /// The agent's id for this call (named so it cannot clash with the record's `id`).
        tool_call_id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// A tool returned.
    ToolResult {
        tool_call_id: String,
        #[serde(default)]
        output: Value,
        #[serde(default)]
        is_error: bool,
    },
    /// Tokens and cost so far.
    Usage(Usage),
    /// Something worth attention that does not stop the job.
    Warning { message: String },
    /// Something went wrong (the job may still go on; the status event says how it ended).
    Error { message: String },
    /// The agent's final word.
    Result {
        success: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        num_turns: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
        /// The agent's session (Claude Code session id, Codex thread id), for resuming.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        /// Why the run ended, when the agent says (`completed`, `max_turns`, `api_error`, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The agent's plan or to-do list, each time it changes.
    Plan { items: Vec<PlanItem> },
    /// What the job changed in the repository (written by the worker when the agent ends).
    Changes(Changes),
    /// The worker committed the job's changes and pushed them.
    Pushed { branch: String, commit: String },
    /// Output nobody understood, kept verbatim.
    Raw {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        data: Value,
    },
}

impl AgentEvent {
    /// Parses one line of worker output. Never fails: what is not a known event becomes `raw`.
    pub fn from_json_line(line: &str) -> AgentEvent {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => Self::from_value(v),
            Err(_) => AgentEvent::Raw { source: None, data: Value::String(line.to_owned()) },
        }
    }

    /// Interprets a JSON value as an event, or keeps it as `raw`.
    pub fn from_value(v: Value) -> AgentEvent {
        match serde_json::from_value::<AgentEvent>(v.clone()) {
            Ok(e) => e,
            Err(_) => AgentEvent::Raw { source: None, data: v },
        }
    }

    /// The `type` tag of this event.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Log { .. } => "log",
            Self::Session { .. } => "session",
            Self::Text { .. } => "text",
            Self::Thinking { .. } => "thinking",
            Self::ToolCall { .. } => "tool_call",
            Self::ToolResult { .. } => "tool_result",
            Self::Usage(_) => "usage",
            Self::Warning { .. } => "warning",
            Self::Error { .. } => "error",
            Self::Result { .. } => "result",
            Self::Plan { .. } => "plan",
            Self::Changes(_) => "changes",
            Self::Pushed { .. } => "pushed",
            Self::Raw { .. } => "raw",
        }
    }

    /// True for the status event that ends a job's stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Status { status, .. } if status.is_terminal())
    }

    /// Shorthand for a status event.
    pub fn status(status: JobStatus, reason: Option<String>, exit_code: Option<i32>) -> Self {
        Self::Status { status, reason, exit_code }
    }
}

/// An event as stored and streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub id: EventId,
    pub job_id: JobId,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub v: u32,
    #[serde(flatten)]
    pub event: AgentEvent,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_with_type_tags() {
        let samples = vec![
            AgentEvent::status(JobStatus::Failed, Some("boom".into()), Some(2)),
            AgentEvent::Log { message: "cloning".into() },
            AgentEvent::Session { session_id: Some("s".into()), model: None },
            AgentEvent::Text { text: "hi".into() },
            AgentEvent::Thinking { text: "hmm".into() },
            AgentEvent::ToolCall { tool_call_id: "t1".into(), name: "Bash".into(), input: json!({"command": "ls"}) },
            AgentEvent::ToolResult { tool_call_id: "t1".into(), output: json!("ok"), is_error: false },
            AgentEvent::Usage(Usage { input_tokens: 1, output_tokens: 2, cost_usd: Some(0.5), ..Default::default() }),
            AgentEvent::Warning { message: "w".into() },
            AgentEvent::Error { message: "e".into() },
            AgentEvent::Result {
                success: true,
                text: Some("done".into()),
                num_turns: Some(1),
                duration_ms: None,
                usage: None,
                session_id: Some("s".into()),
                reason: None,
            },
            AgentEvent::Plan { items: vec![PlanItem { text: "step".into(), completed: true }] },
            AgentEvent::Changes(Changes { patch: "+x\n".into(), ..Default::default() }),
            AgentEvent::Pushed { branch: "orca/j".into(), commit: "abc".into() },
            AgentEvent::Raw { source: Some("claude".into()), data: json!({"type": "mystery"}) },
        ];
        for e in samples {
            let v = serde_json::to_value(&e).unwrap();
            assert_eq!(v["type"], e.kind(), "{v}");
            assert_eq!(AgentEvent::from_value(v), e);
        }
        let v = serde_json::to_value(AgentEvent::ToolResult { tool_call_id: "a".into(), output: json!(1), is_error: true }).unwrap();
        assert_eq!(v, json!({"type": "tool_result", "toolCallId": "a", "output": 1, "isError": true}));
    }

    #[test]
    fn unknown_or_broken_lines_become_raw() {
        assert_eq!(AgentEvent::from_json_line("not json"), AgentEvent::Raw { source: None, data: json!("not json") });
        let odd = json!({"type": "from_the_future", "x": 1});
        assert_eq!(AgentEvent::from_value(odd.clone()), AgentEvent::Raw { source: None, data: odd });
        let missing = json!({"type": "text"});
        assert!(matches!(AgentEvent::from_value(missing), AgentEvent::Raw { .. }));
    }

    #[test]
    fn record_flattens_the_event() {
        let r = EventRecord {
            id: 7,
            job_id: crate::JobId(uuid::Uuid::nil()),
            timestamp: time::macros::datetime!(2026-12-04 10:00 UTC),
            v: EVENT_SCHEMA_VERSION,
            event: AgentEvent::Text { text: "hi".into() },
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["type"], "text");
        assert_eq!(v["text"], "hi");
        assert_eq!(v["timestamp"], "2026-12-04T10:00:00Z");
        let back: EventRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        // No event field may shadow a record field.
        let call = EventRecord { event: AgentEvent::ToolCall { tool_call_id: "c".into(), name: "n".into(), input: json!({}) }, ..r };
        let v = serde_json::to_value(&call).unwrap();
        assert_eq!((v["id"].as_u64(), v["toolCallId"].as_str()), (Some(7), Some("c")));
    }

    #[test]
    fn terminal_status_ends_stream() {
        assert!(AgentEvent::status(JobStatus::Succeeded, None, Some(0)).is_terminal());
        assert!(!AgentEvent::status(JobStatus::Running, None, None).is_terminal());
        assert!(!AgentEvent::Text { text: "succeeded".into() }.is_terminal());
    }

    proptest::proptest! {
        #[test]
        fn any_line_parses_without_panic(s in ".*") {
            let _ = AgentEvent::from_json_line(&s);
        }
    }
}
