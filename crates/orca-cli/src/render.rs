//! Turning jobs and event records into text for a terminal.
//!
//! Pure functions: they take the data and whether to use colour, and return the text, so tests
//! check the plain rendering. Times are shown in UTC. Events are read as JSON first, so an
//! event type this client does not know is shown as `raw …` rather than failing.

use crate::client::JobList;
use orca_core::event::Usage;
use orca_core::{AgentEvent, Changes, EventRecord, Job, JobStatus};
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
        AgentEvent::Result { success, num_turns, duration_ms, usage, reason, text, .. } => {
            let mut s = format!("result: {}", if *success { "success" } else { "failure" });
            if let (false, Some(r)) = (*success, reason) {
                s.push_str(&format!(" ({})", truncate(r, 80)));
            }
            if let Some(n) = num_turns {
                s.push_str(&format!(" in {n} turn{}", if *n == 1 { "" } else { "s" }));
            }
            if let Some(ms) = duration_ms {
                s.push_str(&format!(" ({:.1}s)", *ms as f64 / 1000.0));
            }
            if let Some(u) = usage {
                s.push_str(&format!(", {}", usage_words(u)));
            }
            if let (true, Some(t)) = (*success, text) {
                s.push_str(&format!("\n{}", truncate(t, 200)));
            }
            paint(s, Style::new().bold(), color)
        }
        AgentEvent::Plan { items } => {
            let lines: Vec<String> =
                items.iter().map(|i| format!("{} {}", if i.completed { "[x]" } else { "[ ]" }, truncate(&i.text, 100))).collect();
            format!("{}  {}", paint("plan", Style::new().bold(), color), lines.join("\n"))
        }
        AgentEvent::Changes(c) => {
            let d = c.diffstat;
            let mut s = format!("changes  {} file{}, +{} -{}", d.files_changed, if d.files_changed == 1 { "" } else { "s" }, d.insertions, d.deletions);
            if !c.files.is_empty() {
                let names: Vec<String> = c.files.iter().take(5).map(|f| format!("{} ({})", f.path, f.status.as_str())).collect();
                s.push_str(&format!(": {}", names.join(", ")));
                if c.files.len() > 5 {
                    s.push_str(&format!(", … {} more", c.files.len() - 5));
                }
            }
            if c.truncated {
                s.push_str(" (patch truncated)");
            }
            paint(s, Style::new().magenta(), color)
        }
        AgentEvent::Pushed { branch, commit } => {
            paint(format!("pushed  branch {branch} at {}", short_sha(commit)), Style::new().green().bold(), color)
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

/// `12 in / 5 out tokens, cost $0.0001`.
pub fn usage_words(u: &Usage) -> String {
    let mut s = format!("{} in / {} out tokens", u.input_tokens, u.output_tokens);
    if let Some(c) = u.cost_usd {
        s.push_str(&format!(", cost ${c:.4}"));
    }
    s
}

fn short_sha(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// What a tool call did, in a few words: its command, file, pattern, URL or query, or the
/// start of its input.
pub fn tool_input_summary(input: &Value) -> String {
    for key in ["command", "file_path", "path", "notebook_path", "pattern", "url", "query", "description"] {
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
    let o = &job.outcome;
    if let Some(u) = &o.usage {
        rows.push(("usage", usage_words(u)));
    }
    if let Some(n) = o.num_turns {
        rows.push(("turns", n.to_string()));
    }
    if let Some(sid) = &o.session_id {
        rows.push(("session", sid.clone()));
    }
    if let Some(c) = &o.changes {
        let cut = if c.truncated { " (patch truncated)" } else { "" };
        rows.push(("changes", format!("{} files, +{} -{}{cut} (orca job diff {})", c.files_changed, c.insertions, c.deletions, job.id)));
    }
    if let (Some(b), Some(c)) = (&o.result_branch, &o.result_commit) {
        rows.push(("pushed", format!("{b} at {}", short_sha(c))));
    }
    rows.iter().map(|(k, v)| format!("{:<11}{v}\n", format!("{k}:"))).collect()
}

/// The `orca job list` table, then `N of TOTAL jobs`.
pub fn job_table(list: &JobList, color: bool) -> String {
    let header = format!("{:<36}  {:<9}  {:<11}  {:<19}  {:>8}  PROMPT", "ID", "STATUS", "AGENT", "CREATED", "COST");
    let mut out = paint(header, Style::new().bold(), color) + "\n";
    for j in &list.jobs {
        let cost = j.outcome.usage.as_ref().and_then(|u| u.cost_usd).map_or_else(|| "-".to_owned(), |c| format!("${c:.4}"));
        out.push_str(&format!(
            "{:<36}  {}  {:<11}  {:<19}  {:>8}  {}\n",
            j.id.to_string(),
            status_word(j.status, 9, color),
            j.agent_type.as_str(),
            datetime(j.created_at),
            cost,
            truncate(&j.prompt, 40)
        ));
    }
    out.push_str(&format!("{} of {} jobs\n", list.jobs.len(), list.total));
    out
}

/// The `orca job diff --stat` view: one line per file, then the totals.
pub fn diff_stat(c: &Changes, color: bool) -> String {
    let width = c.files.iter().map(|f| f.path.chars().count()).max().unwrap_or(0).min(60);
    let mut out = String::new();
    for f in &c.files {
        let counts = match (f.insertions, f.deletions) {
            (Some(i), Some(d)) => format!("{} {}", paint(format!("+{i}"), Style::new().green(), color), paint(format!("-{d}"), Style::new().red(), color)),
            _ => "binary".to_owned(),
        };
        let renamed = f.old_path.as_ref().map(|o| format!(" (from {o})")).unwrap_or_default();
        out.push_str(&format!("{:<9} {:<width$}  {counts}{renamed}\n", f.status.as_str(), f.path));
    }
    let d = c.diffstat;
    out.push_str(&format!("{} file{} changed, {} insertions(+), {} deletions(-)\n", d.files_changed, if d.files_changed == 1 { "" } else { "s" }, d.insertions, d.deletions));
    if c.truncated {
        out.push_str(&format!("(the recorded patch was cut at its size limit; {} bytes in all)\n", c.patch_bytes));
    }
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
#[path = "render_tests.rs"]
mod tests;
