//! Parsing a job submission: JSON in, a valid [`NewJob`] or every field error out.
//!
//! Parse, don't validate: once a [`NewJob`] exists, its fields hold only valid values.

use crate::agent::AgentType;
use crate::job::{Job, JobConfig, JobId, Secret};
use crate::state::JobStatus;
use crate::validation::ValidationErrors;
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Largest prompt accepted, in bytes. The prompt reaches the worker through the `PROMPT`
/// environment variable, and Linux caps one environment string at 128 KiB (MAX_ARG_STRLEN).
pub const MAX_PROMPT_BYTES: usize = 100_000;
/// `timeoutSeconds` when the request names none (the spec's 30 minutes).
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 1800;
/// Shortest and longest `timeoutSeconds` accepted (1 s to 24 h).
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 1..=86_400;
pub const MAX_URL_BYTES: usize = 2048;
pub const MAX_BRANCH_BYTES: usize = 255;
pub const MAX_TOKEN_BYTES: usize = 4096;
pub const MAX_ECHO_STEPS: u32 = 10_000;
pub const MAX_ECHO_DELAY_MS: u64 = 60_000;

const FIELDS: &[&str] = &["repoUrl", "prompt", "agentType", "branch", "config", "timeoutSeconds", "webhookUrl"];
const CONFIG_FIELDS: &[&str] =
    &["gitToken", "echoSteps", "echoDelayMs", "echoExitCode", "model", "maxTurns", "extraArgs", "pushBranch"];

/// A valid job submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub repo_url: Option<String>,
    pub prompt: String,
    pub agent_type: AgentType,
    pub branch: Option<String>,
    pub config: JobConfig,
    pub timeout_seconds: u32,
    pub webhook_url: Option<String>,
}

impl NewJob {
    /// Parses the body of `POST /api/v1/jobs`, collecting every field error.
    pub fn parse(body: &Value) -> Result<NewJob, ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let Some(obj) = body.as_object() else {
            return Err(ValidationErrors::single("body", "must be a JSON object"));
        };
        reject_unknown(obj, FIELDS, "", &mut errs);
        let prompt = match obj.get("prompt") {
            None | Some(Value::Null) => {
                errs.push("prompt", "is required");
                None
            }
            Some(Value::String(p)) if p.trim().is_empty() => {
                errs.push("prompt", "must not be empty");
                None
            }
            Some(Value::String(p)) if p.len() > MAX_PROMPT_BYTES => {
                errs.push("prompt", format!("is {} bytes; the limit is {MAX_PROMPT_BYTES} bytes", p.len()));
                None
            }
            Some(Value::String(p)) if p.contains('\0') => {
                errs.push("prompt", "must not contain NUL characters");
                None
            }
            Some(Value::String(p)) => Some(p.clone()),
            Some(_) => {
                errs.push("prompt", "must be a string");
                None
            }
        };
        let repo_url = opt_string(obj, "repoUrl", &mut errs).and_then(|u| match check_repo_url(&u) {
            Ok(()) => Some(u),
            Err(m) => {
                errs.push("repoUrl", m);
                None
            }
        });
        let agent_type = match opt_string(obj, "agentType", &mut errs) {
            None => AgentType::default(),
            Some(a) => AgentType::parse(&a).unwrap_or_else(|m| {
                errs.push("agentType", m);
                AgentType::default()
            }),
        };
        let branch = opt_string(obj, "branch", &mut errs).and_then(|b| match check_branch(&b) {
            Ok(()) => Some(b),
            Err(m) => {
                errs.push("branch", m);
                None
            }
        });
        let timeout_seconds = match obj.get("timeoutSeconds") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT_SECONDS,
            Some(v) => match v.as_u64() {
                Some(n) if n >= *TIMEOUT_RANGE.start() as u64 && n <= *TIMEOUT_RANGE.end() as u64 => n as u32,
                _ => {
                    errs.push(
                        "timeoutSeconds",
                        format!("must be a whole number from {} to {}", TIMEOUT_RANGE.start(), TIMEOUT_RANGE.end()),
                    );
                    DEFAULT_TIMEOUT_SECONDS
                }
            },
        };
        let webhook_url = opt_string(obj, "webhookUrl", &mut errs).and_then(|u| match check_http_url(&u) {
            Ok(()) => Some(u),
            Err(m) => {
                errs.push("webhookUrl", m);
                None
            }
        });
        let config = parse_config(obj.get("config"), &mut errs);
        crate::agent_options::check(&config, &agent_type, repo_url.is_some(), "config.", &mut errs);
        match (errs.is_empty(), prompt) {
            (true, Some(prompt)) => {
                Ok(NewJob { repo_url, prompt, agent_type, branch, config, timeout_seconds, webhook_url })
            }
            _ => Err(errs),
        }
    }

    /// The queued job this submission becomes.
    pub fn into_job(self, now: OffsetDateTime) -> Job {
        Job {
            id: JobId::new_at(now),
            repo_url: self.repo_url,
            prompt: self.prompt,
            agent_type: self.agent_type,
            branch: self.branch,
            config: self.config,
            timeout_seconds: self.timeout_seconds,
            webhook_url: self.webhook_url,
            status: JobStatus::Queued,
            created_at: now,
            started_at: None,
            finished_at: None,
            exit_code: None,
            failure_reason: None,
            failure_class: None,
            retry_of: None,
            outcome: Default::default(),
        }
    }
}

