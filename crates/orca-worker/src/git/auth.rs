//! Giving git the job's token without showing it to anyone: `GIT_ASKPASS` is the worker
//! binary itself, started by git in "askpass mode".
//!
//! [`apply`] puts three variables into one git process's environment: `GIT_ASKPASS` (this
//! executable), [`ASKPASS_MODE_VAR`] and [`ASKPASS_TOKEN_VAR`]. When git needs credentials
//! for an http(s) remote it runs `orca-worker "Username for '…': "` then `"Password for …"`;
//! [`askpass_main`] answers the username ([`DEFAULT_USERNAME`], or the one in the URL) and the
//! token. So the token is never in argv, a URL, `.git/config` or a credential store, and only
//! git's own process tree sees it. Credentials written into `REPO_URL` itself
//! (`https://user:pw@host/…`) are moved out of the URL the same way ([`split_credentials`]).

use orca_core::Secret;
use std::io::Write;
use tokio::process::Command;

/// Set (to `1`) when git runs the worker as its askpass helper.
pub const ASKPASS_MODE_VAR: &str = "ORCA_GIT_ASKPASS";
/// The token, in the askpass helper's environment only.
pub const ASKPASS_TOKEN_VAR: &str = "ORCA_GIT_ASKPASS_TOKEN";
/// Every variable of the askpass protocol (removed from every other child's environment).
pub const ASKPASS_VARS: [&str; 4] = [ASKPASS_MODE_VAR, ASKPASS_TOKEN_VAR, "GIT_ASKPASS", "SSH_ASKPASS"];
/// The user name sent with a token (GitHub accepts it for app and personal tokens; most forges
/// ignore the name when the password is a token).
pub const DEFAULT_USERNAME: &str = "x-access-token";

/// Whether this process was started by git as its askpass helper.
pub fn is_askpass_invocation() -> bool {
    std::env::var_os(ASKPASS_MODE_VAR).is_some_and(|v| v == "1")
}

/// The askpass helper: prints the answer to git's prompt (`argv[1]`) and returns the exit code.
pub fn askpass_main() -> i32 {
    let prompt = std::env::args().nth(1).unwrap_or_default();
    let answer = match answer(&prompt, std::env::var(ASKPASS_TOKEN_VAR).ok()) {
        Some(a) => a,
        None => return 1,
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{answer}").and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn answer(prompt: &str, token: Option<String>) -> Option<String> {
    if prompt.trim_start().to_ascii_lowercase().starts_with("username") {
        Some(DEFAULT_USERNAME.to_owned())
    } else {
        token.filter(|t| !t.is_empty())
    }
}

/// Makes `cmd` (a git command) authenticate with `token` through askpass.
pub fn apply(cmd: &mut Command, token: &Secret) -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    cmd.env("GIT_ASKPASS", exe).env(ASKPASS_MODE_VAR, "1").env(ASKPASS_TOKEN_VAR, token.expose());
    Ok(())
}

/// Splits `https://user:secret@host/…` into the URL without the secret (`https://user@host/…`)
/// and the secret. Other URLs come back unchanged. `token`, when given, wins over the URL's.
pub fn split_credentials(url: &str, token: Option<&Secret>) -> (String, Option<Secret>) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_owned(), token.cloned());
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return (url.to_owned(), token.cloned());
    }
    let from_url = parsed
        .password()
        .map(|p| Secret::new(percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned()));
    if from_url.is_none() {
        return (url.to_owned(), token.cloned());
    }
    let _ = parsed.set_password(None);
    (parsed.to_string(), token.cloned().or(from_url))
}

/// Whether a token can be used with `url` at all (only http(s) remotes ask for one).
pub fn token_applies(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_username_then_token() {
        let t = Some("tok".to_owned());
        assert_eq!(answer("Username for 'https://h': ", t.clone()).as_deref(), Some(DEFAULT_USERNAME));
        assert_eq!(answer("Password for 'https://x-access-token@h': ", t).as_deref(), Some("tok"));
        assert_eq!(answer("Password for 'https://h': ", None), None);
    }

    #[test]
    fn credentials_move_out_of_the_url() {
        let (u, t) = split_credentials("https://bob:s%40c+ret@example.com/a/b.git", None);
        assert_eq!((u.as_str(), t.as_ref().map(Secret::expose)), ("https://bob@example.com/a/b.git", Some("s@c+ret")));
        let given = Secret::new("tok");
        let (u, t) = split_credentials("https://bob:pw@example.com/r", Some(&given));
        assert_eq!((u.as_str(), t.as_ref().map(Secret::expose)), ("https://bob@example.com/r", Some("tok")));
        let (u, t) = split_credentials("git@github.com:a/b.git", None);
        assert_eq!((u.as_str(), t), ("git@github.com:a/b.git", None));
        let (u, _) = split_credentials("https://example.com/r", None);
        assert_eq!(u, "https://example.com/r");
        assert!(token_applies("http://127.0.0.1:1/x") && !token_applies("ssh://git@h/x") && !token_applies("git@h:x"));
    }
}
