//! The agent parsers over every recorded transcript in `tests/fixtures/transcripts/` (real CLI
//! output), plus a property test: no line, however odd, makes a parser panic.

use orca_core::AgentEvent;
use orca_worker::agents::claude_code::parse::ClaudeParser;
use orca_worker::agents::cli::{LineParser, Verdict};
use orca_worker::agents::codex::parse::CodexParser;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/transcripts")
}

fn parser_for(name: &str) -> Box<dyn LineParser> {
    if name.starts_with("claude-") {
        Box::new(ClaudeParser::new())
    } else if name.starts_with("codex-") {
        Box::new(CodexParser::new(None))
    } else {
        panic!("no parser for fixture {name}: name it claude-* or codex-*")
    }
}

struct Parsed {
    events: Vec<AgentEvent>,
    verdict: Verdict,
}

impl Parsed {
    fn kinds(&self) -> Vec<&'static str> {
        self.events.iter().map(AgentEvent::kind).collect()
    }

    fn has(&self, kind: &str) -> bool {
        self.kinds().contains(&kind)
    }

    fn tool_names(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| if let AgentEvent::ToolCall { name, .. } = e { Some(name.as_str()) } else { None })
            .collect()
    }
}

fn parse_file(path: &Path) -> Parsed {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut p = parser_for(&name);
    let text = std::fs::read_to_string(path).unwrap();
    let mut events = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        events.extend(p.line(line));
    }
    events.extend(p.finish());
    Parsed { events, verdict: p.verdict() }
}

fn failure(v: &Verdict) -> &str {
    match v {
        Verdict::Failure(m) => m,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// What each transcript must yield. A new fixture without an entry fails the test, so every
/// recording gets looked at.
fn check(name: &str, p: &Parsed) {
    let kinds = p.kinds();
    match name {
        "claude-gleam-basic_query.jsonl" | "claude-local-fake-text.jsonl" => {
            assert_eq!(p.verdict, Verdict::Success);
            assert_eq!(kinds, ["session", "text", "usage", "result"]);
        }
        "claude-gleam-tool-use-assembled.jsonl" => {
            assert_eq!(p.verdict, Verdict::Success);
            assert_eq!(kinds, ["session", "tool_call", "tool_result", "usage", "result"]);
            assert_eq!(p.tool_names(), ["Bash"]);
        }
        "claude-local-fake-bash-thinking-partial.jsonl" => {
            assert_eq!(p.verdict, Verdict::Success);
            assert_eq!(kinds, ["session", "thinking", "tool_call", "tool_result", "text", "usage", "result"]);
        }
        "claude-local-fake-write-acceptEdits.jsonl" => {
            assert_eq!(p.verdict, Verdict::Success);
            assert_eq!(kinds, ["session", "text", "tool_call", "tool_result", "text", "usage", "result"]);
            assert_eq!(p.tool_names(), ["Write"]);
            let cost = p.events.iter().find_map(|e| if let AgentEvent::Usage(u) = e { u.cost_usd } else { None });
            assert!(cost.is_some_and(|c| c > 0.0));
        }
        "claude-local-fake-error-max-turns.jsonl" => {
            assert!(failure(&p.verdict).contains("Reached maximum number of turns (1)"), "{:?}", p.verdict);
            assert!(
                matches!(p.events.last(), Some(AgentEvent::Result { success: false, reason: Some(r), num_turns: Some(2), .. }) if r == "max_turns")
            );
        }
        "claude-recorded-401.jsonl" => {
            assert!(failure(&p.verdict).contains("401"), "{:?}", p.verdict);
            assert_eq!(kinds, ["session", "warning", "error", "usage", "result"]);
        }
        "claude-recorded-500.jsonl" => {
            assert!(failure(&p.verdict).contains("api_error"), "{:?}", p.verdict);
            assert_eq!(kinds, ["session", "warning", "error", "usage", "result"]);
        }
        "claude-recorded-sigint.jsonl" => {
            assert_eq!(p.verdict, Verdict::Unknown);
            assert_eq!(kinds, ["session", "warning"]);
        }
        "codex-local-fake-text.jsonl" => {
            assert_eq!(p.verdict, Verdict::Success);
            assert_eq!(kinds, ["session", "warning", "text", "usage", "result"]);
        }
        "codex-local-fake-shell-bypass.jsonl" => {
            assert_eq!(p.verdict, Verdict::Success);
            assert_eq!(kinds, ["session", "warning", "tool_call", "tool_result", "text", "usage", "result"]);
            assert_eq!(p.tool_names(), ["shell"]);
        }
        "codex-local-fake-apply-patch.jsonl" => {
            assert_eq!(p.verdict, Verdict::Success);
            assert_eq!(kinds, ["session", "tool_call", "tool_result", "text", "usage", "result"]);
            assert_eq!(p.tool_names(), ["apply_patch"]);
        }
        "codex-official-docs-exec-sample.jsonl" => {
            assert_eq!(p.verdict, Verdict::Success);
            assert_eq!(
                kinds,
                ["session", "thinking", "tool_call", "tool_result", "thinking", "text", "usage", "result"]
            );
        }
        "codex-local-fake-error-500.jsonl" | "codex-recorded-error-500-retry.jsonl" => {
            assert!(failure(&p.verdict).contains("high demand"), "{:?}", p.verdict);
            assert!(kinds.iter().filter(|k| **k == "warning").count() >= 2, "{kinds:?}");
            assert_eq!(kinds.last(), Some(&"result"));
        }
        "codex-recorded-error-401.jsonl" => {
            assert!(failure(&p.verdict).contains("401 Unauthorized"), "{:?}", p.verdict);
            assert_eq!(kinds, ["session", "warning", "warning", "result"]);
        }
        "codex-recorded-sigint.jsonl" => {
            assert_eq!(p.verdict, Verdict::Unknown);
            assert_eq!(kinds, ["session"]);
        }
        other => panic!("fixture {other} has no expectations in tests/transcripts.rs; add them"),
    }
}

#[test]
fn every_transcript_parses_as_expected() {
    let mut seen = 0;
    let mut files: Vec<_> = std::fs::read_dir(fixtures()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "jsonl")) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = parse_file(path);
        assert!(
            !parsed.has("raw"),
            "{name}: some lines were not understood: {:?}",
            parsed.events.iter().filter(|e| e.kind() == "raw").collect::<Vec<_>>()
        );
        check(&name, &parsed);
        // Every event survives the trip through JSON that the backend makes.
        for e in &parsed.events {
            let line = serde_json::to_string(e).unwrap();
            assert_eq!(&AgentEvent::from_json_line(&line), e, "{name}: {line}");
        }
        seen += 1;
    }
    assert!(seen >= 17, "only {seen} transcripts found");
}

