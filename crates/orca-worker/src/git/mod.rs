//! Git for the job: clone the repository before the agent ([`clone`]), record what the agent
//! changed ([`changes`]) and, when asked, commit and push it ([`push`]).
//!
//! Every git process runs with stdin null, `GIT_TERMINAL_PROMPT=0`, `LC_ALL=C` (so its
//! messages can be classified), without `GIT_TOKEN` in its environment, with its output on
//! the worker's stderr (never the event stream) and every line passed through [`redact`].
//!
//! **Invariant:** the job's token reaches git only through [`auth`]'s askpass: it is never in
//! an argument list, a URL, `.git/config`, a log line, an event or an error message, and never
//! in the agent's environment.

pub mod auth;
pub mod changes;
pub mod clone;
pub mod push;

pub use clone::{CloneError, CloneFailure, CloneSpec, clone};

use crate::log;
use crate::proc::GroupChild;
use orca_core::Secret;
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;

/// How many of git's last stderr lines go into an error message.
const TAIL_LINES: usize = 4;
/// Longest line kept from git's stderr, in characters.
const MAX_LINE_CHARS: usize = 400;

/// A failure to run git or a git command that failed; the message is already redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GitError(pub String);

/// How to run one git command.
#[derive(Debug, Clone, Copy, Default)]
pub struct GitRun<'a> {
    /// `git -C dir`.
    pub dir: Option<&'a Path>,
    /// Credentials for http(s) remotes, through askpass.
    pub token: Option<&'a Secret>,
    /// Ignore system and global config and hooks: for commands that must not run anything the
    /// agent could have planted (`~/.gitconfig`, `/etc/gitconfig`, `.git/hooks`).
    pub isolated: bool,
    /// Log git's stderr at info (else debug).
    pub loud: bool,
}

/// What a finished git command produced.
#[derive(Debug)]
pub struct GitOutput {
    pub status: ExitStatus,
    /// Stdout, at most the cap given to [`GitRun::run`].
    pub stdout: Vec<u8>,
    /// The full size of stdout.
    pub stdout_bytes: u64,
    /// The last few non-empty stderr lines, redacted.
    pub stderr: Vec<String>,
}

impl GitOutput {
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// `what failed (exit code 1): last stderr lines`.
    pub fn failure(&self, what: &str) -> GitError {
        let why = if self.stderr.is_empty() { "no error output".to_owned() } else { self.stderr.join(" | ") };
        GitError(format!("{what} failed ({}): {why}", describe(self.status)))
    }
}

impl GitRun<'_> {
    /// Runs `git <args>` to its end, keeping at most `stdout_cap` bytes of its stdout.
    ///
    /// Dropping the future kills git and its helpers (see [`GroupChild`]).
    pub async fn run<S: AsRef<OsStr>>(&self, args: &[S], stdout_cap: usize) -> Result<GitOutput, GitError> {
        let mut cmd = Command::new("git");
        if let Some(d) = self.dir {
            cmd.arg("-C").arg(d);
        }
        if self.isolated {
            cmd.args(["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"])
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null");
        }
        if self.token.is_some() {
            // No stored helper may read or save the credentials.
            cmd.args(["-c", "credential.helper="]);
        }
        cmd.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env("LANGUAGE", "C")
            .env_remove("GIT_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for v in auth::ASKPASS_VARS {
            cmd.env_remove(v);
        }
        if let Some(t) = self.token {
            auth::apply(&mut cmd, t).map_err(|e| GitError(format!("cannot set up git credentials: {e}")))?;
        }
        let mut child = GroupChild::spawn(&mut cmd).map_err(|e| {
            GitError(match e.kind() {
                std::io::ErrorKind::NotFound => "git is not installed in this worker (`git` not found on PATH)".into(),
                _ => format!("cannot run git: {e}"),
            })
        })?;
        let token = self.token.map(Secret::expose);
        let out = child.child_mut().stdout.take().expect("stdout is piped");
        let err = child.child_mut().stderr.take().expect("stderr is piped");
        let ((stdout, stdout_bytes), stderr) =
            tokio::join!(read_capped(out, stdout_cap), stderr_tail(err, token, self.loud));
        let status = child.wait().await.map_err(|e| GitError(format!("cannot wait for git: {e}")))?;
        Ok(GitOutput { status, stdout, stdout_bytes, stderr })
    }
}

/// Reads all of `r`, keeping the first `cap` bytes and counting the rest.
async fn read_capped(mut r: impl AsyncRead + Unpin, cap: usize) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    (kept, total)
}

/// Logs each line of git's stderr (redacted) and returns the last few non-empty ones.
async fn stderr_tail(err: impl AsyncRead + Unpin, token: Option<&str>, loud: bool) -> Vec<String> {
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
        if loud {
            log::info(&format!("git: {line}"))
        } else {
            log::debug(&format!("git: {line}"))
        }
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

    #[tokio::test]
    async fn stdout_is_capped_but_counted() {
        let data = vec![b'x'; 100_000];
        let (kept, total) = read_capped(&data[..], 10).await;
        assert_eq!((kept.len(), total), (10, 100_000));
    }
}
