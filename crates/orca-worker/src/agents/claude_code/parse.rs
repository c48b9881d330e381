//! Claude Code's `--output-format stream-json` lines → events.
//!
//! | line | events |
//! |---|---|
//! | `system/init` | `session` {sessionId, model} |
//! | `system/api_retry` | `warning` (status, error, attempt) |
//! | `system/permission_denied` | `warning` (tool, message) |
//! | `system/compact_boundary` | `log` |
//! | `system/status`, `thinking_tokens`, `hook_*`, `stream_event` | nothing (progress noise) |
//! | `assistant` | per content block: `text`, `thinking`, `tool_call`; an API-error message (`"error"`, `is_api_error_message`) gives `error` |
//! | `user` | `tool_result` per block; harness notices like `[Request interrupted by user]` give `warning` |
//! | `rate_limit_event` | `warning` unless `allowed` |
//! | `result` | `usage` {tokens, cache, costUsd} then `result` {success = !is_error, text, numTurns, durationMs, usage, sessionId, reason} |
//! | anything else, or not JSON | `raw` {source: "claude-code"} |
//!
//! The verdict comes from `result.is_error` only: API failures arrive as `subtype: "success"`
//! with `is_error: true`.

use crate::agents::cli::{LineParser, MAX_TEXT_BYTES, MAX_TOOL_OUTPUT_BYTES, Verdict, bounded, raw};
use orca_core::AgentEvent;
use orca_core::event::Usage;
use serde_json::{Value, json};

pub const SOURCE: &str = "claude-code";

#[derive(Debug, Default)]
pub struct ClaudeParser {
    verdict: Option<Verdict>,
}

