//! `GET /api/v1/health`: each component's status and latency; 503 naming what is down.

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

/// Components are named for what they are: `postgres` or `sqlite` (the job store), `redis` or
/// `eventLog` (the embedded event log), and `scheduler` (with its `kind`). `down` lists the
/// names of the components that failed their check; the answer is 503 when it is not empty.
pub async fn health(axum::extract::State(s): axum::extract::State<AppState>) -> (StatusCode, Json<Value>) {
    let m = &s.manager;
    let (store, bus, sched) = tokio::join!(
        check(m.store().kind(), m.store().ping()),
        check(m.bus().kind(), m.bus().ping()),
        check(m.scheduler().kind(), m.scheduler().health()),
    );
    let bus_name = match m.bus().kind() {
        "embedded" => "eventLog",
        other => other,
    };
    let named = [(m.store().kind(), store), (bus_name, bus), ("scheduler", sched)];
    let down: Vec<&str> = named.iter().filter(|(_, (up, _))| !up).map(|(name, _)| *name).collect();
    let components: serde_json::Map<String, Value> = named.into_iter().map(|(name, (_, v))| (name.to_owned(), v)).collect();
    let body = json!({
        "status": if down.is_empty() { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "instance": m.instance_id(),
        "components": components,
        "down": down,
    });
    (if down.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}
