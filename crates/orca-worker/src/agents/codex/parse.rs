//! Codex's `exec --json` lines → events.
//!
//! | line | events |
//! |---|---|
//! | `thread.started` | `session` {sessionId = thread_id, model} |
//! | `turn.started` | nothing |
//! | `item.*` `agent_message` | `text` (on completion) |
//! | `item.*` `reasoning` | `thinking` (on completion) |
//! | `item.*` `command_execution`, `file_change`, `mcp_tool_call`, `web_search`, `collab_tool_call` | `tool_call` when it starts (or completes unseen), `tool_result` when it completes |
//! | `item.*` `todo_list` | `plan` {items} whenever it starts or changes |
//! | `item.*` `plan` | `text` |
//! | `item.*` `error`, `error` | `warning` (not terminal: Codex prints one per retry) |
//! | `turn.completed` | `usage` (the thread's running totals) |
//! | `turn.failed` | nothing yet: the failure is the verdict |
//! | anything else, or not JSON | `raw` {source: "codex"} |
//!
//! After the last line [`LineParser::finish`] emits one `result` (last agent message as text,
//! completed turns, usage, thread id) if any turn ended. The verdict: failure if a turn failed,
//! success if one completed, unknown otherwise.

use crate::agents::cli::{LineParser, MAX_TEXT_BYTES, MAX_TOOL_OUTPUT_BYTES, Verdict, bounded, raw};
use orca_core::AgentEvent;
use orca_core::event::{PlanItem, Usage};
use serde_json::{Value, json};
use std::collections::HashSet;

pub const SOURCE: &str = "codex";

#[derive(Debug, Default)]
pub struct CodexParser {
    model: Option<String>,
    thread_id: Option<String>,
    started: HashSet<String>,
    turns_completed: u32,
    failure: Option<String>,
    usage: Option<Usage>,
    last_message: Option<String>,
}

