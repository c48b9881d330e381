//! `orca`: run the Orca stack and manage its jobs from a terminal.
//!
//! `orca dev` / `orca server` start the backend; `orca job …` talks to a running backend over
//! its HTTP API (docs/API.md) at `--api-url` (env `ORCA_API_URL`, default
//! `http://localhost:3000`). Data goes to stdout, messages and errors to stderr.
//!
//! # Exit codes
//! | code | meaning |
//! |---|---|
//! | 0 | ok |
//! | 1 | the followed job did not succeed (failed, cancelled or timed_out), or another failure |
//! | 2 | usage error (bad flags or arguments; clap's default) |
//! | 3 | the server is unreachable |
//! | 4 | the server answered with an error (4xx/5xx) |
//! | 5 | unexpected protocol error (an answer the CLI does not understand) |

mod auth;
mod client;
mod dev;
mod job;
mod k8s_dev;
mod render;
mod serve;
mod stream;

use clap::{Args, Parser, Subcommand};
use client::ClientError;
use orca_core::JobStatus;
use orca_core::agent::KNOWN_AGENTS;
use reqwest::Url;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// The process exit codes listed in the crate documentation.
pub(crate) mod exit_code {
    pub const OK: u8 = 0;
    pub const JOB_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
    pub const API: u8 = 4;
    pub const PROTOCOL: u8 = 5;
}

/// Runs AI coding agents in sandboxes: start the stack, submit jobs, follow their events.
#[derive(Debug, Parser)]
#[command(name = "orca", version, propagate_version = true)]
pub struct Cli {
    /// Base URL of the Orca API.
    #[arg(long, global = true, env = "ORCA_API_URL", default_value = "http://localhost:3000", value_parser = parse_api_url)]
    pub api_url: Url,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole stack locally (API, scheduler, workers) for development.
    Dev(DevArgs),
    /// Run the Orca backend (API server and scheduler).
    Server(ServerArgs),
    /// Apply the job store's schema migrations (PostgreSQL at DATABASE_URL) and exit.
    Migrate(MigrateArgs),
    /// Submit, inspect, follow, cancel, retry and list jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Log Claude Code in for the worker containers (keeps the session in a Docker volume).
    Auth(AuthArgs),
}

/// Options of `orca auth`.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Show whether the volume holds a login, without logging in (exit 1 when it does not).
    #[arg(long, conflicts_with = "logout")]
    pub status: bool,
    /// Remove the stored login (the volume).
    #[arg(long)]
    pub logout: bool,
    /// The Docker volume holding the login.
    #[arg(long, env = "ORCA_CLAUDE_CREDS_VOLUME", default_value = "orca-claude-creds")]
    pub volume: String,
    /// The worker image to run Claude Code from.
    #[arg(long, env = "WORKER_IMAGE", default_value = "orca-worker:latest")]
    pub image: String,
}

/// Options of `orca dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Directory for the local database and job workspaces (default: a per-user data directory).
    #[arg(long, env = "ORCA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Also start PostgreSQL and Redis from the compose file (images pulled from a registry)
    /// and use them; stopped again on exit.
    #[arg(long)]
    pub compose: bool,
    /// The compose file for --compose.
    #[arg(long, value_name = "FILE", default_value = "docker/docker-compose.yml", requires = "compose")]
    pub compose_file: PathBuf,
    /// Run on a local k3d cluster `orca-dev` instead: PostgreSQL and Redis in the cluster, each
    /// job a Kubernetes Job (needs Docker, k3d and kubectl); the cluster is deleted on exit.
    #[arg(long, conflicts_with = "compose")]
    pub k8s: bool,
}

/// Options of `orca migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Database connection string (postgresql://…; unset: the embedded SQLite store).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Options of `orca server`.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Database connection string.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job (and optionally follow it to the end).
    Submit(SubmitArgs),
    /// Show one job.
    Status(IdArgs),
    /// Print a job's events, following them live until the job ends.
    Logs(LogsArgs),
    /// Cancel a queued or running job.
    Cancel(IdArgs),
    /// Submit a finished job again as a new job.
    Retry(IdArgs),
    /// List jobs, newest first.
    List(ListArgs),
    /// Show what a job changed in its repository: the patch, or the files with --stat.
    Diff(DiffArgs),
}

/// Options of `orca job diff`.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The job's id.
    pub id: Uuid,
    /// Only the changed files and the totals.
    #[arg(long)]
    pub stat: bool,
    /// Print the recorded changes as JSON.
    #[arg(long, conflicts_with = "stat")]
    pub json: bool,
}

