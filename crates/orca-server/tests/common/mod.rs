//! Test support: a real Orca server on a random port with a temporary data dir, and a client.
//!
//! With `ORCA_TEST_BACKENDS=postgres-redis` every [`TestServer`] keeps its jobs in a fresh
//! PostgreSQL database and its events under a fresh Redis key prefix (see [`backends`]), so
//! the same tests prove the same behaviour on both stacks; a restart on the same data dir
//! reuses the same database and prefix.
#![allow(dead_code)]

pub mod backends;

use futures::StreamExt;
use orca_server::Server;
use orca_server::config::Config;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub struct TestServer {
    pub url: String,
    pub ws: String,
    pub data_dir: PathBuf,
    server: Option<Server>,
    pub http: reqwest::Client,
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

impl TestServer {
    /// Starts a server on 127.0.0.1:0 with its data in `data_dir`.
    pub async fn start(data_dir: &Path, extra: &[(&str, &str)]) -> TestServer {
        let mut env: HashMap<String, String> = HashMap::from([
            ("HOST".into(), "127.0.0.1".into()),
            ("PORT".into(), "0".into()),
            ("ORCA_DATA_DIR".into(), data_dir.display().to_string()),
            ("ORCA_STOP_GRACE_SECONDS".into(), "3".into()),
        ]);
        if external_backends() && !extra.iter().any(|(k, _)| *k == "DATABASE_URL") {
            for (k, v) in backends_for(data_dir).await {
                env.insert(k, v);
            }
        }
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_vars(&env).expect("test config");
        orca_server::telemetry::init("warn", orca_server::config::LogFormat::Text);
        let server = Server::start(&config).await.expect("server starts (is orca-worker built? run `cargo build --workspace --bins`)");
        let url = format!("http://{}", server.addr);
        let ws = format!("ws://{}", server.addr);
        TestServer { url, ws, data_dir: data_dir.to_owned(), server: Some(server), http: client() }
    }

    /// Whether this server runs on PostgreSQL and Redis (`ORCA_TEST_BACKENDS=postgres-redis`).
    pub fn on_postgres_redis(&self) -> bool {
        external_backends()
    }

    pub async fn stop(mut self) {
        self.server.take().unwrap().stop().await.unwrap();
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(format!("{}{path}", self.url)).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.url)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Submits a job and returns its id.
    pub async fn submit(&self, body: Value) -> String {
        let (status, job) = self.post("/api/v1/jobs", body).await;
        assert_eq!(status, 201, "{job}");
        job["id"].as_str().unwrap().to_owned()
    }

    pub async fn echo(&self, prompt: &str, steps: u32, delay_ms: u64) -> String {
        self.submit(json!({"prompt": prompt, "agentType": "echo", "config": {"echoSteps": steps, "echoDelayMs": delay_ms}})).await
    }

    pub async fn job(&self, id: &str) -> Value {
        let (s, j) = self.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(s, 200, "{j}");
        j
    }

    /// Polls until the job has `status` (bounded by `within`).
    pub async fn wait_status(&self, id: &str, pred: impl Fn(&str) -> bool, within: Duration) -> Value {
        let t = Instant::now();
        loop {
            let j = self.job(id).await;
            if pred(j["status"].as_str().unwrap()) {
                return j;
            }
            assert!(t.elapsed() < within, "job {id} still {} after {within:?}", j["status"]);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_terminal(&self, id: &str) -> Value {
        self.wait_status(id, |s| ["succeeded", "failed", "cancelled", "timed_out"].contains(&s), Duration::from_secs(60)).await
    }

    /// Reads a job's stream from `from_id` until the server closes it; returns the events and
    /// the close code.
    pub async fn stream(&self, id: &str, from_id: Option<u64>) -> (Vec<Value>, Option<u16>) {
        read_stream(&self.ws, id, from_id, Duration::from_secs(60)).await
    }
}

pub async fn read_stream(ws: &str, id: &str, from_id: Option<u64>, within: Duration) -> (Vec<Value>, Option<u16>) {
    let q = from_id.map(|f| format!("?fromId={f}")).unwrap_or_default();
    let (mut sock, _) = tokio_tungstenite::connect_async(format!("{ws}/api/v1/jobs/{id}/stream{q}")).await.expect("ws connect");
    let mut events = vec![];
    let deadline = tokio::time::sleep(within);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            msg = sock.next() => match msg {
                Some(Ok(Message::Text(t))) => events.push(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(f))) => return (events, f.map(|f| u16::from(f.code))),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("ws error: {e}"),
                None => return (events, None),
            },
            _ = &mut deadline => panic!("stream of {id} did not end within {within:?}; got {} events", events.len()),
        }
    }
}

/// The `type`s of a list of events.
pub fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

/// The statuses of the `status` events.
pub fn statuses(events: &[Value]) -> Vec<String> {
    events.iter().filter(|e| e["type"] == "status").map(|e| e["status"].as_str().unwrap().to_owned()).collect()
}

/// Asserts ids are consecutive from `first`.
pub fn assert_consecutive(events: &[Value], first: u64) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["id"].as_u64().unwrap(), first + i as u64, "event {i}: {e}");
    }
}

/// `ORCA_TEST_BACKENDS=postgres-redis`: run servers on PostgreSQL and Redis.
pub fn external_backends() -> bool {
    std::env::var("ORCA_TEST_BACKENDS").is_ok_and(|v| v == "postgres-redis")
}

/// DATABASE_URL, REDIS_URL and ORCA_REDIS_PREFIX for a server on `data_dir`: made once per
/// data dir (a fresh database and prefix) and remembered there for restarts.
async fn backends_for(data_dir: &Path) -> Vec<(String, String)> {
    let memo = data_dir.join(".test-backends.json");
    if let Ok(text) = std::fs::read_to_string(&memo) {
        return serde_json::from_str(&text).unwrap();
    }
    let what = "ORCA_TEST_BACKENDS=postgres-redis";
    let (Some(admin), Some(redis)) = (backends::engine("ORCA_TEST_DATABASE_URL", what), backends::engine("ORCA_TEST_REDIS_URL", what)) else {
        panic!("{what} needs ORCA_TEST_DATABASE_URL and ORCA_TEST_REDIS_URL (see scripts/setup/)");
    };
    let db = backends::TestDb::create_on(&admin).await;
    let prefix = format!("orca-test-{}", uuid::Uuid::now_v7().simple());
    let vars = vec![
        ("DATABASE_URL".to_owned(), db.url.clone()),
        ("REDIS_URL".to_owned(), redis),
        ("ORCA_REDIS_PREFIX".to_owned(), prefix),
    ];
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(&memo, serde_json::to_string(&vars).unwrap()).unwrap();
    vars
}
