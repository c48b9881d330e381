//! Support for tests against the real Docker engine: skip (loudly) or fail (CI) without one,
//! and a worker image that holds the worker binary these tests were built with.
#![allow(dead_code)]

use bollard::Docker;
use std::path::PathBuf;
use std::process::Command;
use tokio::sync::OnceCell;

/// The test image tag (never `orca-worker:latest`, which may be a developer's real image).
pub fn image() -> String {
    std::env::var("ORCA_TEST_WORKER_IMAGE").unwrap_or_else(|_| "orca-worker:test".into())
}

/// The network the test servers' workers join.
pub const NETWORK: &str = "orca-test";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `orca-worker` binary of this build (target/<profile>/orca-worker).
pub fn worker_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("orca-worker");
    assert!(bin.is_file(), "{} is missing: run `cargo build --workspace --bins` first", bin.display());
    bin
}

/// `Some(docker)` when a Docker engine and the test image are usable; `None` after printing
/// `SKIPPED (reason)` when not (a failure when CI=true).
pub async fn docker(test: &str) -> Option<Docker> {
    static READY: OnceCell<Result<(), String>> = OnceCell::const_new();
    let ready = READY
        .get_or_init(|| async {
            orca_server::scheduler::docker::connect().await.map_err(|e| e.to_string())?;
            build_image().await
        })
        .await;
    match ready {
        Ok(()) => Some(orca_server::scheduler::docker::connect().await.unwrap()),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{test}: Docker is required in CI: {why}"),
        Err(why) => {
            eprintln!("SKIPPED ({test}: no usable Docker engine: {why})");
            None
        }
    }
}

/// Builds (or reuses) the test image from this build's worker binary.
async fn build_image() -> Result<(), String> {
    let bin = worker_bin();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(repo_root().join("scripts/build-worker-image.sh"))
            .args(["--tag", &image(), "--worker-bin"])
            .arg(&bin)
            .output()
    })
    .await
    .unwrap()
    .map_err(|e| format!("cannot run scripts/build-worker-image.sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("scripts/build-worker-image.sh failed: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Server variables for the Docker scheduler with the test image.
pub fn env() -> Vec<(&'static str, String)> {
    vec![
        ("ORCA_SCHEDULER", "docker".into()),
        ("WORKER_IMAGE", image()),
        ("DOCKER_NETWORK", NETWORK.into()),
        ("ORCA_CLAUDE_CREDS_VOLUME", "orca-test-claude-creds".into()),
    ]
}

/// The container of a job, if it exists: (running, inspect JSON).
pub async fn container(docker: &Docker, job_id: &str) -> Option<(bool, serde_json::Value)> {
    match docker.inspect_container(&format!("orca-job-{job_id}"), None).await {
        Ok(info) => {
            let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
            Some((running, serde_json::to_value(&info).unwrap()))
        }
        Err(_) => None,
    }
}

/// Waits (bounded) until the job's container is gone.
pub async fn wait_gone(docker: &Docker, job_id: &str, within: std::time::Duration) {
    let t = std::time::Instant::now();
    while container(docker, job_id).await.is_some() {
        assert!(t.elapsed() < within, "container of {job_id} still exists after {within:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
