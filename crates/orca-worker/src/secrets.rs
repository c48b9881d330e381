//! Secrets handed over on stdin instead of the environment (`ORCA_SECRETS=stdin`).
//!
//! The Docker scheduler starts the worker with `ORCA_SECRETS=stdin` and writes one line to its
//! stdin: a JSON object of environment variable names to values (`GIT_TOKEN`, the backend's
//! `ANTHROPIC_API_KEY`, …), then closes stdin. This keeps them out of `docker inspect`.
//! [`load`] reads that line (waiting at most [`WAIT`]) while the process is still
//! single-threaded, puts the values into the environment, and replaces stdin with /dev/null so
//! no child inherits the pipe. From there on the worker proceeds as if the variables had been
//! set by its parent: `GIT_TOKEN` is parsed and removed like before; agent keys reach the
//! agent CLIs through the environment.

use std::io::Read;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// How long the worker waits for the secrets line.
pub const WAIT: Duration = Duration::from_secs(30);
/// Largest secrets line accepted.
const MAX_BYTES: usize = 256 * 1024;

/// Loads the secrets when `ORCA_SECRETS=stdin`; returns how many variables were set.
///
/// Must run before any other thread exists (it changes the environment).
pub fn load() -> Result<usize, String> {
    match std::env::var("ORCA_SECRETS").as_deref() {
        Err(_) | Ok("") => return Ok(0),
        Ok("stdin") => {}
        Ok(other) => return Err(format!("ORCA_SECRETS must be `stdin`, got `{other}`")),
    }
    let line = read_line(WAIT)?;
    let vars = parse(&line)?;
    for (k, v) in &vars {
        // SAFETY: called from `main_entry` before the runtime or any thread is started.
        unsafe { std::env::set_var(k, v) };
    }
    // SAFETY: as above.
    unsafe { std::env::remove_var("ORCA_SECRETS") };
    detach_stdin();
    Ok(vars.len())
}

/// Parses the line: a JSON object of upper-case variable names to strings.
pub fn parse(line: &str) -> Result<Vec<(String, String)>, String> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).map_err(|_| "the secrets line is not JSON".to_owned())?;
    let obj = value.as_object().ok_or("the secrets line is not a JSON object")?;
    let mut vars = Vec::new();
    for (k, v) in obj {
        let ok_name = !k.is_empty()
            && k.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && !k.starts_with("LD_")
            && !["PATH", "HOME", "ORCA_SECRETS"].contains(&k.as_str());
        if !ok_name {
            return Err(format!("the secrets line names a variable that is not allowed: {k}"));
        }
        // Values are never shown, not even in errors.
        let v = v.as_str().filter(|v| !v.contains('\0')).ok_or_else(|| format!("the secret {k} is not a string"))?;
        vars.push((k.clone(), v.to_owned()));
    }
    Ok(vars)
}

/// Reads stdin up to the first newline (or EOF), giving up after `limit`.
fn read_line(limit: Duration) -> Result<String, String> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = Instant::now() + limit;
    let stdin = std::io::stdin();
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no secrets arrived on stdin within {}s", limit.as_secs()));
        }
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("cannot wait for stdin: {e}")),
        }
        let n = stdin.lock().read(&mut byte).map_err(|e| format!("cannot read stdin: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&byte[..n]);
        if buf.contains(&b'\n') || buf.len() > MAX_BYTES {
            break;
        }
    }
    if buf.len() > MAX_BYTES {
        return Err("the secrets line is too long".into());
    }
    let end = buf.iter().position(|b| *b == b'\n').unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).map_err(|_| "the secrets line is not UTF-8".to_owned())
}

/// Points fd 0 at /dev/null.
fn detach_stdin() {
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_refuses_dangerous_ones() {
        let v = parse(r#"{"GIT_TOKEN":"t","ANTHROPIC_API_KEY":"k"}"#).unwrap();
        assert_eq!(v.len(), 2);
        for bad in [r#"{"LD_PRELOAD":"x"}"#, r#"{"PATH":"x"}"#, r#"{"git_token":"x"}"#, r#"{"A":1}"#, "[]", "nope"] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains("\"x\""), "{e}");
        }
    }
}
