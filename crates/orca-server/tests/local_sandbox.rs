//! The local runner inside bubblewrap, seen from inside a job (the echo agent's `echoProbe`):
//! not root, no capabilities, read-only root, no Docker socket, a private /tmp, its own PID
//! namespace, the data dir and homes hidden, the pids limit; and an OOM kill through the
//! memory cgroup. Also: `ORCA_LOCAL_SANDBOX=none` really runs unsandboxed.
//!
//! Without bubblewrap (or without a writable cgroup, for the limits) these tests print
//! `SKIPPED (...)` (and fail when CI=true).

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether bwrap works here (and cgroups, when `limits`); prints SKIPPED when not.
fn usable(test: &str, limits: bool) -> bool {
    let bwrap = std::process::Command::new("bwrap")
        .args(["--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "--", "/bin/true"])
        .output()
        .is_ok_and(|o| o.status.success());
    let cgroups = !limits || orca_server::scheduler::cgroup::Cgroups::detect().is_ok();
    if bwrap && cgroups {
        return true;
    }
    let why = if bwrap { "no writable cgroup hierarchy (run as root)" } else { "bubblewrap (bwrap) is missing or cannot create a sandbox" };
    assert!(!ci(), "{test}: {why}; required in CI");
    eprintln!("SKIPPED ({test}: {why})");
    false
}

async fn probe(s: &TestServer, config: Value) -> Value {
    let mut cfg = json!({"echoProbe": true, "echoSteps": 1, "echoDelayMs": 0});
    cfg.as_object_mut().unwrap().extend(config.as_object().unwrap().clone());
    let id = s.submit(json!({"prompt": "probe", "config": cfg})).await;
    let job = s.wait_terminal(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (events, _) = s.stream(&id, None).await;
    events.into_iter().find(|e| e["source"] == "sandbox-probe").map(|e| e["data"].clone()).expect("a sandbox-probe event")
}

/// The names an ancestor directory of the workspace lists, from the probe's report.
fn listed<'a>(r: &'a Value, dir: &Path) -> &'a Value {
    let dir = dir.canonicalize().unwrap();
    r["ancestors"].as_array().unwrap().iter().find(|a| a["path"] == dir.display().to_string()).map(|a| &a["entries"]).unwrap_or(&Value::Null)
}

#[tokio::test]
async fn the_bubblewrap_sandbox_holds_from_inside_a_job() {
    if !usable("the_bubblewrap_sandbox_holds", true) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[("ORCA_SCHEDULER", "local"), ("ORCA_LOCAL_SANDBOX", "bwrap")]).await;
    // Something private on the host that the job must not see.
    std::fs::write(std::env::temp_dir().join("orca-host-secret.txt"), "x").unwrap();
    let r = probe(&s, json!({"pidsLimit": 48})).await;
    assert_ne!(r["uid"], 0, "{r:#}");
    assert_eq!(r["uid"], 10001, "{r:#}");
    assert_eq!(r["capEff"], "0000000000000000", "{r:#}");
    assert_eq!(r["capBnd"], "0000000000000000", "{r:#}");
    assert_eq!(r["noNewPrivs"], true, "{r:#}");
    assert_eq!(r["rootMount"], "ro", "{r:#}");
    assert!(r["rootWriteError"].as_str().unwrap().contains("Read-only file system"), "{r:#}");
    assert_eq!(r["sockets"], json!([]), "no Docker socket: {r:#}");
    // A private /tmp: only the path down to the job's own directory (the test's data dir lives
    // in /tmp), not the host's files.
    let data_name = dir.path().file_name().unwrap().to_str().unwrap();
    assert_eq!(r["tmpEntries"], json!([data_name]), "a private /tmp: {r:#}");
    let _ = std::fs::remove_file(std::env::temp_dir().join("orca-host-secret.txt"));
    assert!(r["pidNamespaceInit"].as_str().unwrap().contains("bwrap"), "own PID namespace with bwrap's init as PID 1: {r:#}");
    // The home is hidden; only the path down to the read-only worker binary may show when
    // the build lives under it (CI keeps CARGO_TARGET_DIR in ~/.cache).
    let worker_under_root = std::env::current_exe()
        .ok()
        .and_then(|p| p.strip_prefix("/root").ok().and_then(|r| r.components().next()).map(|c| c.as_os_str().to_string_lossy().into_owned()));
    let expected_root: Vec<String> = worker_under_root.into_iter().collect();
    assert_eq!(r["homeEntries"]["/root"], json!(expected_root), "the home is hidden: {r:#}");
    // The data dir shows only the job's own directory: no databases, no other job.
    assert_eq!(listed(&r, dir.path()), &json!(["work"]), "{r:#}");
    let started = r["threadsStarted"].as_u64().unwrap();
    assert!(started > 0 && started < 48, "the pids limit of 48 held: {started}: {r:#}");
    s.stop().await;
}

#[tokio::test]
async fn an_oom_killed_local_worker_fails_its_job_with_the_reason() {
    if !usable("an_oom_killed_local_worker", true) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[("ORCA_SCHEDULER", "local")]).await;
    let id = s.submit(json!({"prompt": "eat memory", "config": {"memoryMb": 48, "echoAllocMb": 512, "echoDelayMs": 0}})).await;
    let job = s.wait_terminal(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["failureReason"], "worker ran out of memory (limit 48 MiB) and was killed", "{job}");
    s.stop().await;
}

#[tokio::test]
async fn without_the_sandbox_the_worker_sees_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[("ORCA_SCHEDULER", "local"), ("ORCA_LOCAL_SANDBOX", "none")]).await;
    let r = probe(&s, json!({})).await;
    // The probe is meaningful: the same checks fail without bubblewrap.
    let entries = listed(&r, dir.path());
    assert!(entries.as_array().unwrap().iter().any(|e| e.as_str().unwrap().ends_with(".db")), "{r:#}");
    assert!(!r["pidNamespaceInit"].as_str().unwrap().contains("bwrap"), "{r:#}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    s.stop().await;
}

#[tokio::test]
async fn cancel_reaches_the_worker_inside_bubblewrap() {
    if !usable("cancel_reaches_the_worker_inside_bubblewrap", false) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[("ORCA_SCHEDULER", "local"), ("ORCA_LOCAL_SANDBOX", "bwrap")]).await;
    for _ in 0..3 {
        let id = s.echo("long running", 1000, 50).await;
        s.wait_status(&id, |st| st == "running", Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (st, _) = s.post(&format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
        assert_eq!(st, 200);
        let (events, _) = s.stream(&id, None).await;
        // The worker got SIGTERM and said so before bubblewrap went away.
        assert!(events.iter().any(|e| e["type"] == "warning" && e["message"].as_str().unwrap().contains("SIGTERM")), "{events:?}");
        assert_eq!(statuses(&events).last().unwrap(), "cancelled");
    }
    s.stop().await;
}