fn reject_unknown(obj: &Map<String, Value>, known: &[&str], prefix: &str, errs: &mut ValidationErrors) {
    for k in obj.keys() {
        if !known.contains(&k.as_str()) {
            errs.push(format!("{prefix}{k}"), format!("is not a known field; known fields: {}", known.join(", ")));
        }
    }
}

fn opt_string(obj: &Map<String, Value>, field: &str, errs: &mut ValidationErrors) -> Option<String> {
    match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errs.push(field, "must be a string");
            None
        }
    }
}

fn parse_config(v: Option<&Value>, errs: &mut ValidationErrors) -> JobConfig {
    let mut cfg = JobConfig::default();
    let obj = match v {
        None | Some(Value::Null) => return cfg,
        Some(Value::Object(o)) => o,
        Some(_) => {
            errs.push("config", "must be a JSON object");
            return cfg;
        }
    };
    let known: Vec<&str> = CONFIG_FIELDS.iter().chain(crate::sandbox::FIELDS).copied().collect();
    reject_unknown(obj, &known, "config.", errs);
    match obj.get("gitToken") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t.is_empty() || t.len() > MAX_TOKEN_BYTES || t.chars().any(char::is_control) => {
            // Never echo the token itself back.
            errs.push("config.gitToken", format!("must be 1 to {MAX_TOKEN_BYTES} bytes with no control characters"));
        }
        Some(Value::String(t)) => cfg.git_token = Some(Secret::new(t.clone())),
        Some(_) => errs.push("config.gitToken", "must be a string"),
    }
    crate::agent_options::parse_into(obj, &mut cfg, errs);
    crate::sandbox::parse_into(obj, &mut cfg, errs);
    cfg.echo_steps = bounded_u64(obj, "echoSteps", 0, MAX_ECHO_STEPS as u64, errs).map(|n| n as u32);
    cfg.echo_delay_ms = bounded_u64(obj, "echoDelayMs", 0, MAX_ECHO_DELAY_MS, errs);
    match obj.get("echoExitCode") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_i64() {
            Some(n) if (0..=255).contains(&n) => cfg.echo_exit_code = Some(n as i32),
            _ => errs.push("config.echoExitCode", "must be a whole number from 0 to 255"),
        },
    }
    cfg
}

fn bounded_u64(obj: &Map<String, Value>, field: &str, min: u64, max: u64, errs: &mut ValidationErrors) -> Option<u64> {
    match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                errs.push(format!("config.{field}"), format!("must be a whole number from {min} to {max}"));
                None
            }
        },
    }
}

/// Accepts http(s), ssh and git URLs and scp-like `user@host:path`; refuses local paths and
/// `file://` (a job must not read the backend's own disk) and anything git could take as an option.
pub fn check_repo_url(u: &str) -> Result<(), String> {
    if u.is_empty() {
        return Err("must not be empty".into());
    }
    if u.len() > MAX_URL_BYTES {
        return Err(format!("must be at most {MAX_URL_BYTES} bytes"));
    }
    if u.starts_with('-') || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not start with '-' or contain whitespace or control characters".into());
    }
    const EXPECTED: &str = "must be an http(s)://, ssh://, git:// URL or user@host:path (local paths and file:// are not allowed)";
    if let Ok(url) = url::Url::parse(u) {
        return match url.scheme() {
            "http" | "https" | "ssh" | "git" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
            "http" | "https" | "ssh" | "git" => Err("must name a host".into()),
            _ => Err(EXPECTED.into()),
        };
    }
    // scp-like syntax: user@host:path (git treats it as ssh when the part before ':' has no '/').
    if let Some((user_host, path)) = u.split_once(':')
        && let Some((user, host)) = user_host.split_once('@')
        && !user.is_empty()
        && !host.is_empty()
        && !host.contains('/')
        && !path.is_empty()
    {
        return Ok(());
    }
    Err(EXPECTED.into())
}

/// A git branch name: no whitespace, no leading '-', no "..", none of git's forbidden characters.
pub fn check_branch(b: &str) -> Result<(), String> {
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c);
    if b.is_empty() || b.len() > MAX_BRANCH_BYTES {
        return Err(format!("must be 1 to {MAX_BRANCH_BYTES} bytes"));
    }
    if b.starts_with('-') || b.starts_with('/') || b.ends_with('/') || b.ends_with(".lock") || b.contains("..")
        || b.contains("@{") || b.chars().any(bad_char)
    {
        return Err("is not a valid git branch name".into());
    }
    Ok(())
}

