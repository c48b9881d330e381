//! The echo agent: replays the prompt as a believable agent session, for testing the whole
//! pipeline without a model.
//!
//! Events: `session`, a `tool_call`/`tool_result` pair (tool `echo`), `echoSteps` `text` events
//! whose texts concatenate to the prompt (steps beyond the prompt's word count are `thinking`
//! events instead of empty texts), `usage`, then `result`, with `echoDelayMs` between
//! events. With `echoExitCode` set it fails after the text events instead.

use super::{Agent, AgentContext, AgentFailure, Stop, StopSignal};
use crate::sink::Emitter;
use orca_core::AgentEvent;
use orca_core::event::Usage;
use serde_json::json;
use std::time::Duration;

pub const DEFAULT_STEPS: u32 = 3;
pub const DEFAULT_DELAY_MS: u64 = 100;
/// How much of the prompt goes into the tool call's input.
const TOOL_INPUT_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, Default)]
pub struct EchoAgent;

impl Agent for EchoAgent {
    async fn run(&self, ctx: &AgentContext, events: &Emitter) -> Result<(), AgentFailure> {
        let cfg = &ctx.config;
        let steps = cfg.echo_steps.unwrap_or(DEFAULT_STEPS) as usize;
        let delay = Duration::from_millis(cfg.echo_delay_ms.unwrap_or(DEFAULT_DELAY_MS));
        let mut out = Paced { events, delay, started: false, stop: ctx.stop.clone() };
        // Sandbox test knobs (see `crate::probe`): memory held until the agent ends, a report.
        let _ballast = cfg.echo_alloc_mb.map(crate::probe::allocate);
        if cfg.echo_probe == Some(true) {
            out.say(crate::probe::report_event(&ctx.dir)).await;
        }

        out.say(AgentEvent::Session { session_id: Some(ctx.job_id.clone()), model: Some("echo".into()) }).await;
        let head: String = ctx.prompt.chars().take(TOOL_INPUT_CHARS).collect();
        let call_id = "echo-1".to_owned();
        out.say(AgentEvent::ToolCall { tool_call_id: call_id.clone(), name: "echo".into(), input: json!({ "prompt": head }) })
            .await;
        out.say(AgentEvent::ToolResult { tool_call_id: call_id, output: json!(head), is_error: false }).await;
        for (i, chunk) in chunks(&ctx.prompt, steps).into_iter().enumerate() {
            // Steps beyond the prompt's words still take their time, as visible reasoning.
            let event = if chunk.is_empty() {
                AgentEvent::Thinking { text: format!("echo step {} of {steps}", i + 1) }
            } else {
                AgentEvent::Text { text: chunk.to_owned() }
            };
            out.say(event).await;
            if *out.stop.borrow() == Stop::Terminate {
                return Err(AgentFailure::new("echo agent stopped by SIGTERM", crate::exit_code::SIGTERM));
            }
        }
        if let Some(code) = cfg.echo_exit_code {
            return Err(AgentFailure::new(format!("echo agent asked to exit with code {code}"), code));
        }
        let words = ctx.prompt.split_whitespace().count() as u64;
        let usage = Usage { input_tokens: words, output_tokens: words, cost_usd: Some(0.0), ..Usage::default() };
        out.say(AgentEvent::Usage(usage)).await;
        out.say(AgentEvent::Result {
            success: true,
            text: Some(ctx.prompt.clone()),
            num_turns: Some(1),
            duration_ms: None,
            usage: None,
            session_id: Some(ctx.job_id.clone()),
            reason: None,
        })
        .await;
        Ok(())
    }
}

/// Emits events with `delay` between consecutive ones.
/// A SIGTERM request cuts the current delay short.
struct Paced<'a> {
    events: &'a Emitter,
    delay: Duration,
    started: bool,
    stop: StopSignal,
}

impl Paced<'_> {
    async fn say(&mut self, event: AgentEvent) {
        if self.started && !self.delay.is_zero() && *self.stop.borrow() != Stop::Terminate {
            let sleep = tokio::time::sleep(self.delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    changed = self.stop.changed() => match changed {
                        Ok(()) if *self.stop.borrow() == Stop::Terminate => break,
                        Ok(()) => {}
                        Err(_) => {
                            (&mut sleep).await;
                            break;
                        }
                    },
                }
            }
        }
        self.started = true;
        self.events.emit(event).await;
    }
}

