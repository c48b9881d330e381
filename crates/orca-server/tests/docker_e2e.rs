//! The Docker scheduler against the real engine: an echo job end to end over WebSocket, cancel,
//! the hard timeout, the OOM killer, secrets kept out of `docker inspect`, limits above the
//! server's maxima, and a backend restart that re-adopts a running container.
//! (Sandbox checks from inside a job: docker_sandbox.rs.)
//!
//! Without a Docker engine these tests print `SKIPPED (...)` (and fail when CI=true).

mod common;
mod docker_support;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

async fn server(dir: &std::path::Path, extra: &[(&str, &str)]) -> TestServer {
    let env = docker_support::env();
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vars.extend_from_slice(extra);
    TestServer::start(dir, &vars).await
}

fn texts(events: &[serde_json::Value]) -> String {
    events.iter().filter(|e| e["type"] == "text").map(|e| e["text"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn echo_job_runs_in_a_container_and_streams_to_a_websocket_client() {
    let Some(docker) = docker_support::docker("echo_job_runs_in_a_container").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &[]).await;
    let prompt = "hello from inside a container";
    let id = s.echo(prompt, 5, 50).await;
    let (events, close) = s.stream(&id, None).await;
    assert_eq!(close, Some(1000));
    assert_consecutive(&events, 1);
    assert_eq!(statuses(&events), ["queued", "scheduled", "running", "succeeded"], "{events:#?}");
    assert_eq!(texts(&events), prompt);
    assert!(types(&events).contains(&"result".to_owned()));
    let job = s.job(&id).await;
    assert_eq!((job["status"].as_str(), job["exitCode"].as_i64()), (Some("succeeded"), Some(0)));
    docker_support::wait_gone(&docker, &id, Duration::from_secs(5)).await;
    let (st, health) = s.get("/api/v1/health").await;
    assert_eq!((st, health["components"]["scheduler"]["kind"].as_str()), (200, Some("docker")), "{health}");
    s.stop().await;
}

#[tokio::test]
async fn cancel_stops_and_removes_the_container_and_secrets_stay_out_of_inspect() {
    let Some(docker) = docker_support::docker("cancel_stops_and_removes_the_container").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &[]).await;
    let token = "ghp_docker_e2e_supersecret_0123456789";
    let id = s
        .submit(json!({"prompt": "long running", "config": {"echoSteps": 1000, "echoDelayMs": 100, "gitToken": token}}))
        .await;
    s.wait_status(&id, |st| st == "running", Duration::from_secs(30)).await;
    let (running, info) = docker_support::container(&docker, &id).await.expect("the job's container exists");
    assert!(running);
    let shown = info.to_string();
    assert!(!shown.contains("supersecret"), "the git token is visible in docker inspect");
    assert_eq!(info["Config"]["Labels"]["orca.job-id"], id.as_str());
    assert_eq!(info["Config"]["User"], "10001:10001");
    let host = &info["HostConfig"];
    assert_eq!((host["ReadonlyRootfs"].as_bool(), host["Init"].as_bool()), (Some(true), Some(true)));
    assert_eq!(host["CapDrop"], json!(["ALL"]));
    // The worker got the token anyway (over stdin): it started without a bad-environment error.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let (st, job) = s.post(&format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!((st, job["status"].as_str()), (200, Some("cancelled")));
    let (events, _) = s.stream(&id, None).await;
    assert_eq!(statuses(&events).last().unwrap(), "cancelled");
    assert!(events.iter().any(|e| e["type"] == "warning" && e["message"].as_str().unwrap().contains("SIGTERM")), "{events:?}");
    assert!(events.iter().any(|e| e["type"] == "text"), "the worker ran before it was cancelled");
    docker_support::wait_gone(&docker, &id, Duration::from_secs(10)).await;
    assert!(t.elapsed() < Duration::from_secs(10), "cancel took {:?}", t.elapsed());
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("supersecret"));
    s.stop().await;
}

