//! A fake Anthropic Messages API for the real Claude Code CLI (`ANTHROPIC_BASE_URL`).
//!
//! `POST /v1/messages` answers with the SSE events the CLI accepts (the byte layout of
//! `shared/fixtures/agent-transcripts/wire/anthropic-sse-*.txt`): `message_start`, content
//! blocks (`text_delta`, `input_json_delta`), `message_delta` with the stop reason and usage,
//! `message_stop`. Which step answers depends on how many `tool_result` blocks the request
//! carries; the last step repeats. `{cwd}` in a tool input is replaced with the CLI's working
//! directory, read from the request's system prompt ("Primary working directory: …").

use crate::Recorded;
use crate::serve::{Log, Served, record, serve, sse};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// One answer of the model.
#[derive(Debug, Clone)]
pub enum Step {
    /// Some text, then a call of tool `name` with `input` (`stop_reason: tool_use`).
    Tool { name: String, input: Value },
    /// A final text (`stop_reason: end_turn`).
    Text(String),
    /// An HTTP error with an Anthropic error body.
    Status(u16),
    /// Never answer (the request hangs until the client gives up).
    Hang,
}

impl Step {
    pub fn tool(name: &str, input: Value) -> Step {
        Step::Tool { name: name.into(), input }
    }

    /// The usual script: write `file` (relative to the CLI's cwd) with `content`, run
    /// `command` with Bash, then say "done".
    pub fn write_then_run(file: &str, content: &str, command: &str) -> Vec<Step> {
        vec![
            Step::tool("Write", json!({"file_path": format!("{{cwd}}/{file}"), "content": content})),
            Step::tool("Bash", json!({"command": command, "description": "run the command"})),
            Step::Text("done".into()),
        ]
    }
}

pub struct FakeAnthropic {
    served: Served,
    log: Log,
}

struct State {
    script: Vec<Step>,
    log: Log,
}

impl FakeAnthropic {
    pub async fn start(script: Vec<Step>) -> FakeAnthropic {
        assert!(!script.is_empty(), "a script needs at least one step");
        let log: Log = Default::default();
        let state = Arc::new(State { script, log: log.clone() });
        let app = Router::new().fallback(move |m: Method, u: Uri, h: HeaderMap, b: Bytes| {
            let state = state.clone();
            async move { handle(&state, m, u, h, b).await }
        });
        FakeAnthropic { served: serve(app).await, log }
    }

    /// The base URL for `ANTHROPIC_BASE_URL` (no `/v1`).
    pub fn url(&self) -> String {
        format!("http://{}", self.served.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// The `POST …/messages` requests so far.
    pub fn message_requests(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method == "POST" && r.path.contains("/messages")).collect()
    }
}

async fn handle(state: &State, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    record(&state.log, &method, &uri, &headers, &body);
    if method != Method::POST || !uri.path().ends_with("/messages") {
        return ([(header::CONTENT_TYPE, "application/json")], "{}").into_response();
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let results = count_tool_results(&req);
    let step = state.script.get(results).unwrap_or_else(|| state.script.last().unwrap()).clone();
    let cwd = find_cwd(&String::from_utf8_lossy(&body)).unwrap_or_else(|| "/tmp".into());
    let n = state.log.lock().unwrap().len();
    let blocks = match step {
        Step::Hang => return std::future::pending::<Response>().await,
        Step::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let kind = if code == 401 { "authentication_error" } else { "api_error" };
            let body = json!({"type": "error", "error": {"type": kind, "message": format!("fake failure {code}")}});
            return (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        }
        Step::Tool { name, input } => vec![
            json!({"type": "text", "text": format!("Using {name}.")}),
            json!({"type": "tool_use", "id": format!("toolu_fake_{n}"), "name": name, "input": with_cwd(input, &cwd)}),
        ],
        Step::Text(t) => vec![json!({"type": "text", "text": t})],
    };
    let stop = if blocks.iter().any(|b| b["type"] == "tool_use") { "tool_use" } else { "end_turn" };
    let model = req["model"].as_str().unwrap_or("claude-fake").to_owned();
    let id = format!("msg_fake_{n}");
    let usage =
        json!({"input_tokens": 12, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0});
    if req["stream"] == json!(false) {
        let msg = json!({"id": id, "type": "message", "role": "assistant", "model": model, "content": blocks,
            "stop_reason": stop, "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 5}});
        return ([(header::CONTENT_TYPE, "application/json")], msg.to_string()).into_response();
    }
    let mut events =
        vec![json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
        "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage}})];
    for (i, b) in blocks.iter().enumerate() {
        if b["type"] == "tool_use" {
            let start = json!({"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}});
            events.push(json!({"type": "content_block_start", "index": i, "content_block": start}));
            let partial = b["input"].to_string();
            let (head, tail) = partial.split_at(partial.len() / 2);
            for part in [head, tail] {
                events.push(json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": part}}));
            }
        } else {
            events.push(
                json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
            );
            events.push(json!({"type": "ping"}));
            events.push(
                json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": b["text"]}}),
            );
        }
        events.push(json!({"type": "content_block_stop", "index": i}));
    }
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 5}}));
    events.push(json!({"type": "message_stop"}));
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], sse(&events)).into_response()
}

fn count_tool_results(req: &Value) -> usize {
    let Some(msgs) = req["messages"].as_array() else { return 0 };
    msgs.iter().filter_map(|m| m["content"].as_array()).flatten().filter(|b| b["type"] == "tool_result").count()
}

/// The CLI's working directory, from its system prompt.
fn find_cwd(body: &str) -> Option<String> {
    let marker = "Primary working directory: ";
    let start = body.find(marker)? + marker.len();
    let rest = &body[start..];
    let end = rest.find(['\\', '"', '\n']).unwrap_or(rest.len());
    Some(rest[..end].trim().to_owned())
}

fn with_cwd(v: Value, cwd: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("{cwd}", cwd)),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| with_cwd(x, cwd)).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, x)| (k, with_cwd(x, cwd))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cwd_and_counts_tool_results() {
        let body = r#"{"system":[{"text":"env:\n - Primary working directory: /w/repo\n - Is a git"}]}"#;
        assert_eq!(find_cwd(body).as_deref(), Some("/w/repo"));
        let req = json!({"messages": [{"role": "user", "content": "hi"},
            {"role": "user", "content": [{"type": "tool_result"}, {"type": "text"}]}]});
        assert_eq!(count_tool_results(&req), 1);
        assert_eq!(with_cwd(json!({"p": "{cwd}/x"}), "/w"), json!({"p": "/w/x"}));
    }
}
