//! The worker's event lines, read from its container's stdout, and the cursor that lets a
//! restarted backend resume them without duplicates.
//!
//! A started worker's output comes from `attach` (opened before the container starts, so
//! nothing is missed); an adopted worker's from `logs --follow` of the json-file log, which
//! holds the whole output. Both are split into lines here; stderr lines go to the server log.
//!
//! **Resuming:** every stdout line has a number (1, 2, …, blank lines included). Before a line
//! is handed to the job manager, its number is written to `<data dir>/docker/<job id>.cursor`
//! (write then rename). An adopted worker's log is replayed from the start, skipping lines up
//! to the cursor. The manager takes the next line only after it stored the previous one, so a
//! crash loses at most the one line in flight and never stores a line twice. Without a cursor
//! file (another data dir), the lines already in the log at adoption are skipped.

use super::super::local::MAX_LINE_BYTES;
use bollard::container::LogOutput;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use orca_core::JobId;
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, watch};

/// One stdout line and its number.
pub type Line = (u64, String);

/// Longest stderr line logged; the rest of it is cut.
const MAX_STDERR_LINE: usize = 64 * 1024;

/// Splits `frames` into lines, numbering stdout lines from 1 and sending those after `skip`
/// to `tx`. Returns how many stdout lines there were. Stops early when `tx` is closed.
pub async fn split_lines<S>(mut frames: S, skip: u64, tx: mpsc::Sender<Line>, job_id: JobId) -> u64
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
{
    let mut out = Splitter::default();
    let mut err = Splitter::default();
    while let Some(frame) = frames.next().await {
        let (bytes, is_out) = match frame {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => (message, true),
            Ok(LogOutput::StdErr { message }) => (message, false),
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(e) => {
                tracing::warn!(job_id = %job_id, "worker output stream broke: {e}");
                break;
            }
        };
        if is_out {
            for line in out.push(&bytes) {
                if !send(&tx, &mut out, skip, line).await {
                    return out.count;
                }
            }
        } else {
            for line in err.push(&bytes) {
                tracing::debug!(job_id = %job_id, "worker: {}", line.chars().take(MAX_STDERR_LINE).collect::<String>());
            }
        }
    }
    if let Some(line) = out.finish() {
        send(&tx, &mut out, skip, line).await;
    }
    out.count
}

async fn send(tx: &mpsc::Sender<Line>, out: &mut Splitter, skip: u64, line: String) -> bool {
    out.count += 1;
    out.count <= skip || tx.send((out.count, line)).await.is_ok()
}

/// Incremental line splitting with a length cap: an over-long line becomes a warning event.
#[derive(Default)]
struct Splitter {
    buf: Vec<u8>,
    /// Inside an over-long line: drop bytes until its newline.
    discarding: bool,
    count: u64,
}

impl Splitter {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let ends = chunk.ends_with(b"\n");
            if self.discarding {
                if ends {
                    self.discarding = false;
                    lines.push(too_long());
                }
                continue;
            }
            self.buf.extend_from_slice(chunk);
            if ends {
                let line = std::mem::take(&mut self.buf);
                lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r').to_owned());
            } else if self.buf.len() > MAX_LINE_BYTES {
                self.buf.clear();
                self.discarding = true;
            }
        }
        lines
    }

    fn finish(&mut self) -> Option<String> {
        if self.discarding {
            self.discarding = false;
            return Some(too_long());
        }
        (!self.buf.is_empty()).then(|| String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned())
    }
}

fn too_long() -> String {
    serde_json::json!({"type": "warning", "message": format!("dropped an output line longer than {MAX_LINE_BYTES} bytes")}).to_string()
}

/// Where a job's cursor lives.
pub fn cursor_path(dir: &Path, job_id: JobId) -> PathBuf {
    dir.join(format!("{job_id}.cursor"))
}

/// The last line number handed to the manager, if recorded.
pub async fn read_cursor(path: &Path) -> Option<u64> {
    tokio::fs::read_to_string(path).await.ok()?.trim().parse().ok()
}

async fn write_cursor(path: &Path, n: u64) {
    let tmp = path.with_extension("cursor.tmp");
    let res = async {
        tokio::fs::write(&tmp, n.to_string()).await?;
        tokio::fs::rename(&tmp, path).await
    };
    if let Err(e) = res.await {
        tracing::warn!("cannot record the output cursor in {}: {e}", path.display());
    }
}

