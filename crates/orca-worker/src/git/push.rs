//! Committing the agent's work and pushing it to the job's branch.
//!
//! The commit is made in the agent's repository (hooks off, a fixed identity). The push is not:
//! the agent could have rewritten that repository's config (its remote, an `insteadOf` rule,
//! a pre-push hook) to send the token elsewhere. So the worker fetches the commit into a fresh
//! bare repository of its own and pushes from there, [isolated](super::GitRun::isolated), to
//! the job's URL as given (never the agent's `origin`), authenticated through askpass.

use super::{GitError, GitRun};
use orca_core::Secret;
use std::path::Path;

pub const AUTHOR_NAME: &str = "Orca";
pub const AUTHOR_EMAIL: &str = "orca@localhost";

/// What to push where.
#[derive(Debug, Clone, Copy)]
pub struct PushSpec<'a> {
    /// The agent's repository.
    pub repo: &'a Path,
    /// A directory the worker owns, for its own bare repository.
    pub scratch: &'a Path,
    /// The remote, free of credentials.
    pub url: &'a str,
    pub token: Option<&'a Secret>,
    pub branch: &'a str,
    /// The commit the job started from.
    pub base: Option<&'a str>,
    pub message: &'a str,
}

/// What was pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub branch: String,
    pub commit: String,
}

/// Commits whatever is staged or unstaged in `spec.repo` and pushes `HEAD` to `spec.branch`.
/// `Ok(None)` when there is nothing to push (no change and no new commit).
pub async fn commit_and_push(spec: PushSpec<'_>) -> Result<Option<Pushed>, GitError> {
    let repo = GitRun { dir: Some(spec.repo), isolated: true, ..GitRun::default() };
    let add = repo.run(&["add", "--all", "--", "."], 0).await?;
    if !add.ok() {
        return Err(add.failure("git add"));
    }
    let staged = repo.run(&["diff", "--cached", "--quiet", "--no-ext-diff"], 0).await?;
    if !staged.ok() {
        let identity = [format!("user.name={AUTHOR_NAME}"), format!("user.email={AUTHOR_EMAIL}")];
        let args = [
            "-c",
            identity[0].as_str(),
            "-c",
            identity[1].as_str(),
            "commit",
            "--quiet",
            "--no-verify",
            "--no-gpg-sign",
            "-m",
            spec.message,
        ];
        let commit = repo.run(&args, 0).await?;
        if !commit.ok() {
            return Err(commit.failure("git commit"));
        }
    }
    let head = repo.run(&["rev-parse", "--verify", "HEAD"], 200).await?;
    let head_sha = head.stdout_text().trim().to_owned();
    if !head.ok() || head_sha.is_empty() || Some(head_sha.as_str()) == spec.base {
        return Ok(None);
    }
    // A bare repository of the worker's own, holding only the result.
    let bare = spec.scratch.join("orca-push.git");
    let _ = tokio::fs::remove_dir_all(&bare).await;
    tokio::fs::create_dir_all(spec.scratch)
        .await
        .map_err(|e| GitError(format!("cannot create {}: {e}", spec.scratch.display())))?;
    let outside = GitRun { isolated: true, ..GitRun::default() };
    let init_args: [&std::ffi::OsStr; 4] = ["init".as_ref(), "--quiet".as_ref(), "--bare".as_ref(), bare.as_os_str()];
    let init = outside.run(&init_args, 0).await?;
    if !init.ok() {
        return Err(init.failure("git init"));
    }
    let git_dir = format!("--git-dir={}", bare.display());
    let from = spec.repo.display().to_string();
    let fetch = outside
        .run(
            &[
                git_dir.as_str(),
                "-c",
                "protocol.file.allow=always",
                "fetch",
                "--quiet",
                "--no-tags",
                "--update-shallow",
                from.as_str(),
                "+HEAD:refs/orca/result",
            ],
            0,
        )
        .await?;
    if !fetch.ok() {
        return Err(fetch.failure("fetching the result commit"));
    }
    let got = outside.run(&[git_dir.as_str(), "rev-parse", "--verify", "refs/orca/result"], 200).await?;
    if got.stdout_text().trim() != head_sha {
        return Err(GitError("the agent's repository changed while the result was being pushed".into()));
    }
    let dest = format!("refs/orca/result:refs/heads/{}", spec.branch);
    let push = GitRun { token: spec.token, isolated: true, loud: true, ..GitRun::default() };
    let pushed =
        push.run(&[git_dir.as_str(), "push", "--quiet", "--no-verify", "--", spec.url, dest.as_str()], 0).await?;
    let _ = tokio::fs::remove_dir_all(&bare).await;
    if !pushed.ok() {
        return Err(pushed.failure(&format!("git push to branch {}", spec.branch)));
    }
    Ok(Some(Pushed { branch: spec.branch.to_owned(), commit: head_sha }))
}

/// The commit message for a job: `orca: <first line of the prompt>`, then the job and agent.
pub fn message(job_id: &str, agent: &str, prompt: &str) -> String {
    let first = prompt.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("changes");
    let mut subject: String = first.chars().take(64).collect();
    if first.chars().count() > 64 {
        subject.push('…');
    }
    format!("orca: {subject}\n\nJob: {job_id}\nAgent: {agent}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_job() {
        assert_eq!(message("j1", "codex", "\n  fix the bug\nplease"), "orca: fix the bug\n\nJob: j1\nAgent: codex\n");
        let long = "x".repeat(100);
        assert!(message("j", "a", &long).starts_with(&format!("orca: {}…\n", "x".repeat(64))));
    }
}
