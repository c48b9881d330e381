//! Where events go: an [`EventSink`] writes them out, an [`Emitter`] is how the rest of the
//! worker hands them over.
//!
//! Agents and the supervisor share one bounded channel (the [`Emitter`]); a single task
//! ([`drain`]) owns the sink and writes events in order. Cancelling an agent therefore never
//! cuts a line in half, and the supervisor's last word (a timeout or signal event) always comes
//! after everything the agent said. Today the sink is NDJSON on stdout; a Redis sink would be
//! one more [`EventSink`] implementation.

use crate::log;
use orca_core::AgentEvent;
use std::future::Future;
use std::io::{self, Write};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// A destination for events, written one at a time and in order.
pub trait EventSink: Send + 'static {
    /// Writes one event durably enough that the reader sees it now (e.g. flushed).
    fn write(&mut self, event: &AgentEvent) -> impl Future<Output = io::Result<()>> + Send;
}

/// One JSON object per line, flushed after each line.
pub struct NdjsonSink<W> {
    out: W,
}

impl NdjsonSink<tokio::io::Stdout> {
    pub fn stdout() -> Self {
        Self { out: tokio::io::stdout() }
    }
}

impl<W> NdjsonSink<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> EventSink for NdjsonSink<W> {
    async fn write(&mut self, event: &AgentEvent) -> io::Result<()> {
        let line = to_line(event)?;
        self.out.write_all(&line).await?;
        self.out.flush().await
    }
}

/// The event as one NDJSON line, newline included (JSON strings escape their own newlines).
pub fn to_line(event: &AgentEvent) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(event)?;
    line.push(b'\n');
    Ok(line)
}

/// Writes one event to stdout synchronously; for use before the async runtime exists.
pub fn write_line_blocking(event: &AgentEvent) {
    let mut out = io::stdout().lock();
    if let Err(e) = to_line(event).and_then(|l| out.write_all(&l)).and_then(|()| out.flush()) {
        log::error(&format!("cannot write to stdout: {e}"));
    }
}

/// Writes every event received to `sink` until all [`Emitter`]s are gone.
///
/// After a write fails (say the reader went away) the receiver is dropped: senders see
/// [`Emitter::closed`] and stop, and no sender ever blocks on a dead sink.
pub async fn drain<S: EventSink>(mut sink: S, mut rx: mpsc::Receiver<AgentEvent>) -> S {
    while let Some(event) = rx.recv().await {
        if let Err(e) = sink.write(&event).await {
            log::error(&format!("cannot write events any more: {e}"));
            break;
        }
    }
    sink
}

/// A cloneable handle for sending events to the sink.
#[derive(Debug, Clone)]
pub struct Emitter {
    tx: mpsc::Sender<AgentEvent>,
}

impl Emitter {
    /// A new handle and the receiving end to pass to [`drain`].
    pub fn channel(capacity: usize) -> (Emitter, mpsc::Receiver<AgentEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Emitter { tx }, rx)
    }

    /// Queues an event, waiting while the channel is full. Silently drops it once the sink is
    /// gone (the worker is shutting down).
    pub async fn emit(&self, event: AgentEvent) {
        let _ = self.tx.send(event).await;
    }

    /// Like [`Emitter::emit`], but gives up after `limit`; returns whether it was queued.
    pub async fn emit_within(&self, event: AgentEvent, limit: Duration) -> bool {
        self.tx.send_timeout(event, limit).await.is_ok()
    }

    /// Completes when the sink is gone: nothing the worker says can reach anyone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    pub async fn log(&self, message: impl Into<String>) {
        let message = message.into();
        log::info(&message);
        self.emit(AgentEvent::Log { message }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_become_flushed_json_lines_in_order() {
        let (tx, rx) = Emitter::channel(2);
        let writer = tokio::spawn(drain(NdjsonSink::new(Vec::<u8>::new()), rx));
        tx.emit(AgentEvent::Text { text: "a\nb".into() }).await;
        tx.emit(AgentEvent::Log { message: "second".into() }).await;
        tx.emit(AgentEvent::Warning { message: "third".into() }).await;
        drop(tx);
        let out = String::from_utf8(writer.await.unwrap().into_inner()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[0], r#"{"type":"text","text":"a\nb"}"#);
        let kinds: Vec<_> = lines.iter().map(|l| AgentEvent::from_json_line(l).kind()).collect();
        assert_eq!(kinds, ["text", "log", "warning"]);
        assert!(out.ends_with('\n'));
    }
}
