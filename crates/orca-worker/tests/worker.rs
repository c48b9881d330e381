//! End-to-end tests of the `orca-worker` binary: environment in, NDJSON events and an exit
//! code out. Every wait is bounded.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use orca_core::AgentEvent;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const RUN_LIMIT: Duration = Duration::from_secs(30);

/// A running worker whose stdout lines arrive on a channel.
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: thread::JoinHandle<String>,
}

struct Finished {
    code: i32,
    events: Vec<AgentEvent>,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn kinds(&self) -> Vec<&'static str> {
        self.events.iter().map(AgentEvent::kind).collect()
    }

    fn last(&self) -> &AgentEvent {
        self.events.last().expect("at least one event")
    }
}

fn spawn(work_dir: &Path, vars: &[(&str, &str)]) -> Worker {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orca-worker"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", work_dir)
        .env("WORK_DIR", work_dir.join("work"))
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start orca-worker");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    Worker { child, lines, stderr }
}

fn parse(line: &str) -> AgentEvent {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout line is not an AgentEvent ({e}): {line}"))
}

impl Worker {
    /// The next event, waiting at most `limit`.
    fn next_event(&self, limit: Duration) -> AgentEvent {
        parse(&self.lines.recv_timeout(limit).expect("an event in time"))
    }

    /// Waits (bounded) for exit and collects the remaining events.
    fn finish(mut self, seen: Vec<AgentEvent>) -> Finished {
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("worker did not exit within {RUN_LIMIT:?}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        let mut events = seen;
        loop {
            match self.lines.recv_timeout(Duration::from_secs(5)) {
                Ok(line) => {
                    stdout.push_str(&line);
                    stdout.push('\n');
                    events.push(parse(&line));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("stdout not closed 5s after exit"),
            }
        }
        let stderr = self.stderr.join().unwrap();
        let code = status.code().unwrap_or_else(|| panic!("worker killed by a signal: {status}; stderr:\n{stderr}"));
        Finished { code, events, stdout, stderr }
    }
}

fn run(vars: &[(&str, &str)]) -> Finished {
    let tmp = tempfile::tempdir().unwrap();
    spawn(tmp.path(), vars).finish(Vec::new())
}

fn texts(events: &[AgentEvent]) -> String {
    events.iter().filter_map(|e| if let AgentEvent::Text { text } = e { Some(text.as_str()) } else { None }).collect()
}

#[test]
fn echo_streams_events_in_order_and_ends_with_a_result() {
    let prompt = "the quick brown fox jumps over the lazy dog";
    let out =
        run(&[("JOB_ID", "job-1"), ("PROMPT", prompt), ("ORCA_JOB_CONFIG", r#"{"echoSteps":4,"echoDelayMs":10}"#)]);
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    assert_eq!(
        out.kinds(),
        ["log", "session", "tool_call", "tool_result", "text", "text", "text", "text", "usage", "result"],
        "{}",
        out.stdout
    );
    assert_eq!(out.events[0], AgentEvent::Log { message: "worker started (agent echo)".into() });
    assert_eq!(out.events[1], AgentEvent::Session { session_id: Some("job-1".into()), model: Some("echo".into()) });
    assert_eq!(texts(&out.events), prompt);
    assert!(
        matches!(out.last(), AgentEvent::Result { success: true, text: Some(t), num_turns: Some(1), .. } if t == prompt)
    );
    assert!(!out.stderr.is_empty() && !out.stderr.contains("\"type\""), "logs go to stderr, events do not");
}

#[test]
fn echo_exit_code_is_the_workers_exit_code() {
    let out = run(&[
        ("JOB_ID", "j"),
        ("PROMPT", "fail please"),
        ("ORCA_JOB_CONFIG", r#"{"echoExitCode":3,"echoDelayMs":0}"#),
    ]);
    assert_eq!(out.code, 3, "stderr:\n{}", out.stderr);
    assert_eq!(out.kinds(), ["log", "session", "tool_call", "tool_result", "text", "text", "thinking", "error"]);
    assert_eq!(out.last(), &AgentEvent::Error { message: "echo agent asked to exit with code 3".into() });
}

fn stop_with(signal: Signal) -> Finished {
    let tmp = tempfile::tempdir().unwrap();
    let w = spawn(
        tmp.path(),
        &[("JOB_ID", "j"), ("PROMPT", "a long echo"), ("ORCA_JOB_CONFIG", r#"{"echoSteps":50,"echoDelayMs":100}"#)],
    );
    let mut seen = Vec::new();
    while !matches!(seen.last(), Some(AgentEvent::Text { .. })) {
        seen.push(w.next_event(Duration::from_secs(10)));
    }
    kill(Pid::from_raw(w.child.id() as i32), signal).unwrap();
    w.finish(seen)
}

#[test]
fn sigterm_stops_the_agent_and_exits_143() {
    let out = stop_with(Signal::SIGTERM);
    assert_eq!(out.code, 143, "stderr:\n{}", out.stderr);
    assert_eq!(out.last(), &AgentEvent::Warning { message: "worker received SIGTERM; stopping".into() });
    assert!(!out.kinds().contains(&"result"));
    assert!(out.kinds().iter().filter(|k| **k == "text").count() < 50);
}

#[test]
fn sigint_exits_130() {
    let out = stop_with(Signal::SIGINT);
    assert_eq!(out.code, 130, "stderr:\n{}", out.stderr);
    assert_eq!(out.last(), &AgentEvent::Warning { message: "worker received SIGINT; stopping".into() });
}

#[test]
fn hard_timeout_warns_at_80_percent_then_exits_124() {
    let out = run(&[
        ("JOB_ID", "j"),
        ("PROMPT", "slow"),
        ("TIMEOUT_SECONDS", "1"),
        ("ORCA_JOB_CONFIG", r#"{"echoSteps":50,"echoDelayMs":100}"#),
    ]);
    assert_eq!(out.code, 124, "stderr:\n{}", out.stderr);
    assert_eq!(out.last(), &AgentEvent::Error { message: "hard timeout after 1s".into() });
    let soft = AgentEvent::Warning { message: "soft timeout: 80% of 1s used; asking the agent to wrap up".into() };
    assert_eq!(out.events.iter().filter(|e| **e == soft).count(), 1, "{}", out.stdout);
}

#[test]
fn bad_environment_names_the_variable_and_exits_2() {
    let out = run(&[("PROMPT", "p")]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("JOB_ID"), "{}", out.stderr);
    let out = run(&[("JOB_ID", "j"), ("PROMPT", "p"), ("TIMEOUT_SECONDS", "never")]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("TIMEOUT_SECONDS"), "{}", out.stderr);
}

#[test]
fn a_missing_agent_cli_fails_with_exit_1() {
    for (agent, var) in [("claude-code", "ORCA_CLAUDE_BIN"), ("codex", "ORCA_CODEX_BIN")] {
        let out = run(&[("JOB_ID", "j"), ("PROMPT", "p"), ("AGENT_TYPE", agent), (var, "/nonexistent/agent-cli")]);
        assert_eq!(out.code, 1, "stderr:\n{}", out.stderr);
        let want = format!("the {agent} CLI was not found (`/nonexistent/agent-cli`); install it or set its ORCA_*_BIN variable");
        assert_eq!(out.last(), &AgentEvent::Error { message: want });
    }
}

#[test]
fn unreachable_repository_exits_3_without_leaking_the_token() {
    let token = "ghp_do_not_print_me";
    let out =
        run(&[("JOB_ID", "j"), ("PROMPT", "p"), ("REPO_URL", "git://127.0.0.1:1/nope.git"), ("GIT_TOKEN", token)]);
    assert_eq!(out.code, 3, "stderr:\n{}", out.stderr);
    assert!(
        matches!(out.last(), AgentEvent::Error { message } if message.starts_with("clone failed, repository unreachable: git://127.0.0.1:1/nope.git")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(token) && !out.stderr.contains(token));
    let url = format!("http://u:{token}@127.0.0.1:1/nope.git");
    let out = run(&[("JOB_ID", "j"), ("PROMPT", "p"), ("REPO_URL", &url)]);
    assert_eq!(out.code, 3, "stderr:\n{}", out.stderr);
    assert!(
        matches!(out.last(), AgentEvent::Error { message } if message.starts_with("clone failed, repository unreachable: http://***@127.0.0.1:1/nope.git")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(token) && !out.stderr.contains(token), "a password in REPO_URL is a secret too");
}

/// `git daemon` serving a directory over loopback; killed on drop.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=Orca Test", "-c", "user.email=test@orca.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn serve(base: &Path) -> GitDaemon {
    for _ in 0..3 {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
        let mut child = Command::new("git")
            .arg("daemon")
            .arg("--reuseaddr")
            .arg(format!("--base-path={}", base.display()))
            .arg("--export-all")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return GitDaemon { child, port };
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("git daemon did not start accepting connections");
}

#[test]
fn clones_a_repository_served_by_git_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    git(&src, &["init", "-q"]);
    std::fs::write(src.join("README.md"), "hello from orca\n").unwrap();
    git(&src, &["add", "README.md"]);
    git(&src, &["commit", "-q", "-m", "first"]);
    git(&src, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(src.join("feature.txt"), "on a branch\n").unwrap();
    git(&src, &["add", "feature.txt"]);
    git(&src, &["commit", "-q", "-m", "feature"]);
    git(&src, &["checkout", "-q", "main"]);
    let base = tmp.path().join("served");
    std::fs::create_dir(&base).unwrap();
    git(&base, &["clone", "-q", "--bare", "../src", "repo.git"]);
    let daemon = serve(&base);
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);

    let work = tempfile::tempdir().unwrap();
    let out = spawn(work.path(), &[("JOB_ID", "j"), ("PROMPT", "look around"), ("REPO_URL", &url)]).finish(Vec::new());
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    let repo = work.path().join("work/repo");
    assert_eq!(std::fs::read_to_string(repo.join("README.md")).unwrap(), "hello from orca\n");
    assert!(!repo.join("feature.txt").exists());
    let logs: Vec<&str> = out
        .events
        .iter()
        .filter_map(|e| if let AgentEvent::Log { message } = e { Some(message.as_str()) } else { None })
        .collect();
    assert_eq!(logs.len(), 3, "{logs:?}");
    assert!(
        logs[1].starts_with(&format!("cloning {url}")) && logs[2].starts_with(&format!("cloned {url}")),
        "{logs:?}"
    );
    assert!(out.events.iter().any(|e| matches!(e, AgentEvent::Result { success: true, .. })));
    assert!(matches!(out.last(), AgentEvent::Changes(c) if c.files.is_empty() && c.patch.is_empty()), "{}", out.stdout);

    let work = tempfile::tempdir().unwrap();
    let vars = [("JOB_ID", "j"), ("PROMPT", "p"), ("REPO_URL", url.as_str()), ("BRANCH", "feature")];
    let out = spawn(work.path(), &vars).finish(Vec::new());
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    assert!(work.path().join("work/repo/feature.txt").exists());

    let work = tempfile::tempdir().unwrap();
    let vars = [("JOB_ID", "j"), ("PROMPT", "p"), ("REPO_URL", url.as_str()), ("BRANCH", "no-such-branch")];
    let out = spawn(work.path(), &vars).finish(Vec::new());
    assert_eq!(out.code, 3, "stderr:\n{}", out.stderr);
    assert!(
        matches!(out.last(), AgentEvent::Error { message } if message.starts_with("clone failed, branch `no-such-branch` not found in git://")),
        "{}",
        out.stdout
    );
    drop(daemon);
}
