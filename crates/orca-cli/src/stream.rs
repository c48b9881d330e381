//! Following a job's event stream (`WS /api/v1/jobs/:id/stream`), for `job logs` and
//! `job submit --follow`.
//!
//! The server replays stored events, then sends live ones, and closes the socket (code 1000)
//! after the terminal `status` event. The loop ends at the terminal event or at a normal close.
//! If the socket drops or closes abnormally before that, the loop reconnects with
//! `fromId` = the last event id seen, so no event is lost or shown twice; it gives up after
//! [`MAX_RECONNECTS`] attempts in a row that brought no new event.

use crate::client::{ClientError, api_error};
use futures::StreamExt;
use orca_core::JobStatus;
use reqwest::Url;
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use uuid::Uuid;

/// Reconnection attempts in a row (without a new event in between) before giving up.
pub const MAX_RECONNECTS: u32 = 5;
/// The server pings idle streams every 15 s; this much silence means the connection is dead.
const IDLE_LIMIT: Duration = Duration::from_secs(45);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to start and how patiently to reconnect.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Show events after this id (`None`: from the first).
    pub from_id: Option<u64>,
    /// First reconnection delay; doubled on each further attempt.
    pub backoff: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self { from_id: None, backoff: Duration::from_millis(500) }
    }
}

/// How a followed stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// The last event id seen (or the starting `from_id`).
    pub last_id: Option<u64>,
    /// The terminal status, when the terminal event was seen.
    pub terminal: Option<JobStatus>,
}

/// The stream URL for a job: the API URL with http→ws, https→wss.
pub fn ws_url(base: &Url, job: Uuid, from_id: Option<u64>) -> Result<Url, ClientError> {
    let mut url = crate::client::endpoint(base, &format!("/api/v1/jobs/{job}/stream"));
    let scheme = match base.scheme() {
        "http" => "ws",
        "https" => "wss",
        other => return Err(ClientError::Protocol(format!("cannot derive a WebSocket URL from a {other}:// API URL"))),
    };
    url.set_scheme(scheme).map_err(|()| ClientError::Protocol(format!("cannot use {scheme}:// with {base}")))?;
    if let Some(n) = from_id {
        url.query_pairs_mut().append_pair("fromId", &n.to_string());
    }
    Ok(url)
}

/// The status of a terminal `status` event, read from raw JSON.
fn terminal_status(v: &Value) -> Option<JobStatus> {
    if v.get("type")?.as_str()? != "status" {
        return None;
    }
    let status: JobStatus = v.get("status")?.as_str()?.parse().ok()?;
    status.is_terminal().then_some(status)
}

/// Whether a failed connection attempt is worth retrying.
enum ConnectError {
    /// The server answered the upgrade with an error (404, 400, ...): retrying won't help.
    Fatal(ClientError),
    Transient(ClientError),
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(base: &Url, url: &Url) -> Result<Socket, ConnectError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url.as_str())).await {
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(WsError::Http(resp))) => {
            let body = resp.body().as_deref().unwrap_or_default();
            Err(ConnectError::Fatal(api_error(resp.status().as_u16(), body)))
        }
        Ok(Err(e @ (WsError::Url(_) | WsError::HttpFormat(_)))) => {
            Err(ConnectError::Fatal(ClientError::Protocol(format!("cannot open {url}: {e}"))))
        }
        Ok(Err(e @ (WsError::Io(_) | WsError::Tls(_) | WsError::ConnectionClosed | WsError::AlreadyClosed))) => {
            Err(ConnectError::Transient(ClientError::unreachable(base, &e)))
        }
        Ok(Err(e)) => Err(ConnectError::Transient(ClientError::Protocol(format!("WebSocket handshake failed: {e}")))),
        Err(_elapsed) => {
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "the WebSocket connection timed out");
            Err(ConnectError::Transient(ClientError::unreachable(base, &e)))
        }
    }
}

