//! A job's `queued` event: announced after the submitter has its answer, and written first by
//! whoever moves the job out of the queue if the announcement has not landed by then.
//!
//! Submitting stores the job (that is what makes it accepted) and answers at once; appending
//! `queued` to the event stream happens off the request's path: the announcer task collects
//! the announcements of [`ANNOUNCE_WINDOW`] and sends them together
//! ([`EventBus::append_first_many`](crate::events::EventBus::append_first_many): one Redis
//! pipeline per batch instead of a round trip per job). Every move out of
//! `queued` (a claim, a cancel) first calls [`JobManager::announce_queued`], an
//! [`EventBus::append_first`](crate::events::EventBus::append_first): the event is written
//! exactly once, by whichever comes first, so `queued` is always event 1 even when the
//! announcing instance died in between.
//!
//! **Invariant:** the `queued` event of a job is a pure function of the stored job
//! ([`queued_event`]), so it does not matter who writes it.

use super::{JobManager, ManagerError};
use orca_core::{AgentEvent, Job, JobId, JobStatus};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How long the announcer gathers announcements before sending them.
pub const ANNOUNCE_WINDOW: Duration = Duration::from_millis(5);
/// Most announcements sent in one batch.
const MAX_BATCH: usize = 512;

/// Announcements waiting for the announcer task.
#[derive(Default)]
pub(super) struct Announcements {
    pending: Mutex<Vec<(JobId, AgentEvent)>>,
    wake: Notify,
}

/// The first event of `job`: `queued`, with the job it retries as the reason.
fn queued_event(job: &Job) -> AgentEvent {
    AgentEvent::status(JobStatus::Queued, job.retry_of.map(|r| format!("retry of {r}")), None)
}

impl JobManager {
    /// Stores a new job, then leaves its announcement to the announcer (see the module doc).
    pub(super) async fn enqueue(&self, job: &Job) -> Result<(), ManagerError> {
        self.store.insert(job).await?;
        self.announcements.pending.lock().expect("poisoned").push((job.id, queued_event(job)));
        self.announcements.wake.notify_one();
        Ok(())
    }

    /// Sends gathered announcements until shutdown, then what is left.
    pub(super) async fn announcer_loop(self: Arc<Self>) {
        loop {
            let stopping = tokio::select! {
                _ = self.shutdown.cancelled() => true,
                _ = self.announcements.wake.notified() => false,
            };
            if !stopping {
                tokio::time::sleep(ANNOUNCE_WINDOW).await;
            }
            loop {
                let batch: Vec<_> = {
                    let mut pending = self.announcements.pending.lock().expect("poisoned");
                    let n = pending.len().min(MAX_BATCH);
                    pending.drain(..n).collect()
                };
                if batch.is_empty() {
                    break;
                }
                if let Err(e) = self.bus.append_first_many(&batch).await {
                    tracing::warn!(jobs = batch.len(), "cannot announce queued jobs (whoever moves them out of the queue will): {e}");
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// Makes sure the job's stream starts with its `queued` event.
    pub(super) async fn announce_queued(&self, job: &Job) -> Result<(), ManagerError> {
        self.bus.append_first(job.id, queued_event(job)).await?;
        Ok(())
    }
}
