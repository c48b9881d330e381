//! Turning jobs and event records into text for a terminal.
//!
//! Pure functions: they take the data and whether to use colour, and return the text, so tests
//! check the plain rendering. Times are shown in UTC. Events are read as JSON first, so an
//! event type this client does not know is shown as `raw …` rather than failing.

use crate::client::JobList;
use orca_core::{AgentEvent, EventRecord, Job, JobStatus};
use owo_colors::{OwoColorize, Style};
use serde_json::Value;
use std::fmt::Display;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// Applies `style` only when colour is on.
fn paint(text: impl Display, style: Style, color: bool) -> String {
    if color { text.style(style).to_string() } else { text.to_string() }
}

fn status_style(status: JobStatus) -> Style {
    match status {
        JobStatus::Queued | JobStatus::Scheduled => Style::new().cyan(),
        JobStatus::Running => Style::new().blue(),
        JobStatus::Succeeded => Style::new().green(),
        JobStatus::Failed | JobStatus::TimedOut => Style::new().red(),
        JobStatus::Cancelled => Style::new().yellow(),
    }
}

/// A status name, coloured by outcome; padded to `width` before colouring so columns line up.
pub fn status_word(status: JobStatus, width: usize, color: bool) -> String {
    paint(format!("{:width$}", status.as_str()), status_style(status), color)
}

/// At most `max` characters of `s` on one line, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    let one_line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn clock(t: OffsetDateTime) -> String {
    let fmt = format_description!("[hour]:[minute]:[second]");
    t.to_offset(UtcOffset::UTC).format(&fmt).unwrap_or_else(|_| "--:--:--".into())
}

fn datetime(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.to_offset(UtcOffset::UTC).format(&fmt).unwrap_or_else(|_| t.to_string())
}

/// One line (continued lines indented) for one event record as received from the stream.
pub fn event_line(v: &Value, color: bool) -> String {
    let id = v.get("id").and_then(Value::as_u64).map_or("?".to_owned(), |n| n.to_string());
    let time = v
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .map_or("--:--:--".to_owned(), clock);
    let header = format!("[#{id} {time}]");
    let event = match serde_json::from_value::<EventRecord>(v.clone()) {
        Ok(record) => record.event,
        Err(_) => AgentEvent::from_value(v.clone()),
    };
    let body = event_body(&event, color);
    let indent = " ".repeat(header.chars().count() + 1);
    format!("{} {}", paint(header, Style::new().dimmed(), color), body.replace('\n', &format!("\n{indent}")))
}

