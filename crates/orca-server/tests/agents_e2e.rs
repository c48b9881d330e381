//! Real agents through Orca's API: a real server (port 0) starts real workers that run the real
//! Claude Code and Codex CLIs against fake model servers on 127.0.0.1, on a repository served
//! over token-protected HTTP. Asserted: the event sequence, the recorded diff
//! (`GET /api/v1/jobs/:id/diff`), cost and usage on the job, the pushed branch, and that the
//! git token and the API key appear nowhere (events, job JSON, list, diff, server log, any
//! process's argv, the agent's environment). Failure paths: model API 401 and 500, max turns,
//! a hung model hitting the timeout.
//!
//! Needs `ORCA_TEST_CLAUDE_BIN` / `ORCA_TEST_CODEX_BIN` (scripts/setup/30-agents.sh).

mod common;

use common::*;
use orca_testkit::git_http::{GitHttp, bare_repo, git};
use orca_testkit::procwatch::ProcWatch;
use orca_testkit::{anthropic, bins, responses};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const TOKEN: &str = "ghp_e2e_token_7c41d09b";
const API_KEY: &str = "sk-e2e-model-key-31aa7f";

/// Everything the server logs (debug, worker stderr included), for the leak checks.
fn server_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Default::default();
        let sink = buf.clone();
        let writer = move || LogWriter(sink.clone());
        let _ = tracing_subscriber::fmt().with_env_filter("debug").with_ansi(false).with_writer(writer).try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    server: TestServer,
    served: PathBuf,
    git: GitHttp,
}

/// A server whose workers reach `model_env`, and a token-protected repository `project.git`.
async fn setup(model_env: &[(&str, String)]) -> Setup {
    let log = server_log();
    assert!(log.lock().is_ok());
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    std::fs::create_dir(&served).unwrap();
    bare_repo(
        &served,
        "project.git",
        &[("README.md", "# project\n"), ("src/lib.rs", "pub fn answer() -> u32 { 41 }\n")],
    );
    let git = GitHttp::start(&served, TOKEN).await;
    let mut env: Vec<(&str, &str)> = vec![("LOG_LEVEL", "debug"), ("ORCA_AGENT_MAX_RETRIES", "1")];
    env.extend(model_env.iter().map(|(k, v)| (*k, v.as_str())));
    let server = TestServer::start(&tmp.path().join("data"), &env).await;
    Setup { _tmp: tmp, server, served, git }
}

fn claude_env(bin: &Path, model: &anthropic::FakeAnthropic) -> Vec<(&'static str, String)> {
    vec![
        ("ORCA_CLAUDE_BIN", bin.display().to_string()),
        ("ANTHROPIC_BASE_URL", model.url()),
        ("ANTHROPIC_API_KEY", API_KEY.into()),
    ]
}

fn codex_env(bin: &Path, model: &responses::FakeResponses) -> Vec<(&'static str, String)> {
    vec![
        ("ORCA_CODEX_BIN", bin.display().to_string()),
        ("ORCA_CODEX_BASE_URL", model.url()),
        ("OPENAI_API_KEY", API_KEY.into()),
    ]
}

/// Nothing the API or the log shows holds a secret.
async fn assert_no_leak(s: &TestServer, id: &str, events: &[Value]) {
    let (_, job) = s.get(&format!("/api/v1/jobs/{id}")).await;
    let (_, list) = s.get("/api/v1/jobs").await;
    let (_, diff) = s.get(&format!("/api/v1/jobs/{id}/diff")).await;
    let (_, history) = s.get(&format!("/api/v1/jobs/{id}/events")).await;
    let log = String::from_utf8_lossy(&server_log().lock().unwrap()).into_owned();
    assert!(log.contains(id), "the server log is captured");
    for secret in [TOKEN, API_KEY] {
        for (what, text) in [
            ("events", serde_json::to_string(events).unwrap()),
            ("history", history.to_string()),
            ("job", job.to_string()),
            ("list", list.to_string()),
            ("diff", diff.to_string()),
            ("server log", log.clone()),
        ] {
            assert!(!text.contains(secret), "a secret is in the {what}");
        }
    }
}

fn agent_kinds(events: &[Value]) -> Vec<String> {
    types(events).into_iter().filter(|t| !["status", "log"].contains(&t.as_str())).collect()
}

