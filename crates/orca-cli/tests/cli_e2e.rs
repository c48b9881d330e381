//! The built `orca` binary end to end: `orca dev` as a real process on a random port, and the
//! `orca job …` commands against it, including kill -9 of the server and a restart.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Dev {
    child: Child,
    url: String,
}

impl Dev {
    /// Starts `orca dev` on port 0 with `data` as its data dir and waits for its URL line.
    fn start(data: &Path) -> Dev {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orca"))
            .args(["dev", "--port", "0"])
            .env("ORCA_DATA_DIR", data)
            .env("ORCA_STOP_GRACE_SECONDS", "2")
            // The local runner, even where `orca dev` would pick Docker (docker_cli.rs tests that).
            .env("ORCA_SCHEDULER", "local")
            .env("LOG_LEVEL", "warn")
            .env_remove("HOST")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start orca dev");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the URL line");
        let url = line.trim().strip_prefix("orca listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "dev binds loopback: {url}");
        Dev { child, url }
    }

    fn orca(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_orca"))
            .args(args)
            .env("ORCA_API_URL", &self.url)
            .env("NO_COLOR", "1")
            .env_remove("ORCA_GIT_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run orca")
    }

    fn json(&self, args: &[&str]) -> Value {
        let o = self.orca(args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&o.stdout)))
    }

    fn wait_status(&self, id: &str, want: &str) -> Value {
        let t = Instant::now();
        loop {
            let j = self.json(&["job", "status", id, "--json"]);
            if j["status"] == want {
                return j;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "job {id} is {} not {want}", j["status"]);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    fn sigterm(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "orca dev did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn submit_follow_streams_to_success_and_the_other_commands_work() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start(data.path());
    let o = dev.orca(&["job", "submit", "--agent", "echo", "--prompt", "hello", "--follow"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let text = out(&o);
    assert!(text.contains("● running") && text.contains("text  hello") && text.contains("✔ succeeded"), "{text}");
    assert!(!text.contains("\x1b["), "no colours when stdout is not a terminal");

    let list = dev.json(&["job", "list", "--json"]);
    assert_eq!(list["total"], 1);
    let id = list["jobs"][0]["id"].as_str().unwrap().to_owned();
    let status = dev.orca(&["job", "status", &id]);
    assert!(out(&status).contains("succeeded"), "{}", out(&status));

    // Raw logs from the middle: one JSON record per line, ids after 2.
    let logs = dev.orca(&["job", "logs", &id, "--from-id", "2", "--json"]);
    assert!(logs.status.success(), "{}", err(&logs));
    let ids: Vec<u64> = out(&logs).lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.first(), Some(&3));
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");

    // Retry, cancel, and the errors a person meets.
    let retried = dev.json(&["job", "retry", &id, "--json"]);
    assert_eq!(retried["retryOf"], id.as_str());
    let o = dev.orca(&["job", "cancel", &id]);
    assert_eq!(o.status.code(), Some(4), "cancel of a finished job is refused: {}", err(&o));
    assert!(err(&o).contains("already finished"), "{}", err(&o));
    let o = dev.orca(&["job", "submit", "--prompt", "   "]);
    assert_eq!(o.status.code(), Some(4));
    assert!(err(&o).contains("prompt"), "{}", err(&o));
    let o = dev.orca(&["job", "status", "0193a000-0000-7000-8000-000000000001"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(err(&o).contains("no job with id"), "{}", err(&o));

    // A failing job: --follow exits 1 and says why.
    let o = dev.orca(&["job", "submit", "--prompt", "fail", "--config", "echoExitCode=9", "--follow"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("worker exited with status 9"), "{}", err(&o));

    // Cancel a running job from the CLI.
    let long = dev.json(&["job", "submit", "--prompt", "long", "--config", "echoSteps=1000", "--json"]);
    let long_id = long["id"].as_str().unwrap();
    dev.wait_status(long_id, "running");
    let o = dev.orca(&["job", "cancel", long_id]);
    assert!(o.status.success(), "{}", err(&o));
    dev.wait_status(long_id, "cancelled");
    assert_eq!(dev.sigterm().code(), Some(0), "orca dev stops cleanly on SIGTERM");
}

#[test]
fn kill_9_then_restart_keeps_jobs_and_events() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start(data.path());
    let done = dev.json(&["job", "submit", "--prompt", "persist me", "--json"]);
    let done_id = done["id"].as_str().unwrap().to_owned();
    dev.wait_status(&done_id, "succeeded");
    let before = out(&dev.orca(&["job", "logs", &done_id, "--json"]));
    let running = dev.json(&["job", "submit", "--prompt", "cut short", "--config", "echoSteps=1000", "--json"]);
    let running_id = running["id"].as_str().unwrap().to_owned();
    dev.wait_status(&running_id, "running");
    dev.kill9();

    let dev = Dev::start(data.path());
    let after = out(&dev.orca(&["job", "logs", &done_id, "--json"]));
    assert_eq!(before, after, "every event survives kill -9");
    assert!(before.lines().count() >= 8, "{before}");
    let lost = dev.wait_status(&running_id, "failed");
    assert!(lost["failureReason"].as_str().unwrap().contains("worker lost"), "{lost}");
    let list = dev.json(&["job", "list", "--json"]);
    assert_eq!(list["total"], 2);
    // The orphaned worker noticed nobody reads its events and went away.
    let t = Instant::now();
    while worker_alive(&running_id) {
        assert!(t.elapsed() < Duration::from_secs(15), "orphaned worker still running");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the restarted server runs new work.
    let o = dev.orca(&["job", "submit", "--prompt", "after restart", "--follow"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}

fn worker_alive(job_id: &str) -> bool {
    let needle = format!("JOB_ID={job_id}");
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("environ")).is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
    })
}

#[test]
fn a_bad_setting_names_the_variable() {
    let o = Command::new(env!("CARGO_BIN_EXE_orca")).args(["dev"]).env("LOG_LEVEL", "loud").output().unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(err(&o).contains("LOG_LEVEL"), "{}", err(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_orca")).args(["dev", "--port", "0"]).env("ORCA_SCHEDULER", "nomad").output().unwrap();
    assert!(err(&o).contains("ORCA_SCHEDULER"), "{}", err(&o));
}