/// Splits `prompt` into exactly `steps` pieces at word starts, with roughly equal word counts.
///
/// The pieces concatenate to `prompt` exactly (whitespace included). With fewer words than
/// steps, the trailing pieces are empty; with zero steps there are no pieces.
pub fn chunks(prompt: &str, steps: usize) -> Vec<&str> {
    let starts: Vec<usize> = word_starts(prompt).collect();
    let words = starts.len();
    // Byte offset where piece `i` starts; piece i holds words ceil(i*w/s) .. ceil((i+1)*w/s).
    let cut = |i: usize| -> usize {
        if i == 0 {
            return 0;
        }
        let word = (i * words).div_ceil(steps);
        starts.get(word).copied().unwrap_or(prompt.len())
    };
    (0..steps).map(|i| &prompt[cut(i)..cut(i + 1)]).collect()
}

/// Byte offsets where each whitespace-separated word begins.
fn word_starts(s: &str) -> impl Iterator<Item = usize> + '_ {
    let mut prev_space = true;
    s.char_indices().filter_map(move |(i, c)| {
        let start = prev_space && !c.is_whitespace();
        prev_space = c.is_whitespace();
        start.then_some(i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_by_words_and_rejoin_exactly() {
        assert_eq!(chunks("a b c d e f", 3), ["a b ", "c d ", "e f"]);
        assert_eq!(chunks("one two three four", 3), ["one two ", "three ", "four"]);
        assert_eq!(chunks("  lead  and trail  ", 2), ["  lead  and ", "trail  "]);
        assert_eq!(chunks("hello", 3), ["hello", "", ""]);
        assert_eq!(chunks("hello world", 1), ["hello world"]);
        assert!(chunks("hello", 0).is_empty());
        assert_eq!(chunks("", 2), ["", ""]);
        assert_eq!(chunks("   ", 2), ["   ", ""]);
    }

    #[test]
    fn chunks_never_panic_and_always_rejoin() {
        let prompts = ["", " ", "x", "héllo wörld ünïcode 🎉 done", "a\tb\nc  d", "many words here to split up"];
        for p in prompts {
            for steps in 0..12 {
                let c = chunks(p, steps);
                assert_eq!(c.len(), steps, "{p:?} {steps}");
                if steps > 0 {
                    assert_eq!(c.concat(), p, "{p:?} {steps}");
                }
            }
        }
    }

    #[tokio::test]
    async fn echo_emits_the_expected_sequence() {
        let (events, mut rx) = Emitter::channel(64);
        let ctx = AgentContext::new("job-1", "say hello to the world", ".", orca_core::JobConfig { echo_delay_ms: Some(0), ..Default::default() });
        EchoAgent.run(&ctx, &events).await.unwrap();
        drop(events);
        let mut got = Vec::new();
        while let Some(e) = rx.recv().await {
            got.push(e);
        }
        let kinds: Vec<_> = got.iter().map(AgentEvent::kind).collect();
        assert_eq!(kinds, ["session", "tool_call", "tool_result", "text", "text", "text", "usage", "result"]);
        let text: String = got
            .iter()
            .filter_map(|e| if let AgentEvent::Text { text } = e { Some(text.as_str()) } else { None })
            .collect();
        assert_eq!(text, ctx.prompt);
        assert_eq!(got[0], AgentEvent::Session { session_id: Some("job-1".into()), model: Some("echo".into()) });
        assert!(
            matches!(&got[6], AgentEvent::Usage(u) if u.input_tokens == 5 && u.output_tokens == 5 && u.cost_usd == Some(0.0))
        );
    }

    #[tokio::test]
    async fn echo_exit_code_fails_after_the_text() {
        let (events, mut rx) = Emitter::channel(64);
        let config = orca_core::JobConfig {
            echo_delay_ms: Some(0),
            echo_steps: Some(2),
            echo_exit_code: Some(3),
            ..Default::default()
        };
        let ctx = AgentContext::new("j", "p q", ".", config);
        let err = EchoAgent.run(&ctx, &events).await.unwrap_err();
        assert_eq!(err, AgentFailure::new("echo agent asked to exit with code 3", 3));
        drop(events);
        let mut kinds = Vec::new();
        while let Some(e) = rx.recv().await {
            kinds.push(e.kind());
        }
        assert_eq!(kinds, ["session", "tool_call", "tool_result", "text", "text"]);
    }
}
