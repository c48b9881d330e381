//! Replay, then live: the one loop with which every adapter turns a job's stored events and
//! its live feed into a subscriber's stream, with no gap and no duplicate.
//!
//! The subscriber joins the live feed before replaying, so anything appended during the
//! replay is either read from the store or received live; ids already sent are skipped. A
//! live record that is not the next id (the receiver lagged behind its buffer, or stored
//! entries were trimmed) sends the stream back to the store to read what it missed.

use super::BusError;
use orca_core::{EventId, EventRecord};
use std::future::Future;
use tokio::sync::broadcast;

/// Events read from the store per round trip while replaying.
pub(crate) const REPLAY_BATCH: usize = 500;

/// What it means when the live feed closes before the terminal event.
pub(crate) enum OnClose {
    /// The stream ends (the adapter is going away).
    End,
    /// The stream fails with this reason.
    Fail(&'static str),
}

/// The events after `after`: stored ones through `read(after, limit)`, then `live` ones,
/// ending after the terminal event. Without a live feed it ends after the stored events.
pub(crate) fn replay_then_live<'a, F, Fut>(
    read: F,
    after: EventId,
    mut live: Option<&'a mut broadcast::Receiver<EventRecord>>,
    on_close: OnClose,
) -> impl futures::Stream<Item = Result<EventRecord, BusError>> + Send + 'a
where
    F: Fn(EventId, usize) -> Fut + Send + 'a,
    Fut: Future<Output = Result<Vec<EventRecord>, BusError>> + Send + 'a,
{
    async_stream::try_stream! {
        let mut sent = after;
        'outer: loop {
            loop {
                let batch = read(sent, REPLAY_BATCH).await?;
                let n = batch.len();
                for rec in batch {
                    sent = rec.id;
                    let end = rec.event.is_terminal();
                    yield rec;
                    if end {
                        break 'outer;
                    }
                }
                if n < REPLAY_BATCH {
                    break;
                }
            }
            let Some(rx) = live.as_deref_mut() else { break 'outer };
            loop {
                match rx.recv().await {
                    Ok(rec) if rec.id <= sent => continue,
                    Ok(rec) if rec.id == sent + 1 => {
                        sent = rec.id;
                        let end = rec.event.is_terminal();
                        yield rec;
                        if end {
                            break 'outer;
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue 'outer,
                    Err(broadcast::error::RecvError::Closed) => match on_close {
                        OnClose::End => break 'outer,
                        OnClose::Fail(why) => Err(BusError::Unavailable(why.into()))?,
                    },
                }
            }
        }
    }
}