/// What ended one connection.
enum Ended {
    Terminal(JobStatus),
    /// The server closed the socket normally (code 1000) without a terminal event, e.g. after
    /// `fromId` past the job's last event: the stream is over.
    Closed,
    /// Closed or broken before the terminal event; `progressed` when it brought new events.
    Dropped { progressed: bool, why: String },
}

/// Reads one connection, handing each new event to `on_event` (raw text, parsed JSON).
async fn read_events<F>(ws: &mut Socket, last_id: &mut Option<u64>, on_event: &mut F) -> anyhow::Result<Ended>
where
    F: FnMut(&str, &Value) -> std::io::Result<()>,
{
    let mut progressed = false;
    loop {
        let msg = match tokio::time::timeout(IDLE_LIMIT, ws.next()).await {
            Err(_) => return Ok(Ended::Dropped { progressed, why: "no data or ping for 45s".into() }),
            Ok(None) => return Ok(Ended::Dropped { progressed, why: "connection closed".into() }),
            Ok(Some(Err(e))) => return Ok(Ended::Dropped { progressed, why: e.to_string() }),
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(Some(f)) if f.code == CloseCode::Normal => return Ok(Ended::Closed),
            Message::Close(frame) => {
                let why = frame.map_or("closed without a reason".into(), |f| format!("closed ({}) {}", f.code, f.reason));
                return Ok(Ended::Dropped { progressed, why });
            }
            _ => continue, // pings are answered by tungstenite; binary frames are not part of the API
        };
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.to_string()));
        if let Some(id) = value.get("id").and_then(Value::as_u64) {
            if last_id.is_some_and(|last| id <= last) {
                continue; // already shown (a replay overlapping a reconnect)
            }
            *last_id = Some(id);
        }
        progressed = true;
        on_event(&text, &value)?;
        if let Some(status) = terminal_status(&value) {
            return Ok(Ended::Terminal(status));
        }
    }
}