/// The shared fixture folder (beside the repository, when present) holds nothing this crate's
/// copy lacks.
#[test]
fn the_shared_transcripts_are_all_copied_here() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/agent-transcripts");
    let Ok(dir) = std::fs::read_dir(&shared) else {
        eprintln!("note: {} not present; nothing to compare", shared.display());
        return;
    };
    for e in dir {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            let mine = fixtures().join(p.file_name().unwrap());
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(&mine).unwrap_or_default(),
                "{} differs or is missing here",
                p.display()
            );
        }
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn json_ish() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| serde_json::to_string(&n).unwrap_or("0".into())),
            ".*".prop_map(|s| serde_json::to_string(&s).unwrap()),
            prop::sample::select(vec![
                "\"system\"",
                "\"assistant\"",
                "\"user\"",
                "\"result\"",
                "\"init\"",
                "\"api_retry\"",
                "\"text\"",
                "\"tool_use\"",
                "\"tool_result\"",
                "\"thread.started\"",
                "\"turn.completed\"",
                "\"turn.failed\"",
                "\"item.started\"",
                "\"item.completed\"",
                "\"command_execution\"",
                "\"todo_list\"",
                "\"error\"",
                "\"file_change\"",
                "\"mcp_tool_call\"",
            ])
            .prop_map(str::to_owned),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop::sample::select(vec![
                "type",
                "subtype",
                "message",
                "content",
                "item",
                "items",
                "usage",
                "is_error",
                "result",
                "text",
                "id",
                "name",
                "input",
                "error",
                "changes",
                "status",
                "exit_code",
                "aggregated_output",
                "session_id",
                "thread_id",
                "tool_use_id",
                "num_turns",
                "total_cost_usd",
                "input_tokens",
                "errors",
                "rate_limit_info",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((keys, inner), 0..6).prop_map(|kv| {
                    let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn no_line_makes_a_parser_panic(lines in prop::collection::vec(prop_oneof![json_ish(), ".*"], 1..8)) {
            for mut p in [Box::new(ClaudeParser::new()) as Box<dyn LineParser>, Box::new(CodexParser::new(None))] {
                for l in &lines {
                    for e in p.line(l) {
                        // What comes out is always a valid event line for the backend.
                        let line = serde_json::to_string(&e).unwrap();
                        prop_assert_eq!(AgentEvent::from_json_line(&line).kind(), e.kind());
                    }
                }
                let _ = p.finish();
                let _ = p.verdict();
            }
        }
    }
}
