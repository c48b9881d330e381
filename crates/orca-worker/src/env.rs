//! The worker's input contract: environment variables parsed into one [`Config`].
//!
//! | variable | |
//! |---|---|
//! | `JOB_ID` | required |
//! | `PROMPT` | required, not blank |
//! | `AGENT_TYPE` | `echo` (default), `claude-code`, `codex` |
//! | `WORK_DIR` | default `/workspace`; created if missing |
//! | `REPO_URL`, `BRANCH` | optional; cloned into `WORK_DIR/repo` |
//! | `GIT_TOKEN` | optional secret; never printed |
//! | `TIMEOUT_SECONDS` | default 1800 (1 to 86400) |
//! | `LOG_LEVEL` | `error`, `warn`, `info` (default), `debug`, `trace` |
//! | `ORCA_JOB_CONFIG` | optional JSON object of the job's non-secret config fields |
//!
//! An empty optional variable counts as unset. Every bad variable is reported, by name.

use crate::log::Level;
use orca_core::new_job::{
    DEFAULT_TIMEOUT_SECONDS, MAX_ECHO_DELAY_MS, MAX_ECHO_STEPS, TIMEOUT_RANGE, check_branch, check_repo_url,
};
use orca_core::{AgentType, JobConfig, Secret, ValidationErrors};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_WORK_DIR: &str = "/workspace";

/// Everything the worker was asked to do. `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct Config {
    pub job_id: String,
    pub prompt: String,
    pub agent_type: AgentType,
    pub work_dir: PathBuf,
    pub repo_url: Option<String>,
    pub git_token: Option<Secret>,
    pub branch: Option<String>,
    pub timeout_seconds: u32,
    pub log_level: Level,
    /// The job's options; its `git_token` is always `None` (the token comes from `GIT_TOKEN`).
    pub job: JobConfig,
}

impl Config {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.into())
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ValidationErrors> {
        Self::from_lookup(|k| std::env::var_os(k))
    }

    /// Parses the contract from any variable lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Result<Config, ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let mut var = |name: &'static str| -> Option<String> {
            match get(name)?.into_string() {
                Ok(s) if s.is_empty() => None,
                Ok(s) => Some(s),
                Err(_) => {
                    errs.push(name, "is not valid UTF-8");
                    None
                }
            }
        };
        let job_id = var("JOB_ID");
        let prompt = var("PROMPT");
        let agent = var("AGENT_TYPE");
        let work_dir = var("WORK_DIR").map_or_else(|| PathBuf::from(DEFAULT_WORK_DIR), PathBuf::from);
        let repo_url = var("REPO_URL");
        let git_token = var("GIT_TOKEN").map(Secret::new);
        let branch = var("BRANCH");
        let timeout = var("TIMEOUT_SECONDS");
        let level = var("LOG_LEVEL");
        let job_json = var("ORCA_JOB_CONFIG");

        match &job_id {
            None => errs.push("JOB_ID", "is required"),
            Some(id) if id.trim().is_empty() || id.chars().any(char::is_control) => {
                errs.push("JOB_ID", "must not be blank or contain control characters")
            }
            Some(_) => {}
        }
        match &prompt {
            None => errs.push("PROMPT", "is required"),
            Some(p) if p.trim().is_empty() => errs.push("PROMPT", "must not be blank"),
            Some(_) => {}
        }
        let agent_type = match agent {
            None => AgentType::default(),
            Some(a) => AgentType::parse(&a).unwrap_or_else(|m| {
                errs.push("AGENT_TYPE", m);
                AgentType::default()
            }),
        };
        if let Some(Err(m)) = repo_url.as_deref().map(check_repo_url) {
            // The message never repeats the URL, which may carry credentials.
            errs.push("REPO_URL", m);
        }
        if let Some(Err(m)) = branch.as_deref().map(check_branch) {
            errs.push("BRANCH", m);
        }
        let timeout_seconds = match timeout {
            None => DEFAULT_TIMEOUT_SECONDS,
            Some(t) => match t.trim().parse::<u32>() {
                Ok(n) if TIMEOUT_RANGE.contains(&n) => n,
                _ => {
                    let (lo, hi) = (TIMEOUT_RANGE.start(), TIMEOUT_RANGE.end());
                    errs.push(
                        "TIMEOUT_SECONDS",
                        format!("must be a whole number of seconds from {lo} to {hi}, got `{t}`"),
                    );
                    DEFAULT_TIMEOUT_SECONDS
                }
            },
        };
        let log_level = match level {
            None => Level::Info,
            Some(l) => Level::parse(&l).unwrap_or_else(|| {
                errs.push("LOG_LEVEL", format!("must be one of error, warn, info, debug, trace, got `{l}`"));
                Level::Info
            }),
        };
        let job = job_json.map(|j| parse_job_config(&j, &mut errs)).unwrap_or_default();
        // The agent options again (model, maxTurns, extraArgs allowlist, pushBranch needs a repo).
        orca_core::agent_options::check(&job, &agent_type, repo_url.is_some(), "ORCA_JOB_CONFIG.", &mut errs);

        match (job_id, prompt) {
            (Some(job_id), Some(prompt)) if errs.is_empty() => Ok(Config {
                job_id,
                prompt,
                agent_type,
                work_dir,
                repo_url,
                git_token,
                branch,
                timeout_seconds,
                log_level,
                job,
            }),
            _ => Err(errs),
        }
    }
}

