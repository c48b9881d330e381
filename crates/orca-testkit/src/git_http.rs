//! Bare repositories over smart HTTP on 127.0.0.1, behind Basic auth: every request under
//! `/git/` must carry a password equal to the token, else 401 with a `WWW-Authenticate`
//! challenge (so git asks its credential helper, exactly as with a real forge). Authorized
//! requests go to `git http-backend` (CGI), which serves clone, fetch and push.
//!
//! Every request is recorded with the credentials it carried, so a test can prove the token
//! was used (and that nothing else was).

use crate::serve::{Served, serve};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

/// One request the server got.
#[derive(Debug, Clone)]
pub struct GitRequest {
    pub method: String,
    pub path: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub authorized: bool,
}

pub struct GitHttp {
    served: Served,
    log: Arc<Mutex<Vec<GitRequest>>>,
}

struct State {
    root: PathBuf,
    token: String,
    log: Arc<Mutex<Vec<GitRequest>>>,
}

impl GitHttp {
    /// Serves the bare repositories under `root` to whoever presents `token`.
    pub async fn start(root: &Path, token: &str) -> GitHttp {
        let log: Arc<Mutex<Vec<GitRequest>>> = Default::default();
        let state = Arc::new(State { root: root.to_owned(), token: token.to_owned(), log: log.clone() });
        let app = Router::new().fallback(move |m: Method, u: Uri, h: HeaderMap, b: Bytes| {
            let state = state.clone();
            async move { handle(&state, m, u, h, b).await }
        });
        GitHttp { served: serve(app).await, log }
    }

    /// The clone URL of `repo` (e.g. `project.git`).
    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/git/{repo}", self.served.addr)
    }

    pub fn requests(&self) -> Vec<GitRequest> {
        self.log.lock().unwrap().clone()
    }
}

async fn handle(state: &State, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let (user, password) = basic_auth(&headers);
    let authorized = password.as_deref() == Some(state.token.as_str());
    state.log.lock().unwrap().push(GitRequest {
        method: method.to_string(),
        path: uri.to_string(),
        user: user.clone(),
        password: password.clone(),
        authorized,
    });
    let Some(path_info) = uri.path().strip_prefix("/git") else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"orca-test\"")],
            "authentication required",
        )
            .into_response();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &state.root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", user.unwrap_or_else(|| "orca".into()))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot run git http-backend: {e}")).into_response();
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = match child.wait_with_output().await {
        Ok(o) => o,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("git http-backend failed: {e}")).into_response(),
    };
    let _ = writer.await;
    cgi_response(&out.stdout).unwrap_or_else(|| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (StatusCode::INTERNAL_SERVER_ERROR, format!("bad CGI output from git http-backend: {err}")).into_response()
    })
}

/// Turns CGI output (`Header: value` lines, a blank line, the body) into a response.
fn cgi_response(out: &[u8]) -> Option<Response> {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)))?;
    let head = String::from_utf8_lossy(&out[..split.0]).into_owned();
    let mut resp = Response::builder();
    let mut status = StatusCode::OK;
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(status);
        } else {
            resp = resp.header(k, v);
        }
    }
    resp.status(status).body(Body::from(out[split.1..].to_vec())).ok()
}

fn basic_auth(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return (None, None) };
    let Some(b64) = v.strip_prefix("Basic ") else { return (None, None) };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else { return (None, None) };
    let text = String::from_utf8_lossy(&raw).into_owned();
    match text.split_once(':') {
        Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
        None => (Some(text), None),
    }
}

/// Runs `git args…` in `dir` with a fixed identity and no user or system config; panics with
/// git's stderr when it fails. Returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Orca Test", "-c", "user.email=test@orca.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?} in {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates `root/<name>` (e.g. `project.git`), a bare repository whose `main` has `files`
/// (and a second branch `feature` with one more file).
pub fn bare_repo(root: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let src = root.join(format!("{name}.src"));
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q"]);
    for (path, content) in files {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "initial"]);
    git(&src, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(src.join("feature.txt"), "on a branch\n").unwrap();
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "feature"]);
    git(&src, &["checkout", "-q", "main"]);
    let bare = root.join(name);
    git(root, &["clone", "-q", "--bare", src.to_str().unwrap(), bare.to_str().unwrap()]);
    std::fs::remove_dir_all(&src).unwrap();
    bare
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgi_output() {
        let r = cgi_response(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope").unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(cgi_response(b"Content-Type: x\n\nbody").unwrap().status(), StatusCode::OK);
        assert!(cgi_response(b"no blank line").is_none());
    }

    #[test]
    fn reads_basic_auth() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic eC1hY2Nlc3MtdG9rZW46c2VjcmV0".parse().unwrap());
        assert_eq!(basic_auth(&h), (Some("x-access-token".into()), Some("secret".into())));
    }
}
