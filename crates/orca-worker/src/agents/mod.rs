//! The agents a worker can run, one module each, behind the [`Agent`] trait.
//!
//! An agent turns its own output into [`orca_core::AgentEvent`]s on the [`Emitter`] and says
//! whether it succeeded; the supervisor (`run.rs`) handles timeouts, signals, the final error
//! event, and what happens after the agent (the diff, the push).
//!
//! Agents: `echo` ([`echo`], no model), `claude-code` ([`claude_code`]) and `codex`
//! ([`codex`]). The two CLI agents share [`cli`]: it starts the CLI headless (stdin
//! `/dev/null`, own process group, stdout parsed line by line, stderr to the log), forwards
//! the supervisor's [`Stop`] requests as signals, and decides success from the parser's
//! verdict *and* the exit status.
//!
//! # Adding an agent (Gemini CLI, opencode, aider, ...)
//!
//! 1. Add its name to `orca_core::agent::KNOWN_AGENTS` (so the API accepts it), and its
//!    allowed extra flags to `orca_core::agent_options::allowed_flags` (none is fine).
//! 2. Write `agents/<name>.rs` with a unit struct implementing [`cli::CliAgent`]:
//!    - `command(ctx)`: the program (an `ORCA_<NAME>_BIN` override, else its name on PATH),
//!      its headless, non-interactive flags, `ctx.config.model` / `max_turns` / the checked
//!      `extra_args`, the prompt last (after `--`), and the env vars that switch off
//!      telemetry and updates;
//!    - `parser(ctx)`: a fresh [`cli::LineParser`] from `agents/<name>/parse.rs` that maps
//!      each stdout line to events (unknown or broken lines become `raw` with
//!      `source: <name>`, never a panic), finishes with a `result` event, and gives a
//!      [`cli::Verdict`] (the agent's own success signal, not its exit code alone).
//!
//!    Then `impl Agent for It { run → cli::run(self, ctx, events) }`.
//! 3. Add a variant to [`AnyAgent`] and a line to [`select`].
//! 4. Put a few of its real JSONL transcripts in `tests/fixtures/transcripts/` (named
//!    `<name>-*.jsonl`; the transcript test runs every file through its parser) and a fake
//!    model server run in `tests/` if the CLI can be pointed at one.
//!
//! An agent without a JSON mode (aider) still fits: its parser turns each line into `text`,
//! and the worker's diff shows what it did.

pub mod claude_code;
pub mod cli;
pub mod codex;
pub mod echo;
pub mod settings;

use crate::exit_code;
use crate::sink::Emitter;
use orca_core::{AgentType, JobConfig};
use std::future::Future;
use std::path::PathBuf;
use tokio::sync::watch;

pub use settings::AgentSettings;

/// What the supervisor asks of a running agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stop {
    /// Keep going.
    #[default]
    No,
    /// Soft timeout: finish up now (CLI agents get SIGINT).
    WrapUp,
    /// The worker got SIGTERM: stop now (CLI agents get SIGTERM).
    Terminate,
}

/// The receiving end of the supervisor's [`Stop`] requests.
pub type StopSignal = watch::Receiver<Stop>;

/// What an agent gets to work with.
#[derive(Debug, Clone)]
pub struct AgentContext {
    pub job_id: String,
    pub prompt: String,
    /// Where the agent works: the cloned repository, or `WORK_DIR` without one.
    pub dir: PathBuf,
    pub config: JobConfig,
    /// Where the CLIs are and how they reach their models.
    pub settings: AgentSettings,
    pub stop: StopSignal,
}

impl AgentContext {
    /// A context that is never asked to stop (tests, tools).
    pub fn new(
        job_id: impl Into<String>,
        prompt: impl Into<String>,
        dir: impl Into<PathBuf>,
        config: JobConfig,
    ) -> Self {
        // The sender is dropped at once: `changed()` then fails, which agents read as "never".
        let (_, stop) = watch::channel(Stop::No);
        Self {
            job_id: job_id.into(),
            prompt: prompt.into(),
            dir: dir.into(),
            config,
            settings: AgentSettings::default(),
            stop,
        }
    }
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
    /// Runs to completion: `Ok` once the agent emitted its `result` and succeeded.
    fn run(&self, ctx: &AgentContext, events: &Emitter) -> impl Future<Output = Result<(), AgentFailure>> + Send;
}

/// Every agent this worker can run.
#[derive(Debug, Clone)]
pub enum AnyAgent {
    Echo(echo::EchoAgent),
    ClaudeCode(claude_code::ClaudeCode),
    Codex(codex::Codex),
}

impl Agent for AnyAgent {
    async fn run(&self, ctx: &AgentContext, events: &Emitter) -> Result<(), AgentFailure> {
        match self {
            AnyAgent::Echo(a) => a.run(ctx, events).await,
            AnyAgent::ClaudeCode(a) => a.run(ctx, events).await,
            AnyAgent::Codex(a) => a.run(ctx, events).await,
        }
    }
}

/// The agent for `agent_type`, or why this worker cannot run it.
pub fn select(agent_type: &AgentType) -> Result<AnyAgent, AgentFailure> {
    match agent_type.as_str() {
        "echo" => Ok(AnyAgent::Echo(echo::EchoAgent)),
        "claude-code" => Ok(AnyAgent::ClaudeCode(claude_code::ClaudeCode)),
        "codex" => Ok(AnyAgent::Codex(codex::Codex)),
        other => {
            Err(AgentFailure::new(format!("agent {other} is not available in this worker"), exit_code::AGENT_FAILED))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_agent_is_available() {
        for name in orca_core::agent::KNOWN_AGENTS {
            assert!(select(&AgentType::parse(name).unwrap()).is_ok(), "{name}");
        }
        assert!(matches!(select(&AgentType::parse("codex").unwrap()), Ok(AnyAgent::Codex(_))));
    }
}