/// Unknown fields are ignored, so an older worker accepts a newer backend's config.
fn parse_job_config(json: &str, errs: &mut ValidationErrors) -> JobConfig {
    const VAR: &str = "ORCA_JOB_CONFIG";
    let mut cfg = match serde_json::from_str::<serde_json::Value>(json) {
        Ok(v @ serde_json::Value::Object(_)) => match serde_json::from_value::<JobConfig>(v) {
            Ok(c) => c,
            Err(e) => {
                errs.push(VAR, format!("has a field of the wrong type: {e}"));
                return JobConfig::default();
            }
        },
        Ok(_) => {
            errs.push(VAR, "must be a JSON object");
            return JobConfig::default();
        }
        Err(e) => {
            errs.push(VAR, format!("is not valid JSON: {e}"));
            return JobConfig::default();
        }
    };
    cfg.git_token = None;
    if cfg.echo_steps.is_some_and(|n| n > MAX_ECHO_STEPS) {
        errs.push(format!("{VAR}.echoSteps"), format!("must be at most {MAX_ECHO_STEPS}"));
    }
    if cfg.echo_delay_ms.is_some_and(|n| n > MAX_ECHO_DELAY_MS) {
        errs.push(format!("{VAR}.echoDelayMs"), format!("must be at most {MAX_ECHO_DELAY_MS}"));
    }
    if cfg.echo_exit_code.is_some_and(|n| !(0..=255).contains(&n)) {
        errs.push(format!("{VAR}.echoExitCode"), "must be a whole number from 0 to 255");
    }
    if cfg.echo_alloc_mb.is_some_and(|n| u64::from(n) > orca_core::sandbox::MAX_ECHO_ALLOC_MB) {
        errs.push(format!("{VAR}.echoAllocMb"), format!("must be at most {}", orca_core::sandbox::MAX_ECHO_ALLOC_MB));
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ValidationErrors> {
        let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    fn bad_vars(vars: &[(&str, &str)]) -> Vec<String> {
        parse(vars).unwrap_err().0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn minimal_environment_gets_defaults() {
        let c = parse(&[("JOB_ID", "j1"), ("PROMPT", "hello world")]).unwrap();
        assert_eq!((c.job_id.as_str(), c.prompt.as_str(), c.agent_type.as_str()), ("j1", "hello world", "echo"));
        assert_eq!(c.work_dir, PathBuf::from("/workspace"));
        assert_eq!((c.timeout_seconds, c.log_level), (1800, Level::Info));
        assert_eq!((c.repo_url, c.branch, c.git_token), (None, None, None));
        assert_eq!(c.job, JobConfig::default());
    }

    #[test]
    fn missing_required_variables_are_named() {
        assert_eq!(bad_vars(&[("PROMPT", "p")]), ["JOB_ID"]);
        assert_eq!(bad_vars(&[("JOB_ID", "j")]), ["PROMPT"]);
        assert_eq!(bad_vars(&[("JOB_ID", ""), ("PROMPT", "  ")]), ["JOB_ID", "PROMPT"]);
        let msg = parse(&[("PROMPT", "p")]).unwrap_err().to_string();
        assert!(msg.contains("JOB_ID") && msg.contains("required"), "{msg}");
    }

    #[test]
    fn invalid_values_are_named() {
        let base = [("JOB_ID", "j"), ("PROMPT", "p")];
        let with = |extra: (&'static str, &'static str)| {
            let mut v = base.to_vec();
            v.push(extra);
            bad_vars(&v)
        };
        assert_eq!(with(("AGENT_TYPE", "gpt")), ["AGENT_TYPE"]);
        assert_eq!(with(("TIMEOUT_SECONDS", "0")), ["TIMEOUT_SECONDS"]);
        assert_eq!(with(("TIMEOUT_SECONDS", "soon")), ["TIMEOUT_SECONDS"]);
        assert_eq!(with(("LOG_LEVEL", "loud")), ["LOG_LEVEL"]);
        assert_eq!(with(("REPO_URL", "--upload-pack=evil")), ["REPO_URL"]);
        assert_eq!(with(("BRANCH", "-x")), ["BRANCH"]);
        assert_eq!(with(("ORCA_JOB_CONFIG", "{")), ["ORCA_JOB_CONFIG"]);
        assert_eq!(with(("ORCA_JOB_CONFIG", "[1]")), ["ORCA_JOB_CONFIG"]);
        assert_eq!(with(("ORCA_JOB_CONFIG", r#"{"echoSteps":"3"}"#)), ["ORCA_JOB_CONFIG"]);
        assert_eq!(with(("ORCA_JOB_CONFIG", r#"{"echoExitCode":300}"#)), ["ORCA_JOB_CONFIG.echoExitCode"]);
        assert_eq!(with(("ORCA_JOB_CONFIG", r#"{"echoSteps":10001}"#)), ["ORCA_JOB_CONFIG.echoSteps"]);
        assert_eq!(with(("ORCA_JOB_CONFIG", r#"{"extraArgs":["--x"]}"#)), ["ORCA_JOB_CONFIG.extraArgs"]);
        assert_eq!(with(("ORCA_JOB_CONFIG", r#"{"pushBranch":true}"#)), ["ORCA_JOB_CONFIG.pushBranch"]);
    }

    #[test]
    fn full_environment_parses() {
        let c = parse(&[
            ("JOB_ID", "j"),
            ("PROMPT", "p"),
            ("AGENT_TYPE", "codex"),
            ("WORK_DIR", "/tmp/w"),
            ("REPO_URL", "git://127.0.0.1:9418/repo.git"),
            ("BRANCH", "main"),
            ("GIT_TOKEN", "ghp_supersecret"),
            ("TIMEOUT_SECONDS", "60"),
            ("LOG_LEVEL", "DEBUG"),
            ("ORCA_JOB_CONFIG", r#"{"echoSteps":5,"echoDelayMs":200,"echoExitCode":3,"future":true}"#),
        ])
        .unwrap();
        assert_eq!(c.agent_type.as_str(), "codex");
        assert_eq!((c.timeout(), c.log_level), (Duration::from_secs(60), Level::Debug));
        assert_eq!((c.job.echo_steps, c.job.echo_delay_ms, c.job.echo_exit_code), (Some(5), Some(200), Some(3)));
        assert_eq!(c.git_token.as_ref().map(Secret::expose), Some("ghp_supersecret"));
        assert!(!format!("{c:?}").contains("supersecret"));
    }
}