impl ClaudeParser {
    pub fn new() -> Self {
        Self::default()
    }
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn u(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

impl LineParser for ClaudeParser {
    fn line(&mut self, line: &str) -> Vec<AgentEvent> {
        let v: Value = match serde_json::from_str(line) {
            Ok(v @ Value::Object(_)) => v,
            Ok(other) => return vec![raw(SOURCE, other)],
            Err(_) => return vec![raw(SOURCE, Value::String(line.to_owned()))],
        };
        let events = match s(&v, "type") {
            Some("system") => system(&v),
            Some("assistant") => assistant(&v),
            Some("user") => user(&v),
            Some("result") => self.result(&v),
            Some("stream_event") => Some(vec![]),
            Some("rate_limit_event") => rate_limit(&v),
            _ => None,
        };
        events.unwrap_or_else(|| vec![raw(SOURCE, v)])
    }

    fn verdict(&self) -> Verdict {
        self.verdict.clone().unwrap_or(Verdict::Unknown)
    }
}

fn system(v: &Value) -> Option<Vec<AgentEvent>> {
    Some(match s(v, "subtype")? {
        "init" => vec![AgentEvent::Session {
            session_id: s(v, "session_id").map(Into::into),
            model: s(v, "model").map(Into::into),
        }],
        "api_retry" => {
            let status = v.get("error_status").filter(|x| !x.is_null()).map(|x| format!(" {x}")).unwrap_or_default();
            let error = s(v, "error").map(|e| format!(" ({e})")).unwrap_or_default();
            let attempt = u(v, "attempt").map_or("?".into(), |n| n.to_string());
            let max = u(v, "max_retries").map_or("?".into(), |n| n.to_string());
            let delay = u(v, "retry_delay_ms").map(|ms| format!(" in {ms} ms")).unwrap_or_default();
            vec![AgentEvent::Warning {
                message: format!("model API error{status}{error}; retry {attempt} of {max}{delay}"),
            }]
        }
        "permission_denied" => {
            let tool = s(v, "tool_name").unwrap_or("a tool");
            let msg = s(v, "message").map(|m| format!(": {m}")).unwrap_or_default();
            vec![AgentEvent::Warning { message: format!("permission denied for {tool}{msg}") }]
        }
        "compact_boundary" => vec![AgentEvent::Log { message: "the agent compacted its context".into() }],
        "status" | "thinking_tokens" | "hook_started" | "hook_response" | "hook_progress" => vec![],
        _ => return None,
    })
}

fn assistant(v: &Value) -> Option<Vec<AgentEvent>> {
    let msg = v.get("message")?;
    let blocks = msg.get("content")?.as_array()?;
    let api_error = v.get("error").is_some_and(|e| !e.is_null())
        || v.get("is_api_error_message").and_then(Value::as_bool).unwrap_or(false);
    let mut out = Vec::new();
    for b in blocks {
        match s(b, "type") {
            Some("text") => {
                let text = s(b, "text").unwrap_or_default();
                if text.is_empty() {
                    continue;
                }
                out.push(if api_error {
                    AgentEvent::Error { message: bounded(text, MAX_TEXT_BYTES) }
                } else {
                    AgentEvent::Text { text: bounded(text, MAX_TEXT_BYTES) }
                });
            }
            Some("thinking") => {
                let text = s(b, "thinking").unwrap_or_default();
                if !text.is_empty() {
                    out.push(AgentEvent::Thinking { text: bounded(text, MAX_TEXT_BYTES) });
                }
            }
            Some("redacted_thinking") => {}
            Some("tool_use" | "server_tool_use" | "mcp_tool_use") => out.push(AgentEvent::ToolCall {
                tool_call_id: s(b, "id").unwrap_or_default().to_owned(),
                name: s(b, "name").unwrap_or("tool").to_owned(),
                input: b.get("input").cloned().unwrap_or(Value::Null),
            }),
            _ => out.push(raw(SOURCE, json!({"type": "assistant", "block": b}))),
        }
    }
    Some(out)
}

fn user(v: &Value) -> Option<Vec<AgentEvent>> {
    let content = v.get("message")?.get("content")?;
    let blocks = match content {
        Value::Array(b) => b.as_slice(),
        Value::String(_) => return Some(vec![]), // the prompt echoed back
        _ => return None,
    };
    let mut out = Vec::new();
    for b in blocks {
        match s(b, "type") {
            Some("tool_result") => out.push(AgentEvent::ToolResult {
                tool_call_id: s(b, "tool_use_id").unwrap_or_default().to_owned(),
                output: Value::String(bounded(&tool_output(b.get("content")), MAX_TOOL_OUTPUT_BYTES)),
                is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            }),
            Some("text") => {
                let text = s(b, "text").unwrap_or_default().trim();
                if text.starts_with('[') && text.ends_with(']') {
                    out.push(AgentEvent::Warning { message: text.trim_matches(['[', ']']).to_owned() });
                } else {
                    out.push(raw(SOURCE, json!({"type": "user", "block": b})));
                }
            }
            _ => out.push(raw(SOURCE, json!({"type": "user", "block": b}))),
        }
    }
    Some(out)
}

/// A tool result's content as text: a string, or the text parts of a list of blocks.
fn tool_output(content: Option<&Value>) -> String {
    match content {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match s(p, "type") {
                Some("text") => s(p, "text").unwrap_or_default().to_owned(),
                Some(other) => format!("[{other}]"),
                None => p.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other.to_string(),
    }
}

fn rate_limit(v: &Value) -> Option<Vec<AgentEvent>> {
    let status = v.get("rate_limit_info").and_then(|i| s(i, "status"))?;
    Some(if status == "allowed" {
        vec![]
    } else {
        vec![AgentEvent::Warning { message: format!("rate limit: {status}") }]
    })
}

impl ClaudeParser {
    fn result(&mut self, v: &Value) -> Option<Vec<AgentEvent>> {
        let is_error = v.get("is_error").and_then(Value::as_bool)?;
        let usage = v.get("usage").map(|us| Usage {
            input_tokens: u(us, "input_tokens").unwrap_or(0),
            output_tokens: u(us, "output_tokens").unwrap_or(0),
            cache_read_tokens: u(us, "cache_read_input_tokens"),
            cache_write_tokens: u(us, "cache_creation_input_tokens"),
            cost_usd: v.get("total_cost_usd").and_then(Value::as_f64),
        });
        let subtype = s(v, "subtype");
        let terminal = s(v, "terminal_reason");
        let text = s(v, "result").map(|t| bounded(t, MAX_TEXT_BYTES));
        let errors: Vec<&str> = v
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let reason = terminal.or(if is_error { subtype } else { None }).map(str::to_owned);
        self.verdict = Some(if is_error {
            let label = match (subtype, terminal) {
                (_, Some(t)) => t,
                (Some(st), None) => st,
                (None, None) => "error",
            };
            let detail = if !errors.is_empty() {
                errors.join("; ")
            } else {
                text.clone().unwrap_or_else(|| "no details".into())
            };
            Verdict::Failure(format!("{label}: {detail}"))
        } else {
            Verdict::Success
        });
        let mut out = Vec::new();
        if let Some(us) = &usage {
            out.push(AgentEvent::Usage(us.clone()));
        }
        out.push(AgentEvent::Result {
            success: !is_error,
            text,
            num_turns: u(v, "num_turns").map(|n| n.min(u32::MAX as u64) as u32),
            duration_ms: u(v, "duration_ms"),
            usage,
            session_id: s(v, "session_id").map(Into::into),
            reason,
        });
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[Value]) -> (Vec<AgentEvent>, Verdict) {
        let mut p = ClaudeParser::new();
        let mut out = Vec::new();
        for l in lines {
            out.extend(p.line(&l.to_string()));
        }
        out.extend(p.finish());
        (out, p.verdict())
    }

    #[test]
    fn maps_each_kind_of_line() {
        let (ev, verdict) = parse(&[
            json!({"type": "system", "subtype": "init", "session_id": "s1", "model": "m"}),
            json!({"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 3, "retry_delay_ms": 500, "error_status": 529, "error": "overloaded"}),
            json!({"type": "assistant", "message": {"id": "m1", "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "hi"},
                {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]}}),
            json!({"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "a"}, {"type": "image"}], "is_error": true}]}}),
            json!({"type": "system", "subtype": "permission_denied", "tool_name": "Write", "message": "nope"}),
            json!({"type": "system", "subtype": "status", "status": "requesting"}),
            json!({"type": "result", "subtype": "success", "is_error": false, "result": "done", "num_turns": 2, "duration_ms": 1200,
                "session_id": "s1", "total_cost_usd": 0.25, "terminal_reason": "completed",
                "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 4}}),
        ]);
        assert_eq!(verdict, Verdict::Success);
        let usage = Usage {
            input_tokens: 10,
            output_tokens: 5,
            cache_read_tokens: Some(3),
            cache_write_tokens: Some(4),
            cost_usd: Some(0.25),
        };
        assert_eq!(
            ev,
            vec![
                AgentEvent::Session { session_id: Some("s1".into()), model: Some("m".into()) },
                AgentEvent::Warning { message: "model API error 529 (overloaded); retry 1 of 3 in 500 ms".into() },
                AgentEvent::Thinking { text: "hmm".into() },
                AgentEvent::Text { text: "hi".into() },
                AgentEvent::ToolCall {
                    tool_call_id: "t1".into(),
                    name: "Bash".into(),
                    input: json!({"command": "ls"})
                },
                AgentEvent::ToolResult { tool_call_id: "t1".into(), output: json!("a\n[image]"), is_error: true },
                AgentEvent::Warning { message: "permission denied for Write: nope".into() },
                AgentEvent::Usage(usage.clone()),
                AgentEvent::Result {
                    success: true,
                    text: Some("done".into()),
                    num_turns: Some(2),
                    duration_ms: Some(1200),
                    usage: Some(usage),
                    session_id: Some("s1".into()),
                    reason: Some("completed".into()),
                },
            ]
        );
    }

    #[test]
    fn api_errors_fail_even_with_subtype_success() {
        let (ev, verdict) = parse(&[
            json!({"type": "assistant", "error": "authentication_failed", "is_api_error_message": true,
                "message": {"model": "<synthetic>", "content": [{"type": "text", "text": "API Error: 401"}]}}),
            json!({"type": "result", "subtype": "success", "is_error": true, "result": "API Error: 401", "terminal_reason": "api_error"}),
        ]);
        assert_eq!(ev[0], AgentEvent::Error { message: "API Error: 401".into() });
        assert_eq!(verdict, Verdict::Failure("api_error: API Error: 401".into()));
        let (_, verdict) = parse(&[
            json!({"type": "result", "subtype": "error_max_turns", "is_error": true, "errors": ["Reached maximum number of turns (1)"]}),
        ]);
        assert_eq!(verdict, Verdict::Failure("error_max_turns: Reached maximum number of turns (1)".into()));
    }

    #[test]
    fn unknown_and_broken_lines_are_raw() {
        let mut p = ClaudeParser::new();
        assert_eq!(p.line("not json"), vec![raw(SOURCE, json!("not json"))]);
        assert_eq!(p.line("[1,2]"), vec![raw(SOURCE, json!([1, 2]))]);
        assert_eq!(p.line(r#"{"type":"brand_new","x":1}"#), vec![raw(SOURCE, json!({"type": "brand_new", "x": 1}))]);
        assert_eq!(p.line(r#"{"type":"result"}"#), vec![raw(SOURCE, json!({"type": "result"}))]);
        assert_eq!(p.line(r#"{"type":"system","subtype":"task_started"}"#).len(), 1);
        assert_eq!(p.verdict(), Verdict::Unknown);
    }
}
