//! The job lifecycle: one state machine through which every status change goes.
//!
//! ```text
//! queued ──▶ scheduled ──▶ running ──▶ succeeded
//!   │  ▲          │           ├──────▶ failed
//!   │  └──────────┤           ├──────▶ cancelled
//!   │             ├──▶ failed ├──────▶ timed_out
//!   │             ├──▶ cancelled
//!   │             └──▶ timed_out
//!   └──▶ cancelled
//! ```
//!
//! `scheduled → queued` hands a claimed job back to the queue (its claim was lost before the
//! worker started). Terminal states have no way out; a retry is a *new* job.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a job is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted and waiting for a worker slot.
    Queued,
    /// Claimed by a backend; its worker is being started.
    Scheduled,
    /// The worker process or container is running.
    Running,
    /// The agent finished and reported success.
    Succeeded,
    /// The agent, the worker or the infrastructure failed.
    Failed,
    /// A user cancelled the job.
    Cancelled,
    /// The job ran past its `timeoutSeconds`.
    TimedOut,
}

impl JobStatus {
    pub const ALL: [JobStatus; 7] = [
        Self::Queued,
        Self::Scheduled,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }

    /// A terminal job never changes status again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled | Self::TimedOut)
    }

    /// The single definition of the legal edges of the lifecycle.
    pub fn can_transition_to(self, to: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, to),
            (Queued, Scheduled | Cancelled)
                | (Scheduled, Queued | Running | Failed | Cancelled | TimedOut)
                | (Running, Succeeded | Failed | Cancelled | TimedOut)
        )
    }

    /// Checks one edge, returning the error every caller reports.
    pub fn check_transition(self, to: JobStatus) -> Result<(), IllegalTransition> {
        if self.can_transition_to(to) { Ok(()) } else { Err(IllegalTransition { from: self, to }) }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            let all: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown status `{s}`; expected one of: {}", all.join(", "))
        })
    }
}

/// A status change that the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal job transition {from} → {to}")]
pub struct IllegalTransition {
    pub from: JobStatus,
    pub to: JobStatus,
}

/// Who or what made a job fail or time out, so users and retry policies can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The agent ran and failed (a model error, max turns, a non-zero exit of its own).
    Agent,
    /// Orca or its platform failed: the worker could not start, the clone or push failed,
    /// the container or pod was lost, the backend restarted or shut down.
    Infrastructure,
    /// A limit was hit: the job's timeout, the sandbox's memory.
    Limit,
}

impl FailureClass {
    /// The class a `failed` or `timed_out` change gets when its caller names none: a timeout
    /// is a limit; any other failure the backend decides on its own is infrastructure (agent
    /// failures are only known from the worker's exit, where the caller says so).
    pub fn default_for(status: JobStatus) -> Option<FailureClass> {
        match status {
            JobStatus::TimedOut => Some(FailureClass::Limit),
            JobStatus::Failed => Some(FailureClass::Infrastructure),
            _ => None,
        }
    }
}

/// A requested status change together with what it records on the job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusChange {
    pub to: Option<JobStatus>,
    /// Why the job ended or moved (failure reason, cancel reason, ...).
    pub reason: Option<String>,
    /// The worker's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// For `failed` and `timed_out`: whose failure it was (default: [`FailureClass::default_for`]).
    pub class: Option<FailureClass>,
}

impl StatusChange {
    pub fn to(status: JobStatus) -> Self {
        Self { to: Some(status), ..Self::default() }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_exit_code(mut self, code: Option<i32>) -> Self {
        self.exit_code = code;
        self
    }

    pub fn with_class(mut self, class: FailureClass) -> Self {
        self.class = Some(class);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::{self, *};

    /// The whole table, written out by hand: every pair of states is listed once.
    #[test]
    fn transition_table_is_exactly_this() {
        let allowed: &[(JobStatus, &[JobStatus])] = &[
            (Queued, &[Scheduled, Cancelled]),
            (Scheduled, &[Queued, Running, Failed, Cancelled, TimedOut]),
            (Running, &[Succeeded, Failed, Cancelled, TimedOut]),
            (Succeeded, &[]),
            (Failed, &[]),
            (Cancelled, &[]),
            (TimedOut, &[]),
        ];
        assert_eq!(allowed.len(), JobStatus::ALL.len());
        for (from, tos) in allowed {
            for to in JobStatus::ALL {
                let expected = tos.contains(&to);
                assert_eq!(from.can_transition_to(to), expected, "{from} → {to}");
                assert_eq!(from.check_transition(to).is_ok(), expected, "{from} → {to}");
            }
        }
    }

    #[test]
    fn terminal_states_have_no_exit_and_are_reachable_from_running_or_queued() {
        for s in JobStatus::ALL {
            if s.is_terminal() {
                assert!(JobStatus::ALL.iter().all(|t| !s.can_transition_to(*t)), "{s}");
            }
        }
        assert!(!Running.can_transition_to(Running), "no self loops");
    }

    #[test]
    fn names_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        assert!("done".parse::<JobStatus>().unwrap_err().contains("timed_out"));
    }
}
