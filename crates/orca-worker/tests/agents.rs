//! The worker running the real Claude Code and Codex CLIs against fake model servers on
//! 127.0.0.1, on a repository served over token-protected HTTP: the agent writes a file and
//! runs a command, the worker records the diff and pushes a branch. Plus the failure paths
//! (model API 401 and 500, max turns, a hung model and the soft timeout).
//!
//! Needs `ORCA_TEST_CLAUDE_BIN` / `ORCA_TEST_CODEX_BIN` (scripts/setup/30-agents.sh); without
//! them each test says SKIPPED (and fails under CI=true).

use orca_core::AgentEvent;
use orca_core::changes::FileStatus;
use orca_testkit::git_http::{GitHttp, bare_repo, git};
use orca_testkit::{anthropic, bins, responses};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const TOKEN: &str = "ghp_orca_test_token_5f1c2a";
const API_KEY: &str = "sk-ant-orca-test-key-9d3e";
const LIMIT: Duration = Duration::from_secs(90);

struct Run {
    code: i32,
    events: Vec<AgentEvent>,
    stdout: String,
    stderr: String,
    work: PathBuf,
}

impl Run {
    fn kinds(&self) -> Vec<&'static str> {
        self.events.iter().map(AgentEvent::kind).collect()
    }

    fn error(&self) -> Option<&str> {
        self.events
            .iter()
            .rev()
            .find_map(|e| if let AgentEvent::Error { message } = e { Some(message.as_str()) } else { None })
    }

    fn assert_no_secret(&self) {
        for secret in [TOKEN, API_KEY] {
            assert!(!self.stdout.contains(secret), "a secret is in the events");
            assert!(!self.stderr.contains(secret), "a secret is in the worker's log");
        }
    }
}

/// Runs the worker with `vars` in a fresh work dir (HOME is the work dir too).
async fn run_worker(home: &Path, vars: &[(&str, String)]) -> Run {
    let work = home.join("work");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_orca-worker"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("WORK_DIR", &work)
        .env("LOG_LEVEL", "debug")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("start orca-worker");
    let out =
        tokio::time::timeout(LIMIT, child.wait_with_output()).await.expect("the worker finishes in time").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not an event ({e}): {l}\nstderr:\n{stderr}")))
        .collect();
    Run { code: out.status.code().expect("exited"), events, stdout, stderr, work }
}

fn base_vars(agent: &str, prompt: &str) -> Vec<(&'static str, String)> {
    vec![
        ("JOB_ID", "job-1".into()),
        ("AGENT_TYPE", agent.into()),
        ("PROMPT", prompt.into()),
        ("ORCA_AGENT_MAX_RETRIES", "1".into()),
    ]
}

fn claude_vars(bin: &Path, model: &anthropic::FakeAnthropic) -> Vec<(&'static str, String)> {
    let mut v = base_vars("claude-code", "Create hello.txt, then run a command.");
    v.extend([
        ("ORCA_CLAUDE_BIN", bin.display().to_string()),
        ("ANTHROPIC_BASE_URL", model.url()),
        ("ANTHROPIC_API_KEY", API_KEY.into()),
    ]);
    v
}

fn codex_vars(bin: &Path, model: &responses::FakeResponses) -> Vec<(&'static str, String)> {
    let mut v = base_vars("codex", "Create hello.txt, then run a command.");
    v.extend([
        ("ORCA_CODEX_BIN", bin.display().to_string()),
        ("ORCA_CODEX_BASE_URL", model.url()),
        ("OPENAI_API_KEY", API_KEY.into()),
    ]);
    v
}

/// A token-protected repository `project.git` with a README.
async fn repo(root: &Path) -> GitHttp {
    bare_repo(root, "project.git", &[("README.md", "# project\n")]);
    GitHttp::start(root, TOKEN).await
}

