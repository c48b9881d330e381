//! The `codex` agent: `codex exec --json`.
//!
//! `codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox
//! --disable plugins -c analytics.enabled=false [-m MODEL] [provider flags] [extraArgs…] --
//! PROMPT`, stdin `/dev/null` (a pipe makes it wait for EOF), in the job's directory. The
//! worker's container is the sandbox, so Codex's own is bypassed unless the job's `extraArgs`
//! name a `--sandbox`. Plugins and analytics are off, which leaves no traffic but the model's.
//!
//! The model endpoint: with `ORCA_CODEX_BASE_URL` set, a custom Responses provider `orca` at
//! that URL whose key Codex reads from `OPENAI_API_KEY` (only the variable's *name* is on the
//! command line), with `ORCA_AGENT_MAX_RETRIES` as its request and stream retries. Without
//! it, Codex's built-in OpenAI provider, given the key as `CODEX_API_KEY`. Codex has no turn
//! limit: a job's `maxTurns` is reported as ignored. Lines are mapped by [`parse`].

pub mod parse;

use super::cli::{self, CliAgent, CliCommand};
use super::{Agent, AgentContext, AgentFailure};
use crate::sink::Emitter;
use orca_core::AgentEvent;

pub const NAME: &str = "codex";
pub const DEFAULT_BIN: &str = "codex";
/// The custom provider's id in Codex's config when `ORCA_CODEX_BASE_URL` is set.
pub const PROVIDER: &str = "orca";
/// The variable Codex reads the key from.
pub const KEY_VAR: &str = "OPENAI_API_KEY";

#[derive(Debug, Clone, Copy, Default)]
pub struct Codex;

impl CliAgent for Codex {
    const NAME: &'static str = NAME;
    type Parser = parse::CodexParser;

    fn command(&self, ctx: &AgentContext) -> Result<CliCommand, AgentFailure> {
        let extra = cli::extra_args(NAME, ctx)?;
        let program = ctx.settings.codex_bin.clone().map_or_else(|| DEFAULT_BIN.into(), |p| p.into_os_string());
        let mut c = CliCommand::new(program);
        c.arg("exec").arg("--json").arg("--skip-git-repo-check");
        if !extra.iter().any(|a| a == "--sandbox") {
            c.arg("--dangerously-bypass-approvals-and-sandbox");
        }
        c.arg("--disable").arg("plugins").arg("-c").arg("analytics.enabled=false");
        if let Some(m) = &ctx.config.model {
            c.arg("--model").arg(m);
        }
        if let Some(url) = &ctx.settings.codex_base_url {
            let p = PROVIDER;
            for kv in [
                format!("model_provider={p}"),
                format!("model_providers.{p}.name={p}"),
                format!("model_providers.{p}.base_url={}", toml_string(url)),
                format!("model_providers.{p}.wire_api=responses"),
                format!("model_providers.{p}.env_key={KEY_VAR}"),
            ] {
                c.arg("-c").arg(kv);
            }
            if let Some(n) = ctx.settings.max_retries {
                c.arg("-c").arg(format!("model_providers.{p}.request_max_retries={n}"));
                c.arg("-c").arg(format!("model_providers.{p}.stream_max_retries={n}"));
            }
        } else if std::env::var_os("CODEX_API_KEY").is_none()
            && let Some(key) = std::env::var_os(KEY_VAR)
        {
            c.env("CODEX_API_KEY", key);
        }
        for a in extra {
            c.arg(a);
        }
        c.arg("--").arg(&ctx.prompt);
        Ok(c)
    }

    fn parser(&self, ctx: &AgentContext) -> Self::Parser {
        parse::CodexParser::new(ctx.config.model.clone())
    }
}

/// A TOML basic string (Codex parses `-c` values as TOML).
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

impl Agent for Codex {
    async fn run(&self, ctx: &AgentContext, events: &Emitter) -> Result<(), AgentFailure> {
        if let Some(n) = ctx.config.max_turns {
            events
                .emit(AgentEvent::Warning { message: format!("codex has no turn limit; maxTurns={n} is ignored") })
                .await;
        }
        cli::run(self, ctx, events).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orca_core::JobConfig;

    #[test]
    fn command_line_with_a_custom_endpoint() {
        let cfg = JobConfig {
            model: Some("gpt-5.5".into()),
            extra_args: Some(vec!["-c".into(), "model_reasoning_effort=low".into()]),
            ..Default::default()
        };
        let mut ctx = AgentContext::new("j", "make hi.txt", "/w", cfg);
        ctx.settings.codex_base_url = Some("http://127.0.0.1:9/v1".into());
        ctx.settings.max_retries = Some(1);
        let c = Codex.command(&ctx).unwrap();
        let args = c.args_lossy();
        assert_eq!(
            &args[..8],
            [
                "exec",
                "--json",
                "--skip-git-repo-check",
                "--dangerously-bypass-approvals-and-sandbox",
                "--disable",
                "plugins",
                "-c",
                "analytics.enabled=false"
            ]
        );
        assert!(args.contains(&r#"model_providers.orca.base_url="http://127.0.0.1:9/v1""#.to_owned()), "{args:?}");
        assert!(args.contains(&"model_providers.orca.env_key=OPENAI_API_KEY".to_owned()));
        assert!(args.contains(&"model_providers.orca.request_max_retries=1".to_owned()));
        assert_eq!(&args[args.len() - 4..], ["--config", "model_reasoning_effort=low", "--", "make hi.txt"]);
        assert!(args.windows(2).any(|w| w == ["--model", "gpt-5.5"]));
    }

    #[test]
    fn a_sandbox_in_extra_args_replaces_the_bypass() {
        let cfg = JobConfig { extra_args: Some(vec!["--sandbox=workspace-write".into()]), ..Default::default() };
        let args = Codex.command(&AgentContext::new("j", "p", "/w", cfg)).unwrap().args_lossy();
        assert!(!args.contains(&"--dangerously-bypass-approvals-and-sandbox".to_owned()));
        assert!(args.windows(2).any(|w| w == ["--sandbox", "workspace-write"]));
    }
}