/// The stream the manager reads: each line's number is recorded before the line is handed
/// over; blank lines are recorded but not handed over. `done` turns true once the stream has
/// ended or is dropped; dropping it also aborts `reader` (the task feeding `rx`). Once
/// `detach` is cancelled the stream ends, after the line already taken from `rx`.
pub fn manager_stream(
    rx: mpsc::Receiver<Line>,
    cursor: PathBuf,
    done: watch::Sender<bool>,
    reader: Option<tokio::task::AbortHandle>,
    detach: tokio_util::sync::CancellationToken,
) -> BoxStream<'static, String> {
    let inner = tokio_stream::wrappers::ReceiverStream::new(rx)
        .take_until(detach.cancelled_owned())
        .then(move |(n, line)| {
            let cursor = cursor.clone();
            async move {
                write_cursor(&cursor, n).await;
                line
            }
        })
        .filter(|l| futures::future::ready(!l.trim().is_empty()))
        .boxed();
    Tracked { inner, done, reader }.boxed()
}

struct Tracked {
    inner: BoxStream<'static, String>,
    done: watch::Sender<bool>,
    reader: Option<tokio::task::AbortHandle>,
}

impl Stream for Tracked {
    type Item = String;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<String>> {
        let next = self.inner.poll_next_unpin(cx);
        if let std::task::Poll::Ready(None) = next {
            let _ = self.done.send(true);
        }
        next
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(r) = &self.reader {
            r.abort();
        }
        let _ = self.done.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[(&str, bool)]) -> impl Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin {
        let v: Vec<_> = parts
            .iter()
            .map(|(s, out)| {
                Ok(if *out {
                    LogOutput::StdOut { message: s.to_string().into() }
                } else {
                    LogOutput::StdErr { message: s.to_string().into() }
                })
            })
            .collect();
        futures::stream::iter(v)
    }

    async fn collect(parts: &[(&str, bool)], skip: u64) -> (u64, Vec<Line>) {
        let (tx, mut rx) = mpsc::channel(100);
        let n = split_lines(frames(parts), skip, tx, JobId::new_at(time::OffsetDateTime::now_utc())).await;
        let mut got = vec![];
        while let Some(l) = rx.recv().await {
            got.push(l);
        }
        (n, got)
    }

    #[tokio::test]
    async fn lines_are_split_across_frames_and_numbered() {
        let (n, got) = collect(&[("{\"a\"", true), (":1}\n\nsec", true), ("noise\n", false), ("ond\nlast", true)], 0).await;
        assert_eq!(n, 4);
        let want: Vec<Line> = vec![(1, "{\"a\":1}".into()), (2, "".into()), (3, "second".into()), (4, "last".into())];
        assert_eq!(got, want);
        let (_, got) = collect(&[("a\nb\nc\n", true)], 2).await;
        assert_eq!(got, vec![(3, "c".to_owned())]);
    }

    #[tokio::test]
    async fn an_overlong_line_becomes_one_warning() {
        let big = "x".repeat(MAX_LINE_BYTES + 10);
        let (n, got) = collect(&[(&big, true), ("y\nnext\n", true)], 0).await;
        assert_eq!(n, 2);
        assert!(got[0].1.contains("\"warning\""), "{}", &got[0].1[..80]);
        assert_eq!(got[1], (2, "next".to_owned()));
    }

    #[tokio::test]
    async fn the_cursor_is_written_before_each_line_is_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.cursor");
        let (tx, rx) = mpsc::channel(10);
        let (done_tx, done_rx) = watch::channel(false);
        let detach = tokio_util::sync::CancellationToken::new();
        let mut s = manager_stream(rx, path.clone(), done_tx, None, detach.clone());
        tx.send((1, "one".into())).await.unwrap();
        tx.send((2, " ".into())).await.unwrap();
        tx.send((3, "three".into())).await.unwrap();
        assert_eq!(s.next().await.as_deref(), Some("one"));
        assert_eq!(read_cursor(&path).await, Some(1));
        assert_eq!(s.next().await.as_deref(), Some("three"));
        assert_eq!(read_cursor(&path).await, Some(3));
        assert!(!*done_rx.borrow());
        tx.send((4, "four".into())).await.unwrap();
        detach.cancel();
        assert_eq!(s.next().await, None, "detached: no more lines");
        assert_eq!(read_cursor(&path).await, Some(3), "line 4 was not handed over, so it is not recorded");
        assert!(*done_rx.borrow());
    }
}
