//! `GET /api/v1/health`: each component's status and latency; 503 when any is down.

use super::AppState;
use axum::Json;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::future::Future;
use std::time::{Duration, Instant};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

async fn check<E: std::fmt::Display>(kind: &str, f: impl Future<Output = Result<(), E>>) -> (bool, Value) {
    let t = Instant::now();
    let res = tokio::time::timeout(CHECK_TIMEOUT, f).await;
    let latency_ms = t.elapsed().as_secs_f64() * 1000.0;
    match res {
        Ok(Ok(())) => (true, json!({"status": "up", "kind": kind, "latencyMs": latency_ms})),
        Ok(Err(e)) => (false, json!({"status": "down", "kind": kind, "latencyMs": latency_ms, "error": e.to_string()})),
        Err(_) => (false, json!({"status": "down", "kind": kind, "latencyMs": latency_ms, "error": "timed out"})),
    }
}

pub async fn health(axum::extract::State(s): axum::extract::State<AppState>) -> (StatusCode, Json<Value>) {
    let m = &s.manager;
    let (store, bus, sched) = tokio::join!(
        check(m.store().kind(), m.store().ping()),
        check(m.bus().kind(), m.bus().ping()),
        check(m.scheduler().kind(), m.scheduler().health()),
    );
    let all_up = store.0 && bus.0 && sched.0;
    let body = json!({
        "status": if all_up { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "components": {"store": store.1, "events": bus.1, "scheduler": sched.1},
    });
    (if all_up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}
