//! Where the agent CLIs are and how they reach their models: the worker's agent variables.
//!
//! | variable | |
//! |---|---|
//! | `ORCA_CLAUDE_BIN` | the Claude Code CLI (default `claude` on PATH) |
//! | `ORCA_CODEX_BIN` | the Codex CLI (default `codex` on PATH) |
//! | `ORCA_CODEX_BASE_URL` | a Responses API base URL (ending in `/v1`); Codex then uses a custom provider `orca` at that URL with the key in `OPENAI_API_KEY` |
//! | `ORCA_AGENT_MAX_RETRIES` | how often the CLIs retry a failed model request (their own default when unset) |
//!
//! The model credentials themselves (`ANTHROPIC_API_KEY`, `ANTHROPIC_AUTH_TOKEN`,
//! `ANTHROPIC_BASE_URL`, `OPENAI_API_KEY`) are not read here: the CLIs inherit them from the
//! worker's environment, and they never appear in an argument list, an event or a log line.

use orca_core::ValidationErrors;
use std::ffi::OsString;
use std::path::PathBuf;

pub const MAX_RETRIES_LIMIT: u32 = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentSettings {
    pub claude_bin: Option<PathBuf>,
    pub codex_bin: Option<PathBuf>,
    pub codex_base_url: Option<String>,
    pub max_retries: Option<u32>,
}

impl AgentSettings {
    pub fn from_env() -> Result<Self, ValidationErrors> {
        Self::from_lookup(|k| std::env::var_os(k))
    }

    /// Reads the variables through `get` (tests pass a map); an empty value counts as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Result<Self, ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        let mut s = AgentSettings {
            claude_bin: var("ORCA_CLAUDE_BIN").map(PathBuf::from),
            codex_bin: var("ORCA_CODEX_BIN").map(PathBuf::from),
            ..Default::default()
        };
        if let Some(u) = var("ORCA_CODEX_BASE_URL") {
            match u.into_string() {
                Ok(u) if orca_core::new_job::check_http_url(&u).is_ok() => {
                    s.codex_base_url = Some(u.trim_end_matches('/').to_owned())
                }
                _ => errs.push("ORCA_CODEX_BASE_URL", "must be an absolute http:// or https:// URL"),
            }
        }
        if let Some(n) = var("ORCA_AGENT_MAX_RETRIES") {
            match n.to_str().and_then(|n| n.trim().parse::<u32>().ok()) {
                Some(n) if n <= MAX_RETRIES_LIMIT => s.max_retries = Some(n),
                _ => {
                    errs.push("ORCA_AGENT_MAX_RETRIES", format!("must be a whole number from 0 to {MAX_RETRIES_LIMIT}"))
                }
            }
        }
        errs.into_result(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<AgentSettings, ValidationErrors> {
        let vars: Vec<(String, OsString)> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        AgentSettings::from_lookup(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn reads_and_checks_the_variables() {
        assert_eq!(parse(&[]).unwrap(), AgentSettings::default());
        let s = parse(&[
            ("ORCA_CLAUDE_BIN", "/opt/claude"),
            ("ORCA_CODEX_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("ORCA_AGENT_MAX_RETRIES", "2"),
            ("ORCA_CODEX_BIN", ""),
        ])
        .unwrap();
        assert_eq!(s.claude_bin, Some(PathBuf::from("/opt/claude")));
        assert_eq!(
            (s.codex_bin, s.codex_base_url.as_deref(), s.max_retries),
            (None, Some("http://127.0.0.1:9/v1"), Some(2))
        );
        let e = parse(&[("ORCA_CODEX_BASE_URL", "file:///x"), ("ORCA_AGENT_MAX_RETRIES", "many")]).unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["ORCA_CODEX_BASE_URL", "ORCA_AGENT_MAX_RETRIES"]);
    }
}