/// An absolute http(s) URL with a host.
pub fn check_http_url(u: &str) -> Result<(), String> {
    if u.len() > MAX_URL_BYTES {
        return Err(format!("must be at most {MAX_URL_BYTES} bytes"));
    }
    match url::Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(()),
        _ => Err("must be an absolute http:// or https:// URL".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Vec<String> {
        NewJob::parse(&v).unwrap_err().0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn minimal_job_gets_defaults() {
        let j = NewJob::parse(&json!({"prompt": "hello"})).unwrap();
        assert_eq!((j.agent_type.as_str(), j.timeout_seconds, j.repo_url), ("echo", 1800, None));
    }

    #[test]
    fn every_bad_field_is_named() {
        assert_eq!(fields(json!({})), ["prompt"]);
        assert_eq!(fields(json!({"prompt": "  "})), ["prompt"]);
        assert_eq!(fields(json!({"prompt": 3})), ["prompt"]);
        assert_eq!(fields(json!({"prompt": "x".repeat(MAX_PROMPT_BYTES + 1)})), ["prompt"]);
        assert_eq!(fields(json!({"prompt": "p", "agentType": "gpt"})), ["agentType"]);
        assert_eq!(fields(json!({"prompt": "p", "timeoutSeconds": 0})), ["timeoutSeconds"]);
        assert_eq!(fields(json!({"prompt": "p", "timeoutSeconds": 86_401})), ["timeoutSeconds"]);
        assert_eq!(fields(json!({"prompt": "p", "timeoutSeconds": "10"})), ["timeoutSeconds"]);
        assert_eq!(fields(json!({"prompt": "p", "bogus": 1})), ["bogus"]);
        assert_eq!(fields(json!({"prompt": "p", "config": {"nope": 1}})), ["config.nope"]);
        assert_eq!(fields(json!({"prompt": "p", "webhookUrl": "ftp://x"})), ["webhookUrl"]);
        assert_eq!(fields(json!({"prompt": "p", "branch": "-rf"})), ["branch"]);
        assert_eq!(fields(json!({"agentType": "x", "repoUrl": "/etc"})), ["prompt", "repoUrl", "agentType"]);
        assert_eq!(NewJob::parse(&json!([1])).unwrap_err().0[0].field, "body");
    }

    #[test]
    fn repo_urls() {
        for ok in ["https://github.com/a/b", "http://127.0.0.1:9/x.git", "ssh://git@h/x", "git://h/x", "git@github.com:a/b.git"] {
            assert!(check_repo_url(ok).is_ok(), "{ok}");
        }
        for bad in ["file:///etc", "/etc/passwd", "./repo", "--upload-pack=evil", "https://", "ftp://h/x", "C:\\x", "h:x", "a b"] {
            assert!(check_repo_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn agent_options_are_parsed_and_checked_against_the_agent() {
        let j = NewJob::parse(&json!({"prompt": "p", "agentType": "claude-code", "repoUrl": "https://h/r",
            "config": {"model": "claude-x", "maxTurns": 3, "extraArgs": ["--effort", "high"], "pushBranch": true}}))
        .unwrap();
        assert_eq!((j.config.model.as_deref(), j.config.max_turns), (Some("claude-x"), Some(3)));
        assert_eq!(j.config.extra_args.as_deref(), Some(&["--effort".to_owned(), "high".to_owned()][..]));
        let v = serde_json::to_value(&j.config).unwrap();
        assert_eq!(v, json!({"model": "claude-x", "maxTurns": 3, "extraArgs": ["--effort", "high"], "pushBranch": true}));
        let bad = |config: Value| fields(json!({"prompt": "p", "agentType": "codex", "config": config}));
        assert_eq!(bad(json!({"extraArgs": ["--settings", "x"]})), ["config.extraArgs"]);
        assert_eq!(bad(json!({"extraArgs": "--sandbox"})), ["config.extraArgs"]);
        assert_eq!(bad(json!({"maxTurns": 0})), ["config.maxTurns"]);
        assert_eq!(bad(json!({"maxTurns": 1001})), ["config.maxTurns"]);
        assert_eq!(bad(json!({"model": "a b"})), ["config.model"]);
        assert_eq!(bad(json!({"pushBranch": "bad..name"})), ["config.pushBranch"]);
        assert_eq!(bad(json!({"pushBranch": true})), ["config.pushBranch"], "no repository to push to");
        assert_eq!(bad(json!({"pushBranch": 1})), ["config.pushBranch"]);
        assert!(NewJob::parse(&json!({"prompt": "p", "config": {"pushBranch": false}})).is_ok());
        let e = NewJob::parse(&json!({"prompt": "p", "agentType": "echo", "config": {"extraArgs": ["--x"]}})).unwrap_err();
        assert!(e.to_string().contains("config.extraArgs: agent echo takes no extra arguments"), "{e}");
    }

    #[test]
    fn bad_token_error_does_not_echo_the_token() {
        let e = NewJob::parse(&json!({"prompt": "p", "config": {"gitToken": "sec\nret"}})).unwrap_err();
        assert!(!e.to_string().contains("sec"), "{e}");
    }
}