#[tokio::test]
async fn the_hard_timeout_stops_the_container() {
    let Some(docker) = docker_support::docker("the_hard_timeout_stops_the_container").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &[]).await;
    let id = s.submit(json!({"prompt": "slow", "timeoutSeconds": 2, "config": {"echoSteps": 1000, "echoDelayMs": 100}})).await;
    let job = s.wait_terminal(&id).await;
    assert_eq!(job["status"], "timed_out", "{job}");
    assert!(job["failureReason"].as_str().unwrap().contains("timeoutSeconds=2"), "{job}");
    docker_support::wait_gone(&docker, &id, Duration::from_secs(10)).await;
    s.stop().await;
}

#[tokio::test]
async fn an_oom_killed_worker_fails_its_job_with_the_reason() {
    let Some(docker) = docker_support::docker("an_oom_killed_worker_fails_its_job").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &[]).await;
    let id = s.submit(json!({"prompt": "eat memory", "config": {"memoryMb": 48, "echoAllocMb": 512, "echoDelayMs": 0}})).await;
    let job = s.wait_terminal(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["failureReason"], "worker ran out of memory (limit 48 MiB) and was killed", "{job}");
    let (events, _) = s.stream(&id, None).await;
    assert_eq!(events.last().unwrap()["reason"], job["failureReason"]);
    docker_support::wait_gone(&docker, &id, Duration::from_secs(10)).await;
    s.stop().await;
}

#[tokio::test]
async fn limits_above_the_server_maxima_are_rejected_by_field() {
    let Some(_docker) = docker_support::docker("limits_above_the_server_maxima").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &[("ORCA_WORKER_MAX_MEMORY_MB", "1024"), ("ORCA_WORKER_MEMORY_MB", "256")]).await;
    let (st, body) = s.post("/api/v1/jobs", json!({"prompt": "p", "config": {"memoryMb": 2048, "pidsLimit": 100}})).await;
    assert_eq!(st, 400, "{body}");
    let fields: Vec<&str> = body["error"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["config.memoryMb"]);
    assert!(body["error"]["message"].as_str().unwrap().contains("ORCA_WORKER_MAX_MEMORY_MB"), "{body}");
    let (_, list) = s.get("/api/v1/jobs").await;
    assert_eq!(list["total"], 0, "a rejected job is not stored");
    s.stop().await;
}

