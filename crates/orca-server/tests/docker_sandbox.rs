//! The Docker sandbox seen from inside a job: the echo agent's `echoProbe` reports what the
//! worker is and can do, and these tests check it holds: not root, no capabilities,
//! no-new-privileges, a read-only root, no Docker socket, the pids limit, an init process,
//! a private /tmp and no host paths.
//!
//! Without a Docker engine these tests print `SKIPPED (...)` (and fail when CI=true).

mod common;
mod docker_support;

use common::*;
use serde_json::{Value, json};

/// Runs an echo job with `echoProbe` and returns the probe's report.
async fn probe(s: &TestServer, config: Value) -> Value {
    let mut cfg = json!({"echoProbe": true, "echoSteps": 1, "echoDelayMs": 0});
    cfg.as_object_mut().unwrap().extend(config.as_object().unwrap().clone());
    let id = s.submit(json!({"prompt": "probe", "config": cfg})).await;
    let job = s.wait_terminal(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (events, _) = s.stream(&id, None).await;
    events
        .into_iter()
        .find(|e| e["type"] == "raw" && e["source"] == "sandbox-probe")
        .map(|e| e["data"].clone())
        .expect("a sandbox-probe event")
}

#[tokio::test]
async fn the_docker_sandbox_holds_from_inside_a_job() {
    let Some(_docker) = docker_support::docker("the_docker_sandbox_holds_from_inside_a_job").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = docker_support::env();
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = TestServer::start(dir.path(), &vars).await;
    let r = probe(&s, json!({"pidsLimit": 64})).await;
    assert_ne!(r["uid"], 0, "{r:#}");
    assert_eq!((r["uid"].as_u64(), r["gid"].as_u64()), (Some(10001), Some(10001)), "{r:#}");
    assert_eq!(r["capEff"], "0000000000000000", "no effective capabilities: {r:#}");
    assert_eq!(r["capBnd"], "0000000000000000", "an empty bounding set: {r:#}");
    assert_eq!(r["noNewPrivs"], true);
    assert_eq!(r["rootMount"], "ro", "{r:#}");
    assert!(r["rootWriteError"].as_str().unwrap().contains("Read-only file system"), "{r:#}");
    assert_eq!(r["sockets"], json!([]), "no Docker or containerd socket: {r:#}");
    // The pids limit counts threads too: the worker has a few, so fewer than 64 more start.
    let started = r["threadsStarted"].as_u64().unwrap();
    assert!(started > 0 && started < 64, "the pids limit of 64 held: {started} threads started: {r:#}");
    assert!(r["threadError"].is_string(), "{r:#}");
    assert!(r["pidNamespaceInit"].as_str().unwrap().contains("docker-init"), "an init process reaps orphans: {r:#}");
    assert_eq!(r["tmpEntries"], json!([]), "a private, empty /tmp: {r:#}");
    assert_eq!(r["homeEntries"]["/root"][0].as_str().map(|s| s.starts_with('<')), Some(true), "/root is not readable: {r:#}");
    // Without a job override the server default applies (512): far more threads start.
    let r = probe(&s, json!({})).await;
    assert!(r["threadsStarted"].as_u64().unwrap() > 400, "{r:#}");
    s.stop().await;
}
