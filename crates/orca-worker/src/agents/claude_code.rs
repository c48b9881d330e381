//! The `claude-code` agent: Claude Code headless.
//!
//! `claude -p --output-format stream-json --verbose --permission-mode bypassPermissions
//! [--model M] [--max-turns N] [extraArgs…] -- PROMPT`, stdin `/dev/null`, in the job's
//! directory, with `IS_SANDBOX=1` (bypass mode is refused as root without it; the worker's
//! container is the sandbox), nonessential traffic, telemetry and the auto-updater off, and
//! `CLAUDE_CODE_MAX_RETRIES` from `ORCA_AGENT_MAX_RETRIES`. A `--permission-mode` in the job's
//! `extraArgs` replaces the default mode. The model endpoint and key come from the inherited
//! `ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY` / `ANTHROPIC_AUTH_TOKEN`. Lines are mapped by
//! [`parse`].

pub mod parse;

use super::cli::{self, CliAgent, CliCommand};
use super::{Agent, AgentContext, AgentFailure};
use crate::sink::Emitter;

pub const NAME: &str = "claude-code";
pub const DEFAULT_BIN: &str = "claude";
pub const DEFAULT_PERMISSION_MODE: &str = "bypassPermissions";

#[derive(Debug, Clone, Copy, Default)]
pub struct ClaudeCode;

impl CliAgent for ClaudeCode {
    const NAME: &'static str = NAME;
    type Parser = parse::ClaudeParser;

    fn command(&self, ctx: &AgentContext) -> Result<CliCommand, AgentFailure> {
        let extra = cli::extra_args(NAME, ctx)?;
        let program = ctx.settings.claude_bin.clone().map_or_else(|| DEFAULT_BIN.into(), |p| p.into_os_string());
        let mut c = CliCommand::new(program);
        c.arg("-p").arg("--output-format").arg("stream-json").arg("--verbose");
        if !extra.iter().any(|a| a == "--permission-mode") {
            c.arg("--permission-mode").arg(DEFAULT_PERMISSION_MODE);
        }
        if let Some(m) = &ctx.config.model {
            c.arg("--model").arg(m);
        }
        if let Some(n) = ctx.config.max_turns {
            c.arg("--max-turns").arg(n.to_string());
        }
        for a in extra {
            c.arg(a);
        }
        c.arg("--").arg(&ctx.prompt);
        c.env("IS_SANDBOX", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("DISABLE_AUTOUPDATER", "1");
        if let Some(n) = ctx.settings.max_retries {
            c.env("CLAUDE_CODE_MAX_RETRIES", n.to_string());
        }
        Ok(c)
    }

    fn parser(&self, _ctx: &AgentContext) -> Self::Parser {
        parse::ClaudeParser::new()
    }
}

impl Agent for ClaudeCode {
    async fn run(&self, ctx: &AgentContext, events: &Emitter) -> Result<(), AgentFailure> {
        cli::run(self, ctx, events).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orca_core::JobConfig;

    fn ctx(config: JobConfig) -> AgentContext {
        let mut c = AgentContext::new("j", "-fix the bug", "/w", config);
        c.settings.max_retries = Some(2);
        c
    }

    #[test]
    fn command_line() {
        let cfg = JobConfig {
            model: Some("claude-x".into()),
            max_turns: Some(3),
            extra_args: Some(vec!["--effort=high".into()]),
            ..Default::default()
        };
        let c = ClaudeCode.command(&ctx(cfg)).unwrap();
        assert_eq!(c.program, "claude");
        assert_eq!(
            c.args_lossy(),
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "bypassPermissions",
                "--model",
                "claude-x",
                "--max-turns",
                "3",
                "--effort",
                "high",
                "--",
                "-fix the bug"
            ]
        );
        assert!(c.env.iter().any(|(k, v)| k == "CLAUDE_CODE_MAX_RETRIES" && v == "2"));
        assert!(c.env.iter().any(|(k, v)| k == "IS_SANDBOX" && v == "1"));
    }

    #[test]
    fn a_permission_mode_in_extra_args_replaces_the_default() {
        let cfg = JobConfig {
            extra_args: Some(vec!["--permission-mode".into(), "acceptEdits".into()]),
            ..Default::default()
        };
        let args = ClaudeCode.command(&ctx(cfg)).unwrap().args_lossy();
        assert_eq!(args.iter().filter(|a| *a == "--permission-mode").count(), 1);
        assert!(args.contains(&"acceptEdits".to_owned()));
        let bad = JobConfig { extra_args: Some(vec!["--settings".into(), "{}".into()]), ..Default::default() };
        assert!(ClaudeCode.command(&ctx(bad)).unwrap_err().message.starts_with("config.extraArgs:"));
    }
}
