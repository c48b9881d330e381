//! Checking out the job's repository: `git clone` into `WORK_DIR/repo`, with errors a person can
//! act on and no secret in any of them.
//!
//! Git never prompts (`GIT_TERMINAL_PROMPT=0`, stdin null), never sees `GIT_TOKEN` in its
//! environment, and its output goes to the worker's stderr, never to the event stream. Every
//! line of it is passed through [`redact`] first.

use crate::log;
use crate::proc::GroupChild;
use orca_core::Secret;
use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// How many of git's last stderr lines go into the error message.
const TAIL_LINES: usize = 4;
/// Longest line kept from git's stderr, in characters.
const MAX_LINE_CHARS: usize = 400;

/// What to clone where.
#[derive(Debug, Clone, Copy)]
pub struct CloneSpec<'a> {
    pub url: &'a str,
    pub branch: Option<&'a str>,
    pub dest: &'a Path,
    /// Not used to authenticate yet; only redacted from everything git prints.
    pub token: Option<&'a Secret>,
}

/// Why a clone failed, already redacted: safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CloneError(pub String);

/// Runs `git clone --quiet [--branch B] -- URL DEST` and waits for it.
///
/// Dropping the returned future kills git and its helpers (see [`GroupChild`]).
pub async fn clone(spec: CloneSpec<'_>) -> Result<(), CloneError> {
    let token = spec.token.map(Secret::expose);
    let mut cmd = Command::new("git");
    cmd.args(["clone", "--quiet"]);
    if let Some(branch) = spec.branch {
        cmd.arg("--branch").arg(branch);
    }
    cmd.arg("--")
        .arg(spec.url)
        .arg(spec.dest)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_TOKEN")
        .stdin(Stdio::null())
        .stdout(stderr_stdio())
        .stderr(Stdio::piped());
    let mut child = GroupChild::spawn(&mut cmd).map_err(|e| {
        CloneError(match e.kind() {
            std::io::ErrorKind::NotFound => "git is not installed in this worker (`git` not found on PATH)".into(),
            _ => format!("cannot run git: {e}"),
        })
    })?;
    let tail = match child.child_mut().stderr.take() {
        Some(err) => stderr_tail(err, token).await,
        None => Vec::new(),
    };
    let status = child.wait().await.map_err(|e| CloneError(format!("cannot wait for git: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let why = if tail.is_empty() { "no error output".to_owned() } else { tail.join(" | ") };
    Err(CloneError(format!("git clone failed ({}): {why}", describe(status))))
}

/// Logs each line of git's stderr (redacted) and returns the last few non-empty ones.
async fn stderr_tail(err: impl AsyncRead + Unpin, token: Option<&str>) -> Vec<String> {
    let mut reader = BufReader::new(err);
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line: String = redact(text.trim(), token).chars().take(MAX_LINE_CHARS).collect();
        if line.is_empty() {
            continue;
        }
        log::info(&format!("git: {line}"));
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail.into()
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// Git's stdout goes to our stderr: stdout is reserved for events.
fn stderr_stdio() -> Stdio {
    std::io::stderr().as_fd().try_clone_to_owned().map(Stdio::from).unwrap_or_else(|_| Stdio::null())
}

/// Removes the token and any `user:password@` from URLs in `text`.
pub fn redact(text: &str, token: Option<&str>) -> String {
    let text = match token {
        Some(t) if !t.is_empty() => text.replace(t, "[redacted]"),
        _ => text.to_owned(),
    };
    redact_userinfo(&text)
}

/// `https://user:pw@host/x` → `https://***@host/x`, for every URL in `text`.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let authority_end =
            rest.find(|c: char| c == '/' || c.is_whitespace() || "'\"`".contains(c)).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            out.push_str("***@");
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_tokens_and_url_credentials() {
        let t = Some("ghp_secret");
        assert_eq!(redact("fatal: auth ghp_secret failed", t), "fatal: auth [redacted] failed");
        assert_eq!(
            redact("fatal: unable to access 'https://x:pw@github.com/a/b.git/': 403", None),
            "fatal: unable to access 'https://***@github.com/a/b.git/': 403"
        );
        assert_eq!(
            redact_userinfo("git://127.0.0.1:9/r.git and ssh://git@h/x"),
            "git://127.0.0.1:9/r.git and ssh://***@h/x"
        );
        assert_eq!(redact("no urls here", Some("")), "no urls here");
        assert_eq!(redact_userinfo("trailing ://"), "trailing ://");
    }
}
