//! What the backend hands every worker so its agents can reach their models: API keys, base
//! URLs and CLI locations, read once from the server's environment.
//!
//! | variable | secret | for |
//! |---|---|---|
//! | `ANTHROPIC_API_KEY` | yes | Claude Code (`x-api-key`) |
//! | `ANTHROPIC_AUTH_TOKEN` | yes | Claude Code through a gateway (`Authorization: Bearer`) |
//! | `ANTHROPIC_BASE_URL` | no | Claude Code: a gateway or a test server, without `/v1` |
//! | `OPENAI_API_KEY` | yes | Codex |
//! | `ORCA_CODEX_BASE_URL` | no | Codex: a Responses API base URL (with `/v1`) |
//! | `ORCA_AGENT_MAX_RETRIES` | no | how often the CLIs retry a failed model request |
//! | `ORCA_CLAUDE_BIN`, `ORCA_CODEX_BIN` | no | where the CLIs are (local scheduler; images have them on PATH) |
//!
//! Every value is kept as a [`Secret`] (so `Debug` never shows one) and only given to the
//! scheduler, which puts it in the worker's environment; nothing logs them.

use orca_core::Secret;
use orca_core::new_job::check_http_url;
use std::collections::HashMap;
use std::fmt;

/// The variables passed through, in this order.
pub const VARS: [&str; 8] = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "ORCA_CODEX_BASE_URL",
    "ORCA_AGENT_MAX_RETRIES",
    "ORCA_CLAUDE_BIN",
    "ORCA_CODEX_BIN",
];

/// The agent variables for workers (names and values).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AgentEnv {
    vars: Vec<(&'static str, Secret)>,
}

impl fmt::Debug for AgentEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.vars.iter().map(|(k, _)| format!("{k}=[redacted]"))).finish()
    }
}

/// A bad agent variable: its name and what is wrong (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEnvError {
    pub var: &'static str,
    pub problem: String,
}

impl AgentEnv {
    /// Reads the variables from `env` (empty counts as unset).
    pub fn from_vars(env: &HashMap<String, String>) -> Result<AgentEnv, AgentEnvError> {
        let mut vars = Vec::new();
        for name in VARS {
            let Some(v) = env.get(name).filter(|v| !v.is_empty()) else { continue };
            let bad = |problem: &str| AgentEnvError { var: name, problem: problem.to_owned() };
            match name {
                "ANTHROPIC_BASE_URL" | "ORCA_CODEX_BASE_URL" => {
                    check_http_url(v).map_err(|_| bad("must be an absolute http:// or https:// URL"))?
                }
                "ORCA_AGENT_MAX_RETRIES" => {
                    v.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n <= 100)
                        .ok_or_else(|| bad("must be a whole number from 0 to 100"))?;
                }
                _ if v.chars().any(char::is_control) => return Err(bad("must not contain control characters")),
                _ => {}
            }
            vars.push((name, Secret::new(v.clone())));
        }
        Ok(AgentEnv { vars })
    }

    /// The variables to set in each worker's environment.
    pub fn vars(&self) -> &[(&'static str, Secret)] {
        &self.vars
    }

    /// Whether `name` is set.
    pub fn has(&self, name: &str) -> bool {
        self.vars.iter().any(|(k, _)| *k == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_checks_and_hides_the_values() {
        let a = AgentEnv::from_vars(&env(&[
            ("ANTHROPIC_API_KEY", "sk-ant-secret"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
            ("OPENAI_API_KEY", ""),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        let names: Vec<_> = a.vars().iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"]);
        assert!(a.has("ANTHROPIC_API_KEY") && !a.has("OPENAI_API_KEY"));
        let shown = format!("{a:?}");
        assert!(!shown.contains("sk-ant-secret") && shown.contains("ANTHROPIC_API_KEY=[redacted]"), "{shown}");
        let e = AgentEnv::from_vars(&env(&[("ORCA_CODEX_BASE_URL", "ftp://x")])).unwrap_err();
        assert_eq!(e.var, "ORCA_CODEX_BASE_URL");
        let e = AgentEnv::from_vars(&env(&[("OPENAI_API_KEY", "sk-\nx")])).unwrap_err();
        assert!(!e.problem.contains("sk-"), "{e:?}");
        assert_eq!(
            AgentEnv::from_vars(&env(&[("ORCA_AGENT_MAX_RETRIES", "x")])).unwrap_err().var,
            "ORCA_AGENT_MAX_RETRIES"
        );
    }
}