/// The text of one event, without the `[#id time]` header.
pub fn event_body(event: &AgentEvent, color: bool) -> String {
    match event {
        AgentEvent::Status { status, reason, exit_code } => {
            let mut s = match status {
                JobStatus::Succeeded => "✔ succeeded".to_owned(),
                s if s.is_terminal() => format!("✖ {s}"),
                s => format!("● {s}"),
            };
            if let Some(r) = reason {
                s.push_str(&format!(": {r}"));
            }
            if let Some(code) = exit_code.filter(|_| status.is_terminal()) {
                s.push_str(&format!(" (exit {code})"));
            }
            let style = if status.is_terminal() { status_style(*status).bold() } else { Style::new().bold() };
            paint(s, style, color)
        }
        AgentEvent::Log { message } => format!("{}  {message}", paint("log", Style::new().dimmed(), color)),
        AgentEvent::Session { session_id, model } => {
            let mut s = "session".to_owned();
            if let Some(id) = session_id {
                s.push_str(&format!(" {id}"));
            }
            if let Some(m) = model {
                s.push_str(&format!(" model {m}"));
            }
            paint(s, Style::new().dimmed(), color)
        }
        AgentEvent::Text { text } => format!("{}  {text}", paint("text", Style::new().bold(), color)),
        AgentEvent::Thinking { text } => paint(format!("thinking  {text}"), Style::new().dimmed().italic(), color),
        AgentEvent::ToolCall { name, input, .. } => {
            format!("{} {}", paint(format!("→ tool {name}:"), Style::new().cyan(), color), tool_input_summary(input))
        }
        AgentEvent::ToolResult { output, is_error: false, .. } => {
            paint(format!("← ok ({} bytes)", output_len(output)), Style::new().green().dimmed(), color)
        }
        AgentEvent::ToolResult { output, is_error: true, .. } => {
            let text = match output {
                Value::String(s) => s.lines().next().unwrap_or("").to_owned(),
                other => other.to_string(),
            };
            paint(format!("← error: {}", truncate(&text, 120)), Style::new().red(), color)
        }
        AgentEvent::Usage(u) => {
            let mut s = format!("usage  tokens in/out {}/{}", u.input_tokens, u.output_tokens);
            if u.cache_read_tokens.is_some() || u.cache_write_tokens.is_some() {
                let n = |x: Option<u64>| x.unwrap_or(0);
                s.push_str(&format!(" cache read/write {}/{}", n(u.cache_read_tokens), n(u.cache_write_tokens)));
            }
            if let Some(c) = u.cost_usd {
                s.push_str(&format!(" cost ${c:.4}"));
            }
            paint(s, Style::new().dimmed(), color)
        }
        AgentEvent::Warning { message } => paint(format!("warning: {message}"), Style::new().yellow(), color),
        AgentEvent::Error { message } => paint(format!("error: {message}"), Style::new().red(), color),
        AgentEvent::Result { success, num_turns, duration_ms, usage, .. } => {
            let mut s = format!("result: {}", if *success { "success" } else { "failure" });
            if let Some(n) = num_turns {
                s.push_str(&format!(" in {n} turn{}", if *n == 1 { "" } else { "s" }));
            }
            if let Some(ms) = duration_ms {
                s.push_str(&format!(" ({:.1}s)", *ms as f64 / 1000.0));
            }
            if let Some(c) = usage.as_ref().and_then(|u| u.cost_usd) {
                s.push_str(&format!(", cost ${c:.4}"));
            }
            paint(s, Style::new().bold(), color)
        }
        AgentEvent::Raw { source, data } => {
            let label = source.as_ref().map_or("raw".to_owned(), |s| format!("raw {s}:"));
            format!("{} {}", paint(label, Style::new().dimmed(), color), truncate(&without_envelope(data).to_string(), 200))
        }
    }
}

/// An unknown record kept whole as raw data: drop the fields every record has.
fn without_envelope(data: &Value) -> Value {
    let mut d = data.clone();
    if let Some(obj) = d.as_object_mut() {
        for k in ["id", "jobId", "timestamp", "v"] {
            obj.remove(k);
        }
    }
    d
}

/// What a tool call did, in a few words: its `command`, `file_path`, or the start of its input.
pub fn tool_input_summary(input: &Value) -> String {
    for key in ["command", "file_path", "path"] {
        if let Some(s) = input.get(key).and_then(Value::as_str) {
            return truncate(s, 120);
        }
    }
    match input {
        Value::String(s) => truncate(s, 80),
        other => truncate(&other.to_string(), 80),
    }
}

fn output_len(output: &Value) -> usize {
    match output {
        Value::String(s) => s.len(),
        Value::Null => 0,
        other => other.to_string().len(),
    }
}

/// The `orca job status` view of one job.
pub fn job_summary(job: &Job, color: bool) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("id", job.id.to_string()),
        ("status", status_word(job.status, 0, color)),
        ("agent", job.agent_type.to_string()),
        ("repo", job.repo_url.clone().unwrap_or_else(|| "-".into())),
    ];
    if let Some(b) = &job.branch {
        rows.push(("branch", b.clone()));
    }
    rows.push(("prompt", truncate(&job.prompt, 80)));
    rows.push(("timeout", format!("{}s", job.timeout_seconds)));
    rows.push(("created", datetime(job.created_at)));
    if let Some(t) = job.started_at {
        rows.push(("started", datetime(t)));
    }
    if let Some(t) = job.finished_at {
        let took = job.started_at.map(|s| format!(" (ran {}s)", (t - s).whole_seconds())).unwrap_or_default();
        rows.push(("finished", format!("{}{took}", datetime(t))));
    }
    if let Some(c) = job.exit_code {
        rows.push(("exit code", c.to_string()));
    }
    if let Some(r) = &job.failure_reason {
        rows.push(("failure", r.clone()));
    }
    if let Some(r) = job.retry_of {
        rows.push(("retry of", r.to_string()));
    }
    rows.iter().map(|(k, v)| format!("{:<11}{v}\n", format!("{k}:"))).collect()
}

