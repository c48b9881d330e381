//! Running an agent CLI headless: one [`CliAgent`] declares the command line and the parser,
//! [`run`] does the rest.
//!
//! The CLI runs in the job's directory with stdin `/dev/null` (an open pipe makes Claude Code
//! wait and Codex hang), in its own process group (so a signal or a dropped future reaches
//! its shells too), without `GIT_TOKEN` or the askpass variables in its environment. Each
//! stdout line goes through the [`LineParser`]; stderr lines go to the worker's log and the
//! last few into the failure message. [`Stop::WrapUp`] becomes SIGINT to the group,
//! [`Stop::Terminate`] SIGTERM.
//!
//! **Invariant:** success needs both the agent's own verdict ([`Verdict::Success`]) and exit
//! status 0; an agent that exits 0 without a final result failed.

use super::{AgentContext, AgentFailure, Stop};
use crate::exit_code;
use crate::git::auth::ASKPASS_VARS;
use crate::log;
use crate::proc::GroupChild;
use crate::sink::Emitter;
use nix::sys::signal::Signal;
use orca_core::AgentEvent;
use serde_json::Value;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// Longest stdout line parsed; a longer one is cut and kept as `raw`.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;
/// How much of a tool's output goes into a `tool_result` event.
pub const MAX_TOOL_OUTPUT_BYTES: usize = 64 * 1024;
/// How much of one text or thinking block goes into an event.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
const STDERR_TAIL_LINES: usize = 4;

/// A command line to run: the program, its arguments and extra environment.
#[derive(Debug, Clone, Default)]
pub struct CliCommand {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(String, OsString)>,
}

impl CliCommand {
    pub fn new(program: impl Into<OsString>) -> Self {
        Self { program: program.into(), ..Self::default() }
    }

    pub fn arg(&mut self, a: impl Into<OsString>) -> &mut Self {
        self.args.push(a.into());
        self
    }

    pub fn env(&mut self, k: &str, v: impl Into<OsString>) -> &mut Self {
        self.env.push((k.to_owned(), v.into()));
        self
    }

    /// The arguments as text (for tests and the debug log; they hold no secret).
    pub fn args_lossy(&self) -> Vec<String> {
        self.args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }
}

/// The agent's own word on how the run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure(String),
    /// No final result line was seen (the CLI crashed, was interrupted, or changed format).
    Unknown,
}

/// Turns an agent's stdout, line by line, into events.
pub trait LineParser: Send {
    /// The events for one line. Never panics: what it does not understand becomes `raw`.
    fn line(&mut self, line: &str) -> Vec<AgentEvent>;
    /// Events after the last line (e.g. a `result` assembled from what was seen).
    fn finish(&mut self) -> Vec<AgentEvent> {
        Vec::new()
    }
    fn verdict(&self) -> Verdict;
}

/// An agent that is a command-line program with a JSON-lines output mode.
pub trait CliAgent {
    /// The agent's name (`claude-code`): the `source` of its raw events and the log prefix.
    const NAME: &'static str;
    type Parser: LineParser;
    fn command(&self, ctx: &AgentContext) -> Result<CliCommand, AgentFailure>;
    fn parser(&self, ctx: &AgentContext) -> Self::Parser;
}

/// An unparsed line as a raw event of `source`.
pub fn raw(source: &str, data: Value) -> AgentEvent {
    AgentEvent::Raw { source: Some(source.to_owned()), data }
}

/// At most `max` bytes of `s` (cut at a character boundary), saying how much was cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n…[{} more bytes]", &s[..cut], s.len() - cut)
}

/// The extra args of the job, checked against the agent's allowlist.
pub fn extra_args(agent: &str, ctx: &AgentContext) -> Result<Vec<String>, AgentFailure> {
    let args = ctx.config.extra_args.as_deref().unwrap_or_default();
    orca_core::agent_options::check_extra_args(agent, args)
        .map_err(|e| AgentFailure::new(format!("config.extraArgs: {e}"), exit_code::BAD_ENV))
}

/// Runs `agent` to its end, emitting its events.
pub async fn run<A: CliAgent>(agent: &A, ctx: &AgentContext, events: &Emitter) -> Result<(), AgentFailure> {
    let spec = agent.command(ctx)?;
    let name = A::NAME;
    log::debug(&format!("{name}: running {} {:?}", spec.program.to_string_lossy(), spec.args_lossy()));
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&ctx.dir)
        .env_remove("GIT_TOKEN")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in ASKPASS_VARS {
        cmd.env_remove(v);
    }
    let mut child = GroupChild::spawn(&mut cmd).map_err(|e| {
        let program = spec.program.to_string_lossy();
        AgentFailure::new(
            match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("the {name} CLI was not found (`{program}`); install it or set its ORCA_*_BIN variable")
                }
                _ => format!("cannot start the {name} CLI `{program}`: {e}"),
            },
            exit_code::AGENT_FAILED,
        )
    })?;
    let stdout = child.child_mut().stdout.take().expect("stdout is piped");
    let stderr = child.child_mut().stderr.take().expect("stderr is piped");
    let stderr_tail = tokio::spawn(stderr_tail(name, stderr));
    let mut parser = agent.parser(ctx);
    let mut stop = ctx.stop.clone();
    let mut stop_live = true;
    let mut asked = Stop::No;
    let mut out = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        tokio::select! {
            line = read_line_bounded(&mut out, &mut buf, MAX_LINE_BYTES) => match line {
                Ok(Some(cut)) => {
                    let text = String::from_utf8_lossy(&buf);
                    let text = text.trim_end_matches(['\n', '\r']);
                    if text.trim().is_empty() {
                        continue;
                    }
                    let parsed = if cut {
                        vec![raw(name, Value::String(format!("[line cut at {MAX_LINE_BYTES} bytes] {}", bounded(text, 2000))))]
                    } else {
                        parser.line(text)
                    };
                    for e in parsed {
                        events.emit(e).await;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log::warn(&format!("{name}: cannot read its output: {e}"));
                    break;
                }
            },
            changed = stop.changed(), if stop_live => match changed {
                Ok(()) => asked = forward_stop(name, &child, *stop.borrow_and_update()).unwrap_or(asked),
                Err(_) => stop_live = false,
            },
        }
    }
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            changed = stop.changed(), if stop_live => match changed {
                Ok(()) => asked = forward_stop(name, &child, *stop.borrow_and_update()).unwrap_or(asked),
                Err(_) => stop_live = false,
            },
        }
    };
    for e in parser.finish() {
        events.emit(e).await;
    }
    let tail = stderr_tail.await.unwrap_or_default();
    let status = status
        .map_err(|e| AgentFailure::new(format!("cannot wait for the {name} CLI: {e}"), exit_code::AGENT_FAILED))?;
    judge(name, parser.verdict(), status, &tail, asked)
}

