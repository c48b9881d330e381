//! `orca auth`: the Claude Code login that worker containers use (spec "Authentication").
//!
//! - `orca auth` runs `claude` interactively in a container of the worker image (through the
//!   docker CLI, which owns the terminal), with the `orca-claude-creds` volume as its config
//!   dir; log in there (`/login`, a browser URL) and quit. The session stays in the volume,
//!   which every worker mounts at `/home/orca/.claude`.
//! - `orca auth --status` reports whether the volume holds a login (never the tokens).
//! - `orca auth --logout` removes the volume.
//!
//! An `ANTHROPIC_API_KEY` set for the backend takes precedence: workers then get the key and
//! do not mount the volume.

use crate::AuthArgs;
use anyhow::{Context, bail};
use orca_server::scheduler::docker::creds;
use std::io::IsTerminal;
use std::process::Command;
use time::OffsetDateTime;

pub async fn run(args: &AuthArgs) -> anyhow::Result<u8> {
    if args.status {
        return status(args).await;
    }
    if args.logout {
        let docker = orca_server::scheduler::docker::connect().await?;
        return match creds::logout(&docker, &args.volume).await.map_err(anyhow::Error::msg)? {
            true => {
                println!("Logged out: removed the volume {}.", args.volume);
                Ok(crate::exit_code::OK)
            }
            false => {
                println!("Not logged in (no volume {}).", args.volume);
                Ok(crate::exit_code::OK)
            }
        };
    }
    login(args)
}

async fn status(args: &AuthArgs) -> anyhow::Result<u8> {
    let docker = orca_server::scheduler::docker::connect().await?;
    let s = creds::status(&docker, &args.volume, &args.image).await.map_err(anyhow::Error::msg)?;
    if std::env::var_os("ANTHROPIC_API_KEY").is_some_and(|v| !v.is_empty()) {
        eprintln!("Note: ANTHROPIC_API_KEY is set here; a backend started with it gives workers the key instead of this login.");
    }
    if !s.logged_in {
        let why = if s.volume_exists { "the volume holds no Claude Code login" } else { "no credentials volume yet" };
        println!("Not logged in ({why}: {}). Run `orca auth` to log in.", args.volume);
        return Ok(crate::exit_code::JOB_FAILED);
    }
    let mut details = Vec::new();
    if let Some(sub) = &s.subscription {
        details.push(format!("subscription {sub}"));
    }
    if let Some(email) = &s.account_email {
        details.push(format!("account {email}"));
    }
    if let Some(t) = s.expires_at_ms.and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()) {
        let when = t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let state = if t < OffsetDateTime::now_utc() { "expired; Claude Code refreshes it on the next run" } else { "valid" };
        details.push(format!("access token {state} until {when}"));
    }
    let details = if details.is_empty() { String::new() } else { format!(" ({})", details.join(", ")) };
    println!("Logged in{details}; volume {}.", args.volume);
    Ok(crate::exit_code::OK)
}

/// Runs `claude` interactively in a sandboxed container with the volume as its config dir.
fn login(args: &AuthArgs) -> anyhow::Result<u8> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        bail!("`orca auth` logs in interactively and needs a terminal; use `orca auth --status` in scripts");
    }
    let mut cmd = Command::new("docker");
    cmd.args(login_args(&args.volume, &args.image));
    eprintln!("Starting Claude Code in a container ({}). Log in with /login, then quit with /exit.", args.image);
    let status = cmd.status().context("cannot run the docker CLI (is Docker installed?)")?;
    match status.code() {
        Some(0) => {
            println!("Done. Check with `orca auth --status`.");
            Ok(crate::exit_code::OK)
        }
        Some(127) => bail!(
            "the image {} has no `claude` command; build it with the agents: docker build --build-arg INSTALL_AGENTS=npm -f docker/Dockerfile.worker …",
            args.image
        ),
        Some(125) => bail!("docker could not start the login container (is the image {} built? see the message above)", args.image),
        _ => bail!("the login container ended with {status}"),
    }
}

/// The `docker run` arguments of the login container: the worker's sandbox, the volume as
/// Claude Code's config dir, the default network (the login needs the internet).
pub fn login_args(volume: &str, image: &str) -> Vec<String> {
    let claude_dir = "/home/orca/.claude";
    [
        "run", "--rm", "-it", "--init", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
        "--user", "10001:10001", "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m",
        "--tmpfs", "/home/orca:rw,nosuid,nodev,size=256m,uid=10001,gid=10001",
        "--label", "orca.managed=auth",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "-v".into(),
        format!("{volume}:{claude_dir}"),
        "-e".into(),
        format!("CLAUDE_CONFIG_DIR={claude_dir}"),
        "--entrypoint".into(),
        "claude".into(),
        image.into(),
    ])
    .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_login_container_is_sandboxed_and_mounts_only_the_volume() {
        let a = super::login_args("orca-claude-creds", "orca-worker:latest");
        let s = a.join(" ");
        assert!(s.contains("--read-only") && s.contains("--cap-drop ALL") && s.contains("--user 10001:10001"), "{s}");
        assert!(s.contains("-v orca-claude-creds:/home/orca/.claude"), "{s}");
        assert_eq!(a.iter().filter(|x| *x == "-v").count(), 1, "no other mount: {s}");
        assert!(s.ends_with("--entrypoint claude orca-worker:latest"), "{s}");
    }
}
