//! Serving an axum router on 127.0.0.1:0 for the life of a value, and recording requests.

use axum::Router;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names are lower case.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when it was not JSON).
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub(crate) type Log = Arc<Mutex<Vec<Recorded>>>;

/// A router served in the background until dropped.
pub(crate) struct Served {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn serve(app: Router) -> Served {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind a loopback port");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Served { addr, task }
}

pub(crate) fn record(
    log: &Log,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) {
    let headers = headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    let body = serde_json::from_slice(body).unwrap_or(Value::Null);
    log.lock().unwrap().push(Recorded { method: method.to_string(), path: uri.to_string(), headers, body });
}

/// `event: <type>\ndata: <json>\n\n` for each event.
pub(crate) fn sse(events: &[Value]) -> String {
    events.iter().map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("message"))).collect()
}