/// The `orca job list` table, then `N of TOTAL jobs`.
pub fn job_table(list: &JobList, color: bool) -> String {
    let header = format!("{:<36}  {:<9}  {:<11}  {:<19}  PROMPT", "ID", "STATUS", "AGENT", "CREATED");
    let mut out = paint(header, Style::new().bold(), color) + "\n";
    for j in &list.jobs {
        out.push_str(&format!(
            "{:<36}  {}  {:<11}  {:<19}  {}\n",
            j.id.to_string(),
            status_word(j.status, 9, color),
            j.agent_type.as_str(),
            datetime(j.created_at),
            truncate(&j.prompt, 40)
        ));
    }
    out.push_str(&format!("{} of {} jobs\n", list.jobs.len(), list.total));
    out
}

/// Why a followed job did not succeed, for stderr: `job <id> failed: reason (exit 3)`.
pub fn outcome_message(job: &Job) -> String {
    let mut s = format!("job {} {}", job.id, job.status);
    if let Some(r) = &job.failure_reason {
        s.push_str(&format!(": {r}"));
    }
    if let Some(c) = job.exit_code {
        s.push_str(&format!(" (exit {c})"));
    }
    s
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            line(json!({"type": "session", "sessionId": "s1", "model": "m"})),
            "[#3 10:00:01] session s1 model m"
        );
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
            line(json!({"type": "raw", "source": "claude", "data": {"k": 1}})),
            "[#3 10:00:01] raw claude: {\"k\":1}"
        );
    }

    #[test]
    fn renders_status_changes() {
        assert_eq!(line(json!({"type": "status", "status": "running"})), "[#3 10:00:01] ● running");
        assert_eq!(line(json!({"type": "status", "status": "succeeded", "exitCode": 0})), "[#3 10:00:01] ✔ succeeded (exit 0)");
        assert_eq!(
            line(json!({"type": "status", "status": "failed", "reason": "boom", "exitCode": 3})),
            "[#3 10:00:01] ✖ failed: boom (exit 3)"
        );
        assert_eq!(line(json!({"type": "status", "status": "timed_out"})), "[#3 10:00:01] ✖ timed_out");
    }

    #[test]
    fn unknown_or_broken_events_never_fail() {
        assert_eq!(line(json!({"type": "from_the_future", "x": 1})), "[#3 10:00:01] raw {\"type\":\"from_the_future\",\"x\":1}");
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
        let long = json!({"pattern": "x".repeat(200)});
        let s = tool_input_summary(&long);
        assert_eq!(s.chars().count(), 80);
        assert!(s.starts_with("{\"pattern\":\"xxx") && s.ends_with('…'));
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
        assert!(s.starts_with("id:        0193a000-0000-7000-8000-000000000001\nstatus:    failed\nagent:     echo\nrepo:      -\n"), "{s}");
        assert!(s.contains("finished:  2026-12-04 10:00:12 (ran 10s)\nexit code: 3\nfailure:   agent exited with code 3\n"), "{s}");
        assert!(!s.contains("retry of"));

        let list = JobList { jobs: vec![job(JobStatus::Running)], total: 7, limit: 1, offset: 0 };
        let t = job_table(&list, false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "ID                                    STATUS     AGENT        CREATED              PROMPT");
        assert_eq!(
            lines[1],
            "0193a000-0000-7000-8000-000000000001  running    echo         2026-12-04 10:00:00  fix the flaky test in the scheduler mod…"
        );
        assert_eq!(lines[2], "1 of 7 jobs");
        assert_eq!(outcome_message(&job(JobStatus::Failed)), "job 0193a000-0000-7000-8000-000000000001 failed: agent exited with code 3 (exit 3)");
    }
}
