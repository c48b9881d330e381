//! The `orca job …` commands: each calls the API, prints data to stdout and messages to
//! stderr, and returns the process exit code.

use crate::client::{Client, ClientError, ListQuery};
use crate::stream::{self, FollowOptions, Followed};
use crate::{DiffArgs, IdArgs, JobCommand, ListArgs, LogsArgs, SubmitArgs, UsageError, exit_code, render};
use orca_core::JobStatus;
use reqwest::Url;
use serde::Serialize;
use serde_json::{Map, Value};
use std::io::{IsTerminal, Write};
use uuid::Uuid;

/// The environment variable read for the git token when `--git-token-env` is not given.
pub const DEFAULT_GIT_TOKEN_ENV: &str = "ORCA_GIT_TOKEN";

pub async fn run(api: &Url, cmd: &JobCommand) -> anyhow::Result<u8> {
    let client = Client::new(api.clone())?;
    match cmd {
        JobCommand::Submit(args) => submit(&client, args).await,
        JobCommand::Status(args) => status(&client, args).await,
        JobCommand::Logs(args) => logs(&client, args).await,
        JobCommand::Cancel(args) => cancel(&client, args).await,
        JobCommand::Retry(args) => retry(&client, args).await,
        JobCommand::List(args) => list(&client, args).await,
        JobCommand::Diff(args) => diff(&client, args).await,
    }
}

/// Colour on stdout only for a terminal, and never when `NO_COLOR` is set (no-color.org).
fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn print_json(value: &impl Serialize, pretty: bool) -> anyhow::Result<()> {
    let s = if pretty { serde_json::to_string_pretty(value)? } else { serde_json::to_string(value)? };
    Ok(print(&(s + "\n"))?)
}

/// The git token, read only from the environment so it never shows in argv or shell history.
fn git_token(args: &SubmitArgs, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, UsageError> {
    match &args.git_token_env {
        Some(var) => match env(var).filter(|t| !t.is_empty()) {
            Some(t) => Ok(Some(t)),
            None => Err(UsageError(format!("--git-token-env {var}: the environment variable {var} is not set or is empty"))),
        },
        None => Ok(env(DEFAULT_GIT_TOKEN_ENV).filter(|t| !t.is_empty())),
    }
}

/// The `POST /api/v1/jobs` body for the flags given.
fn submit_body(args: &SubmitArgs, git_token: Option<String>) -> Value {
    let mut body = Map::new();
    body.insert("prompt".into(), args.prompt.clone().into());
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    };
    put("repoUrl", args.repo.clone().map(Value::from));
    put("agentType", args.agent.clone().map(Value::from));
    put("timeoutSeconds", args.timeout.map(Value::from));
    put("webhookUrl", args.webhook.clone().map(Value::from));
    put("branch", args.branch.clone().map(Value::from));
    let mut config: Map<String, Value> = args.config.iter().cloned().collect();
    if let Some(t) = git_token {
        config.insert("gitToken".into(), t.into());
    }
    if !config.is_empty() {
        body.insert("config".into(), config.into());
    }
    Value::Object(body)
}

async fn submit(client: &Client, args: &SubmitArgs) -> anyhow::Result<u8> {
    let token = git_token(args, |k| std::env::var(k).ok())?;
    let job = client.submit(&submit_body(args, token)).await?;
    if args.json {
        print_json(&job, !args.follow)?; // one line when events follow, so stdout stays JSON lines
    } else {
        print(&format!("Submitted job {} ({})\n", job.id, job.status))?;
    }
    if !args.follow {
        return Ok(exit_code::OK);
    }
    follow(client, job.id.0, None, args.json).await?;
    let done = client.job(job.id.0).await?;
    match done.status {
        JobStatus::Succeeded => Ok(exit_code::OK),
        s if s.is_terminal() => {
            eprintln!("{}", render::outcome_message(&done));
            Ok(exit_code::JOB_FAILED)
        }
        s => Err(ClientError::Protocol(format!("the event stream ended but job {} is still {s}", done.id)).into()),
    }
}

