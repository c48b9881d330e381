//! Event routes: the WebSocket stream (replay from `fromId`, then live) and the REST history.

use super::{AppState, parse_id};
use crate::api::ApiError;
use axum::Json;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use futures::{FutureExt, SinkExt, StreamExt};
use orca_core::{EventId, JobId};
use serde_json::json;
use std::time::Duration;

/// Most events written to a socket before it is flushed.
const WRITE_BATCH: usize = 256;
/// How often an idle stream is pinged.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
const HISTORY_MAX: usize = 1000;

fn query_params(q: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(q.unwrap_or("")).map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))
}

fn parse_from_id(params: &[(String, String)]) -> Result<EventId, ApiError> {
    match params.iter().find(|(k, _)| k == "fromId") {
        None => Ok(0),
        Some((_, v)) if v.is_empty() => Ok(0),
        Some((_, v)) => v.parse().map_err(|_| {
            ApiError::Validation(orca_core::ValidationErrors::single("fromId", "must be a whole number (an event id)"))
        }),
    }
}

pub async fn history(State(s): State<AppState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let params = query_params(q.as_deref())?;
    let from = parse_from_id(&params)?;
    let limit = match params.iter().find(|(k, _)| k == "limit") {
        None => HISTORY_MAX,
        Some((_, v)) => v.parse().ok().filter(|n| (1..=HISTORY_MAX).contains(n)).ok_or_else(|| {
            ApiError::Validation(orca_core::ValidationErrors::single("limit", format!("must be a whole number from 1 to {HISTORY_MAX}")))
        })?,
    };
    s.manager.get(id).await?;
    let events = s.manager.bus().read(id, from, limit).await?;
    Ok(Json(json!({ "events": events })))
}

pub async fn websocket(
    State(s): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let from = parse_from_id(&query_params(q.as_deref())?)?;
    let job = s.manager.get(id).await?; // 404 before the upgrade
    // An ended job whose lease is still held has events still to be written (a queued job's
    // cancel is stored before its events; after a crash the reaper writes them): follow it.
    // Without a lease everything was written, so an empty stream means expired events.
    let finished = job.status.is_terminal() && !matches!(s.manager.store().lease(id).await, Ok(Some(_)));
    let ws = ws.map_err(|e| ApiError::BadRequest(format!("this route streams over WebSocket: {}", e.body_text())))?;
    Ok(ws.on_upgrade(move |socket| follow(s, id, from, finished, socket)))
}

async fn follow(s: AppState, id: JobId, from: EventId, finished: bool, socket: WebSocket) {
    let (mut tx, mut rx) = socket.split();
    // A finished job whose events passed their retention (ORCA_EVENTS_TTL_SECONDS) has nothing
    // to replay and nothing to wait for.
    if finished && matches!(s.manager.bus().last(id).await, Ok(None)) {
        let _ = tx.send(close(1000, "job finished; its events have expired")).await;
        return;
    }
    let mut events = match s.manager.bus().subscribe(id, from).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(job_id = %id, "cannot follow events: {e}");
            let _ = tx.send(close(1011, "event log unavailable")).await;
            return;
        }
    };
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let reason = loop {
        tokio::select! {
            ev = events.next() => {
                // Write every event that is ready already, then flush once: one message per
                // event, but not one write per event when they come in bursts.
                let (mut next, mut written, mut end) = (ev, 0, None);
                loop {
                    match next {
                        Some(Ok(rec)) => {
                            let text = serde_json::to_string(&rec).expect("records serialize");
                            if tx.feed(Message::Text(text.into())).await.is_err() {
                                return; // client went away
                            }
                            written += 1;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(job_id = %id, "event stream failed: {e}");
                            end = Some(close(1011, "event log unavailable"));
                        }
                        None => end = Some(close(1000, "job finished")),
                    }
                    if end.is_some() || written >= WRITE_BATCH {
                        break;
                    }
                    match events.next().now_or_never() {
                        Some(n) => next = n,
                        None => break,
                    }
                }
                if tx.flush().await.is_err() {
                    return;
                }
                ping.reset();
                if let Some(reason) = end {
                    break reason;
                }
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if tx.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            _ = s.shutdown.cancelled() => break close(1001, "server shutting down"),
        }
    };
    let _ = tx.send(reason).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while let Some(Ok(m)) = rx.next().await { if matches!(m, Message::Close(_)) { break; } } }).await;
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}