/// Options of `orca job submit`.
#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    /// What the agent should do.
    #[arg(long)]
    pub prompt: String,
    /// Git repository to clone into the sandbox.
    #[arg(long)]
    pub repo: Option<String>,
    /// Agent to run (server default: echo).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(KNOWN_AGENTS.iter().copied()))]
    pub agent: Option<String>,
    /// Hard timeout in seconds (server default: 1800).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u32>,
    /// URL to notify when the job ends.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Git branch to check out.
    #[arg(long)]
    pub branch: Option<String>,
    /// Agent option as KEY=VALUE (VALUE is JSON if it parses, else a string); repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config_pair)]
    pub config: Vec<(String, Value)>,
    /// Environment variable holding the git token [default: ORCA_GIT_TOKEN, if set].
    #[arg(long, value_name = "VAR")]
    pub git_token_env: Option<String>,
    /// Stream the job's events until it ends; exit 1 if it does not succeed.
    #[arg(long)]
    pub follow: bool,
    /// Print the job as JSON (with --follow: one JSON object per line).
    #[arg(long)]
    pub json: bool,
}

/// A job id and the output format.
#[derive(Debug, Clone, Args)]
pub struct IdArgs {
    /// The job's id.
    pub id: Uuid,
    /// Print the job as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `orca job logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The job's id.
    pub id: Uuid,
    /// Start after this event id (default: from the first event).
    #[arg(long, value_name = "N")]
    pub from_id: Option<u64>,
    /// Print each event as received, one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Options of `orca job list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only jobs in these statuses (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "S[,S]")]
    pub status: Vec<JobStatus>,
    /// Only jobs of this agent.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(KNOWN_AGENTS.iter().copied()))]
    pub agent: Option<String>,
    /// Only jobs of this repository (exact URL).
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,
    /// Only jobs created at or after this RFC 3339 time.
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub since: Option<OffsetDateTime>,
    /// Page size (1-500, server default 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: Option<u32>,
    /// Jobs to skip.
    #[arg(long, value_name = "N")]
    pub offset: Option<u64>,
    /// Print the page as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_api_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a URL ({e}); expected e.g. http://localhost:3000"))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(url),
        _ => Err("must be an http:// or https:// URL, e.g. http://localhost:3000".into()),
    }
}

fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|_| "must be an RFC 3339 time, e.g. 2026-12-04T10:00:00Z".into())
}

/// `KEY=VALUE`; VALUE is JSON when it parses as JSON, else the string itself.
fn parse_config_pair(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE, e.g. echoSteps=5")?;
    let k = k.trim();
    if k.is_empty() {
        return Err("the KEY of KEY=VALUE must not be empty".into());
    }
    if k == "gitToken" {
        return Err("do not put the git token on the command line; use --git-token-env VAR".into());
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), value))
}

/// An error in how the command was used, found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest and tokio-tungstenite use rustls without a default provider; Err means already set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit_code::JOB_FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(report(&e)),
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Dev(args) => serve::dev(args).await.map(|()| exit_code::OK),
        Command::Server(args) => serve::server(args).await.map(|()| exit_code::OK),
        Command::Migrate(args) => serve::migrate(args).await.map(|()| exit_code::OK),
        Command::Job(cmd) => job::run(&cli.api_url, cmd).await,
        Command::Auth(args) => auth::run(args).await,
    }
}