/// Follows the stream until the job's terminal event, reconnecting as needed.
///
/// `on_event` gets each event once, in order; an error from it (e.g. a closed stdout) stops
/// the loop. A server that cannot be reached on the first attempt is reported at once.
pub async fn follow<F>(base: &Url, job: Uuid, opts: &FollowOptions, mut on_event: F) -> anyhow::Result<Followed>
where
    F: FnMut(&str, &Value) -> std::io::Result<()>,
{
    let mut last_id = opts.from_id;
    let mut failures = 0u32;
    let mut connected_once = false;
    loop {
        let url = ws_url(base, job, last_id)?;
        let why = match connect(base, &url).await {
            Ok(mut ws) => {
                connected_once = true;
                match read_events(&mut ws, &mut last_id, &mut on_event).await? {
                    Ended::Terminal(status) => {
                        let _ = ws.close(None).await;
                        return Ok(Followed { last_id, terminal: Some(status) });
                    }
                    Ended::Closed => return Ok(Followed { last_id, terminal: None }),
                    Ended::Dropped { progressed, why } => {
                        if progressed {
                            failures = 0;
                        }
                        why
                    }
                }
            }
            Err(ConnectError::Fatal(e)) => return Err(e.into()),
            Err(ConnectError::Transient(e)) if !connected_once || failures >= MAX_RECONNECTS => return Err(e.into()),
            Err(ConnectError::Transient(e)) => e.to_string(),
        };
        if failures >= MAX_RECONNECTS {
            return Err(ClientError::Protocol(format!(
                "the event stream of job {job} ended before the job finished ({why}); gave up after {MAX_RECONNECTS} reconnects"
            ))
            .into());
        }
        failures += 1;
        let delay = opts.backoff * 2u32.pow(failures - 1);
        let from = last_id.map_or("the start".to_owned(), |n| format!("event #{n}"));
        eprintln!("stream interrupted ({why}); reconnecting from {from} in {delay:?} (attempt {failures}/{MAX_RECONNECTS})");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::SinkExt;
    use serde_json::json;
    use std::sync::{Arc, Mutex};
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    const JOB: &str = "0193a000-0000-7000-8000-000000000001";

    #[test]
    fn ws_urls_follow_the_api_url() {
        let id: Uuid = JOB.parse().unwrap();
        let u = ws_url(&Url::parse("http://localhost:3000").unwrap(), id, None).unwrap();
        assert_eq!(u.as_str(), format!("ws://localhost:3000/api/v1/jobs/{JOB}/stream"));
        let u = ws_url(&Url::parse("https://orca.example/base/").unwrap(), id, Some(42)).unwrap();
        assert_eq!(u.as_str(), format!("wss://orca.example/base/api/v1/jobs/{JOB}/stream?fromId=42"));
    }

    #[test]
    fn only_terminal_status_events_end_the_stream() {
        assert_eq!(terminal_status(&json!({"type": "status", "status": "failed"})), Some(JobStatus::Failed));
        assert_eq!(terminal_status(&json!({"type": "status", "status": "running"})), None);
        assert_eq!(terminal_status(&json!({"type": "text", "status": "failed"})), None);
        assert_eq!(terminal_status(&json!({"type": "status", "status": "exploded"})), None);
    }

    fn event(id: u64, rest: Value) -> Message {
        let mut v = json!({"id": id, "jobId": JOB, "timestamp": "2026-12-04T10:00:00Z", "v": 1});
        v.as_object_mut().unwrap().extend(rest.as_object().unwrap().clone());
        Message::text(v.to_string())
    }

    /// A fake stream endpoint: the first connection sends events 1-2 (and a duplicate) then
    /// drops without a close frame; the second must ask for fromId=2 and gets 2 again, 3 and
    /// the terminal event 4.
    #[tokio::test]
    #[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
    async fn reconnects_from_the_last_event_without_loss_or_repeats() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = queries.clone();
        tokio::spawn(async move {
            for conn in 0..2 {
                let (tcp, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                let callback = move |req: &Request, resp: Response| {
                    seen.lock().unwrap().push(req.uri().query().unwrap_or("").to_owned());
                    Ok(resp)
                };
                let mut ws = tokio_tungstenite::accept_hdr_async(tcp, callback).await.unwrap();
                if conn == 0 {
                    ws.send(event(1, json!({"type": "status", "status": "running"}))).await.unwrap();
                    ws.send(event(2, json!({"type": "text", "text": "a"}))).await.unwrap();
                    ws.send(event(2, json!({"type": "text", "text": "a"}))).await.unwrap();
                    drop(ws); // no close frame: a dropped connection
                } else {
                    ws.send(event(2, json!({"type": "text", "text": "a"}))).await.unwrap();
                    ws.send(Message::text("{\"id\":3,\"type\":\"from_the_future\"}")).await.unwrap();
                    ws.send(event(4, json!({"type": "status", "status": "succeeded"}))).await.unwrap();
                    let _ = ws.close(None).await;
                }
            }
        });
        let base = Url::parse(&format!("http://{addr}")).unwrap();
        let mut ids = vec![];
        let opts = FollowOptions { from_id: None, backoff: Duration::from_millis(10) };
        let out = follow(&base, JOB.parse().unwrap(), &opts, |_raw, v| {
            ids.push(v["id"].as_u64().unwrap());
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(ids, [1, 2, 3, 4]);
        assert_eq!(out, Followed { last_id: Some(4), terminal: Some(JobStatus::Succeeded) });
        assert_eq!(*queries.lock().unwrap(), ["", "fromId=2"]);
    }

    #[tokio::test]
    async fn unreachable_server_is_reported_at_once() {
        let base = Url::parse("http://127.0.0.1:1").unwrap();
        let err = follow(&base, Uuid::nil(), &FollowOptions::default(), |_, _| Ok(())).await.unwrap_err();
        let ce = err.downcast_ref::<ClientError>().unwrap();
        assert!(matches!(ce, ClientError::Unreachable { .. }), "{ce:?}");
    }
}