/// Prints a job's events (rendered, or raw JSON lines) until its stream ends.
async fn follow(client: &Client, id: Uuid, from_id: Option<u64>, json: bool) -> anyhow::Result<Followed> {
    let color = stdout_color();
    let opts = FollowOptions { from_id, ..FollowOptions::default() };
    stream::follow(client.base(), id, &opts, |raw, value| {
        let line = match (json, raw.contains('\n')) {
            (true, false) => raw.to_owned(),
            (true, true) => value.to_string(), // keep one JSON object per line
            (false, _) => render::event_line(value, color),
        };
        print(&(line + "\n"))
    })
    .await
}

async fn status(client: &Client, args: &IdArgs) -> anyhow::Result<u8> {
    let job = client.job(args.id).await?;
    if args.json {
        print_json(&job, true)?;
    } else {
        print(&render::job_summary(&job, stdout_color()))?;
    }
    Ok(exit_code::OK)
}

async fn logs(client: &Client, args: &LogsArgs) -> anyhow::Result<u8> {
    follow(client, args.id, args.from_id, args.json).await?;
    Ok(exit_code::OK)
}

async fn cancel(client: &Client, args: &IdArgs) -> anyhow::Result<u8> {
    let job = client.cancel(args.id).await?;
    if args.json {
        print_json(&job, true)?;
    } else {
        print(&format!("Job {} is {}\n", job.id, job.status))?;
    }
    Ok(exit_code::OK)
}

async fn retry(client: &Client, args: &IdArgs) -> anyhow::Result<u8> {
    let job = client.retry(args.id).await?;
    if args.json {
        print_json(&job, true)?;
    } else {
        print(&format!("Submitted job {} ({}), a retry of {}\n", job.id, job.status, args.id))?;
    }
    Ok(exit_code::OK)
}

async fn list(client: &Client, args: &ListArgs) -> anyhow::Result<u8> {
    let query = ListQuery {
        status: args.status.clone(),
        agent_type: args.agent.clone(),
        repo_url: args.repo.clone(),
        since: args.since,
        limit: args.limit,
        offset: args.offset,
    };
    let page = client.list(&query).await?;
    if args.json {
        print_json(&page, true)?;
    } else {
        print(&render::job_table(&page, stdout_color()))?;
    }
    Ok(exit_code::OK)
}

/// `orca job diff`: the patch as recorded (pipe it to `git apply`), the file list, or JSON.
async fn diff(client: &Client, args: &DiffArgs) -> anyhow::Result<u8> {
    let changes = client.diff(args.id).await?;
    if args.json {
        print_json(&changes, true)?;
    } else if args.stat {
        print(&render::diff_stat(&changes, stdout_color()))?;
    } else {
        print(&changes.patch)?;
        if changes.files.is_empty() {
            eprintln!("job {} changed nothing", args.id);
        }
    }
    if changes.truncated {
        eprintln!("note: the recorded diff was cut at its size limit ({} bytes in all)", changes.patch_bytes);
    }
    Ok(exit_code::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    fn submit_args(extra: &[&str]) -> SubmitArgs {
        let argv = ["orca", "job", "submit", "--prompt", "p"].into_iter().chain(extra.iter().copied());
        match crate::Cli::try_parse_from(argv).unwrap().command {
            crate::Command::Job(JobCommand::Submit(a)) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn body_has_only_given_fields() {
        assert_eq!(submit_body(&submit_args(&[]), None), json!({"prompt": "p"}));
        let a = submit_args(&["--agent", "echo", "--timeout", "9", "--config", "echoSteps=5", "--repo", "https://h/r"]);
        assert_eq!(
            submit_body(&a, Some("tok".into())),
            json!({"prompt": "p", "agentType": "echo", "timeoutSeconds": 9, "repoUrl": "https://h/r",
                   "config": {"echoSteps": 5, "gitToken": "tok"}})
        );
    }

    #[test]
    fn git_token_comes_from_the_named_or_default_variable() {
        let env = |k: &str| match k {
            "ORCA_GIT_TOKEN" => Some("default".to_owned()),
            "MINE" => Some("mine".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(git_token(&submit_args(&[]), env).unwrap().as_deref(), Some("default"));
        assert_eq!(git_token(&submit_args(&["--git-token-env", "MINE"]), env).unwrap().as_deref(), Some("mine"));
        assert!(git_token(&submit_args(&["--git-token-env", "NOPE"]), env).is_err());
        assert!(git_token(&submit_args(&["--git-token-env", "EMPTY"]), env).is_err());
        assert_eq!(git_token(&submit_args(&[]), |_| None).unwrap(), None);
    }
}