impl CodexParser {
    /// `model`: the model the job asked for, shown in the `session` event.
    pub fn new(model: Option<String>) -> Self {
        Self { model, ..Self::default() }
    }
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn u(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

impl LineParser for CodexParser {
    fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        let v: Value = match serde_json::from_str(line) {
            Ok(v @ Value::Object(_)) => v,
            Ok(other) => return vec![raw(SOURCE, other)],
            Err(_) => return vec![raw(SOURCE, Value::String(line.to_owned()))],
        };
        let events = match s(&v, "type") {
            Some("thread.started") => {
                self.thread_id = s(&v, "thread_id").map(Into::into);
                Some(vec![AgentEvent::Session { session_id: self.thread_id.clone(), model: self.model.clone() }])
            }
            Some("turn.started") => Some(vec![]),
            Some("turn.completed") => {
                self.turns_completed += 1;
                v.get("usage").map(|us| {
                    let usage = Usage {
                        input_tokens: u(us, "input_tokens").unwrap_or(0),
                        output_tokens: u(us, "output_tokens").unwrap_or(0),
                        cache_read_tokens: u(us, "cached_input_tokens"),
                        cache_write_tokens: u(us, "cache_write_input_tokens"),
                        cost_usd: None,
                    };
                    self.usage = Some(usage.clone());
                    vec![AgentEvent::Usage(usage)]
                })
            }
            Some("turn.failed") => {
                let msg = v.get("error").and_then(|e| s(e, "message")).unwrap_or("the turn failed");
                self.failure = Some(msg.to_owned());
                Some(vec![])
            }
            Some("error") => s(&v, "message").map(|m| vec![AgentEvent::Warning { message: m.to_owned() }]),
            Some(phase @ ("item.started" | "item.updated" | "item.completed")) => {
                let item = v.get("item");
                item.and_then(|i| self.item(phase, i))
            }
            _ => None,
        };
        events.unwrap_or_else(|| vec![raw(SOURCE, v)])
    }

    fn finish(&mut self) -> Vec<AgentEvent> {
        if self.turns_completed == 0 && self.failure.is_none() {
            return vec![];
        }
        vec![AgentEvent::Result {
            success: self.failure.is_none(),
            text: self.last_message.clone(),
            num_turns: Some(self.turns_completed),
            duration_ms: None,
            usage: self.usage.clone(),
            session_id: self.thread_id.clone(),
            reason: self.failure.clone(),
        }]
    }

    fn verdict(&self) -> Verdict {
        match (&self.failure, self.turns_completed) {
            (Some(f), _) => Verdict::Failure(f.clone()),
            (None, 0) => Verdict::Unknown,
            (None, _) => Verdict::Success,
        }
    }
}

impl CodexParser {
    fn item(&mut self, phase: &str, item: &Value) -> Option<Vec<AgentEvent>> {
        let id = s(item, "id").unwrap_or_default().to_owned();
        let done = phase == "item.completed";
        Some(match s(item, "type")? {
            "agent_message" | "plan" if done => {
                let text = s(item, "text").unwrap_or_default();
                if s(item, "type") == Some("agent_message") {
                    self.last_message = Some(bounded(text, MAX_TEXT_BYTES));
                }
                vec![AgentEvent::Text { text: bounded(text, MAX_TEXT_BYTES) }]
            }
            "reasoning" if done => {
                vec![AgentEvent::Thinking { text: bounded(s(item, "text").unwrap_or_default(), MAX_TEXT_BYTES) }]
            }
            "agent_message" | "plan" | "reasoning" => vec![],
            "error" => vec![AgentEvent::Warning { message: s(item, "message").unwrap_or("error").to_owned() }],
            "todo_list" => {
                let items = item.get("items").and_then(Value::as_array)?;
                let items = items
                    .iter()
                    .map(|i| PlanItem {
                        text: s(i, "text").unwrap_or_default().to_owned(),
                        completed: i.get("completed").and_then(Value::as_bool).unwrap_or(false),
                    })
                    .collect();
                vec![AgentEvent::Plan { items }]
            }
            kind @ ("command_execution" | "file_change" | "mcp_tool_call" | "web_search" | "collab_tool_call") => {
                let mut out = Vec::new();
                if !self.started.contains(&id) {
                    self.started.insert(id.clone());
                    out.push(AgentEvent::ToolCall {
                        tool_call_id: id.clone(),
                        name: tool_name(kind, item),
                        input: tool_input(kind, item),
                    });
                }
                if done {
                    let (output, is_error) = tool_output(kind, item);
                    out.push(AgentEvent::ToolResult { tool_call_id: id, output, is_error });
                }
                out
            }
            _ => return None,
        })
    }
}

fn tool_name(kind: &str, item: &Value) -> String {
    match kind {
        "command_execution" => "shell".into(),
        "file_change" => "apply_patch".into(),
        "mcp_tool_call" => format!("{}.{}", s(item, "server").unwrap_or("mcp"), s(item, "tool").unwrap_or("tool")),
        other => other.into(),
    }
}

fn tool_input(kind: &str, item: &Value) -> Value {
    match kind {
        "command_execution" => json!({"command": s(item, "command").unwrap_or_default()}),
        "file_change" => json!({"changes": item.get("changes").cloned().unwrap_or(Value::Null)}),
        "mcp_tool_call" => item.get("arguments").cloned().unwrap_or(Value::Null),
        "web_search" => json!({"query": s(item, "query").unwrap_or_default()}),
        _ => item.clone(),
    }
}

fn tool_output(kind: &str, item: &Value) -> (Value, bool) {
    let status = s(item, "status").unwrap_or("completed");
    let failed = matches!(status, "failed" | "declined");
    match kind {
        "command_execution" => {
            let out = bounded(s(item, "aggregated_output").unwrap_or_default(), MAX_TOOL_OUTPUT_BYTES);
            let code = item.get("exit_code").and_then(Value::as_i64);
            let out = match code {
                Some(c) if c != 0 => format!("{out}\n[exit code {c}]"),
                _ => out,
            };
            (Value::String(out), failed || code.is_some_and(|c| c != 0))
        }
        "file_change" => {
            let changes = item.get("changes").and_then(Value::as_array).map(|c| {
                c.iter()
                    .map(|ch| format!("{} {}", s(ch, "kind").unwrap_or("update"), s(ch, "path").unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            (Value::String(changes.unwrap_or_default()), failed)
        }
        "mcp_tool_call" => {
            let err = item.get("error").filter(|e| !e.is_null());
            let body = err.or(item.get("result")).cloned().unwrap_or(Value::Null);
            (Value::String(bounded(&body.to_string(), MAX_TOOL_OUTPUT_BYTES)), failed || err.is_some())
        }
        _ => (Value::String(status.to_owned()), failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[Value]) -> (Vec<AgentEvent>, Verdict) {
        let mut p = CodexParser::new(Some("gpt-5.5".into()));
        let mut out = Vec::new();
        for l in lines {
            out.extend(p.line(&l.to_string()));
        }
        out.extend(p.finish());
        (out, p.verdict())
    }

    #[test]
    fn a_successful_thread() {
        let (ev, verdict) = parse(&[
            json!({"type": "thread.started", "thread_id": "th1"}),
            json!({"type": "turn.started"}),
            json!({"type": "item.completed", "item": {"id": "item_0", "type": "reasoning", "text": "think"}}),
            json!({"type": "item.started", "item": {"id": "item_1", "type": "command_execution", "command": "ls", "status": "in_progress"}}),
            json!({"type": "item.completed", "item": {"id": "item_1", "type": "command_execution", "command": "ls", "aggregated_output": "a\n", "exit_code": 2, "status": "failed"}}),
            json!({"type": "item.completed", "item": {"id": "item_2", "type": "file_change", "changes": [{"path": "/w/x", "kind": "add"}], "status": "completed"}}),
            json!({"type": "item.updated", "item": {"id": "item_3", "type": "todo_list", "items": [{"text": "a", "completed": true}, {"text": "b"}]}}),
            json!({"type": "item.completed", "item": {"id": "item_4", "type": "agent_message", "text": "done"}}),
            json!({"type": "turn.completed", "usage": {"input_tokens": 40, "cached_input_tokens": 8, "output_tokens": 12}}),
        ]);
        assert_eq!(verdict, Verdict::Success);
        let kinds: Vec<_> = ev.iter().map(AgentEvent::kind).collect();
        assert_eq!(
            kinds,
            [
                "session",
                "thinking",
                "tool_call",
                "tool_result",
                "tool_call",
                "tool_result",
                "plan",
                "text",
                "usage",
                "result"
            ]
        );
        assert_eq!(ev[0], AgentEvent::Session { session_id: Some("th1".into()), model: Some("gpt-5.5".into()) });
        assert_eq!(
            ev[2],
            AgentEvent::ToolCall {
                tool_call_id: "item_1".into(),
                name: "shell".into(),
                input: json!({"command": "ls"})
            }
        );
        assert_eq!(
            ev[3],
            AgentEvent::ToolResult {
                tool_call_id: "item_1".into(),
                output: json!("a\n\n[exit code 2]"),
                is_error: true
            }
        );
        assert_eq!(
            ev[5],
            AgentEvent::ToolResult { tool_call_id: "item_2".into(), output: json!("add /w/x"), is_error: false }
        );
        assert_eq!(
            ev[6],
            AgentEvent::Plan {
                items: vec![
                    PlanItem { text: "a".into(), completed: true },
                    PlanItem { text: "b".into(), completed: false }
                ]
            }
        );
        let usage = Usage { input_tokens: 40, output_tokens: 12, cache_read_tokens: Some(8), ..Default::default() };
        assert_eq!(
            ev[9],
            AgentEvent::Result {
                success: true,
                text: Some("done".into()),
                num_turns: Some(1),
                duration_ms: None,
                usage: Some(usage),
                session_id: Some("th1".into()),
                reason: None
            }
        );
    }

    #[test]
    fn errors_are_warnings_and_turn_failed_is_the_end() {
        let (ev, verdict) = parse(&[
            json!({"type": "thread.started", "thread_id": "th"}),
            json!({"type": "error", "message": "Reconnecting... 1/1"}),
            json!({"type": "turn.failed", "error": {"message": "unexpected status 401"}}),
        ]);
        assert_eq!(verdict, Verdict::Failure("unexpected status 401".into()));
        assert_eq!(ev[1], AgentEvent::Warning { message: "Reconnecting... 1/1".into() });
        assert!(
            matches!(&ev[2], AgentEvent::Result { success: false, reason: Some(r), .. } if r == "unexpected status 401")
        );
        let (ev, verdict) =
            parse(&[json!({"type": "thread.started", "thread_id": "th"}), json!({"type": "turn.started"})]);
        assert_eq!((ev.len(), verdict), (1, Verdict::Unknown), "no turn ended: no result");
    }

    #[test]
    fn unknown_lines_are_raw() {
        let mut p = CodexParser::new(None);
        assert_eq!(p.line("oops"), vec![raw(SOURCE, json!("oops"))]);
        assert_eq!(p.line(r#"{"type":"item.completed","item":{"type":"hologram"}}"#).len(), 1);
        assert!(matches!(&p.line(r#"{"type":"request_user_input"}"#)[0], AgentEvent::Raw { .. }));
    }
}
