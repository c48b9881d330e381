//! Webhooks against a real receiver on loopback: signed, retried on 5xx, visible per attempt,
//! resumed after a restart, refused for private targets unless allowed.

mod common;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use orca_server::webhooks::sign;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_test_0123456789";

#[derive(Default)]
struct Received {
    /// Answers still to fail with 500 before accepting.
    fail_first: usize,
    /// Every request: (delivery id, event type, signature ok).
    log: Vec<(String, String, bool)>,
    /// Accepted deliveries, by id.
    accepted: HashMap<String, Value>,
}

/// A webhook receiver on 127.0.0.1 that verifies signatures like a real one would.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Received>>, tokio::task::JoinHandle<()>) {
    let state = Arc::new(Mutex::new(Received { fail_first, ..Default::default() }));
    let st = state.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let st = st.clone();
            async move {
                let sig = headers.get("x-orca-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let ok = sign::verify(SECRET.as_bytes(), sig, &body, now, 300).is_ok();
                let v: Value = serde_json::from_slice(&body).unwrap();
                let id = v["id"].as_str().unwrap().to_owned();
                assert_eq!(headers["x-orca-delivery"].to_str().unwrap(), id);
                let mut s = st.lock().unwrap();
                s.log.push((id.clone(), v["type"].as_str().unwrap().to_owned(), ok));
                if !ok {
                    return StatusCode::UNAUTHORIZED;
                }
                if s.fail_first > 0 {
                    s.fail_first -= 1;
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                s.accepted.insert(id, v);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, state, task)
}

/// A receiver on a fixed port that accepts everything (for targets that come up late).
async fn accepting_receiver(port: u16) -> (Arc<Mutex<Received>>, tokio::task::JoinHandle<()>) {
    let state = Arc::new(Mutex::new(Received::default()));
    let st = state.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let st = st.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap();
                st.lock().unwrap().accepted.insert(v["id"].as_str().unwrap().to_owned(), v);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    (state, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

/// A free loopback port, closed for now.
fn closed_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

const FAST_RETRIES: &[(&str, &str)] = &[
    ("ORCA_WEBHOOK_SECRET", SECRET),
    ("ORCA_WEBHOOK_ALLOW_PRIVATE", "true"),
    ("ORCA_WEBHOOK_INITIAL_DELAY_MS", "100"),
    ("ORCA_WEBHOOK_MAX_ATTEMPTS", "6"),
];

async fn wait_for(mut cond: impl FnMut() -> bool, within: Duration, what: &str) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deliveries_are_signed_retried_and_recorded() {
    let (url, rx, _task) = receiver(3).await;
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), FAST_RETRIES).await;
    let id = s.submit(json!({"prompt": "notify me", "webhookUrl": url, "config": {"echoSteps": 1, "echoDelayMs": 0}})).await;
    s.wait_terminal(&id).await;
    wait_for(|| rx.lock().unwrap().accepted.len() == 2, Duration::from_secs(30), "two accepted deliveries").await;
    {
        let r = rx.lock().unwrap();
        assert!(r.log.iter().all(|(_, _, ok)| *ok), "every request carried a valid signature");
        let mut types: Vec<&str> = r.accepted.values().map(|v| v["type"].as_str().unwrap()).collect();
        types.sort();
        assert_eq!(types, ["job.started", "job.succeeded"]);
        let done = r.accepted.values().find(|v| v["type"] == "job.succeeded").unwrap();
        assert_eq!(done["job"]["id"], id.as_str());
        assert_eq!(done["job"]["status"], "succeeded");
        assert_eq!(r.log.len(), 5, "3 failures then 2 successes, no duplicate after success: {:?}", r.log);
    }
    let (st, hooks) = s.get(&format!("/api/v1/jobs/{id}/webhooks")).await;
    assert_eq!(st, 200);
    let ds = hooks["deliveries"].as_array().unwrap();
    assert_eq!(ds.len(), 2);
    assert!(ds.iter().all(|d| d["status"] == "delivered"), "{hooks}");
    let attempts: usize = ds.iter().map(|d| d["attempts"].as_array().unwrap().len()).sum();
    assert_eq!(attempts, 5);
    let failed: Vec<&Value> = ds.iter().flat_map(|d| d["attempts"].as_array().unwrap()).filter(|a| a["statusCode"] == 500).collect();
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(|a| a["error"] == "HTTP 500" && a["latencyMs"].is_number()));
    assert!(!hooks.to_string().contains(SECRET), "the secret never shows");
    s.stop().await;
}

#[tokio::test]
async fn a_receiver_that_is_down_for_a_while_gets_the_delivery_later() {
    // Reserve a port, keep it closed for a while, then start the receiver on it.
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), FAST_RETRIES).await;
    let id = s.submit(json!({"prompt": "later", "webhookUrl": url, "config": {"echoSteps": 0}})).await;
    s.wait_terminal(&id).await;
    // Let a few attempts fail against the closed port.
    let t = Instant::now();
    loop {
        let (_, hooks) = s.get(&format!("/api/v1/jobs/{id}/webhooks")).await;
        let n: u64 = hooks["deliveries"].as_array().unwrap().iter().map(|d| d["attemptCount"].as_u64().unwrap()).sum();
        if n >= 3 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{hooks}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (state, _task) = accepting_receiver(port).await;
    wait_for(|| state.lock().unwrap().accepted.len() == 2, Duration::from_secs(30), "deliveries after the receiver came back").await;
    s.stop().await;
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let slow: Vec<(&str, &str)> = vec![("ORCA_WEBHOOK_ALLOW_PRIVATE", "true"), ("ORCA_WEBHOOK_INITIAL_DELAY_MS", "300"), ("ORCA_WEBHOOK_MAX_ATTEMPTS", "50")];
    let s = TestServer::start(dir.path(), &slow).await;
    let id = s.submit(json!({"prompt": "restart", "webhookUrl": url, "config": {"echoSteps": 0}})).await;
    s.wait_terminal(&id).await;
    s.stop().await;
    let (rx, _task) = accepting_receiver(port).await;
    let s = TestServer::start(dir.path(), &slow).await;
    wait_for(|| rx.lock().unwrap().accepted.len() == 2, Duration::from_secs(30), "resumed deliveries").await;
    s.stop().await;
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    for url in ["http://127.0.0.1:9/x", "http://localhost/x", "http://10.0.0.8/x", "http://[::1]:80/x", "http://169.254.169.254/latest"] {
        let (st, e) = s.post("/api/v1/jobs", json!({"prompt": "p", "webhookUrl": url})).await;
        assert_eq!(st, 400, "{url}: {e}");
        assert_eq!(e["error"]["fields"][0]["field"], "webhookUrl");
    }
    s.stop().await;
}