/// Prints an error to stderr (no backtrace) and chooses the exit code.
fn report(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
        return exit_code::OK; // stdout was closed early (e.g. `| head`): not an error
    }
    eprintln!("error: {e}");
    if let Some(ce) = e.downcast_ref::<ClientError>() {
        for line in ce.detail_lines() {
            eprintln!("  {line}");
        }
        return ce.exit_code();
    }
    if e.downcast_ref::<UsageError>().is_some() {
        return exit_code::USAGE;
    }
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    exit_code::JOB_FAILED
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("orca").chain(args.iter().copied()))
    }

    const ID: &str = "0193a000-0000-7000-8000-000000000001";

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn submit_parses_every_flag() {
        let cli = parse(&[
            "--api-url", "https://orca.example:8443/base", "job", "submit", "--prompt", "fix it", "--repo",
            "https://github.com/a/b", "--agent", "claude-code", "--timeout", "60", "--webhook", "http://h/x",
            "--branch", "dev", "--config", "echoSteps=5", "--config", "note=hello world", "--config",
            "flags={\"a\":true}", "--git-token-env", "MY_TOKEN", "--follow", "--json",
        ])
        .unwrap();
        assert_eq!(cli.api_url.as_str(), "https://orca.example:8443/base");
        let Command::Job(JobCommand::Submit(s)) = cli.command else { panic!("not submit") };
        assert_eq!(s.prompt, "fix it");
        assert_eq!(s.agent.as_deref(), Some("claude-code"));
        assert_eq!(s.timeout, Some(60));
        assert_eq!(
            s.config,
            vec![
                ("echoSteps".into(), json!(5)),
                ("note".into(), json!("hello world")),
                ("flags".into(), json!({"a": true}))
            ]
        );
        assert_eq!(s.git_token_env.as_deref(), Some("MY_TOKEN"));
        assert!(s.follow && s.json);
    }

    #[test]
    fn submit_requires_prompt_and_rejects_bad_values() {
        let kind = |args: &[&str]| parse(args).unwrap_err().kind();
        use clap::error::ErrorKind::*;
        assert_eq!(kind(&["job", "submit"]), MissingRequiredArgument);
        assert_eq!(kind(&["job", "submit", "--prompt", "p", "--agent", "gpt"]), InvalidValue);
        assert_eq!(kind(&["job", "submit", "--prompt", "p", "--config", "novalue"]), ValueValidation);
        assert_eq!(kind(&["job", "submit", "--prompt", "p", "--config", "gitToken=x"]), ValueValidation);
        assert!(parse(&["job", "submit", "--prompt", "p", "--timeout", "-1"]).is_err());
        assert_eq!(kind(&["--api-url", "ftp://x", "job", "list"]), ValueValidation);
        assert_eq!(kind(&["--api-url", "localhost:3000", "job", "list"]), ValueValidation);
    }

    #[test]
    fn config_values_are_json_or_strings() {
        assert_eq!(parse_config_pair("a=5").unwrap(), ("a".into(), json!(5)));
        assert_eq!(parse_config_pair("a=true").unwrap(), ("a".into(), json!(true)));
        assert_eq!(parse_config_pair("a=x=y").unwrap(), ("a".into(), json!("x=y")));
        assert_eq!(parse_config_pair("a=").unwrap(), ("a".into(), json!("")));
        assert!(parse_config_pair("=5").is_err());
    }

    #[test]
    fn id_commands_take_a_uuid() {
        for cmd in ["status", "cancel", "retry"] {
            let cli = parse(&["job", cmd, ID, "--json"]).unwrap();
            let Command::Job(JobCommand::Status(a) | JobCommand::Cancel(a) | JobCommand::Retry(a)) = cli.command else {
                panic!("{cmd}")
            };
            assert_eq!(a.id.to_string(), ID);
            assert!(a.json);
        }
        assert_eq!(parse(&["job", "status", "not-a-uuid"]).unwrap_err().kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn logs_and_list_flags() {
        let cli = parse(&["job", "logs", ID, "--from-id", "7", "--json"]).unwrap();
        let Command::Job(JobCommand::Logs(l)) = cli.command else { panic!() };
        assert_eq!((l.from_id, l.json), (Some(7), true));

        let cli = parse(&[
            "job", "list", "--status", "queued,running", "--status", "failed", "--agent", "echo", "--since",
            "2026-12-04T10:00:00Z", "--limit", "10", "--offset", "20",
        ])
        .unwrap();
        let Command::Job(JobCommand::List(l)) = cli.command else { panic!() };
        assert_eq!(l.status, vec![JobStatus::Queued, JobStatus::Running, JobStatus::Failed]);
        assert_eq!((l.limit, l.offset, l.agent.as_deref()), (Some(10), Some(20), Some("echo")));
        assert!(l.since.is_some());
        for bad in [["--status", "done"], ["--limit", "0"], ["--limit", "501"], ["--since", "yesterday"]] {
            assert!(parse(&["job", "list", bad[0], bad[1]]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn api_url_defaults_and_is_global() {
        // The default applies when ORCA_API_URL is unset; tests must not depend on the caller's env.
        if std::env::var_os("ORCA_API_URL").is_none() {
            assert_eq!(parse(&["job", "list"]).unwrap().api_url.as_str(), "http://localhost:3000/");
        }
        let cli = parse(&["job", "list", "--api-url", "http://10.0.0.1:9"]).unwrap();
        assert_eq!(cli.api_url.as_str(), "http://10.0.0.1:9/");
    }

    #[test]
    fn dev_and_server_parse() {
        let cli = parse(&["dev", "--port", "4000"]).unwrap();
        assert!(matches!(cli.command, Command::Dev(DevArgs { port: 4000, .. })));
        assert!(matches!(parse(&["server"]).unwrap().command, Command::Server(_)));
        let Command::Dev(d) = parse(&["dev", "--compose"]).unwrap().command else { panic!() };
        assert!(d.compose && d.compose_file.ends_with("docker/docker-compose.yml"));
    }

    #[test]
    fn auth_parses() {
        let Command::Auth(a) = parse(&["auth", "--status", "--volume", "v1", "--image", "img:1"]).unwrap().command else { panic!() };
        assert!(a.status && !a.logout);
        assert_eq!((a.volume.as_str(), a.image.as_str()), ("v1", "img:1"));
        assert!(parse(&["auth", "--status", "--logout"]).is_err());
    }
}
