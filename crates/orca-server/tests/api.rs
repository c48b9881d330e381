//! The HTTP API against a real server: submit to succeeded, validation, 404/409, list, retry.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn echo_job_runs_from_submit_to_succeeded_with_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let (status, job) = s.post("/api/v1/jobs", json!({"prompt": "hello brave new world", "agentType": "echo"})).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["status"], "queued");
    assert_eq!(job["timeoutSeconds"], 1800);
    let id = job["id"].as_str().unwrap();
    let (events, close) = s.stream(id, None).await;
    assert_eq!(close, Some(1000));
    assert_consecutive(&events, 1);
    assert_eq!(statuses(&events), ["queued", "scheduled", "running", "succeeded"]);
    let text: String = events.iter().filter(|e| e["type"] == "text").map(|e| e["text"].as_str().unwrap()).collect::<Vec<_>>().join(" ");
    assert_eq!(text.split_whitespace().collect::<Vec<_>>().join(" "), "hello brave new world");
    assert!(types(&events).contains(&"result".to_string()), "{:?}", types(&events));
    assert_eq!(events.last().unwrap()["type"], "status", "the terminal status is the last event");
    assert!(events.iter().all(|e| e["jobId"] == id && e["v"] == 1 && e["timestamp"].is_string()));
    let done = s.job(id).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["exitCode"], 0);
    assert!(done["startedAt"].is_string() && done["finishedAt"].is_string());
    // The REST history pages the same log.
    let (st, hist) = s.get(&format!("/api/v1/jobs/{id}/events?fromId=2&limit=2")).await;
    assert_eq!(st, 200);
    let ids: Vec<u64> = hist["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [3, 4]);
    s.stop().await;
}

#[tokio::test]
async fn every_validation_error_is_a_400_naming_the_field_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "prompt"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": "   \n"}), "prompt"),
        (json!({"prompt": "x".repeat(100_001)}), "prompt"),
        (json!({"prompt": "p", "agentType": "gpt-9"}), "agentType"),
        (json!({"prompt": "p", "repoUrl": "file:///etc/passwd"}), "repoUrl"),
        (json!({"prompt": "p", "repoUrl": "/home/me/repo"}), "repoUrl"),
        (json!({"prompt": "p", "repoUrl": "--upload-pack=touch /tmp/pwned"}), "repoUrl"),
        (json!({"prompt": "p", "timeoutSeconds": 0}), "timeoutSeconds"),
        (json!({"prompt": "p", "timeoutSeconds": 999_999}), "timeoutSeconds"),
        (json!({"prompt": "p", "timeoutSeconds": -5}), "timeoutSeconds"),
        (json!({"prompt": "p", "webhookUrl": "not a url"}), "webhookUrl"),
        (json!({"prompt": "p", "branch": "a..b"}), "branch"),
        (json!({"prompt": "p", "config": "x"}), "config"),
        (json!({"prompt": "p", "config": {"echoSteps": -1}}), "config.echoSteps"),
        (json!({"prompt": "p", "surprise": true}), "surprise"),
    ];
    for (body, field) in cases {
        let (status, err) = s.post("/api/v1/jobs", body.clone()).await;
        assert_eq!(status, 400, "{body} → {err}");
        assert_eq!(err["error"]["code"], "validation_failed", "{err}");
        let fields: Vec<&str> = err["error"]["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
        assert_eq!(fields, [field], "{body} → {err}");
        assert!(err["error"]["message"].as_str().unwrap().contains(field));
    }
    // Malformed JSON and a body that is too large.
    let r = s.http.post(format!("{}/api/v1/jobs", s.url)).header("content-type", "application/json").body("{\"prompt\": ").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "bad_request");
    assert!(e["error"]["message"].as_str().unwrap().contains("not valid JSON"), "{e}");
    let r = s.http.post(format!("{}/api/v1/jobs", s.url)).body(vec![b' '; 2 * 1024 * 1024]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    // Bad list filters.
    for (q, field) in [("status=done", "status"), ("limit=0", "limit"), ("limit=abc", "limit"), ("offset=-3", "offset"), ("since=yesterday", "since"), ("agentType=x", "agentType"), ("colour=red", "colour")] {
        let (st, e) = s.get(&format!("/api/v1/jobs?{q}")).await;
        assert_eq!(st, 400, "{q}");
        assert_eq!(e["error"]["fields"][0]["field"], field, "{q}: {e}");
    }
    let (st, e) = s.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000/stream?fromId=abc").await;
    assert_eq!((st, e["error"]["fields"][0]["field"].as_str()), (400, Some("fromId")));
    // Nothing was stored.
    let (_, page) = s.get("/api/v1/jobs").await;
    assert_eq!(page["total"], 0, "{page}");
    s.stop().await;
}

