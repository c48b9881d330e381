//! `git clone` of the job's repository into `WORK_DIR/repo`: shallow (`--depth 1`, only the
//! branch asked for), authenticated through askpass, with a failure reason a person can act
//! on ([`CloneFailure`]) and no secret in it.

use super::{GitError, GitRun, auth, redact};
use orca_core::Secret;
use std::ffi::OsStr;
use std::fmt;
use std::path::Path;

/// What to clone where. `url` must already be free of credentials (see
/// [`auth::split_credentials`]); it is what `.git/config` will hold.
#[derive(Debug, Clone, Copy)]
pub struct CloneSpec<'a> {
    pub url: &'a str,
    pub branch: Option<&'a str>,
    pub dest: &'a Path,
    /// For http(s) remotes: answered through askpass, and redacted from everything git says.
    pub token: Option<&'a Secret>,
}

/// The kinds of clone failure worth telling apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneFailure {
    BadUrl,
    AuthenticationFailed,
    RepositoryNotFound,
    BranchNotFound,
    Unreachable,
    Other,
}

impl fmt::Display for CloneFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadUrl => "bad repository URL",
            Self::AuthenticationFailed => "authentication failed",
            Self::RepositoryNotFound => "repository not found",
            Self::BranchNotFound => "branch not found",
            Self::Unreachable => "repository unreachable",
            Self::Other => "git clone failed",
        })
    }
}

/// Why a clone failed, already redacted: safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CloneError {
    pub kind: CloneFailure,
    pub message: String,
}

/// The cloned repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloned {
    /// The commit checked out, or `None` for a repository without commits.
    pub head: Option<String>,
}

/// Clones `spec.url` into `spec.dest` and returns the commit checked out.
///
/// Dropping the returned future kills git and its helpers.
pub async fn clone(spec: CloneSpec<'_>) -> Result<Cloned, CloneError> {
    let token = spec.token.filter(|_| auth::token_applies(spec.url));
    let run = GitRun { token, loud: true, ..GitRun::default() };
    let os = OsStr::new;
    let mut args: Vec<&OsStr> = ["clone", "--quiet", "--depth", "1", "--no-tags"].map(os).to_vec();
    if let Some(b) = spec.branch {
        args.extend([os("--branch"), os(b)]);
    }
    args.extend([os("--"), os(spec.url), spec.dest.as_os_str()]);
    let out = run.run(&args, 0).await.map_err(|GitError(m)| CloneError { kind: CloneFailure::Other, message: m })?;
    if !out.ok() {
        let said = out.stderr.join(" | ");
        let kind = classify(&said);
        let shown = redact(spec.url, spec.token.map(Secret::expose));
        let what = match (kind, spec.branch) {
            (CloneFailure::BranchNotFound, Some(b)) => format!("branch `{b}` not found in {shown}"),
            (CloneFailure::AuthenticationFailed, _) if token.is_some() => {
                format!("authentication failed for {shown}: check that the job's gitToken can read it")
            }
            (CloneFailure::AuthenticationFailed, _) => {
                format!("authentication failed for {shown}: it needs credentials; set config.gitToken")
            }
            (kind, _) => format!("{kind}: {shown}"),
        };
        let why = if said.is_empty() { "no error output".into() } else { said };
        return Err(CloneError { kind, message: format!("clone failed, {what} (git: {why})") });
    }
    let head = GitRun { dir: Some(spec.dest), ..GitRun::default() }
        .run(&["rev-parse", "--verify", "--quiet", "HEAD"], 200)
        .await
        .ok()
        .filter(|o| o.ok())
        .map(|o| o.stdout_text().trim().to_owned())
        .filter(|h| !h.is_empty());
    Ok(Cloned { head })
}

/// Sorts git's (C-locale) error output into a [`CloneFailure`].
pub fn classify(stderr: &str) -> CloneFailure {
    let s = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    if any(&["remote branch", "couldn't find remote ref", "could not find remote branch"]) && s.contains("not found")
        || s.contains("couldn't find remote ref")
    {
        CloneFailure::BranchNotFound
    } else if any(&[
        "authentication failed",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "permission denied (publickey",
        "returned error: 401",
        "returned error: 403",
        "invalid username or password",
        "access denied",
        "invalid credentials",
    ]) {
        CloneFailure::AuthenticationFailed
    } else if any(&[
        "repository not found",
        "does not appear to be a git repository",
        "returned error: 404",
        "not found",
    ]) && !any(&["could not resolve"])
    {
        CloneFailure::RepositoryNotFound
    } else if any(&[
        "could not resolve",
        "connection refused",
        "failed to connect",
        "couldn't connect",
        "could not connect",
        "unable to connect",
        "timed out",
        "network is unreachable",
        "no route to host",
        "connection reset",
        "empty reply from server",
        "ssl",
        "tls",
        "certificate",
        "unable to access",
    ]) {
        CloneFailure::Unreachable
    } else if any(&[
        "unsupported protocol",
        "bad/illegal format",
        "malformed",
        "unable to find remote helper",
        "invalid url",
        "port number",
    ]) {
        CloneFailure::BadUrl
    } else {
        CloneFailure::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CloneFailure::*;

    #[test]
    fn git_messages_are_classified() {
        let cases = [
            (
                "warning: Could not find remote branch nope to clone. | fatal: Remote branch nope not found in upstream origin",
                BranchNotFound,
            ),
            (
                "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
                AuthenticationFailed,
            ),
            (
                "remote: Invalid username or password. | fatal: Authentication failed for 'https://h/r.git/'",
                AuthenticationFailed,
            ),
            ("fatal: unable to access 'https://h/r/': The requested URL returned error: 403", AuthenticationFailed),
            (
                "remote: Repository not found. | fatal: repository 'https://github.com/a/b.git/' not found",
                RepositoryNotFound,
            ),
            ("fatal: unable to access 'https://nope.invalid/r/': Could not resolve host: nope.invalid", Unreachable),
            (
                "fatal: unable to access 'http://127.0.0.1:1/r/': Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't connect to server",
                Unreachable,
            ),
            ("fatal: unable to connect to 127.0.0.1: | 127.0.0.1[0: 127.0.0.1]: errno=Connection refused", Unreachable),
            ("fatal: unable to find remote helper for 'htps'", BadUrl),
            ("something new", Other),
        ];
        for (text, want) in cases {
            assert_eq!(classify(text), want, "{text}");
        }
    }
}
