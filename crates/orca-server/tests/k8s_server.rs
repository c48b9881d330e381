//! The whole backend with `ORCA_SCHEDULER=k8s` (configured through `KUBECONFIG`), driven over
//! its HTTP API, against the fake Kubernetes API server: a job becomes a Kubernetes Job, its
//! pod log becomes its events, its pod's end becomes its status; cancel deletes the Job.

mod common;
mod k8s_fake;

use common::{TestServer, statuses, types};
use k8s_fake::{FakeKube, pod};
use serde_json::json;

#[tokio::test]
async fn jobs_run_as_kubernetes_jobs_through_the_api() {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(dir.path());
    let srv = TestServer::start(
        dir.path(),
        &[("ORCA_SCHEDULER", "k8s"), ("KUBECONFIG", kubeconfig.to_str().unwrap()), ("WORKER_IMAGE", "orca-worker:e2e")],
    )
    .await;
    let (code, health) = srv.get("/api/v1/health").await;
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["components"]["scheduler"]["kind"], "k8s", "{health}");

    // A job with a git token: a Job with the image, a Secret with the token.
    let id = srv.submit(json!({"prompt": "hello", "agentType": "echo", "config": {"gitToken": "ghp_e2e_token"}})).await;
    let name = format!("orca-job-{id}");
    let k8s_job = fake.wait_for("jobs", &name).await;
    assert_eq!(k8s_job["spec"]["template"]["spec"]["containers"][0]["image"], "orca-worker:e2e");
    assert_eq!(fake.wait_for("secrets", &name).await["stringData"]["GIT_TOKEN"], "ghp_e2e_token");
    assert!(!k8s_job.to_string().contains("ghp_e2e_token"));

    let pod_name = format!("{name}-abcde");
    fake.log(&pod_name, r#"{"type":"text","text":"hello from the pod"}"#);
    fake.put("pods", pod(&k8s_job, &pod_name, "Running", json!({"running": {}})));
    fake.log(&pod_name, r#"{"type":"text","text":"done"}"#);
    fake.close_log(&pod_name);
    fake.put("pods", pod(&k8s_job, &pod_name, "Succeeded", json!({"terminated": {"exitCode": 0, "reason": "Completed"}})));
    fake.set_job_status(&name, json!({"conditions": [{"type": "Complete", "status": "True"}]}));
    let job = srv.wait_terminal(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (events, _) = srv.stream(&id, None).await;
    let texts: Vec<_> = events.iter().filter(|e| e["type"] == "text").map(|e| e["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["hello from the pod", "done"], "{:?}", types(&events));
    assert_eq!(statuses(&events).last().map(String::as_str), Some("succeeded"));
    assert!(!serde_json::to_string(&events).unwrap().contains("ghp_e2e_token"));

    // An agent failure: the exit code and a clear reason.
    let id = srv.submit(json!({"prompt": "fail", "agentType": "echo"})).await;
    let name = format!("orca-job-{id}");
    let k8s_job = fake.wait_for("jobs", &name).await;
    let pod_name = format!("{name}-fghij");
    fake.close_log(&pod_name);
    fake.put("pods", pod(&k8s_job, &pod_name, "Failed", json!({"terminated": {"exitCode": 3, "reason": "Error"}})));
    fake.set_job_status(&name, json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}));
    let job = srv.wait_terminal(&id).await;
    assert_eq!((job["status"].as_str(), job["exitCode"].as_i64()), (Some("failed"), Some(3)), "{job}");
    assert_eq!(job["failureReason"], "worker exited with status 3");

    // Cancel: the Job is deleted with foreground propagation.
    let id = srv.submit(json!({"prompt": "long", "agentType": "echo"})).await;
    let name = format!("orca-job-{id}");
    let k8s_job = fake.wait_for("jobs", &name).await;
    fake.put("pods", pod(&k8s_job, &format!("{name}-klmno"), "Running", json!({"running": {}})));
    srv.wait_status(&id, |s| s == "running", std::time::Duration::from_secs(10)).await;
    let (code, body) = srv.post(&format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(code, 200, "{body}");
    let del = fake.wait_request(|r| r.method == "DELETE" && r.path.ends_with(&format!("/jobs/{name}"))).await;
    assert_eq!(del.body["propagationPolicy"], "Foreground");
    assert_eq!(srv.wait_terminal(&id).await["status"], "cancelled");
    srv.stop().await;
}

#[tokio::test]
async fn a_missing_kubeconfig_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = std::collections::HashMap::from([
        ("ORCA_DATA_DIR".to_owned(), dir.path().display().to_string()),
        ("PORT".to_owned(), "0".to_owned()),
        ("ORCA_SCHEDULER".to_owned(), "k8s".to_owned()),
        ("KUBECONFIG".to_owned(), "/nonexistent/kubeconfig".to_owned()),
    ]);
    let config = orca_server::config::Config::from_vars(&env).unwrap();
    let err = orca_server::Server::start(&config).await.err().expect("no cluster, no server");
    let text = format!("{err:#}");
    assert!(text.contains("ORCA_SCHEDULER=k8s") && text.contains("/nonexistent/kubeconfig"), "{text}");
}