#[tokio::test]
async fn unknown_ids_are_404_and_conflicts_are_409() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let nobody = "0193a0a0-0000-7000-8000-000000000000";
    for path in [format!("/api/v1/jobs/{nobody}"), "/api/v1/jobs/not-a-uuid".into(), format!("/api/v1/jobs/{nobody}/events")] {
        let (st, e) = s.get(&path).await;
        assert_eq!((st, e["error"]["code"].as_str()), (404, Some("not_found")), "{path}");
    }
    for action in ["cancel", "retry"] {
        let (st, _) = s.post(&format!("/api/v1/jobs/{nobody}/{action}"), json!({})).await;
        assert_eq!(st, 404);
    }
    let r = s.http.get(format!("{}/api/v1/jobs/{nobody}/stream", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let ws_unknown = tokio_tungstenite::connect_async(format!("{}/api/v1/jobs/{nobody}/stream", s.ws)).await;
    match ws_unknown {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("expected a 404 before the upgrade, got {other:?}"),
    }
    // Retry of an unfinished job, cancel of a finished one.
    let id = s.echo("slow", 50, 100).await;
    let (st, e) = s.post(&format!("/api/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(st, 409, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("only finished jobs"), "{e}");
    let quick = s.echo("quick", 1, 0).await;
    let done = s.wait_terminal(&quick).await;
    assert_eq!(done["status"], "succeeded");
    let (st, e) = s.post(&format!("/api/v1/jobs/{quick}/cancel"), json!({})).await;
    assert_eq!(st, 409, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("already finished (succeeded)"), "{e}");
    assert_eq!(s.job(&quick).await["status"], "succeeded", "a refused cancel changes nothing");
    s.post(&format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    s.stop().await;
}

#[tokio::test]
async fn list_filters_pages_newest_first_with_total() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[("ORCA_MAX_CONCURRENT_JOBS", "1")]).await;
    let before = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    let mut ids = vec![];
    for i in 0..5 {
        let repo = if i % 2 == 0 { Some("https://example.com/a.git") } else { None };
        ids.push(s.submit(json!({"prompt": format!("job {i}"), "repoUrl": repo, "config": {"echoSteps": 0}})).await);
    }
    let (_, page) = s.get("/api/v1/jobs?limit=2&offset=1").await;
    assert_eq!(page["total"], 5);
    let got: Vec<&str> = page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[3].as_str(), ids[2].as_str()], "newest first, stable");
    let (_, page) = s.get("/api/v1/jobs?repoUrl=https%3A%2F%2Fexample.com%2Fa.git").await;
    assert_eq!(page["total"], 3);
    let (_, page) = s.get(&format!("/api/v1/jobs?agentType=echo&since={}", urlencode(&before))).await;
    assert_eq!(page["total"], 5);
    let (_, page) = s.get("/api/v1/jobs?since=2999-01-01T00:00:00Z").await;
    assert_eq!(page["total"], 0);
    for id in &ids {
        s.wait_terminal(id).await;
    }
    let (_, page) = s.get("/api/v1/jobs?status=succeeded,failed").await;
    assert_eq!(page["total"], 5, "{page}");
    let (_, page) = s.get("/api/v1/jobs?status=queued").await;
    assert_eq!(page["total"], 0);
    s.stop().await;
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn retry_creates_a_linked_job_that_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.submit(json!({"prompt": "fail then retry", "config": {"echoExitCode": 7, "echoSteps": 1, "gitToken": "tok_never_shown"}})).await;
    let failed = s.wait_terminal(&id).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["exitCode"], 7);
    assert_eq!(failed["failureReason"], "echo agent asked to exit with code 7 (worker exited with status 7)");
    let (st, retry) = s.post(&format!("/api/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(st, 201, "{retry}");
    assert_eq!(retry["retryOf"], id.as_str());
    assert_ne!(retry["id"], id.as_str());
    let (_, second) = s.post(&format!("/api/v1/jobs/{id}/retry"), json!({})).await;
    let original = s.job(&id).await;
    assert_eq!(original["retries"], json!([retry["id"], second["id"]]), "the original lists its retries, oldest first");
    let (_, page) = s.get(&format!("/api/v1/jobs?retryOf={id}")).await;
    assert_eq!(page["total"], 2);
    let again = s.wait_terminal(retry["id"].as_str().unwrap()).await;
    assert_eq!(again["status"], "failed", "same request, same outcome");
    let all = s.http.get(format!("{}/api/v1/jobs", s.url)).send().await.unwrap().text().await.unwrap();
    assert!(!all.contains("tok_never_shown"), "secrets never come back");
    s.stop().await;
}

#[tokio::test]
async fn health_reports_components() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let (st, h) = s.get("/api/v1/health").await;
    assert_eq!(st, 200, "{h}");
    assert_eq!(h["status"], "ok");
    let names: &[&str] = if s.on_postgres_redis() { &["postgres", "redis", "scheduler"] } else { &["sqlite", "eventLog", "scheduler"] };
    for c in names {
        assert_eq!(h["components"][c]["status"], "up", "{h}");
        assert!(h["components"][c]["latencyMs"].is_number());
    }
    assert_eq!(h["components"].as_object().unwrap().len(), 3, "{h}");
    assert_eq!(h["down"], serde_json::json!([]));
    assert_eq!(h["components"]["scheduler"]["kind"], "local");
    s.stop().await;
}