/// Sends the signal for `stop` to the agent's group; returns what was asked, if anything.
fn forward_stop(name: &str, child: &GroupChild, stop: Stop) -> Option<Stop> {
    let sig = match stop {
        Stop::No => return None,
        Stop::WrapUp => Signal::SIGINT,
        Stop::Terminate => Signal::SIGTERM,
    };
    log::info(&format!("{name}: sending {sig} to the agent ({stop:?})"));
    child.signal_group(sig);
    Some(stop)
}

/// The outcome of a finished CLI run.
pub fn judge(
    name: &str,
    verdict: Verdict,
    status: ExitStatus,
    stderr: &[String],
    asked: Stop,
) -> Result<(), AgentFailure> {
    let exit = describe(status);
    let why = match (verdict, status.success()) {
        (Verdict::Success, true) => return Ok(()),
        (Verdict::Failure(reason), _) => format!("{name} failed: {reason}"),
        (Verdict::Success, false) => format!("{name} reported success but {exit}"),
        (Verdict::Unknown, _) if stderr.is_empty() => format!("{name} {exit} without a final result"),
        (Verdict::Unknown, _) => format!("{name} {exit} without a final result: {}", stderr.join(" | ")),
    };
    Err(match asked {
        Stop::WrapUp => AgentFailure::new(format!("stopped at the soft timeout: {why}"), exit_code::TIMEOUT),
        Stop::Terminate => AgentFailure::new(format!("stopped by SIGTERM: {why}"), exit_code::SIGTERM),
        Stop::No => AgentFailure::new(why, exit_code::AGENT_FAILED),
    })
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("ended ({status})"),
    }
}

/// Reads one line into `buf` (cleared first), keeping at most `max` bytes of it. `Ok(None)` at
/// end of input; `Ok(Some(true))` when the line was longer than `max` (the rest is skipped).
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut cut = false;
    let mut any = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(any.then_some(cut));
        }
        any = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        if take > room {
            cut = true;
        }
        buf.extend_from_slice(&chunk[..take.min(room)]);
        r.consume(take);
        if done {
            return Ok(Some(cut));
        }
    }
}

/// Logs the agent's stderr (debug level) and returns its last few non-empty lines.
async fn stderr_tail(name: &'static str, err: impl AsyncRead + Unpin) -> Vec<String> {
    let mut r = BufReader::new(err);
    let mut buf = Vec::new();
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    while let Ok(Some(_)) = read_line_bounded(&mut r, &mut buf, 4000).await {
        let line = String::from_utf8_lossy(&buf).trim().chars().take(400).collect::<String>();
        if line.is_empty() {
            continue;
        }
        log::debug(&format!("{name} stderr: {line}"));
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_read_with_a_bound() {
        let input: &[u8] = b"short\nthis one is long\n\nlast-no-newline";
        let mut r = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(cut) = read_line_bounded(&mut r, &mut buf, 8).await.unwrap() {
            got.push((String::from_utf8(buf.clone()).unwrap(), cut));
        }
        let want = [("short\n", false), ("this one", true), ("\n", false), ("last-no-", true)];
        assert_eq!(got, want.map(|(s, c)| (s.to_owned(), c)));
    }

    #[test]
    fn bounded_text_says_what_was_cut() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("héllo", 2), "h\n…[5 more bytes]");
    }

    #[test]
    fn success_needs_the_verdict_and_exit_zero() {
        let ok = ExitStatus::from_raw(0);
        let one = ExitStatus::from_raw(1 << 8);
        assert!(judge("x", Verdict::Success, ok, &[], Stop::No).is_ok());
        let e = judge("x", Verdict::Success, one, &[], Stop::No).unwrap_err();
        assert_eq!((e.message.as_str(), e.exit_code), ("x reported success but exited with status 1", 1));
        let e = judge("x", Verdict::Failure("API Error: 500".into()), ok, &[], Stop::No).unwrap_err();
        assert_eq!(e.message, "x failed: API Error: 500");
        let e = judge("x", Verdict::Unknown, ok, &["boom".into()], Stop::No).unwrap_err();
        assert_eq!(e.message, "x exited with status 0 without a final result: boom");
        let e = judge("x", Verdict::Unknown, ok, &[], Stop::WrapUp).unwrap_err();
        assert_eq!((e.exit_code, e.message.starts_with("stopped at the soft timeout")), (exit_code::TIMEOUT, true));
        assert_eq!(
            judge("x", Verdict::Unknown, ExitStatus::from_raw(15), &[], Stop::Terminate).unwrap_err().exit_code,
            143
        );
    }
}
