//! The agents a worker can run, one module each, behind the [`Agent`] trait.
//!
//! Adding an agent (claude-code, codex) means writing its module, adding a variant to
//! [`AnyAgent`] and a line to [`select`]. The agent's job is to turn its own output into
//! [`orca_core::AgentEvent`]s on the [`Emitter`]; the supervisor (`run.rs`) handles timeouts,
//! signals and the final error event.

pub mod echo;

use crate::exit_code;
use crate::sink::Emitter;
use orca_core::{AgentType, JobConfig};
use std::future::Future;
use std::path::PathBuf;

/// What an agent gets to work with.
#[derive(Debug, Clone)]
pub struct AgentContext {
    pub job_id: String,
    pub prompt: String,
    /// Where the agent works: the cloned repository, or `WORK_DIR` without one.
    pub dir: PathBuf,
    pub config: JobConfig,
}

/// Why an agent stopped without success. The supervisor emits `message` as an `error` event
/// and exits with `exit_code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFailure {
    pub message: String,
    pub exit_code: i32,
}

impl AgentFailure {
    pub fn new(message: impl Into<String>, exit_code: i32) -> Self {
        Self { message: message.into(), exit_code }
    }
}

/// One kind of agent. `run` may be cancelled (dropped) at any await point.
pub trait Agent {
    /// Runs to completion: `Ok` once the agent emitted its `result`.
    fn run(&self, ctx: &AgentContext, events: &Emitter) -> impl Future<Output = Result<(), AgentFailure>> + Send;
}

/// Every agent this worker can run.
#[derive(Debug, Clone)]
pub enum AnyAgent {
    Echo(echo::EchoAgent),
}

impl Agent for AnyAgent {
    async fn run(&self, ctx: &AgentContext, events: &Emitter) -> Result<(), AgentFailure> {
        match self {
            AnyAgent::Echo(a) => a.run(ctx, events).await,
        }
    }
}

/// The agent for `agent_type`, or why this worker cannot run it.
pub fn select(agent_type: &AgentType) -> Result<AnyAgent, AgentFailure> {
    match agent_type.as_str() {
        "echo" => Ok(AnyAgent::Echo(echo::EchoAgent)),
        other => Err(AgentFailure::new(
            format!("agent {other} is not available in this worker yet"),
            exit_code::AGENT_FAILED,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_echo_is_available_for_now() {
        assert!(matches!(select(&AgentType::parse("echo").unwrap()), Ok(AnyAgent::Echo(_))));
        for name in ["claude-code", "codex"] {
            let e = select(&AgentType::parse(name).unwrap()).unwrap_err();
            assert_eq!(e, AgentFailure::new(format!("agent {name} is not available in this worker yet"), 1));
        }
    }
}
