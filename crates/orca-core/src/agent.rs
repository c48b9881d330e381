//! The agent registry as the backend sees it: which `agentType` values exist.
//!
//! The worker owns how each agent runs; the backend only needs to refuse names no worker knows.
//! Adding an agent means adding its name here and its module in `orca-worker`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every agent a worker can run.
pub const KNOWN_AGENTS: &[&str] = &["echo", "claude-code", "codex"];

/// The agent used when a request names none (the worker contract's default).
pub const DEFAULT_AGENT: &str = "echo";

/// A validated agent name: one of [`KNOWN_AGENTS`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentType(String);

impl AgentType {
    pub fn parse(s: &str) -> Result<Self, String> {
        if KNOWN_AGENTS.contains(&s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("unknown agent `{s}`; expected one of: {}", KNOWN_AGENTS.join(", ")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for AgentType {
    fn default() -> Self {
        Self(DEFAULT_AGENT.to_owned())
    }
}

impl TryFrom<String> for AgentType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<AgentType> for String {
    fn from(a: AgentType) -> String {
        a.0
    }
}

impl fmt::Display for AgentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
