//! A fake OpenAI Responses API for the real Codex CLI (a custom provider with
//! `wire_api=responses`, `base_url=<url>/v1`).
//!
//! `POST /v1/responses` answers with `response.created`, `response.output_item.added` /
//! `.done` per item and `response.completed` with usage (the layout of
//! `shared/fixtures/agent-transcripts/wire/openai-responses-sse-*.txt`). Which step answers
//! depends on how many tool outputs (`function_call_output`, `custom_tool_call_output`) the
//! request's `input` carries; the last step repeats. Other requests (model lists) get `{}`.

use crate::Recorded;
use crate::serve::{Log, Served, record, serve, sse};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// Tokens each response reports.
pub const INPUT_TOKENS: u64 = 20;
pub const CACHED_TOKENS: u64 = 4;
pub const OUTPUT_TOKENS: u64 = 6;

#[derive(Debug, Clone)]
pub enum Step {
    /// The freeform `apply_patch` tool with this patch (`*** Begin Patch` … `*** End Patch`).
    ApplyPatch(String),
    /// The `exec_command` tool running `cmd`.
    Exec(String),
    /// A final assistant message.
    Message(String),
    Status(u16),
    Hang,
}

impl Step {
    /// A patch adding `path` with `content` (one line per line of content).
    pub fn add_file(path: &str, content: &str) -> Step {
        let body: String = content.lines().map(|l| format!("+{l}\n")).collect();
        Step::ApplyPatch(format!("*** Begin Patch\n*** Add File: {path}\n{body}*** End Patch\n"))
    }

    /// Add `file`, run `command`, say "done".
    pub fn write_then_run(file: &str, content: &str, command: &str) -> Vec<Step> {
        vec![Step::add_file(file, content), Step::Exec(command.into()), Step::Message("done".into())]
    }
}

pub struct FakeResponses {
    served: Served,
    log: Log,
}

struct State {
    script: Vec<Step>,
    log: Log,
}

impl FakeResponses {
    pub async fn start(script: Vec<Step>) -> FakeResponses {
        assert!(!script.is_empty(), "a script needs at least one step");
        let log: Log = Default::default();
        let state = Arc::new(State { script, log: log.clone() });
        let app = Router::new().fallback(move |m: Method, u: Uri, h: HeaderMap, b: Bytes| {
            let state = state.clone();
            async move { handle(&state, m, u, h, b).await }
        });
        FakeResponses { served: serve(app).await, log }
    }

    /// The provider base URL (ends in `/v1`).
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.served.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// The `POST …/responses` requests so far.
    pub fn model_requests(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method == "POST" && r.path.ends_with("/responses")).collect()
    }
}

async fn handle(state: &State, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    record(&state.log, &method, &uri, &headers, &body);
    if method != Method::POST || !uri.path().ends_with("/responses") {
        return ([(header::CONTENT_TYPE, "application/json")], "{}").into_response();
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let outputs = req["input"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|i| matches!(i["type"].as_str(), Some("function_call_output" | "custom_tool_call_output")))
            .count()
    });
    let step = state.script.get(outputs).unwrap_or_else(|| state.script.last().unwrap()).clone();
    let n = state.log.lock().unwrap().len();
    let item = match step {
        Step::Hang => return std::future::pending::<Response>().await,
        Step::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = json!({"error": {"type": "server_error", "message": format!("fake failure {code}")}});
            return (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        }
        Step::ApplyPatch(patch) => {
            json!({"type": "custom_tool_call", "id": format!("ctc_{n}"), "call_id": format!("call_{n}"),
            "name": "apply_patch", "input": patch, "status": "completed"})
        }
        Step::Exec(cmd) => json!({"type": "function_call", "id": format!("fc_{n}"), "call_id": format!("call_{n}"),
            "name": "exec_command", "arguments": json!({"cmd": cmd}).to_string(), "status": "completed"}),
        Step::Message(text) => {
            json!({"type": "message", "role": "assistant", "id": format!("msg_{n}"), "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]})
        }
    };
    let id = format!("resp_{n}");
    let usage = json!({"input_tokens": INPUT_TOKENS, "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
        "output_tokens": OUTPUT_TOKENS, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS});
    let events = [
        json!({"type": "response.created", "response": {"id": id, "status": "in_progress"}}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.completed", "response": {"id": id, "status": "completed", "output": [item], "usage": usage}}),
    ];
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], sse(&events)).into_response()
}
