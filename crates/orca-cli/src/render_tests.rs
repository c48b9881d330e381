//! Tests of the terminal rendering (plain text, colour off).
use super::*;
use serde_json::json;

fn line(event: Value) -> String {
    let mut rec = json!({"id": 3, "jobId": "0193a000-0000-7000-8000-000000000001",
        "timestamp": "2026-12-04T10:00:01Z", "v": 1});
    rec.as_object_mut().unwrap().extend(event.as_object().unwrap().clone());
    event_line(&rec, false)
}

#[test]
fn renders_each_event_type() {
    assert_eq!(line(json!({"type": "text", "text": "hello"})), "[#3 10:00:01] text  hello");
    assert_eq!(line(json!({"type": "text", "text": "a\nb"})), "[#3 10:00:01] text  a\n              b");
    assert_eq!(line(json!({"type": "thinking", "text": "hmm"})), "[#3 10:00:01] thinking  hmm");
    assert_eq!(line(json!({"type": "log", "message": "cloning"})), "[#3 10:00:01] log  cloning");
    assert_eq!(line(json!({"type": "session", "sessionId": "s1", "model": "m"})), "[#3 10:00:01] session s1 model m");
    assert_eq!(
        line(json!({"type": "tool_call", "toolCallId": "t", "name": "Bash", "input": {"command": "ls -la"}})),
        "[#3 10:00:01] → tool Bash: ls -la"
    );
    assert_eq!(
        line(json!({"type": "tool_call", "toolCallId": "t", "name": "Read", "input": {"file_path": "/a/b.rs"}})),
        "[#3 10:00:01] → tool Read: /a/b.rs"
    );
    assert_eq!(
        line(json!({"type": "tool_result", "toolCallId": "t", "output": "x".repeat(42), "isError": false})),
        "[#3 10:00:01] ← ok (42 bytes)"
    );
    assert_eq!(
        line(json!({"type": "tool_result", "toolCallId": "t", "output": "no such file\nmore", "isError": true})),
        "[#3 10:00:01] ← error: no such file"
    );
    assert_eq!(line(json!({"type": "warning", "message": "w"})), "[#3 10:00:01] warning: w");
    assert_eq!(line(json!({"type": "error", "message": "e"})), "[#3 10:00:01] error: e");
    assert_eq!(
        line(json!({"type": "usage", "inputTokens": 1200, "outputTokens": 350, "costUsd": 0.0123})),
        "[#3 10:00:01] usage  tokens in/out 1200/350 cost $0.0123"
    );
    assert_eq!(
        line(json!({"type": "result", "success": true, "numTurns": 4, "durationMs": 1500})),
        "[#3 10:00:01] result: success in 4 turns (1.5s)"
    );
    assert_eq!(
        line(json!({"type": "result", "success": false, "numTurns": 1, "reason": "max_turns",
            "usage": {"inputTokens": 12, "outputTokens": 5, "costUsd": 0.000148}})),
        "[#3 10:00:01] result: failure (max_turns) in 1 turn, 12 in / 5 out tokens, cost $0.0001"
    );
    assert_eq!(
        line(json!({"type": "result", "success": true, "text": "all done"})),
        "[#3 10:00:01] result: success\n              all done"
    );
    assert_eq!(
        line(json!({"type": "plan", "items": [{"text": "read", "completed": true}, {"text": "fix"}]})),
        "[#3 10:00:01] plan  [x] read\n              [ ] fix"
    );
    assert_eq!(
        line(
            json!({"type": "changes", "files": [{"path": "a.rs", "status": "modified", "insertions": 2, "deletions": 1}],
            "diffstat": {"filesChanged": 1, "insertions": 2, "deletions": 1}, "patch": "…", "truncated": true})
        ),
        "[#3 10:00:01] changes  1 file, +2 -1: a.rs (modified) (patch truncated)"
    );
    assert_eq!(
        line(json!({"type": "pushed", "branch": "orca/j", "commit": "0123456789abcdef0123"})),
        "[#3 10:00:01] pushed  branch orca/j at 0123456789ab"
    );
    assert_eq!(
        line(json!({"type": "tool_call", "toolCallId": "t", "name": "Grep", "input": {"pattern": "fn main"}})),
        "[#3 10:00:01] → tool Grep: fn main"
    );
    assert_eq!(
        line(json!({"type": "raw", "source": "claude", "data": {"k": 1}})),
        "[#3 10:00:01] raw claude: {\"k\":1}"
    );
}

#[test]
fn renders_status_changes() {
    assert_eq!(line(json!({"type": "status", "status": "running"})), "[#3 10:00:01] ● running");
    assert_eq!(
        line(json!({"type": "status", "status": "succeeded", "exitCode": 0})),
        "[#3 10:00:01] ✔ succeeded (exit 0)"
    );
    assert_eq!(
        line(json!({"type": "status", "status": "failed", "reason": "boom", "exitCode": 3})),
        "[#3 10:00:01] ✖ failed: boom (exit 3)"
    );
    assert_eq!(line(json!({"type": "status", "status": "timed_out"})), "[#3 10:00:01] ✖ timed_out");
}

