//! The worker's event lines, read from its pod's log stream (`follow=true`).
//!
//! Kubernetes merges a container's stdout and stderr into one log. The worker writes one JSON
//! event per line on stdout and plain diagnostic lines (starting with a timestamp) on stderr,
//! so lines starting with `{` are events and the rest go to the server log at debug level.
//!
//! The log is requested with `timestamps=true`: when the stream breaks before the worker ends,
//! it is reopened with `sinceTime` at the last line seen, and lines not newer than that are
//! skipped, so nothing is repeated. The timestamp of the last line handed on is the job's
//! cursor: a backend that detaches on shutdown stores it on the Job, and the next one resumes
//! right after it ([`Resume::After`]). Without a cursor (the backend died), a re-adopted
//! worker's log starts at the moment of adoption ([`Resume::Now`]) and a warning event says
//! that lines written while no backend watched are missing. Lines are never sent twice.

use super::CONTAINER;
use super::watch::Context;
use crate::scheduler::WorkerExit;
use crate::scheduler::local::MAX_LINE_BYTES;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, LogParams};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::compat::FuturesAsyncReadCompatExt;

/// How long the log may keep flowing after the worker's end is known.
const DRAIN: Duration = Duration::from_secs(10);
/// How often a broken log stream is reopened before the worker's end is known.
const MAX_REOPENS: u32 = 20;

/// Where a worker's log is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// From its first line (a worker this backend started).
    Start,
    /// After the line with this timestamp (the cursor a detaching backend stored).
    After(Timestamp),
    /// From now on (a worker adopted without a cursor).
    Now,
}

/// Starts reading the log of the job's worker once its container has started; the stream ends
/// after the worker's end (or at once if the container never started), or on detach.
pub fn stream(
    ctx: Context,
    ready: watch::Receiver<Option<String>>,
    exit: watch::Receiver<Option<WorkerExit>>,
    resume: Resume,
) -> BoxStream<'static, String> {
    let (tx, rx) = mpsc::channel(256);
    let detached = ctx.detached.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = pump(ctx, ready, exit, resume, tx) => {}
            _ = detached.cancelled() => {}
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

/// Splits a `timestamps=true` log line into its timestamp and text.
pub fn split_timestamp(line: &str) -> (Option<Timestamp>, &str) {
    match line.split_once(' ') {
        Some((ts, rest)) => match ts.parse::<Timestamp>() {
            Ok(t) => (Some(t), rest),
            Err(_) => (None, line),
        },
        None => match line.parse::<Timestamp>() {
            Ok(t) => (Some(t), ""),
            Err(_) => (None, line),
        },
    }
}

async fn pump(
    ctx: Context,
    mut ready: watch::Receiver<Option<String>>,
    mut exit: watch::Receiver<Option<WorkerExit>>,
    resume: Resume,
    tx: mpsc::Sender<String>,
) {
    let mut last = match resume {
        Resume::Start => None,
        Resume::After(t) => Some(t),
        Resume::Now => Some(Timestamp::now()),
    };
    if resume == Resume::Now {
        let message = "the Orca backend restarted while this job ran: worker output written while no backend watched is not in this log";
        let _ = tx.send(serde_json::json!({"type": "warning", "message": message}).to_string()).await;
    }
    let peek = ready.clone();
    let pod = tokio::select! {
        r = ready.wait_for(Option::is_some) => match r {
            Ok(v) => v.clone().expect("checked is_some"),
            Err(_) => return,
        },
        _ = exit.wait_for(Option::is_some) => match peek.borrow().clone() {
            Some(p) => p,
            None => return, // the container never started: no log
        },
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let mut drain_exit = exit.clone();
    let drained = async move {
        let _ = drain_exit.wait_for(Option::is_some).await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::pin!(drained);
    for attempt in 0..=MAX_REOPENS {
        // `sinceTime` has whole seconds and kube rounds it to the nearest one: floor it, or the
        // lines of the rest of that second would be lost. The skip below drops the repeats.
        let since_time = last.and_then(|t| Timestamp::from_second(t.as_second()).ok());
        let params = LogParams { container: Some(CONTAINER.into()), follow: true, timestamps: true, since_time, ..Default::default() };
        let mut clean_eof = false;
        match pods.log_stream(&pod, &params).await {
            Ok(reader) => {
                let mut lines = FramedRead::new(reader.compat(), LinesCodec::new_with_max_length(MAX_LINE_BYTES));
                loop {
                    let line = tokio::select! {
                        l = lines.next() => l,
                        _ = &mut drained => {
                            tracing::warn!(job_id = %ctx.id, "the worker's log was still open {DRAIN:?} after its end; closing it");
                            return;
                        }
                    };
                    match line {
                        None => {
                            clean_eof = true;
                            break;
                        }
                        Some(Ok(l)) => {
                            let (ts, text) = split_timestamp(&l);
                            if let (Some(t), Some(prev)) = (ts, last)
                                && t <= prev
                            {
                                continue; // already sent before the stream was reopened
                            }
                            last = ts.or(last);
                            if !forward(&ctx, text, &tx).await {
                                return;
                            }
                            *ctx.cursor.lock().expect("poisoned") = last;
                        }
                        Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                            let message = format!("dropped an output line longer than {MAX_LINE_BYTES} bytes");
                            let _ = tx.send(serde_json::json!({"type": "warning", "message": message}).to_string()).await;
                        }
                        Some(Err(LinesCodecError::Io(e))) => {
                            tracing::warn!(job_id = %ctx.id, "the worker's log stream broke: {e}");
                            break;
                        }
                    }
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::warn!(job_id = %ctx.id, "the worker pod {pod} is gone; its remaining log is lost");
                return;
            }
            Err(e) => tracing::warn!(job_id = %ctx.id, "cannot read the worker's log (attempt {}): {e}", attempt + 1),
        }
        // A log ends for good when the container does: after a clean end, wait briefly for the
        // verdict. A broken stream is reopened (the log outlives the container), within DRAIN.
        if clean_eof && tokio::time::timeout(Duration::from_secs(2), exit.wait_for(Option::is_some)).await.is_ok() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt.min(10)))) => {}
            _ = &mut drained => return,
        }
    }
    tracing::warn!(job_id = %ctx.id, "gave up reading the worker's log after {MAX_REOPENS} reopens");
}

/// Sends an event line on; logs a diagnostic line. False when nobody listens any more.
async fn forward(ctx: &Context, text: &str, tx: &mpsc::Sender<String>) -> bool {
    let text = text.trim_end_matches('\r');
    if text.trim().is_empty() {
        return true;
    }
    if text.starts_with('{') {
        tx.send(text.to_owned()).await.is_ok()
    } else {
        tracing::debug!(job_id = %ctx.id, "worker: {text}");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_split_off() {
        let (t, text) = split_timestamp("2026-12-04T10:00:00.123456789Z {\"type\":\"text\"}");
        assert_eq!(t.unwrap().to_string(), "2026-12-04T10:00:00.123456789Z");
        assert_eq!(text, "{\"type\":\"text\"}");
        assert_eq!(split_timestamp("no timestamp here"), (None, "no timestamp here"));
        let (t, text) = split_timestamp("2026-12-04T10:00:00Z");
        assert!(t.is_some() && text.is_empty());
    }
}