#[tokio::test]
async fn a_restarted_backend_adopts_the_running_container_and_the_job_finishes() {
    let Some(docker) = docker_support::docker("a_restarted_backend_adopts_the_running_container").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let words: Vec<String> = (1..=40).map(|i| format!("w{i}")).collect();
    let prompt = words.join(" ");
    let s = server(dir.path(), &[]).await;
    let id = s.echo(&prompt, 40, 150).await;
    s.wait_status(&id, |st| st == "running", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.stop().await;
    let (running, _) = docker_support::container(&docker, &id).await.expect("the container outlives the backend");
    assert!(running, "the worker keeps running while no backend is up");
    // Output written while no backend listens is replayed from the container's log.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = server(dir.path(), &[]).await;
    let job = s.wait_terminal(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (events, close) = s.stream(&id, None).await;
    assert_eq!(close, Some(1000));
    assert_consecutive(&events, 1);
    assert_eq!(texts(&events), prompt, "every text event exactly once, in order");
    assert_eq!(statuses(&events), ["queued", "scheduled", "running", "succeeded"]);
    docker_support::wait_gone(&docker, &id, Duration::from_secs(10)).await;
    s.stop().await;
}

#[tokio::test]
async fn a_vanished_container_fails_its_job_as_lost_after_a_restart() {
    let Some(docker) = docker_support::docker("a_vanished_container_fails_its_job").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &[]).await;
    let id = s.echo("soon gone", 1000, 100).await;
    s.wait_status(&id, |st| st == "running", Duration::from_secs(30)).await;
    s.stop().await;
    let opts = bollard::query_parameters::RemoveContainerOptions { force: true, v: true, ..Default::default() };
    docker.remove_container(&format!("orca-job-{id}"), Some(opts)).await.unwrap();
    let s = server(dir.path(), &[]).await;
    let job = s.wait_terminal(&id).await;
    assert_eq!(job["status"], "failed");
    assert!(job["failureReason"].as_str().unwrap().starts_with("worker lost"), "{job}");
    s.stop().await;
}

#[tokio::test]
async fn containers_of_finished_jobs_are_removed_at_start_and_others_left_alone() {
    let Some(docker) = docker_support::docker("containers_of_finished_jobs_are_removed_at_start").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &[]).await;
    let id = s.echo("left behind", 1000, 100).await;
    s.wait_status(&id, |st| st == "running", Duration::from_secs(30)).await;
    s.stop().await;
    // A backend with the local runner on the same data dir cannot adopt the container: the job
    // fails as lost, and the container is left running.
    let local = TestServer::start(dir.path(), &[]).await;
    let job = local.wait_terminal(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    local.stop().await;
    assert!(docker_support::container(&docker, &id).await.is_some());
    // A container of a job this store does not know (another backend's) is not touched.
    let other_dir = tempfile::tempdir().unwrap();
    let other = server(other_dir.path(), &[]).await;
    let other_id = other.echo("someone else's", 1000, 100).await;
    other.wait_status(&other_id, |st| st == "running", Duration::from_secs(30)).await;
    // The Docker backend removes the finished job's container at start-up.
    let s = server(dir.path(), &[]).await;
    docker_support::wait_gone(&docker, &id, Duration::from_secs(10)).await;
    let (running, _) = docker_support::container(&docker, &other_id).await.expect("the other backend's container stays");
    assert!(running);
    assert_eq!(other.job(&other_id).await["status"], "running");
    other.post(&format!("/api/v1/jobs/{other_id}/cancel"), json!({})).await;
    docker_support::wait_gone(&docker, &other_id, Duration::from_secs(10)).await;
    other.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn an_api_key_reaches_the_worker_over_stdin_and_the_login_volume_stays_out() {
    let Some(docker) = docker_support::docker("an_api_key_reaches_the_worker_over_stdin").await else { return };
    let key = "sk-ant-api03-docker-e2e-SECRET-KEY";
    // Without a key, workers mount the login volume.
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &[]).await;
    let id = s.echo("with the login", 1000, 100).await;
    s.wait_status(&id, |st| st == "running", Duration::from_secs(30)).await;
    let (_, info) = docker_support::container(&docker, &id).await.unwrap();
    let mounts: Vec<&str> = info["Mounts"].as_array().unwrap().iter().filter_map(|m| m["Name"].as_str()).collect();
    assert!(mounts.contains(&"orca-test-claude-creds"), "{mounts:?}");
    s.post(&format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    s.stop().await;
    // With ANTHROPIC_API_KEY the key takes precedence: no login volume, the key over stdin.
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), &[("ANTHROPIC_API_KEY", key)]).await;
    let id = s
        .submit(json!({"prompt": "with a key", "config": {"echoProbe": true, "echoSteps": 200, "echoDelayMs": 50}}))
        .await;
    s.wait_status(&id, |st| st == "running", Duration::from_secs(30)).await;
    let (_, info) = docker_support::container(&docker, &id).await.unwrap();
    assert!(!info.to_string().contains("SECRET-KEY"), "the key is not in docker inspect");
    let named: Vec<&str> = info["Mounts"].as_array().unwrap().iter().filter_map(|m| m["Name"].as_str()).collect();
    assert!(!named.contains(&"orca-test-claude-creds"), "{named:?}");
    let job = s.wait_terminal(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (events, _) = s.stream(&id, None).await;
    let probe = events.iter().find(|e| e["source"] == "sandbox-probe").expect("probe");
    let names = probe["data"]["envNames"].as_array().unwrap();
    assert!(names.contains(&json!("ANTHROPIC_API_KEY")), "the worker has the key: {names:?}");
    assert!(!names.contains(&json!("ORCA_SECRETS")) && !names.contains(&json!("GIT_TOKEN")), "{names:?}");
    assert!(!serde_json::to_string(&events).unwrap().contains("SECRET-KEY"));
    s.stop().await;
}