#[test]
fn unknown_or_broken_events_never_fail() {
    assert_eq!(
        line(json!({"type": "from_the_future", "x": 1})),
        "[#3 10:00:01] raw {\"type\":\"from_the_future\",\"x\":1}"
    );
    assert_eq!(line(json!({"type": "text"})), "[#3 10:00:01] raw {\"type\":\"text\"}");
    assert_eq!(event_line(&json!("just a string"), false), "[#? --:--:--] raw \"just a string\"");
    assert_eq!(event_line(&json!({"type": "text", "text": "hi"}), false), "[#? --:--:--] text  hi");
}

#[test]
fn colour_is_only_added_when_asked() {
    let ev = AgentEvent::Error { message: "e".into() };
    assert_eq!(event_body(&ev, false), "error: e");
    let coloured = event_body(&ev, true);
    assert!(coloured.contains("\u{1b}[") && coloured.contains("error: e"), "{coloured:?}");
}

#[test]
fn tool_inputs_are_summarised() {
    assert_eq!(tool_input_summary(&json!({"command": "cargo test\n--all"})), "cargo test --all");
    let long = json!({"items": "x".repeat(200)});
    let s = tool_input_summary(&long);
    assert_eq!(s.chars().count(), 80);
    assert!(s.starts_with("{\"items\":\"xxx") && s.ends_with('…'));
}

#[test]
fn diff_stat_lists_files_and_totals() {
    let c: Changes = serde_json::from_value(json!({"files": [
        {"path": "src/a.rs", "status": "modified", "insertions": 3, "deletions": 1},
        {"path": "b.txt", "status": "renamed", "oldPath": "old.txt", "insertions": 0, "deletions": 0},
        {"path": "img.png", "status": "added"}],
        "diffstat": {"filesChanged": 3, "insertions": 3, "deletions": 1}, "patch": "", "truncated": false}))
    .unwrap();
    assert_eq!(
        diff_stat(&c, false),
        "modified  src/a.rs  +3 -1\nrenamed   b.txt     +0 -0 (from old.txt)\nadded     img.png   binary\n3 files changed, 3 insertions(+), 1 deletions(-)\n"
    );
}

#[test]
fn truncation_is_by_character() {
    assert_eq!(truncate("héllo wörld", 5), "héll…");
    assert_eq!(truncate("short", 40), "short");
}

fn job(status: JobStatus) -> Job {
    serde_json::from_value(json!({
        "id": "0193a000-0000-7000-8000-000000000001", "repoUrl": null, "prompt": "fix the flaky test in the scheduler module please",
        "agentType": "echo", "branch": null, "config": {}, "timeoutSeconds": 1800, "webhookUrl": null,
        "status": status, "createdAt": "2026-12-04T10:00:00Z", "startedAt": "2026-12-04T10:00:02Z",
        "finishedAt": "2026-12-04T10:00:12Z", "exitCode": 3, "failureReason": "agent exited with code 3",
        "retryOf": null
    }))
    .unwrap()
}

#[test]
fn job_views() {
    let s = job_summary(&job(JobStatus::Failed), false);
    assert!(
        s.starts_with(
            "id:        0193a000-0000-7000-8000-000000000001\nstatus:    failed\nagent:     echo\nrepo:      -\n"
        ),
        "{s}"
    );
    assert!(
        s.contains("finished:  2026-12-04 10:00:12 (ran 10s)\nexit code: 3\nfailure:   agent exited with code 3\n"),
        "{s}"
    );
    assert!(!s.contains("retry of") && !s.contains("usage:"));
    let mut done = job(JobStatus::Succeeded);
    done.outcome =
        serde_json::from_value(json!({"usage": {"inputTokens": 24, "outputTokens": 10, "costUsd": 0.000296},
        "numTurns": 2, "sessionId": "s-1", "resultBranch": "orca/x", "resultCommit": "abcdef0123456789",
        "changes": {"eventId": 9, "filesChanged": 2, "insertions": 3, "deletions": 1, "truncated": false}}))
        .unwrap();
    let s = job_summary(&done, false);
    assert!(s.contains("usage:     24 in / 10 out tokens, cost $0.0003\nturns:     2\nsession:   s-1\n"), "{s}");
    assert!(s.contains("changes:   2 files, +3 -1 (orca job diff 0193a000-0000-7000-8000-000000000001)\npushed:    orca/x at abcdef012345\n"), "{s}");
    let t = job_table(&JobList { jobs: vec![done], total: 1, limit: 1, offset: 0 }, false);
    assert!(t.lines().nth(1).unwrap().contains("  $0.0003  fix the flaky"), "{t}");

    let list = JobList { jobs: vec![job(JobStatus::Running)], total: 7, limit: 1, offset: 0 };
    let t = job_table(&list, false);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[0],
        "ID                                    STATUS     AGENT        CREATED                  COST  PROMPT"
    );
    assert_eq!(
        lines[1],
        "0193a000-0000-7000-8000-000000000001  running    echo         2026-12-04 10:00:00         -  fix the flaky test in the scheduler mod…"
    );
    assert_eq!(lines[2], "1 of 7 jobs");
    assert_eq!(
        outcome_message(&job(JobStatus::Failed)),
        "job 0193a000-0000-7000-8000-000000000001 failed: agent exited with code 3 (exit 3)"
    );
}