/// Checks the recorded changes, the pushed branch and that the token left no trace.
fn assert_pushed_result(run: &Run, served: &Path, server: &GitHttp, file: &str, content: &str) {
    let changes = run
        .events
        .iter()
        .find_map(|e| if let AgentEvent::Changes(c) = e { Some(c) } else { None })
        .expect("a changes event");
    let paths: Vec<_> = changes.files.iter().map(|f| (f.path.as_str(), f.status)).collect();
    assert!(paths.contains(&(file, FileStatus::Added)), "{paths:?}");
    assert!(paths.contains(&("ran.txt", FileStatus::Added)), "the command ran: {paths:?}");
    assert!(
        changes.patch.contains(&format!("+++ b/{file}")) && changes.patch.contains(content.trim()),
        "{}",
        changes.patch
    );
    assert!(!changes.truncated && changes.diffstat.files_changed == 2 && changes.diffstat.insertions == 2);
    let Some(AgentEvent::Pushed { branch, commit }) = run.events.iter().find(|e| e.kind() == "pushed") else {
        panic!("no pushed event: {}", run.stdout)
    };
    assert_eq!(branch, "orca/job-1");
    let remote = served.join("project.git");
    assert_eq!(git(&remote, &["rev-parse", "refs/heads/orca/job-1"]).trim(), commit);
    assert_eq!(git(&remote, &["show", &format!("{commit}:{file}")]), content);
    let msg = git(&remote, &["log", "-1", "--format=%an <%ae>%n%s", commit]);
    assert!(msg.starts_with("Orca <orca@localhost>\norca: Create hello.txt"), "{msg}");
    // The token worked (git used it, after the server's challenge) and went nowhere else.
    let reqs = server.requests();
    assert!(reqs.iter().any(|r| r.authorized && r.path.contains("git-receive-pack")), "{reqs:?}");
    assert!(reqs.iter().filter(|r| r.password.is_some()).all(|r| r.authorized), "only the job's token was ever sent");
    run.assert_no_secret();
    let config = std::fs::read_to_string(run.work.join("repo/.git/config")).unwrap();
    assert!(!config.contains(TOKEN), "{config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_writes_runs_records_and_pushes() {
    let Some(bin) = bins::claude("claude_code_writes_runs_records_and_pushes") else { return };
    let model = anthropic::FakeAnthropic::start(anthropic::Step::write_then_run(
        "hello.txt",
        "hello from claude\n",
        "echo ran > ran.txt && ls",
    ))
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    std::fs::create_dir(&served).unwrap();
    let server = repo(&served).await;
    let mut vars = claude_vars(&bin, &model);
    vars.extend([
        ("REPO_URL", server.url("project.git")),
        ("GIT_TOKEN", TOKEN.into()),
        ("ORCA_JOB_CONFIG", r#"{"pushBranch":true,"maxTurns":10,"model":"claude-opus-5-5"}"#.into()),
    ]);
    let run = run_worker(tmp.path(), &vars).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let kinds = run.kinds();
    let want = [
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
    ];
    let agent: Vec<_> = kinds.iter().copied().filter(|k| *k != "log").take(want.len()).collect();
    assert_eq!(agent, want, "{}", run.stdout);
    assert_eq!(kinds.last(), Some(&"pushed"));
    let calls: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| if let AgentEvent::ToolCall { name, .. } = e { Some(name.as_str()) } else { None })
        .collect();
    assert_eq!(calls, ["Write", "Bash"]);
    let Some(AgentEvent::Result { success: true, num_turns: Some(3), usage: Some(u), session_id: Some(_), .. }) =
        run.events.iter().find(|e| e.kind() == "result")
    else {
        panic!("no successful result: {}", run.stdout)
    };
    assert!(u.cost_usd.is_some_and(|c| c > 0.0) && u.input_tokens > 0, "{u:?}");
    assert_pushed_result(&run, &served, &server, "hello.txt", "hello from claude\n");
    // The model saw the key, and the CLI ran with what the job asked.
    let reqs = model.message_requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.header("x-api-key") == Some(API_KEY)));
    assert_eq!(reqs[0].body["model"], "claude-opus-5-5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_writes_runs_records_and_pushes() {
    let Some(bin) = bins::codex("codex_writes_runs_records_and_pushes") else { return };
    let model = responses::FakeResponses::start(responses::Step::write_then_run(
        "hello.txt",
        "hello from codex\n",
        "echo ran > ran.txt && ls",
    ))
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    std::fs::create_dir(&served).unwrap();
    let server = repo(&served).await;
    let mut vars = codex_vars(&bin, &model);
    vars.extend([
        ("REPO_URL", server.url("project.git")),
        ("GIT_TOKEN", TOKEN.into()),
        ("ORCA_JOB_CONFIG", r#"{"pushBranch":true,"model":"gpt-5.5"}"#.into()),
    ]);
    let run = run_worker(tmp.path(), &vars).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let kinds: Vec<_> = run.kinds().into_iter().filter(|k| *k != "log").collect();
    assert_eq!(
        kinds,
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
        ],
        "{}",
        run.stdout
    );
    let calls: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| if let AgentEvent::ToolCall { name, .. } = e { Some(name.as_str()) } else { None })
        .collect();
    assert_eq!(calls, ["apply_patch", "shell"]);
    let Some(AgentEvent::Usage(u)) = run.events.iter().find(|e| e.kind() == "usage") else { unreachable!() };
    assert_eq!(
        (u.input_tokens, u.output_tokens, u.cache_read_tokens),
        (3 * responses::INPUT_TOKENS, 3 * responses::OUTPUT_TOKENS, Some(3 * responses::CACHED_TOKENS))
    );
    assert_pushed_result(&run, &served, &server, "hello.txt", "hello from codex\n");
    let reqs = model.model_requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.header("authorization") == Some(&format!("Bearer {API_KEY}")[..])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_api_errors_fail_the_job_with_the_reason() {
    let claude = bins::claude("model_api_errors_fail_the_job_with_the_reason");
    let codex = bins::codex("model_api_errors_fail_the_job_with_the_reason");
    for status in [401, 500] {
        if let Some(bin) = &claude {
            let model = anthropic::FakeAnthropic::start(vec![anthropic::Step::Status(status)]).await;
            let tmp = tempfile::tempdir().unwrap();
            let run = run_worker(tmp.path(), &claude_vars(bin, &model)).await;
            assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
            let err = run.error().unwrap();
            assert!(err.starts_with("claude-code failed: api_error:") && err.contains(&status.to_string()), "{err}");
            assert!(
                run.events
                    .iter()
                    .any(|e| matches!(e, AgentEvent::Warning { message } if message.contains("model API error"))),
                "a retry is reported"
            );
            assert!(run.events.iter().any(|e| matches!(e, AgentEvent::Result { success: false, .. })));
            assert!(!run.kinds().contains(&"changes"), "no repository, no diff");
            run.assert_no_secret();
        }
        if let Some(bin) = &codex {
            let model = responses::FakeResponses::start(vec![responses::Step::Status(status)]).await;
            let tmp = tempfile::tempdir().unwrap();
            let run = run_worker(tmp.path(), &codex_vars(bin, &model)).await;
            assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
            let err = run.error().unwrap();
            assert!(err.starts_with("codex failed: "), "{err}");
            if status == 401 {
                assert!(err.contains("401 Unauthorized"), "{err}");
            }
            assert!(
                run.events
                    .iter()
                    .any(|e| matches!(e, AgentEvent::Warning { message } if message.starts_with("Reconnecting")))
            );
            run.assert_no_secret();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_max_turns_fails_and_still_records_the_diff() {
    let Some(bin) = bins::claude("claude_code_max_turns_fails_and_still_records_the_diff") else { return };
    let model =
        anthropic::FakeAnthropic::start(anthropic::Step::write_then_run("hello.txt", "hi\n", "echo ran > ran.txt"))
            .await;
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    std::fs::create_dir(&served).unwrap();
    let server = repo(&served).await;
    let mut vars = claude_vars(&bin, &model);
    vars.extend([
        ("REPO_URL", server.url("project.git")),
        ("GIT_TOKEN", TOKEN.into()),
        ("ORCA_JOB_CONFIG", r#"{"maxTurns":1,"pushBranch":true}"#.into()),
    ]);
    let run = run_worker(tmp.path(), &vars).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.error(), Some("claude-code failed: max_turns: Reached maximum number of turns (1)"));
    let Some(AgentEvent::Changes(c)) = run.events.iter().find(|e| e.kind() == "changes") else {
        panic!("{}", run.stdout)
    };
    assert_eq!(
        c.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        ["hello.txt"],
        "the first turn's write is recorded"
    );
    assert!(!run.kinds().contains(&"pushed"), "a failed job pushes nothing");
    run.assert_no_secret();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_model_meets_the_soft_timeout_then_the_job_times_out() {
    let claude = bins::claude("a_hung_model_meets_the_soft_timeout_then_the_job_times_out");
    let codex = bins::codex("a_hung_model_meets_the_soft_timeout_then_the_job_times_out");
    let (fa, fr) = (
        anthropic::FakeAnthropic::start(vec![anthropic::Step::Hang]).await,
        responses::FakeResponses::start(vec![responses::Step::Hang]).await,
    );
    let mut runs = Vec::new();
    let tmp = tempfile::tempdir().unwrap();
    if let Some(bin) = &claude {
        let mut v = claude_vars(bin, &fa);
        v.push(("TIMEOUT_SECONDS", "5".into()));
        runs.push(("claude-code", run_worker(&tmp.path().join("c"), &v).await));
    }
    if let Some(bin) = &codex {
        let mut v = codex_vars(bin, &fr);
        v.push(("TIMEOUT_SECONDS", "5".into()));
        runs.push(("codex", run_worker(&tmp.path().join("x"), &v).await));
    }
    for (agent, run) in runs {
        assert_eq!(run.code, 124, "{agent}: {}\n{}", run.stdout, run.stderr);
        let soft = "soft timeout: 80% of 5s used; asking the agent to wrap up";
        assert!(
            run.events.iter().any(|e| matches!(e, AgentEvent::Warning { message } if message == soft)),
            "{agent}: {}",
            run.stdout
        );
        let err = run.error().unwrap();
        assert!(err.starts_with("stopped at the soft timeout:") || err == "hard timeout after 5s", "{agent}: {err}");
        assert!(run.stderr.contains(&format!("{agent}: sending SIGINT")), "{agent}: the agent was asked to wrap up");
    }
}
