//! `orca auth --status/--logout` on a real Docker volume, and `orca dev` choosing Docker when
//! the engine and the worker image are there (and the local runner, in one line, when not).
//! The interactive `orca auth` login cannot run here (it needs a terminal, a browser and
//! Anthropic's servers); only its refusal without a terminal is tested.
//!
//! Without a Docker engine these tests print `SKIPPED (...)` (and fail when CI=true).

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BASE_IMAGE: &str = "orca-base:bookworm";

fn docker_ok(test: &str) -> bool {
    let ok = Command::new("docker").args(["image", "inspect", BASE_IMAGE]).output().is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: Docker and the base image {BASE_IMAGE} are required in CI (scripts/setup/40-docker.sh)");
        }
        eprintln!("SKIPPED ({test}: no Docker engine or no {BASE_IMAGE} image; run scripts/build-base-image.sh)");
    }
    ok
}

fn orca(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orca"));
    c.args(args).stdin(Stdio::null()).env_remove("ANTHROPIC_API_KEY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn auth_status_and_logout_work_on_the_credentials_volume() {
    if !docker_ok("auth_status_and_logout") {
        return;
    }
    let vol = format!("orca-test-auth-{}", std::process::id());
    let args = |flag: &'static str| vec!["auth", flag, "--volume", vol.as_str(), "--image", BASE_IMAGE];
    let o = orca(&args("--status"), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("Not logged in (no credentials volume yet"), "{}", text(&o));

    // What Claude Code leaves in its config dir after a login (tokens are fake).
    let creds = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-SECRETACCESS","refreshToken":"sk-ant-ort01-SECRETREFRESH","expiresAt":4102444800000,"scopes":["user:inference"],"subscriptionType":"max"}}"#;
    let account = r#"{"oauthAccount":{"emailAddress":"dev@example.com"}}"#;
    let script = format!("printf '%s' '{creds}' > /c/.credentials.json && printf '%s' '{account}' > /c/.claude.json");
    let w = Command::new("docker")
        .args(["run", "--rm", "--user", "0", "--network", "none", "-v", &format!("{vol}:/c"), BASE_IMAGE, "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(w.status.success(), "{}", text(&w));

    let o = orca(&args("--status"), &[]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("Logged in (subscription max, account dev@example.com, access token valid until 2100-01-01T00:00:00Z)"), "{out}");
    assert!(!out.contains("SECRET"), "status never shows a token: {out}");

    let o = orca(&args("--logout"), &[]);
    assert!(o.status.success() && text(&o).contains("Logged out: removed the volume"), "{}", text(&o));
    let gone = Command::new("docker").args(["volume", "inspect", &vol]).output().unwrap();
    assert!(!gone.status.success(), "the volume is removed");
    let o = orca(&args("--status"), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = orca(&args("--logout"), &[]);
    assert!(o.status.success() && text(&o).contains("Not logged in"), "{}", text(&o));
}

#[test]
fn auth_login_needs_a_terminal() {
    let o = orca(&["auth", "--image", BASE_IMAGE], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("needs a terminal"), "{}", text(&o));
}

/// `orca dev` as a process; its stderr lines arrive on `lines`.
struct Dev {
    child: Child,
    url: String,
    stderr: Vec<String>,
}

impl Dev {
    fn start(data: &Path, env: &[(&str, &str)]) -> Dev {
        let mut c = Command::new(env!("CARGO_BIN_EXE_orca"));
        c.args(["dev", "--port", "0"])
            .env("ORCA_DATA_DIR", data)
            .env("LOG_LEVEL", "warn")
            .env("ORCA_STOP_GRACE_SECONDS", "2")
            .env("DOCKER_NETWORK", "orca-test")
            .env("ORCA_CLAUDE_CREDS_VOLUME", "orca-test-claude-creds")
            .env_remove("ORCA_SCHEDULER")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("HOST")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("orca listening on ").unwrap_or_else(|| panic!("unexpected {line:?}")).to_owned();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        // Everything up to the "Orca is running" line.
        let mut stderr = Vec::new();
        while let Ok(l) = rx.recv_timeout(Duration::from_secs(30)) {
            let done = l.starts_with("Orca is running");
            stderr.push(l);
            if done {
                break;
            }
        }
        Dev { child, url, stderr }
    }

    fn job(&self, args: &[&str]) -> Value {
        let o = Command::new(env!("CARGO_BIN_EXE_orca")).args(args).env("ORCA_API_URL", &self.url).stdin(Stdio::null()).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        // With --follow --json: one object per line; the last one counts.
        let out = String::from_utf8_lossy(&o.stdout);
        serde_json::from_str(&out)
            .or_else(|_| serde_json::from_str(out.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    fn stop(mut self) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(t.elapsed() < Duration::from_secs(40), "orca dev did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        // A failed test must not leave its server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn worker_image() -> String {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_orca")).with_file_name("orca-worker");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-worker-image.sh");
    let tag = std::env::var("ORCA_TEST_WORKER_IMAGE").unwrap_or_else(|_| "orca-worker:test".into());
    let o = Command::new("bash").arg(script).args(["--tag", &tag, "--worker-bin"]).arg(bin).output().unwrap();
    assert!(o.status.success(), "building the worker image: {}", text(&o));
    tag
}

fn container_exists(job_id: &str) -> bool {
    Command::new("docker").args(["container", "inspect", &format!("orca-job-{job_id}")]).output().unwrap().status.success()
}

#[test]
fn dev_runs_jobs_in_docker_when_it_can_and_says_so_when_it_cannot() {
    if !docker_ok("dev_runs_jobs_in_docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), &[("WORKER_IMAGE", "orca-worker:no-such-tag")]);
    let fallback: Vec<_> = dev.stderr.iter().filter(|l| l.starts_with("No usable Docker engine")).collect();
    assert_eq!(fallback.len(), 1, "{:?}", dev.stderr);
    assert!(fallback[0].contains("orca-worker:no-such-tag is not on the Docker engine") && fallback[0].ends_with("jobs run as local processes instead."));
    assert!(dev.stderr.last().unwrap().contains("jobs run as local processes"));
    dev.stop();

    let dev = Dev::start(dir.path(), &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert!(dev.stderr.iter().any(|l| l.starts_with("No usable Docker engine (cannot reach the Docker engine")), "{:?}", dev.stderr);
    dev.stop();

    let image = worker_image();
    let dev = Dev::start(dir.path(), &[("WORKER_IMAGE", &image)]);
    assert!(dev.stderr.last().unwrap().contains(&format!("jobs run in Docker containers from {image}")), "{:?}", dev.stderr);
    let job = dev.job(&["job", "submit", "--prompt", "hi", "--config", "echoProbe=true", "--config", "echoDelayMs=0", "--follow", "--json"]);
    assert_eq!(job["type"], "status", "the last line of --follow --json is the terminal event: {job}");
    assert_eq!(job["status"], "succeeded", "{job}");
    let id = job["jobId"].as_str().unwrap().to_owned();
    let events: Value = {
        let o = Command::new(env!("CARGO_BIN_EXE_orca")).args(["job", "logs", &id, "--json"]).env("ORCA_API_URL", &dev.url).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l:?} in {out}"))).collect()
    };
    let probe = events.as_array().unwrap().iter().find(|e| e["source"] == "sandbox-probe").expect("probe event");
    assert_eq!(probe["data"]["uid"], 10001, "the job ran in the worker container: {probe}");
    // Ctrl+C (SIGTERM) tears the workers down with the backend.
    let long = dev.job(&["job", "submit", "--prompt", "long", "--config", "echoSteps=1000", "--json"]);
    let long_id = long["id"].as_str().unwrap().to_owned();
    let t = Instant::now();
    while !container_exists(&long_id) {
        assert!(t.elapsed() < Duration::from_secs(30), "no container for {long_id}");
        std::thread::sleep(Duration::from_millis(100));
    }
    dev.stop();
    assert!(!container_exists(&long_id), "orca dev removed its worker container on exit");
}

#[test]
fn a_killed_dev_server_adopts_its_running_container_after_a_restart() {
    if !docker_ok("a_killed_dev_server_adopts") {
        return;
    }
    let image = worker_image();
    let dir = tempfile::tempdir().unwrap();
    let env = [("WORKER_IMAGE", image.as_str())];
    let dev = Dev::start(dir.path(), &env);
    let words: Vec<String> = (1..=30).map(|i| format!("w{i}")).collect();
    let prompt = words.join(" ");
    let job = dev.job(&["job", "submit", "--prompt", &prompt, "--config", "echoSteps=30", "--config", "echoDelayMs=200", "--json"]);
    let id = job["id"].as_str().unwrap().to_owned();
    let t = Instant::now();
    while !container_exists(&id) {
        assert!(t.elapsed() < Duration::from_secs(30), "no container for {id}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let mut dev = dev;
    dev.child.kill().unwrap(); // SIGKILL: no clean-up at all
    dev.child.wait().unwrap();
    assert!(container_exists(&id), "the container outlives a crashed backend");
    std::thread::sleep(Duration::from_millis(1000));
    let dev = Dev::start(dir.path(), &env);
    let t = Instant::now();
    let done = loop {
        let j = dev.job(&["job", "status", &id, "--json"]);
        if j["status"] != "running" {
            break j;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "job still running after the restart");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    let o = Command::new(env!("CARGO_BIN_EXE_orca")).args(["job", "logs", &id, "--json"]).env("ORCA_API_URL", &dev.url).output().unwrap();
    let events: Vec<Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["id"].as_u64(), Some(i as u64 + 1), "consecutive ids");
    }
    let texts: Vec<u32> = events
        .iter()
        .filter(|e| e["type"] == "text")
        .map(|e| e["text"].as_str().unwrap().trim().trim_start_matches('w').parse().unwrap())
        .collect();
    assert!(texts.windows(2).all(|w| w[0] < w[1]), "no text stored twice, all in order: {texts:?}");
    // A crash may lose the one line in flight, never more.
    assert!(texts.len() >= 29, "{texts:?}");
    dev.stop();
    assert!(!container_exists(&id));
}