/// Submits, follows the stream to its end while watching the process table.
async fn run_job(s: &TestServer, body: Value, agent_bin: &Path) -> (String, Vec<Value>, Value) {
    let watch = ProcWatch::start(&[TOKEN, API_KEY], &[TOKEN], &[&agent_bin.display().to_string()]);
    let id = s.submit(body).await;
    let (events, close) = read_stream(&s.ws, &id, None, Duration::from_secs(120)).await;
    assert_eq!(close, Some(1000));
    let (found, scans, agent_seen) = watch.stop();
    assert!(found.is_empty(), "{found:?}");
    assert!(scans > 3 && agent_seen > 0, "the watch saw the agent run ({scans} scans, agent seen {agent_seen} times)");
    let job = s.job(&id).await;
    (id, events, job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_job_changes_the_repo_pushes_a_branch_and_reports_its_cost() {
    let Some(bin) = bins::claude("a_claude_code_job_changes_the_repo_pushes_a_branch_and_reports_its_cost") else {
        return;
    };
    let model = anthropic::FakeAnthropic::start(anthropic::Step::write_then_run(
        "hello.txt",
        "hello from claude\n",
        "echo ran > ran.txt",
    ))
    .await;
    let st = setup(&claude_env(&bin, &model)).await;
    let s = &st.server;
    let body = json!({"prompt": "Add hello.txt and run a command", "agentType": "claude-code", "repoUrl": st.git.url("project.git"),
        "config": {"gitToken": TOKEN, "pushBranch": true, "maxTurns": 8, "extraArgs": ["--effort", "low"]}});
    let (id, events, job) = run_job(s, body, &bin).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{events:#?}");
    assert_eq!(statuses(&events), ["queued", "scheduled", "running", "succeeded"]);
    assert_consecutive(&events, 1);
    assert_eq!(
        agent_kinds(&events),
        [
            "session",
            "text",
            "tool_call",
            "tool_result",
            "text",
            "tool_call",
            "tool_result",
            "text",
            "usage",
            "result",
            "changes",
            "pushed"
        ]
    );
    let tools: Vec<_> =
        events.iter().filter(|e| e["type"] == "tool_call").map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(tools, ["Write", "Bash"]);
    // Cost, usage, turns and session on the job, in the list too.
    assert!(job["usage"]["costUsd"].as_f64().is_some_and(|c| c > 0.0), "{job}");
    assert!(job["usage"]["inputTokens"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(job["numTurns"], 3);
    let session = events.iter().find(|e| e["type"] == "session").unwrap()["sessionId"].clone();
    assert_eq!(job["sessionId"], session);
    let (_, list) = s.get("/api/v1/jobs").await;
    assert_eq!(list["jobs"][0]["usage"], job["usage"]);
    // The diff.
    let (code, diff) = s.get(&format!("/api/v1/jobs/{id}/diff")).await;
    assert_eq!(code, 200, "{diff}");
    let files: Vec<_> = diff["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["status"].as_str().unwrap()))
        .collect();
    assert_eq!(files, [("hello.txt", "added"), ("ran.txt", "added")]);
    assert_eq!(diff["diffstat"], json!({"filesChanged": 2, "insertions": 2, "deletions": 0}));
    assert!(diff["patch"].as_str().unwrap().contains("+hello from claude"), "{diff}");
    assert_eq!(diff["truncated"], false);
    assert_eq!(job["changes"]["filesChanged"], 2);
    // The branch.
    let branch = format!("orca/{id}");
    assert_eq!(job["resultBranch"], branch);
    let commit = job["resultCommit"].as_str().unwrap();
    let remote = st.served.join("project.git");
    assert_eq!(git(&remote, &["rev-parse", &format!("refs/heads/{branch}")]).trim(), commit);
    assert_eq!(git(&remote, &["show", &format!("{commit}:hello.txt")]), "hello from claude\n");
    assert!(
        st.git.requests().iter().any(|r| r.authorized && r.path.contains("git-receive-pack")),
        "the push used the token"
    );
    // The model got the operator's key; nothing shows either secret.
    assert!(model.message_requests().iter().all(|r| r.header("x-api-key") == Some(API_KEY)));
    assert_no_leak(s, &id, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_job_pushes_to_the_branch_it_names() {
    let Some(bin) = bins::codex("a_codex_job_pushes_to_the_branch_it_names") else { return };
    let model = responses::FakeResponses::start(responses::Step::write_then_run(
        "hello.txt",
        "hello from codex\n",
        "echo ran > ran.txt",
    ))
    .await;
    let st = setup(&codex_env(&bin, &model)).await;
    let s = &st.server;
    let body = json!({"prompt": "Add hello.txt", "agentType": "codex", "repoUrl": st.git.url("project.git"), "branch": "feature",
        "config": {"gitToken": TOKEN, "pushBranch": "codex/result", "model": "gpt-5.5"}});
    let (id, events, job) = run_job(s, body, &bin).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{events:#?}");
    assert_eq!(
        agent_kinds(&events),
        [
            "session",
            "tool_call",
            "tool_result",
            "tool_call",
            "tool_result",
            "text",
            "usage",
            "result",
            "changes",
            "pushed"
        ]
    );
    assert_eq!(job["usage"]["inputTokens"], 3 * responses::INPUT_TOKENS);
    assert_eq!(job["usage"]["cacheReadTokens"], 3 * responses::CACHED_TOKENS);
    assert_eq!((job["numTurns"].as_u64(), job["resultBranch"].as_str()), (Some(1), Some("codex/result")));
    let remote = st.served.join("project.git");
    let commit = job["resultCommit"].as_str().unwrap();
    assert_eq!(git(&remote, &["rev-parse", "refs/heads/codex/result"]).trim(), commit);
    let feature = git(&remote, &["rev-parse", "refs/heads/feature"]);
    assert_eq!(
        git(&remote, &["rev-parse", &format!("{commit}^")]),
        feature,
        "the result builds on the branch it checked out"
    );
    let (_, diff) = s.get(&format!("/api/v1/jobs/{id}/diff")).await;
    assert_eq!(diff["files"].as_array().unwrap().len(), 2, "{diff}");
    assert_no_leak(s, &id, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_errors_max_turns_and_a_hung_model_end_the_job_with_a_reason() {
    let claude = bins::claude("model_errors_max_turns_and_a_hung_model_end_the_job_with_a_reason");
    let Some(bin) = claude else { return };
    for (script, config, timeout, want_status, want_reason) in [
        (
            vec![anthropic::Step::Status(401)],
            json!({}),
            60,
            "failed",
            "claude-code failed: api_error: Failed to authenticate. API Error: 401",
        ),
        (vec![anthropic::Step::Status(500)], json!({}), 60, "failed", "claude-code failed: api_error: API Error: 500"),
        (
            anthropic::Step::write_then_run("a.txt", "a\n", "true"),
            json!({"maxTurns": 1}),
            60,
            "failed",
            "claude-code failed: max_turns: Reached maximum number of turns (1)",
        ),
        (vec![anthropic::Step::Hang], json!({}), 4, "timed_out", "exceeded timeoutSeconds=4"),
    ] {
        let model = anthropic::FakeAnthropic::start(script).await;
        let st = setup(&claude_env(&bin, &model)).await;
        let s = &st.server;
        let mut config = config;
        config["gitToken"] = json!(TOKEN);
        let body = json!({"prompt": "p", "agentType": "claude-code", "repoUrl": st.git.url("project.git"), "timeoutSeconds": timeout, "config": config});
        let (id, events, job) = run_job(s, body, &bin).await;
        assert_eq!(job["status"], want_status, "{job}\n{events:#?}");
        let reason = job["failureReason"].as_str().unwrap();
        assert!(reason.starts_with(want_reason), "{reason}");
        assert_eq!(events.last().unwrap()["reason"], job["failureReason"]);
        if want_status == "timed_out" {
            assert!(
                events
                    .iter()
                    .any(|e| e["type"] == "warning" && e["message"].as_str().unwrap().starts_with("soft timeout"))
            );
            assert_eq!(job["exitCode"], 124);
        } else {
            assert_eq!(job["exitCode"], 1);
            assert!(events.iter().any(|e| e["type"] == "result" && e["success"] == false), "{events:#?}");
        }
        let (code, diff) = s.get(&format!("/api/v1/jobs/{id}/diff")).await;
        assert_eq!(code, 200, "the diff is recorded even when the agent failed: {diff}");
        assert_no_leak(s, &id, &events).await;
    }
}

#[tokio::test]
async fn a_clone_that_fails_authentication_says_so() {
    let st = setup(&[]).await;
    let s = &st.server;
    let id = s
        .submit(json!({"prompt": "p", "repoUrl": st.git.url("project.git"), "config": {"gitToken": "wrong-token"}}))
        .await;
    let job = s.wait_terminal(&id).await;
    assert_eq!(job["status"], "failed");
    let reason = job["failureReason"].as_str().unwrap();
    assert!(reason.starts_with("clone failed, authentication failed for http://127.0.0.1:"), "{reason}");
    assert!(reason.ends_with("(worker exited with status 3)"), "{reason}");
    let id = s.submit(json!({"prompt": "p", "repoUrl": st.git.url("project.git"), "branch": "nope", "config": {"gitToken": TOKEN}})).await;
    let job = s.wait_terminal(&id).await;
    assert!(job["failureReason"].as_str().unwrap().starts_with("clone failed, branch `nope` not found"), "{job}");
    let (code, body) = s.get(&format!("/api/v1/jobs/{id}/diff")).await;
    assert_eq!((code, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (_, events) = s.get(&format!("/api/v1/jobs/{id}/events")).await;
    assert_no_leak(s, &id, events["events"].as_array().unwrap()).await;
}

#[tokio::test]
async fn agent_options_are_validated_at_submit() {
    let st = setup(&[]).await;
    let s = &st.server;
    for (config, field) in [
        (json!({"extraArgs": ["--settings", "{}"]}), "config.extraArgs"),
        (json!({"maxTurns": 0}), "config.maxTurns"),
        (json!({"model": "x y"}), "config.model"),
        (json!({"pushBranch": true}), "config.pushBranch"),
    ] {
        let (code, body) =
            s.post("/api/v1/jobs", json!({"prompt": "p", "agentType": "claude-code", "config": config})).await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(body["error"]["fields"][0]["field"], field, "{body}");
    }
    let (code, body) = s.post("/api/v1/jobs", json!({"prompt": "p", "agentType": "codex", "config": {"extraArgs": ["-c", "model_reasoning_effort=low"], "maxTurns": 3}})).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["config"]["extraArgs"], json!(["-c", "model_reasoning_effort=low"]));
}
